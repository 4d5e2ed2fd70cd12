import path from 'node:path'
import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import { PgLeaseStore } from './lease-store.ts'
import { Leases, sortHolds, type AdmitResult, type Hold } from './leases.ts'
import { Recorder, type EndRecord } from './recorder.ts'
import { SettlementLog, type Ticket } from './settlement-log.ts'
import type { StoredReceipt } from './receipts.ts'

// Exact accounting, shared by every gateway, with no database round trip on a request's path.
//
// admit(): a request's worst case (1 request, prompt + max tokens, its price at max tokens) is held
// on every counter that limits it and on the user's credits before it is dispatched, from slices
// this gateway leases from PostgreSQL ahead of demand (leases.ts, lease-store.ts). The slices of all
// gateways never exceed a limit, and near its end they shrink to exact per-batch holds, so 1,000
// concurrent requests never spend more than the balance and two gateways never admit more than a
// shared limit.
// settle(): when a request ends, what it used is charged and what it left unused goes back to the
// slice. Its record goes into the settlement log in the state dir (settlement-log.ts) and settle()
// resolves once that is durable: the final answer goes out after it, so nothing acknowledged is
// lost, even to SIGKILL. The recorder (recorder.ts) then writes it to PostgreSQL in batches.
// recover(): at start, the log a previous process left is read, then recorded in the background
// (exactly once: PostgreSQL ignores ids it has), its requests that never ended recorded as failed
// (STUCK) without a charge (one request each on the request limits, like any failed request), and
// every lease it held released. Nothing is admitted until that is done; while it waits on a database
// out of reach, admissions are refused at once (DATABASE_UNAVAILABLE).
// The sweeper releases the leases of gateways that stopped renewing them (migrations/009).

export type Unit = 'requests' | 'tokens' | 'nusd'
export interface CounterSpec { name: string, cap: number, amount: number, code: string, unit: Unit, expires: string | null }
export type { AdmitResult } from './leases.ts'

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

export interface Settlement {
  id: string
  status: 'success' | 'failed' | 'cancelled'
  worker: string | null
  /** the account the worker belongs to: credited the charge less the network fee */
  owner?: string | null
  tokensIn: number
  tokensOut: number
  /** nano-USD; never charged beyond the hold */
  cost: number
  ttftMs: number | null
  durationMs: number
  errorCode: string | null
  errorMessage: string | null
  finishedAt: string
  /** the request's usage receipt, countersigned or disputed (receipts.ts) */
  receipt?: StoredReceipt | null
}

const INT_MAX = 2_147_483_647
/** a request arriving while the log of the previous process is being recorded waits this long for it */
const READY_WAIT_MS = 500

const waitingRefusal = () => MeshError.DATABASE_UNAVAILABLE('this gateway is waiting for the database to record what it served before a restart; try again shortly')

function waitReady (ready: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((_resolve, reject) => {
    timer = setTimeout(() => reject(waitingRefusal()), ms)
  })
  return Promise.race([ready, late]).finally(() => clearTimeout(timer))
}
const int = (v: number | null, max = INT_MAX) => v === null ? null : Math.min(Math.max(0, Math.round(Number.isFinite(v) ? v : 0)), max)
const text = (v: string | null, max: number) => v === null ? null : v.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff]/g, '').slice(0, max)

/** Everything a settlement carries, made safe to store: integers in range, text without NUL or lone surrogates. */
export function cleanSettlement (s: Settlement): Settlement {
  return {
    ...s,
    tokensIn: int(s.tokensIn)!, tokensOut: int(s.tokensOut)!, cost: int(s.cost, Number.MAX_SAFE_INTEGER)!,
    ttftMs: int(s.ttftMs), durationMs: int(s.durationMs)!,
    worker: s.worker && /^[0-9a-f]{64}$/.test(s.worker) ? s.worker : null,
    owner: s.owner && /^[0-9a-f-]{36}$/.test(s.owner) ? s.owner : null,
    errorCode: text(s.errorCode, 64), errorMessage: text(s.errorMessage, 500)
  }
}

interface Admitted { req: AdmitRequest, holds: Array<Hold & { unit: Unit | 'credit' }>, ticket: Ticket }

