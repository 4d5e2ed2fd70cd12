import type { Settlement } from './accounting.ts'
import type { Pricing } from './limits.ts'
import { chargeFor, type TokenPrice, type WorkerReceipt } from '../../shared/receipt.ts'
import { ReceiptDesk, type StoredReceipt } from './receipts.ts'

// The end of a request: its final status and token counts are recorded, and the hold taken at
// admission turns into the real charge. The ledger (accounting.ts) resolves once the record is
// durable in the gateway's settlement log; PostgreSQL gets it in a batch soon after. A request that
// reached a worker is billed at the price told to that worker; a checked receipt goes into the same
// record with that bill, and is countersigned when the record goes to PostgreSQL (receipts.ts).

/** How a request ended, as the pipeline saw it. */
export interface RequestEnd {
  id: string
  model: string
  status: 'success' | 'failed' | 'cancelled'
  /** the worker's public key, null if none was reached */
  worker: string | null
  tokensIn: number
  tokensOut: number
  /** ms epoch when the request arrived */
  started: number
  ttftMs: number | null
  error: { code: string, message: string } | null
  /** the price told to the worker, nano-USD a token; none: the model's price now */
  price?: TokenPrice | undefined
  /** the worker's receipt, checked: countersigned with the bill */
  receipt?: WorkerReceipt | null
  /** a receipt refused at settlement: kept as disputed */
  dispute?: { reason: string, receipt: WorkerReceipt | null }
}

/** the answer waits this long for its record at most */
const WAIT_MS = 15_000

export class Settler {
  private readonly pricing: Pricing
  private readonly ledger: { settle (s: Settlement): Promise<void> } | null
  private readonly ownerOf: (worker: string) => string | null
  private readonly desk: ReceiptDesk | null

  /**
   * `ledger` null: accounting is off (benchmarks), so nothing is recorded, only priced. `ownerOf`:
   * the account a worker belongs to (read from memory), credited its share of the charge. `desk`:
   * countersigns receipts.
   */
  constructor (pricing: Pricing, ledger: { settle (s: Settlement): Promise<void> } | null, ownerOf: (worker: string) => string | null = () => null, desk: ReceiptDesk | null = null) {
    this.pricing = pricing
    this.ledger = ledger
    this.ownerOf = ownerOf
    this.desk = desk
  }

  /** Record the end of a request; resolves when durable (or after WAIT_MS). Returns the cost, nano-USD. */
  async settle (end: RequestEnd): Promise<number> {
    // the price the worker was told (its operator's, else the model's), else the serving worker's now
    const cost = end.price ? chargeFor(end.price, end.tokensIn, end.tokensOut) : this.pricing.cost(end.model, end.tokensIn, end.tokensOut, end.worker)
    if (!this.ledger) return cost
    const finishedAt = new Date()
    let receipt: StoredReceipt | null = null
    if (end.dispute) receipt = ReceiptDesk.disputed(end.dispute.reason, end.dispute.receipt)
    // countersigned when recorded in PostgreSQL: the answer does not wait for the signature
    else if (end.receipt && this.desk) receipt = this.desk.bill(end.receipt, { tokensIn: end.tokensIn, tokensOut: end.tokensOut, chargeNusd: cost })
    const done = this.ledger.settle({
      receipt,
      id: end.id, status: end.status, worker: end.worker, owner: end.worker ? this.ownerOf(end.worker) : null, tokensIn: end.tokensIn, tokensOut: end.tokensOut, cost, ttftMs: end.ttftMs,
      durationMs: finishedAt.getTime() - end.started, errorCode: end.error?.code ?? null, errorMessage: end.error?.message ?? null, finishedAt: finishedAt.toISOString()
    })
    // a disk that stops answering delays the answer, and past WAIT_MS it goes out while the record
    // is still being written
    let timer: NodeJS.Timeout | undefined
    await Promise.race([done, new Promise((resolve) => { timer = setTimeout(resolve, WAIT_MS) })])
    clearTimeout(timer)
    return cost
  }
}
