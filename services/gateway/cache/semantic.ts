import type pg from 'pg'
import type { CacheEntry } from './entry.ts'

// Semantic lookups: a request whose last user message means the same as a cached one (cosine
// similarity of their embeddings at or over a threshold), with the same model, parameters and earlier
// messages, within the same account. Opt-in per API key (cache_key_settings), since a near match is
// not the answer to the exact question.

export function cosine (a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length || a.length === 0) return 0
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) { dot += a[i]! * b[i]!; na += a[i]! * a[i]!; nb += b[i]! * b[i]! }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb)
}

/** The closest entry at or over `threshold`, and its similarity. */
export function nearest (vector: readonly number[], entries: Iterable<CacheEntry>, threshold: number): { entry: CacheEntry, similarity: number } | null {
  let best: { entry: CacheEntry, similarity: number } | null = null
  for (const e of entries) {
    if (!e.embedding) continue
    const s = cosine(vector, e.embedding)
    if (s >= threshold && (!best || s > best.similarity)) best = { entry: e, similarity: s }
  }
  return best
}

export interface KeyCacheSettings { semantic: boolean, threshold: number | null }

/** Per-key settings, read from the database and kept for a few seconds. */
export class KeySettings {
  private readonly pool: pg.Pool
  private readonly ttlMs: number
  private readonly cache = new Map<string, { at: number, value: Promise<KeyCacheSettings> }>()

  constructor (pool: pg.Pool, ttlMs = 5000) {
    this.pool = pool
    this.ttlMs = ttlMs
  }

  get (keyId: string): Promise<KeyCacheSettings> {
    const now = Date.now()
    const hit = this.cache.get(keyId)
    if (hit && now - hit.at < this.ttlMs) return hit.value
    const value = this.pool.query<{ semantic: boolean, threshold: number | null }>('SELECT semantic, threshold FROM cache_key_settings WHERE api_key_id = $1', [keyId])
      .then((r) => r.rows[0] ? { semantic: r.rows[0].semantic, threshold: r.rows[0].threshold } : { semantic: false, threshold: null })
    if (this.cache.size > 10_000) this.cache.clear()
    this.cache.set(keyId, { at: now, value })
    value.catch(() => this.cache.delete(keyId))
    return value
  }

  /** Set a key's settings; only its owner may (checked here against api_keys). */
  async set (userId: string, keyId: string, s: { semantic: boolean, threshold?: number | null }): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `INSERT INTO cache_key_settings (api_key_id, semantic, threshold)
       SELECT id, $3, $4 FROM api_keys WHERE id = $1 AND user_id = $2
       ON CONFLICT (api_key_id) DO UPDATE SET semantic = EXCLUDED.semantic, threshold = EXCLUDED.threshold, updated_at = now()`,
      [keyId, userId, s.semantic, s.threshold ?? null])
    this.cache.delete(keyId)
    return (rowCount ?? 0) > 0
  }
}