export interface AccountingOptions {
  log?: Logger
  /** this gateway's public key: its leases and records carry it */
  gateway: string
  /** where the settlement log lives (one directory per gateway instance) */
  logDir: string
  /** 'write' (default): an answer waits until the kernel has its record (survives a process crash; synced within 10 ms); 'fsync': until it survives a power cut */
  sync?: 'fsync' | 'write'
  /** a slice unused this long goes back to PostgreSQL */
  leaseIdleMs?: number
  /** at rest, finished requests wait this long for company before they go to PostgreSQL */
  recordDelayMs?: number
  /** a 'processing' row (left by an older version) older than this is failed by the sweeper */
  stuckAfterMs?: number
  sweepEveryMs?: number
  /** the network's share of each charge, percent (0–100); the worker's owner is credited the rest */
  feePct?: number
  /** countersigns billed receipts when their records go to PostgreSQL (receipts.ts) */
  completeReceipts?: (rs: StoredReceipt[]) => StoredReceipt[]
}

/**
 * The network's fee out of a charge, in whole nano-USD (rounded down), `pct` in steps of 0.01 %.
 * The owner's earning is the rest, so earning + fee is the charge exactly.
 */
export function networkFee (charge: number, pct: number): number {
  const basisPoints = BigInt(Math.round(Math.min(Math.max(pct, 0), 100) * 100))
  return Number(BigInt(charge) * basisPoints / 10_000n)
}

export class Accounting {
  private readonly pool: pg.Pool
  private readonly log?: Logger
  private readonly store: PgLeaseStore
  private readonly leases: Leases
  private readonly recorder: Recorder
  private readonly journal: SettlementLog
  private readonly open = new Map<string, Admitted>()
  private readonly ready: Promise<void>
  private markReady!: () => void
  private isReady = false
  /** the previous process's log is read and handed to the recorder (reads wait for it) */
  private logRead: Promise<void> = Promise.resolve()
  /** recording that log waits on a database out of reach */
  private stalled = false
  private readonly stall: Promise<void>
  private markStalled!: () => void
  private timers: NodeJS.Timeout[] = []
  private closing = false
  readonly stuckAfterMs: number
  private readonly sweepEveryMs: number
  readonly feePct: number

  constructor (pool: pg.Pool, opts: AccountingOptions) {
    this.pool = pool
    this.log = opts.log
    this.stuckAfterMs = opts.stuckAfterMs ?? 15 * 60_000
    this.sweepEveryMs = opts.sweepEveryMs ?? 30_000
    this.feePct = opts.feePct ?? 10
    this.ready = new Promise((resolve) => { this.markReady = resolve })
    this.stall = new Promise((resolve) => { this.markStalled = resolve })
    this.store = new PgLeaseStore(pool, opts.gateway, opts.log)
    this.recorder = new Recorder(pool, opts.gateway, {
      log: opts.log, delayMs: opts.recordDelayMs, onRecorded: (recs) => this.recorded(recs), onRetry: () => this.stalledOnDatabase(), completeReceipts: opts.completeReceipts
    })
    this.leases = new Leases(this.store, { log: opts.log, idleMs: opts.leaseIdleMs, flush: () => this.recorder.flushOrFail() })
    this.journal = new SettlementLog(opts.logDir, { sync: opts.sync, log: opts.log })
  }

  static logDir (home: string, instance: string): string { return path.join(home, 'accounting', instance) }

  /** Finished requests in the settlement log, not yet in PostgreSQL. */
  get pendingSettlements (): number { return this.recorder.pending }

  /** Resolves once every request this gateway answered so far is in PostgreSQL (for reads that must see them). */
  flushed (): Promise<void> { return this.logRead.then(() => this.recorder.flush()) }

  /** The unused part of this gateway's slice of a counter (or 'credit:<user>'): free, though the database counts it held. */
  unused (name: string): number { return this.leases.unused(name) }

