import type pg from 'pg'
import type { Logger } from '../../../shared/log.ts'
import { entryBytes, type CacheEntry } from './entry.ts'

// The tier every gateway shares, in PostgreSQL (migrations/015_response_cache.sql). Reads are one
// indexed lookup; writes go out without holding the answer back; a prune keeps it within `maxBytes`.
// A write is also pushed to the other gateways (NOTIFY on PUT_CHANNEL, the entry encoded once for
// the row and the notice), which keep it in memory: a hit on an entry another gateway wrote then
// needs no database round trip. An entry too large for a notice is read from the table when asked.
// A purge is announced with NOTIFY so that every gateway drops the same entries from its local tier.

export const PURGE_CHANNEL = 'hyperinfer_cache_purge'
export const PUT_CHANNEL = 'hyperinfer_cache_put'
/** PostgreSQL refuses notices of 8000 bytes or more */
const MAX_PUSH_BYTES = 7900
/** at most this many stored vectors are compared in one semantic lookup (the newest) */
const SEMANTIC_SCAN = 500

interface Row { scope: string, key: string, model: string, entry: { chunks: string[], usage: CacheEntry['usage'], finishReason: CacheEntry['finishReason'], sourceId: string }, embedding: number[] | null, params_key: string | null, created_at: Date, expires_at: Date, warm: boolean }

function fromRow (r: Row): CacheEntry {
  return {
    scope: r.scope, key: r.key, model: r.model, ...r.entry, createdAt: r.created_at.getTime(), expiresAt: r.expires_at.getTime(),
    ...(r.embedding ? { embedding: r.embedding.map(Number), paramsKey: r.params_key ?? '' } : {}), warm: r.warm
  }
}

/** which entries a purge drops: one account's, one model's, and only those made before `before` (ms epoch) */
export interface PurgeFilter { scope?: string, model?: string, before?: number }

export interface Listeners { purge (f: PurgeFilter): void, put (e: CacheEntry): void }

/** An entry as a notice carries it, from the writer's key and the stored JSON (not parsed and encoded again). */
function notice (from: string, e: CacheEntry, body: string): string {
  return '{"from":' + JSON.stringify(from) + ',"scope":' + JSON.stringify(e.scope) + ',"key":' + JSON.stringify(e.key) + ',"model":' + JSON.stringify(e.model) +
    ',"createdAt":' + e.createdAt + ',"expiresAt":' + e.expiresAt + ',"warm":' + (e.warm === true) + ',"entry":' + body + '}'
}

/** A pushed entry, checked field by field: a notice is ours, but a malformed one is dropped, not trusted. */
function fromNotice (raw: unknown): { from: string, entry: CacheEntry } | null {
  const n = raw as { from?: unknown, scope?: unknown, key?: unknown, model?: unknown, createdAt?: unknown, expiresAt?: unknown, warm?: unknown, entry?: Row['entry'] }
  const e = n?.entry
  if (typeof n?.from !== 'string' || typeof n.scope !== 'string' || typeof n.key !== 'string' || typeof n.model !== 'string') return null
  if (typeof n.createdAt !== 'number' || typeof n.expiresAt !== 'number' || !e || !Array.isArray(e.chunks) || !e.chunks.every((c) => typeof c === 'string')) return null
  if (typeof e.sourceId !== 'string' || (e.finishReason !== 'stop' && e.finishReason !== 'length') || typeof e.usage?.promptTokens !== 'number' || typeof e.usage?.completionTokens !== 'number') return null
  return {
    from: n.from,
    entry: { scope: n.scope, key: n.key, model: n.model, chunks: e.chunks, usage: e.usage, finishReason: e.finishReason, sourceId: e.sourceId, createdAt: n.createdAt, expiresAt: n.expiresAt, warm: n.warm === true }
  }
}

export class SharedTier {
  private readonly pool: pg.Pool
  private readonly log?: Logger
  /** this gateway's key: its own notices are not taken back */
  private readonly self: string
  private listener: pg.PoolClient | null = null
  private closed = false

  constructor (pool: pg.Pool, self: string, log?: Logger) {
    this.pool = pool
    this.self = self
    this.log = log
  }

  async get (scope: string, key: string): Promise<CacheEntry | null> {
    const { rows } = await this.pool.query<Row>('SELECT * FROM response_cache WHERE scope = $1 AND key = $2 AND expires_at > now()', [scope, key])
    return rows[0] ? fromRow(rows[0]) : null
  }

