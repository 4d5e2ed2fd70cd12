import crypto from 'node:crypto'
import type pg from 'pg'
import { MeshError, isDatabaseDown } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import { CONNECTION_CLOSED } from '../../shared/mesh/peer.ts'
import { Cancellation, type CancelSignal } from '../../shared/mesh/cancel.ts'
import type { TokenChunk } from '../../shared/protocol/inference.ts'
import { GroupCommit } from '../../shared/group-commit.ts'

// Idempotent requests. A request that carries an idempotency key (RPC `requestId`; the web passes
// HTTP's Idempotency-Key as it) runs once per API key and idempotency key: a retry while it runs on
// this gateway attaches to it (the frames so far, then the rest, then the answer), a retry after it
// finished gets the same answer again, and neither is admitted or charged a second time. A retry with
// a different request is IDEMPOTENCY_KEY_MISMATCH; one whose first attempt runs on another gateway is
// IDEMPOTENCY_IN_PROGRESS. A failed attempt frees its key, so a retry runs anew.
//
// Answers are kept here (bounded, oldest first out) and in PostgreSQL (migrations/017_idempotency.sql)
// until `ttlMs`, so a retry that reaches another gateway, or this one after a restart, is answered
// too. A key is claimed in PostgreSQL before its request runs; claims and answers go there in
// batches (group commit, migrations/025): under load, the keys of every request that arrived while
// the last batch was being written are claimed in one statement, not one round trip each. With the
// database out of reach the key is held here only. While a request runs, its row is renewed every
// `renewMs`; a row nobody renewed for `staleMs` belongs to a gateway that died, and a retry on
// another gateway takes it over and runs the request anew. On close, the answers still being written
// reach the database before the gateway stops.
//
// A caller whose connection drops does not stop an idempotent request: it runs to its end (bounded
// by its max tokens) and waits for the retry. An explicit cancel does stop it.

export interface Stored { value: unknown, frames: TokenChunk[] }

interface Entry {
  hash: string
  state: 'running' | 'done'
  frames: TokenChunk[]
  listeners: Set<(c: TokenChunk) => void>
  done: Promise<Stored>
  resolve: (s: Stored) => void
  reject: (err: unknown) => void
  bytes: number
  until: number
  /** the row this gateway claimed in PostgreSQL, renewed while the request runs */
  row: { scope: string, key: string } | null
}

export interface IdempotencyOptions {
  /** null: accounting is off, answers are kept in memory only */
  pool: pg.Pool | null
  gateway: string
  log?: Logger
  /** how long an answer is kept for retries (default 24 h) */
  ttlMs?: number
  /** a 'running' row of another gateway not renewed for this long may be taken over (default 10 s) */
  staleMs?: number
  /** how often this gateway renews the rows of the requests it runs (default 2 s) */
  renewMs?: number
  maxEntries?: number
  maxBytes?: number
}

interface ClaimRow { claimed: boolean, body_hash: string, state: 'running' | 'done', gateway: string, response: Stored | null }

/** A caller as far as idempotency needs it: its cancellation and where its frames go. */
export interface IdemCaller { readonly signal: CancelSignal, emit?: (chunk: TokenChunk) => void }

/** JSON with object keys sorted, so the same request always hashes the same. */
function canonical (v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']'
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => JSON.stringify(k) + ':' + canonical((v as Record<string, unknown>)[k])).join(',') + '}'
  }
  return JSON.stringify(v) ?? 'null'
}

/** What a request asks, as a hash: the key, the idempotency key and the trace id do not count. */
export function requestHash (kind: string, req: Record<string, unknown>): string {
  const { apiKey: _k, requestId: _r, traceId: _t, ...rest } = req
  return crypto.hash('sha256', kind + '\n' + canonical(rest), 'hex')
}

/**
 * Run a gateway method idempotently when the request names a `requestId`: scoped to its API key
 * (checked first, as any request's), keyed by the id, compared by what it asks.
 */