  /**
   * Read the log a previous process left and start recording it: resolves once it is read (the local
   * disk); PostgreSQL gets it in the background, its leases are released, and then admissions start.
   */
  async recover (): Promise<void> {
    const read = this.journal.open()
    this.logRead = read.then(() => {}, () => {}) // a log that cannot be read fails the start (below)
    const records = await read
    const ended = new Set<string>()
    const ends: EndRecord[] = []
    for (const r of records as Array<EndRecord | AdmitLine>) if (r.t === 's') { ended.add(r.id); ends.push(r) }
    const stuck = (records as AdmitLine[]).filter((r) => r.t === 'a' && !ended.has(r.id)).map(stuckRecord)
    for (const r of [...ends, ...stuck]) this.recorder.push(r)
    void this.recordRecovered(records.length, ends.length, stuck.length)
  }

  /** Resolves once recover() is done and admissions start ('ready'), or as soon as it waits on a database out of reach ('waiting'). */
  recovery (): Promise<'ready' | 'waiting'> {
    return Promise.race([this.ready.then(() => 'ready' as const), this.stall.then(() => 'waiting' as const)])
  }

  private async recordRecovered (lines: number, ended: number, stuck: number): Promise<void> {
    while (!this.closing) {
      try {
        await this.recorder.flush()
        // closing, the recorder may have given up on a database still out: the log keeps those records
        if (this.closing) return
        const released = await this.store.releaseAll()
        if (lines > 0 || released > 0) this.log?.warn({ recorded: ended, stuck, leases: released }, 'recovered the settlement log of the previous process')
        if (this.closing) return
        await this.journal.dropRecovered()
        this.isReady = true
        this.stalled = false
        this.markReady()
        return
      } catch (err) {
        // PostgreSQL is out of reach: admissions are refused until it is back (they need it for leases anyway)
        this.log?.warn({ err: (err as Error).message }, 'could not recover the settlement log yet; retrying')
        this.stalledOnDatabase()
        await new Promise((resolve) => setTimeout(resolve, 1000))
      }
    }
  }

  private stalledOnDatabase (): void {
    if (this.isReady) return
    this.stalled = true
    this.markStalled()
  }

  start (): void {
    this.store.listen((name) => this.leases.recall(name))
    const tick = setInterval(() => {
      if (this.isReady) void this.leases.tick().catch((err) => this.log?.warn({ err: (err as Error).message }, 'lease renewal failed'))
    }, 1000)
    const sweep = setInterval(() => { void this.sweep().catch((err) => this.log?.warn({ err: (err as Error).message }, 'sweep failed')) }, this.sweepEveryMs)
    tick.unref()
    sweep.unref()
    this.timers.push(tick, sweep)
  }

  admit (req: AdmitRequest): Promise<AdmitResult> {
    if (this.closing) return Promise.reject(MeshError.SHUTTING_DOWN())
    // a gateway still recording its previous log has no allowance: with the database out a refusal at
    // once, else a short wait
    if (!this.isReady) {
      if (this.stalled) return Promise.reject(waitingRefusal())
      return waitReady(this.ready, READY_WAIT_MS).then(() => this.admit(req))
    }
    const holds: Admitted['holds'] = []
    for (const c of req.counters) if (c.amount > 0) holds.push({ name: c.name, amount: c.amount, cap: c.cap, expires: c.expires, code: c.code, unit: c.unit })
    if (req.credit > 0) holds.push({ name: 'credit:' + req.user, amount: req.credit, cap: null, expires: null, code: 'INSUFFICIENT_CREDITS', unit: 'credit' })
    sortHolds(holds)
    const admitted = (r: AdmitResult): AdmitResult => {
      if (r.ok) {
        const rq: string[] = []
        for (const h of holds) if (h.unit === 'requests') rq.push(h.name)
        const ticket = this.journal.append({ t: 'a', id: req.id, user: req.user, key: req.key, model: req.model, kind: req.kind, hash: req.promptHash, trace: req.trace, at: req.at, rq })
        this.open.set(req.id, { req, holds, ticket })
      }
      return r
    }
    return this.leases.admit(holds).then(admitted)
  }