  async put (e: CacheEntry): Promise<void> {
    const body = JSON.stringify({ chunks: e.chunks, usage: e.usage, finishReason: e.finishReason, sourceId: e.sourceId })
    await this.pool.query(
      `INSERT INTO response_cache (scope, key, model, entry, embedding, params_key, bytes, created_at, expires_at, warm)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (scope, key) DO UPDATE SET model = EXCLUDED.model, entry = EXCLUDED.entry, embedding = EXCLUDED.embedding,
         params_key = EXCLUDED.params_key, bytes = EXCLUDED.bytes, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, warm = EXCLUDED.warm`,
      [e.scope, e.key, e.model, body, e.embedding ?? null, e.paramsKey ?? null, entryBytes(e), new Date(e.createdAt), new Date(e.expiresAt), e.warm === true])
    // semantic entries stay in the table: their vectors are read there, with their neighbours
    if (e.embedding) return
    const pushed = notice(this.self, e, body)
    if (Buffer.byteLength(pushed) <= MAX_PUSH_BYTES) await this.pool.query('SELECT pg_notify($1, $2)', [PUT_CHANNEL, pushed])
  }

  /** The newest entries of `scope` with an embedding and the same parameters. */
  async semanticCandidates (scope: string, paramsKey: string): Promise<CacheEntry[]> {
    const { rows } = await this.pool.query<Row>(
      `SELECT * FROM response_cache WHERE scope = $1 AND params_key = $2 AND embedding IS NOT NULL AND expires_at > now()
       ORDER BY created_at DESC LIMIT ${SEMANTIC_SCAN}`, [scope, paramsKey])
    return rows.map(fromRow)
  }

  /** Delete matching entries and tell every gateway to drop them locally. Returns how many rows went. */
  async purge (filter: PurgeFilter): Promise<number> {
    const { rowCount } = await this.pool.query(
      'DELETE FROM response_cache WHERE ($1::text IS NULL OR scope = $1) AND ($2::text IS NULL OR model = $2) AND ($3::timestamptz IS NULL OR created_at < $3)',
      [filter.scope ?? null, filter.model ?? null, filter.before === undefined ? null : new Date(filter.before)])
    await this.pool.query('SELECT pg_notify($1, $2)', [PURGE_CHANNEL, JSON.stringify(filter)])
    return rowCount ?? 0
  }

  async prune (maxBytes: number): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>('SELECT hi_cache_prune($1) AS n', [maxBytes])
    return rows[0]!.n
  }

  async stats (scope: string | null): Promise<{ entries: number, bytes: number, warm: number }> {
    const { rows } = await this.pool.query<{ entries: string, bytes: string | null, warm: string }>(
      `SELECT count(*) AS entries, sum(bytes) AS bytes, count(*) FILTER (WHERE warm) AS warm FROM response_cache
       WHERE expires_at > now() AND ($1::text IS NULL OR scope = $1)`, [scope])
    return { entries: Number(rows[0]!.entries), bytes: Number(rows[0]!.bytes ?? 0), warm: Number(rows[0]!.warm) }
  }

  /** Hear purges made on any gateway (this one too) and entries the others write. A lost connection is re-established. */
  async listen (on: Listeners): Promise<void> {
    const client = await this.pool.connect()
    this.listener = client
    client.on('notification', (msg) => {
      if (msg.channel === PUT_CHANNEL && msg.payload) {
        let pushed: ReturnType<typeof fromNotice> = null
        try { pushed = fromNotice(JSON.parse(msg.payload)) } catch {}
        if (!pushed) this.log?.warn('ignored a cache entry notice that was not one')
        else if (pushed.from !== this.self) on.put(pushed.entry)
        return
      }
      if (msg.channel !== PURGE_CHANNEL || !msg.payload) return
      const onPurge = on.purge
      try {
        const f = JSON.parse(msg.payload) as PurgeFilter
        onPurge({ ...(typeof f.scope === 'string' ? { scope: f.scope } : {}), ...(typeof f.model === 'string' ? { model: f.model } : {}), ...(typeof f.before === 'number' ? { before: f.before } : {}) })
      } catch (err) {
        // only gateways NOTIFY on this channel; a payload that is not ours is logged and ignored
        this.log?.warn({ err: (err as Error).message }, 'ignored a cache purge notice that was not JSON')
      }
    })
    client.on('error', (err) => {
      this.log?.warn({ err: err.message }, 'cache purge listener lost its connection; reconnecting')
      client.release(err)
      if (this.listener === client) {
        this.listener = null
        this.relisten(on)
      }
    })
    await client.query(`LISTEN ${PURGE_CHANNEL}; LISTEN ${PUT_CHANNEL}`)
  }

  private relisten (on: Listeners): void {
    if (this.closed) return
    setTimeout(() => {
      this.listen(on).catch((err) => {
        this.log?.warn({ err: (err as Error).message }, 'cache purge listener could not reconnect; trying again')
        this.relisten(on)
      })
    }, 1000).unref()
  }

  close (): void {
    this.closed = true
    const l = this.listener
    this.listener = null
    l?.release()
  }
}