export async function idempotent<T, C extends IdemCaller> (idem: Idempotency, keys: { resolve (apiKey: string): Promise<{ keyId: string }> }, kind: string,
  req: { apiKey: string, requestId?: string | undefined }, caller: C, exec: (caller: C) => Promise<T>): Promise<T> {
  if (!req.requestId) return exec(caller)
  const identity = await keys.resolve(req.apiKey)
  return idem.run(identity.keyId, req.requestId, requestHash(kind, req as unknown as Record<string, unknown>), caller, (own) => exec({ ...caller, signal: own.signal, emit: own.emit }))
}

export class Idempotency {
  private readonly entries = new Map<string, Entry>()
  private bytes = 0
  private readonly ttlMs: number
  private readonly staleMs: number
  private readonly maxEntries: number
  private readonly maxBytes: number
  private readonly writes = new Set<Promise<unknown>>()
  private renewTimer: NodeJS.Timeout | null = null
  private readonly claims: GroupCommit<{ scope: string, key: string, hash: string }, ClaimRow | null> | null
  private readonly answers: GroupCommit<{ scope: string, key: string, stored: Stored }, undefined> | null
  private sweptAt = 0

  constructor (private readonly opts: IdempotencyOptions) {
    this.ttlMs = opts.ttlMs ?? 24 * 3600_000
    this.staleMs = opts.staleMs ?? 10_000
    this.maxEntries = opts.maxEntries ?? 10_000
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024
    const pool = opts.pool
    this.claims = pool ? new GroupCommit((items) => this.claimMany(pool, items)) : null
    this.answers = pool
      ? new GroupCommit(async (items) => {
        // the answers go as one JSON array (one string to write, none to escape into an array literal)
        await pool.query({
          name: 'hi_idem_answers',
          text: `UPDATE idempotency_keys k SET state = 'done', response = a.response, renewed_at = now()
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY x(scope, key, n)
                 JOIN jsonb_array_elements($3::jsonb) WITH ORDINALITY a(response, n) ON a.n = x.n
                 WHERE k.scope = x.scope AND k.key = x.key AND k.gateway = $4`,
          values: [items.map((x) => x.scope), items.map((x) => x.key), JSON.stringify(items.map((x) => x.stored)), opts.gateway]
        })
        return items.map(() => undefined)
      })
      : null
  }

  /** Renew the rows of the running requests from now on. */
  start (): void {
    if (this.renewTimer || !this.opts.pool) return
    this.renewTimer = setInterval(() => { void this.renew() }, this.opts.renewMs ?? 2000)
    this.renewTimer.unref()
  }

  /** Stop renewing; resolves once the answers being written are in the database (or failed to be). */
  async close (): Promise<void> {
    if (this.renewTimer) clearInterval(this.renewTimer)
    this.renewTimer = null
    await Promise.allSettled([...this.writes])
  }

  private async renew (): Promise<void> {
    const rows = [...this.entries.values()].flatMap((e) => e.state === 'running' && e.row ? [e.row] : [])
    if (rows.length === 0) return
    await this.opts.pool!.query(`UPDATE idempotency_keys k SET renewed_at = now() FROM unnest($2::text[], $3::text[]) AS r(scope, key)
      WHERE k.scope = r.scope AND k.key = r.key AND k.gateway = $1 AND k.state = 'running'`, [this.opts.gateway, rows.map((r) => r.scope), rows.map((r) => r.key)])
      .catch((err) => this.opts.log?.debug({ err: (err as Error).message }, 'idempotency keys not renewed this time'))
  }

  /** A write whose end close() waits for. */
  private track (write: Promise<unknown>): void {
    this.writes.add(write)
    void write.finally(() => this.writes.delete(write))
  }

