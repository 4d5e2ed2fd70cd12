import type pg from 'pg'
import { transaction } from '../../shared/db.ts'
import type { Logger } from '../../shared/log.ts'
import { storeReceipts, type StoredReceipt } from './receipts.ts'

// Finished requests into PostgreSQL, off the request's path: the settlement log (settlement-log.ts)
// already holds each one durably when it is pushed here. One prepared call of hi_record
// (migrations/009_accounting_leases.sql, with the payout split of 018_operators.sql) per batch, its columns as arrays: a request row, the moves
// on its counters and credits, the ledger debit and the day's rollup, in one transaction, and only
// for request ids not recorded before, so replaying a log after a crash records nothing twice; the
// batch's usage receipts go in with their requests, in the same transaction.
// One batch at a time; what arrives meanwhile waits for the next, 20 ms after the last unless a batch
// is full or a flush waits, so a gateway answering steadily makes one call for many requests rather
// than one each. A database outage delays recording, never loses it: the log keeps every record until
// it is in.

/** One finished request as recorded: the admission's facts, how it ended, and its counter moves. */
export interface EndRecord {
  t: 's'
  id: string
  user: string
  key: string
  model: string
  kind: string
  hash: string
  trace: string | null
  /** admitted at (ISO) */
  at: string
  status: 'success' | 'failed' | 'cancelled'
  worker: string | null
  tin: number
  tout: number
  /** charged, nano-USD: never above the credit held */
  cost: number
  ttft: number | null
  dur: number
  code: string | null
  msg: string | null
  fin: string
  /** credits given back beyond the charge (0 when the unused part stayed in this gateway's slice) */
  crel: number
  /** counter moves: [name, actual (to used), rel (out of the lease: actual plus any unused given back)] */
  c: Array<[string, number, number]>
  /** the serving worker's owner (account id), credited cost - fee; absent in records from before operators */
  own?: string | null
  /** the network's fee out of cost, nano-USD (absent: all of it) */
  fee?: number
  /** the usage receipt, into request_receipts after the request's row */
  rc?: StoredReceipt
}

const RETRY_NOW = new Set(['40P01', '40001'])
/** data exceptions (22xxx) and integrity violations (23xxx): a value in the batch, not the database, is at fault */
const badData = (code: string) => code.startsWith('22') || code.startsWith('23')

const SQL = `SELECT hi_record($1, $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
  $11::integer[], $12::integer[], $13::bigint[], $14::integer[], $15::integer[], $16::text[], $17::text[], $18::timestamptz[], $19::timestamptz[],
  $20::bigint[], $21::uuid[], $22::text[], $23::bigint[], $24::bigint[], $25::uuid[], $26::bigint[]) AS n`

export interface RecorderOptions {
  log?: Logger
  maxBatch?: number
  /** at rest, wait this long for more before a call */
  delayMs?: number
  /** records now in PostgreSQL (the log may forget them) */
  onRecorded?: (records: EndRecord[]) => void
  /** a batch failed on something other than its data (the database out of reach) and will be tried again */
  onRetry?: (err: Error) => void
  /** billed receipts countersigned (receipts.ts ReceiptDesk.completeAll), before they are stored */
  completeReceipts?: (rs: StoredReceipt[]) => StoredReceipt[]
}

export class Recorder {
  private queue: EndRecord[] = []
  private running = false
  private pushed = 0
  private done = 0
  private flushWaiters: Array<{ upTo: number, resolve: () => void, fail?: (err: Error) => void }> = []
  /** the last write's error while the database is out of reach; null once a write succeeds */
  private failing: Error | null = null
  private closing = false
  private timer: NodeJS.Timeout | null = null
  recorded = 0

  constructor (private readonly pool: pg.Pool, private readonly gateway: string, private readonly opts: RecorderOptions = {}) {}

  get pending (): number { return this.pushed - this.done }

  push (r: EndRecord): void {
    this.queue.push(r)
    this.pushed++
    this.kick()
  }

  /** Resolves once every record pushed so far is in PostgreSQL. */
  flush (): Promise<void> {
    if (this.done >= this.pushed) return Promise.resolve()
    return new Promise((resolve) => { this.flushWaiters.push({ upTo: this.pushed, resolve }); this.kick(true) })
  }

  /**
   * As flush(), but rejects as soon as the database is known to be out of reach (a write is failing now,
   * or the next one fails): for a caller that would rather give a prompt refusal than wait out an outage.
   */
  flushOrFail (): Promise<void> {
    if (this.done >= this.pushed) return Promise.resolve()
    if (this.failing) return Promise.reject(this.failing)
    return new Promise((resolve, reject) => { this.flushWaiters.push({ upTo: this.pushed, resolve, fail: reject }); this.kick(true) })
  }

  /** Stop retrying a database that stays out; what is not recorded stays in the log for the next start. */
  close (): void {
    this.closing = true
    if (this.timer) clearTimeout(this.timer)
  }

