import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'

// Exact accounting against Postgres, shared by every gateway (see migrations/002_accounting.sql and 004_accounting_sets.sql).
//
// admit(): a request's worst case (1 request, prompt + max tokens, its price at max tokens) is held
// on every counter that limits it and on the user's credits, atomically, before it is dispatched —
// so 1,000 concurrent requests can never spend more than the balance, and two gateways can never
// admit more than a shared limit. The same call writes the request's 'processing' row.
// settle(): when it ends, the hold turns into the real charge, the row gets its final status and
// the day's rollup moves, in one transaction. settle() resolves only once that is committed: the
// gateway sends the final answer after it (unless the database stays out longer than settlement.ts
// waits), so nothing acknowledged can be lost, even to SIGKILL.
//
// Both are group-committed: everything that arrives while a round trip is under way goes in the
// next one, so under load it is one database call for many requests, and at rest one per request.

export type Unit = 'requests' | 'tokens' | 'nusd'
export interface CounterSpec { name: string, cap: number, amount: number, code: string, unit: Unit, expires: string | null }

export interface AdmitRequest {
  id: string
  user: string
  key: string
  model: string
  kind: 'chat' | 'embed'
  promptHash: string
  trace: string | null
  gateway: string
  /** nano-USD held on the user's credits; 0 for a free model */
  credit: number
  at: string
  counters: CounterSpec[]
}

export type AdmitResult = { ok: true } | { ok: false, code: string, counter: string, cap: number, used: number, need?: number, expires?: string | null }

export interface Settlement {
  id: string
  status: 'success' | 'failed' | 'cancelled'
  worker: string | null
  tokensIn: number
  tokensOut: number
  /** nano-USD; never charged beyond the hold */
  cost: number
  ttftMs: number | null
  durationMs: number
  errorCode: string | null
  errorMessage: string | null
  finishedAt: string
}

const RETRY_NOW = new Set(['40P01', '40001']) // deadlock between two gateways' batches, serialization failure
/** data exceptions (22xxx) and integrity violations (23xxx): a value in the batch, not the database, is at fault */
const badData = (code: string) => code.startsWith('22') || code.startsWith('23')

const INT_MAX = 2_147_483_647
const int = (v: number | null, max = INT_MAX) => v === null ? null : Math.min(Math.max(0, Math.round(Number.isFinite(v) ? v : 0)), max)
const text = (v: string | null, max: number) => v === null ? null : v.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff]/g, '').slice(0, max)

/** Everything a settlement carries, made safe to store: integers in range, text without NUL or lone surrogates. */
export function cleanSettlement (s: Settlement): Settlement {
  return {
    ...s,
    tokensIn: int(s.tokensIn)!, tokensOut: int(s.tokensOut)!, cost: int(s.cost, Number.MAX_SAFE_INTEGER)!,
    ttftMs: int(s.ttftMs), durationMs: int(s.durationMs)!,
    worker: s.worker && /^[0-9a-f]{64}$/.test(s.worker) ? s.worker : null,
    errorCode: text(s.errorCode, 64), errorMessage: text(s.errorMessage, 500)
  }
}

/** Runs batches of items through one async call at a time; items that arrive meanwhile wait for the next. */
class GroupCommit<I, O> {
  private queue: Array<{ item: I, resolve: (o: O) => void, reject: (e: unknown) => void }> = []
  private running = false
  private scheduled = false
  constructor (private readonly run: (items: I[]) => Promise<O[]>, private readonly maxBatch: number) {}

  get pending (): number { return this.queue.length }
  get busy (): boolean { return this.running || this.queue.length > 0 }

  push (item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject })
      this.kick()
    })
  }

  private kick (): void {
    if (this.running || this.scheduled || this.queue.length === 0) return
    this.scheduled = true
    setImmediate(() => { this.scheduled = false; void this.drain() })
  }

  private async drain (): Promise<void> {
    if (this.running) return
    this.running = true
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch)
        try {
          const out = await this.run(batch.map((b) => b.item))
          batch.forEach((b, i) => b.resolve(out[i]!))
        } catch (err) {
          for (const b of batch) b.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }
}

export interface AccountingOptions {
  log?: Logger
  /** a 'processing' row older than this is failed by the sweeper */
  stuckAfterMs?: number
  sweepEveryMs?: number
  maxBatch?: number
}

export class Accounting {
  private readonly pool: pg.Pool
  private readonly log?: Logger
  private readonly admits: GroupCommit<AdmitRequest, AdmitResult>
  private readonly settles: GroupCommit<Settlement, void>
  private sweepTimer: NodeJS.Timeout | null = null
  private closing = false
  readonly stuckAfterMs: number
  private readonly sweepEveryMs: number
  settled = 0