  /**
   * Run `exec` once for (`scope`, `key`). `caller` is the request's own; `exec` gets a caller whose
   * signal ignores a dropped connection and whose frames are kept for retries.
   */
  async run<T> (scope: string, key: string, hash: string, caller: IdemCaller, exec: (caller: IdemCaller & { emit: (c: TokenChunk) => void }) => Promise<T>): Promise<T> {
    const id = scope + '\u0000' + key
    const now = Date.now()
    // the whole map is swept at most once a second; an answer found past its time is dropped here
    if (now - this.sweptAt >= SWEEP_EVERY_MS) this.sweep(now)
    let local = this.entries.get(id)
    if (local && local.state === 'done' && local.until <= now) { this.entries.delete(id); this.bytes -= local.bytes; local = undefined }
    if (local) return this.attach(local, hash, caller) as Promise<T>
    const entry = this.begin(id, hash)
    let row: ClaimRow | null
    try {
      row = await this.claim(scope, key, hash)
    } catch (err) {
      this.fail(id, entry, err)
      throw err
    }
    if (row && !row.claimed) {
      this.entries.delete(id)
      if (row.body_hash !== hash) this.fail(id, entry, mismatch())
      else if (row.state === 'done' && row.response) { this.finish(id, entry, row.response); return this.attach(entry, hash, caller) as Promise<T> }
      else this.fail(id, entry, new MeshError('IDEMPOTENCY_IN_PROGRESS', 'a request with this idempotency key is still running on another gateway; retry shortly', { retryAfterSeconds: 1 }))
      return entry.done as never
    }
    if (row) entry.row = { scope, key }
    // the first attempt: a dropped connection leaves it running; an explicit cancel stops it
    const ac = new Cancellation()
    const onAbort = () => { if (!droppedConnection(caller.signal)) ac.abort(caller.signal.reason) }
    caller.signal.addEventListener('abort', onAbort, { once: true })
    if (caller.signal.aborted) onAbort()
    const own = caller.emit
    const emit = (c: TokenChunk) => {
      entry.frames.push(c)
      entry.bytes += frameBytes(c)
      if (!caller.signal.aborted) own?.(c)
      for (const l of entry.listeners) l(c)
    }
    try {
      const value = await exec({ signal: ac, emit })
      const stored: Stored = { value, frames: entry.frames }
      this.finish(id, entry, stored)
      this.persist(scope, key, stored)
      return value
    } catch (err) {
      this.fail(id, entry, err)
      this.forget(scope, key)
      throw err
    } finally {
      caller.signal.removeEventListener('abort', onAbort)
    }
  }

  /** Delete answers past their time (every few minutes, from the gateway's timers). */
  async expire (): Promise<void> {
    this.sweep()
    await this.opts.pool?.query('DELETE FROM idempotency_keys WHERE expires_at < now()')
  }

  private begin (id: string, hash: string): Entry {
    let resolve!: (s: Stored) => void
    let reject!: (err: unknown) => void
    const done = new Promise<Stored>((res, rej) => { resolve = res; reject = rej })
    done.catch(() => {}) // attached retries hear of a failure; nobody else need
    const entry: Entry = { hash, state: 'running', frames: [], listeners: new Set(), done, resolve, reject, bytes: 0, until: Infinity, row: null }
    this.entries.set(id, entry)
    return entry
  }

  /** A retry on this gateway: the frames so far, then the rest as they come, then the answer. */
  private async attach (entry: Entry, hash: string, caller: IdemCaller): Promise<unknown> {
    if (entry.hash !== hash) throw mismatch()
    const emit = caller.emit
    let sent = 0
    const forward = (c: TokenChunk) => { if (!caller.signal.aborted) emit?.(c); sent++ }
    if (emit) {
      for (const c of entry.frames) forward(c)
      if (entry.state === 'running') entry.listeners.add(forward)
    }
    try {
      const stored = await new Promise<Stored>((resolve, reject) => {
        const onAbort = () => reject(MeshError.CANCELLED('the caller cancelled the request'))
        caller.signal.addEventListener('abort', onAbort, { once: true })
        entry.done.then(resolve, reject).finally(() => caller.signal.removeEventListener('abort', onAbort))
      })
      // an answer that came from the database carries its frames only now
      if (emit) for (const c of stored.frames.slice(sent)) forward(c)
      return stored.value
    } finally {
      entry.listeners.delete(forward)
    }
  }

