import type { Settlement } from './accounting.ts'
import type { Pricing } from './limits.ts'

// The end of a request: its final status and token counts are recorded, and the hold taken at
// admission turns into the real charge. The ledger (accounting.ts) resolves once the record is
// durable in the gateway's settlement log; PostgreSQL gets it in a batch soon after.

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
}

/** the answer waits this long for its record at most */
const WAIT_MS = 15_000

export class Settler {
  private readonly pricing: Pricing
  private readonly ledger: { settle (s: Settlement): Promise<void> } | null
  private readonly ownerOf: (worker: string) => string | null

  /**
   * `ledger` null: accounting is off (benchmarks), so nothing is recorded, only priced. `ownerOf`:
   * the account a worker belongs to (read from memory), credited its share of the charge.
   */
  constructor (pricing: Pricing, ledger: { settle (s: Settlement): Promise<void> } | null, ownerOf: (worker: string) => string | null = () => null) {
    this.pricing = pricing
    this.ledger = ledger
    this.ownerOf = ownerOf
  }

  /** Record the end of a request; resolves when durable (or after WAIT_MS). Returns the cost, nano-USD. */
  async settle (end: RequestEnd): Promise<number> {
    // the serving worker's price: its operator's, else the model's
    const cost = this.pricing.cost(end.model, end.tokensIn, end.tokensOut, end.worker)
    if (!this.ledger) return cost
    const finishedAt = new Date()
    const done = this.ledger.settle({
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