  /** Resolves once the request's end is durable in the settlement log (PostgreSQL gets it soon after). */
  async settle (settlement: Settlement): Promise<void> {
    const a = this.open.get(settlement.id)
    if (!a) return // never admitted here (or already settled)
    this.open.delete(settlement.id)
    const s = cleanSettlement(settlement)
    const credit = a.holds.find((h) => h.unit === 'credit')?.amount ?? 0
    const charge = Math.min(s.cost, credit)
    const tokens = s.tokensIn + s.tokensOut
    let crel = 0
    const moves: EndRecord['c'] = []
    for (const h of a.holds) {
      const actual = h.unit === 'tokens' ? Math.min(tokens, h.amount) : h.unit === 'nusd' || h.unit === 'credit' ? Math.min(charge, h.amount) : h.amount
      const unused = h.amount - actual
      const back = unused > 0 && !this.leases.returnUnused(h.name, unused) ? unused : 0
      if (h.unit === 'credit') crel = back
      else moves.push([h.name, actual, actual + back])
    }
    const { req } = a
    const record: EndRecord = {
      t: 's', id: req.id, user: req.user, key: req.key, model: req.model, kind: req.kind, hash: req.promptHash, trace: req.trace, at: req.at,
      status: s.status, worker: s.worker, tin: s.tokensIn, tout: s.tokensOut, cost: charge, ttft: s.ttftMs, dur: s.durationMs,
      code: s.errorCode, msg: s.errorMessage, fin: s.finishedAt, crel, c: moves, ...(s.receipt ? { rc: s.receipt } : {}),
      // a worker with no owner earns nobody anything: the network keeps the whole charge
      own: s.owner ?? null, fee: s.owner ? networkFee(charge, this.feePct) : charge
    }
    let ticket: Ticket | null = null
    try {
      ticket = await this.journal.appendDurable(record, a.ticket)
    } catch (err) {
      // the disk refused it: the answer waits for PostgreSQL to have it instead
      this.log?.error({ err: (err as Error).message, request: req.id }, 'settlement log unavailable; recording directly')
    }
    this.tickets.set(record, ticket)
    this.recorder.push(record)
    if (!ticket) await this.recorder.flush()
  }

  private readonly tickets = new WeakMap<EndRecord, Ticket | null>()

  private recorded (records: EndRecord[]): void {
    // the database takes records again: a recovery still under way is no longer stalled on it
    this.stalled = false
    for (const r of records) {
      const t = this.tickets.get(r)
      if (t && t.seg >= 0) this.journal.release(t.seg)
    }
  }

  /** Fail 'processing' rows older than stuckAfterMs and release leases nobody renews; returns rows failed. */
  async sweep (): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>('SELECT hi_sweep($1) AS n', [this.stuckAfterMs])
    const n = rows[0]!.n
    if (n > 0) this.log?.warn({ rows: n, afterMs: this.stuckAfterMs }, 'failed requests stuck in processing')
    return n
  }

  async close (): Promise<void> {
    this.closing = true
    for (const t of this.timers) clearInterval(t)
    // requests still running may end and settle for a while; then everything goes to PostgreSQL
    const deadline = Date.now() + 10_000
    while (this.open.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    await Promise.race([this.recorder.flush(), new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())))])
    this.recorder.close()
    await this.leases.close()
    this.store.close()
    await this.journal.close()
  }
}

/** An admission in the log: the request's facts, and the request counters it holds one request on. */
interface AdmitLine { t: 'a', id: string, user: string, key: string, model: string, kind: string, hash: string, trace: string | null, at: string, rq?: string[] }

/**
 * A request the previous process admitted and never ended: failed, no tokens and nothing charged.
 * It is in the request log, so it counts one request on each request counter it held, as any failed
 * request does; the rest of its holds goes back when the leases are released.
 */
function stuckRecord (a: AdmitLine): EndRecord {
  return {
    t: 's', id: a.id, user: a.user, key: a.key, model: a.model, kind: a.kind, hash: a.hash, trace: a.trace, at: a.at, status: 'failed', worker: null,
    tin: 0, tout: 0, cost: 0, ttft: null, dur: Math.min(INT_MAX, Math.max(0, Date.now() - Date.parse(a.at))), code: 'STUCK',
    msg: 'no result: the gateway serving it stopped before it ended', fin: new Date().toISOString(), crel: 0,
    c: (a.rq ?? []).map((name): [string, number, number] => [name, 1, 1])
  }
}