  constructor (pool: pg.Pool, opts: AccountingOptions = {}) {
    this.pool = pool
    this.log = opts.log
    this.stuckAfterMs = opts.stuckAfterMs ?? 15 * 60_000
    this.sweepEveryMs = opts.sweepEveryMs ?? 30_000
    const max = opts.maxBatch ?? 500
    this.admits = new GroupCommit((items) => this.admitBatch(items), max)
    this.settles = new GroupCommit((items) => this.settleBatch(items), max)
  }

  get pendingSettlements (): number { return this.settles.pending }

  start (): void {
    this.sweepTimer = setInterval(() => { void this.sweep().catch((err) => this.log?.warn({ err: (err as Error).message }, 'sweep failed')) }, this.sweepEveryMs)
    this.sweepTimer.unref()
  }

  admit (req: AdmitRequest): Promise<AdmitResult> {
    if (this.closing) return Promise.reject(MeshError.SHUTTING_DOWN())
    return this.admits.push(req)
  }

  /** Resolves once the settlement is committed. Retries until then (a database outage delays, never drops it). */
  settle (s: Settlement): Promise<void> {
    return this.settles.push(cleanSettlement(s))
  }

  private async admitBatch (items: AdmitRequest[]): Promise<AdmitResult[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { rows } = await this.pool.query<{ r: AdmitResult[] }>('SELECT hi_admit($1::jsonb) AS r', [JSON.stringify(items)])
        return rows[0]!.r
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        if (RETRY_NOW.has(code) && attempt < 10) continue
        // one request's bad value must not refuse the others that shared its round trip
        if (badData(code) && items.length > 1) return Promise.all(items.map((i) => this.admitBatch([i]).then((r) => r[0]!)))
        if (badData(code)) {
          this.log?.warn({ code, request: items[0]!.id }, 'admission refused a value it could not store')
          return [{ ok: false, code: 'BAD_REQUEST', counter: '', cap: 0, used: 0 }]
        }
        this.log?.error({ err: (err as Error).message, code, requests: items.length }, 'admission failed')
        throw MeshError.UNAVAILABLE('usage accounting is unavailable; try again shortly')
      }
    }
  }

  private async settleBatch (items: Settlement[]): Promise<void[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { rows } = await this.pool.query<{ n: number }>('SELECT hi_settle($1::jsonb) AS n', [JSON.stringify(items)])
        this.settled += rows[0]!.n
        return items.map(() => undefined)
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        // a value the database will never take: find it (halving the batch) instead of retrying forever
        if (badData(code)) return this.settleBisect(items, err as Error)
        if (!RETRY_NOW.has(code)) {
          this.log?.warn({ err: (err as Error).message, code, rows: items.length, attempt }, 'settlement failed; retrying')
          await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 100 * 2 ** Math.min(attempt, 6))))
        }
        if (this.closing && attempt > 50) throw err
      }
    }
  }

  private async settleBisect (items: Settlement[], err: Error): Promise<void[]> {
    if (items.length > 1) {
      const half = Math.ceil(items.length / 2)
      await this.settleBatch(items.slice(0, half))
      await this.settleBatch(items.slice(half))
      return items.map(() => undefined)
    }
    const one = items[0]!
    const fallback: Settlement = { ...one, status: 'failed', tokensIn: 0, tokensOut: 0, cost: 0, worker: null, errorCode: 'UNRECORDABLE', errorMessage: null }
    if (one.errorCode === 'UNRECORDABLE') {
      // even the bare record failed: leave the row to the sweeper, which releases its holds
      this.log?.error({ request: one.id, err: err.message }, 'settlement could not be stored; the sweeper will fail it')
      return [undefined]
    }
    this.log?.warn({ request: one.id, err: err.message }, 'settlement had a value the database refused; recording it as failed')
    return this.settleBatch([fallback])
  }

  /** Fail 'processing' rows older than stuckAfterMs (their gateway died); returns how many. */
  async sweep (): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>('SELECT hi_sweep($1) AS n', [this.stuckAfterMs])
    const n = rows[0]!.n
    if (n > 0) this.log?.warn({ rows: n, afterMs: this.stuckAfterMs }, 'failed requests stuck in processing')
    return n
  }

  async close (): Promise<void> {
    this.closing = true
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    const deadline = Date.now() + 10_000
    while (this.settles.busy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