  private finish (id: string, entry: Entry, stored: Stored): void {
    entry.state = 'done'
    entry.frames = stored.frames
    entry.listeners.clear()
    entry.until = Date.now() + this.ttlMs
    entry.bytes += Buffer.byteLength(JSON.stringify(stored.value) ?? '')
    this.bytes += entry.bytes
    entry.resolve(stored)
    // kept in insertion order: the oldest answers leave first when memory is full
    this.entries.delete(id)
    this.entries.set(id, entry)
    this.evict()
  }

  private fail (id: string, entry: Entry, err: unknown): void {
    if (this.entries.get(id) === entry) this.entries.delete(id)
    entry.listeners.clear()
    entry.reject(err)
  }

  private evict (): void {
    for (const [id, e] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) return
      if (e.state !== 'done') continue
      this.entries.delete(id)
      this.bytes -= e.bytes
    }
  }

  private sweep (now = Date.now()): void {
    this.sweptAt = now
    for (const [id, e] of this.entries) {
      if (e.state === 'done' && e.until <= now) { this.entries.delete(id); this.bytes -= e.bytes }
    }
  }

  /** The key's row in PostgreSQL; null when the database is out of reach (the key is then held here only). */
  private claim (scope: string, key: string, hash: string): Promise<ClaimRow | null> {
    return this.claims ? this.claims.add({ scope, key, hash }) : Promise.resolve(null)
  }

  /** One batch of claims, each as hi_idem_claim would make it; all null when the database is out of reach. */
  private async claimMany (pool: pg.Pool, items: Array<{ scope: string, key: string, hash: string }>): Promise<Array<ClaimRow | null>> {
    const out: Array<ClaimRow | null> = items.map(() => null)
    try {
      const { rows } = await pool.query<ClaimRow & { i: number }>({
        name: 'hi_idem_claim_many',
        text: 'SELECT * FROM hi_idem_claim_many($1, $2, $3, $4, $5, $6)',
        values: [items.map((x) => x.scope), items.map((x) => x.key), items.map((x) => x.hash), this.opts.gateway, this.ttlMs, this.staleMs]
      })
      for (const r of rows) out[r.i - 1] = r
    } catch (err) {
      if (!isDatabaseDown(err)) throw err
      this.opts.log?.warn({ err: (err as Error).message, keys: items.length }, 'idempotency keys held on this gateway only: the database is out of reach')
    }
    return out
  }

  private persist (scope: string, key: string, stored: Stored): void {
    if (!this.answers) return
    this.track(this.answers.add({ scope, key, stored })
      .catch((err) => this.opts.log?.warn({ err: (err as Error).message }, 'an idempotent answer is kept on this gateway only')))
  }

  private forget (scope: string, key: string): void {
    if (!this.opts.pool) return
    this.track(this.opts.pool.query(`DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND gateway = $3 AND state = 'running'`, [scope, key, this.opts.gateway])
      .catch((err) => this.opts.log?.warn({ err: (err as Error).message }, 'could not free a failed idempotency key; it frees itself when stale')))
  }
}

/** how often the map of kept answers is swept for those past their time */
const SWEEP_EVERY_MS = 1000

function mismatch (): MeshError {
  return new MeshError('IDEMPOTENCY_KEY_MISMATCH', 'this idempotency key was used with a different request; use a new key for a new request')
}

/** the caller's connection closed under it: not a cancel the caller asked for */
function droppedConnection (signal: CancelSignal): boolean {
  const r = signal.reason
  return r instanceof MeshError && r.code === 'CANCELLED' && r.reason === CONNECTION_CLOSED
}

function frameBytes (c: TokenChunk): number {
  return 64 + (c.text?.length ?? 0) * 2 + (c.toolCall ? JSON.stringify(c.toolCall).length : 0) + (c.logprobs ? JSON.stringify(c.logprobs).length : 0)
}