  private kick (now = false): void {
    if (this.running || this.queue.length === 0) return
    const urgent = now || this.queue.length >= (this.opts.maxBatch ?? 1000) || this.flushWaiters.length > 0
    if (this.timer) {
      if (!urgent) return
      clearTimeout(this.timer)
    }
    this.timer = setTimeout(() => {
      this.timer = null
      this.running = true
      void this.drain()
    }, urgent ? 0 : (this.opts.delayMs ?? 20))
  }

  private async drain (): Promise<void> {
    try {
      const max = this.opts.maxBatch ?? 1000
      // kick starts a drain only with something queued. What arrives during a write goes at once only
      // when a batch is full or a flush waits on it; else the next batch gathers for the delay (kick,
      // below), so a steady trickle of answers makes one call per delay, not one per write.
      do {
        const batch = this.queue.splice(0, max)
        const ok = await this.record(batch)
        this.done += batch.length
        if (ok) this.opts.onRecorded?.(batch)
        this.flushWaiters = this.flushWaiters.filter((w) => { if (w.upTo <= this.done) { w.resolve(); return false } return true })
      } while (this.queue.length >= max || (this.queue.length > 0 && this.flushWaiters.length > 0))
    } finally {
      this.running = false
      if (this.queue.length > 0) this.kick()
    }
  }

  /** true once recorded; false when given up (closing with the database out: the log keeps them) */
  private async record (items: EndRecord[]): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        // the batch's billed receipts share one countersignature
        const unsigned = this.opts.completeReceipts ? items.filter((r) => r.rc?.unsigned) : []
        if (unsigned.length > 0) this.opts.completeReceipts!(unsigned.map((r) => r.rc!)).forEach((rc, i) => { unsigned[i]!.rc = rc })
        this.recorded += await this.write(items)
        this.failing = null
        return true
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        // a value the database will never take: find it (halving the batch) instead of retrying forever
        if (badData(code)) return this.bisect(items, err as Error)
        if (this.closing && attempt >= 3) return false
        if (!RETRY_NOW.has(code)) {
          this.opts.log?.warn({ err: (err as Error).message, code, rows: items.length, attempt }, 'recording finished requests failed; retrying')
          this.opts.onRetry?.(err as Error)
          this.failing = err as Error
          this.flushWaiters = this.flushWaiters.filter((w) => { if (w.fail) { w.fail(err as Error); return false } return true })
          await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 100 * 2 ** Math.min(attempt, 6))))
        }
      }
    }
  }

  /**
   * The batch's requests, and the receipts of those that have one in the same transaction: nobody
   * reading PostgreSQL sees a request without its receipt, and a gateway that dies halfway leaves
   * neither. Returns how many requests were new.
   */
  private async write (items: EndRecord[]): Promise<number> {
    const query = { name: 'hi_record', text: SQL, values: columns(this.gateway, items) }
    if (!items.some((r) => r.rc)) return (await this.pool.query<{ n: number }>(query)).rows[0]!.n
    return transaction(this.pool, async (client) => {
      const { rows } = await client.query<{ n: number }>(query)
      await storeReceipts(client, items)
      return rows[0]!.n
    })
  }

  private async bisect (items: EndRecord[], err: Error): Promise<boolean> {
    if (items.length > 1) {
      const half = Math.ceil(items.length / 2)
      const a = await this.record(items.slice(0, half))
      const b = await this.record(items.slice(half))
      return a && b
    }
    const one = items[0]!
    if (one.code === 'UNRECORDABLE') {
      this.opts.log?.error({ request: one.id, err: err.message }, 'a finished request could not be recorded even bare; dropped')
      return true
    }
    this.opts.log?.warn({ request: one.id, err: err.message }, 'a finished request had a value the database refused; recording it as failed')
    // no tokens and no charge: the limits count it as one request (req:…) and nothing more, as the log says
    const c = one.c.map(([name, actual, rel]): [string, number, number] => [name, name.startsWith('req:') ? actual : 0, rel])
    return this.record([{ ...one, status: 'failed', tin: 0, tout: 0, cost: 0, crel: one.crel + one.cost, c, worker: null, code: 'UNRECORDABLE', msg: null, trace: null, own: null, fee: 0, rc: undefined }])
  }
}

function columns (gateway: string, items: EndRecord[]): unknown[] {
  const cids: string[] = []
  const cnames: string[] = []
  const cactual: number[] = []
  const crels: number[] = []
  for (const r of items) {
    for (const [name, actual, rel] of r.c) { cids.push(r.id); cnames.push(name); cactual.push(actual); crels.push(rel) }
  }
  const col = <T>(f: (r: EndRecord) => T) => items.map(f)
  return [gateway, col((r) => r.id), col((r) => r.user), col((r) => r.key), col((r) => r.model), col((r) => r.kind), col((r) => r.hash), col((r) => r.trace),
    col((r) => r.status), col((r) => r.worker), col((r) => r.tin), col((r) => r.tout), col((r) => r.cost), col((r) => r.ttft), col((r) => r.dur),
    col((r) => r.code), col((r) => r.msg), col((r) => r.at), col((r) => r.fin), col((r) => r.crel), cids, cnames, cactual, crels,
    col((r) => r.own ?? null), col((r) => r.fee ?? r.cost)]
}
