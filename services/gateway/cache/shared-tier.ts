import type pg from 'pg'
import type { Logger } from '../../../shared/log.ts'
import { entryBytes, type CacheEntry } from './entry.ts'

// The tier every gateway shares, in PostgreSQL (migrations/015_response_cache.sql). Reads are one
// indexed lookup; writes go out without holding the answer back; a prune keeps it within `maxBytes`.
// A purge is announced with NOTIFY so that every gateway drops the same entries from its local tier.

export const PURGE_CHANNEL = 'hyperinfer_cache_purge'
/** at most this many stored vectors are compared in one semantic lookup (the newest) */
const SEMANTIC_SCAN = 500

interface Row { scope: string, key: string, model: string, entry: { chunks: string[], usage: CacheEntry['usage'], finishReason: CacheEntry['finishReason'], sourceId: string }, embedding: number[] | null, params_key: string | null, created_at: Date, expires_at: Date, warm: boolean }

function fromRow (r: Row): CacheEntry {
  return {
    scope: r.scope, key: r.key, model: r.model, ...r.entry, createdAt: r.created_at.getTime(), expiresAt: r.expires_at.getTime(),
    ...(r.embedding ? { embedding: r.embedding.map(Number), paramsKey: r.params_key ?? '' } : {}), warm: r.warm
  }
}

export interface PurgeFilter { scope?: string, model?: string }

export class SharedTier {
  private readonly pool: pg.Pool
  private readonly log?: Logger
  private listener: pg.PoolClient | null = null
  private closed = false

  constructor (pool: pg.Pool, log?: Logger) {
    this.pool = pool
    this.log = log
  }

  async get (scope: string, key: string): Promise<CacheEntry | null> {
    const { rows } = await this.pool.query<Row>(
      'UPDATE response_cache SET hits = hits + 1 WHERE scope = $1 AND key = $2 AND expires_at > now() RETURNING *', [scope, key])
    return rows[0] ? fromRow(rows[0]) : null
  }

  async put (e: CacheEntry): Promise<void> {
    await this.pool.query(
      `INSERT INTO response_cache (scope, key, model, entry, embedding, params_key, bytes, created_at, expires_at, warm)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (scope, key) DO UPDATE SET model = EXCLUDED.model, entry = EXCLUDED.entry, embedding = EXCLUDED.embedding,
         params_key = EXCLUDED.params_key, bytes = EXCLUDED.bytes, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, warm = EXCLUDED.warm`,
      [e.scope, e.key, e.model, { chunks: e.chunks, usage: e.usage, finishReason: e.finishReason, sourceId: e.sourceId }, e.embedding ?? null, e.paramsKey ?? null,
        entryBytes(e), new Date(e.createdAt), new Date(e.expiresAt), e.warm === true])
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
      'DELETE FROM response_cache WHERE ($1::text IS NULL OR scope = $1) AND ($2::text IS NULL OR model = $2)', [filter.scope ?? null, filter.model ?? null])
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

  /** Hear purges made on any gateway (this one too). A lost connection is re-established. */
  async listen (onPurge: (f: PurgeFilter) => void): Promise<void> {
    const client = await this.pool.connect()
    this.listener = client
    client.on('notification', (msg) => {
      if (msg.channel !== PURGE_CHANNEL || !msg.payload) return
      try {
        const f = JSON.parse(msg.payload) as PurgeFilter
        onPurge({ ...(typeof f.scope === 'string' ? { scope: f.scope } : {}), ...(typeof f.model === 'string' ? { model: f.model } : {}) })
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
        this.relisten(onPurge)
      }
    })
    await client.query(`LISTEN ${PURGE_CHANNEL}`)
  }

  private relisten (onPurge: (f: PurgeFilter) => void): void {
    if (this.closed) return
    setTimeout(() => {
      this.listen(onPurge).catch((err) => {
        this.log?.warn({ err: (err as Error).message }, 'cache purge listener could not reconnect; trying again')
        this.relisten(onPurge)
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
