import { LRUCache } from 'lru-cache'
import { entryBytes, entryId, type CacheEntry } from './entry.ts'

// The tier in this gateway's memory: least recently used entries go first once `maxBytes` is reached,
// and an entry is never served past its expiry.

export class LocalTier {
  private readonly lru: LRUCache<string, CacheEntry>

  constructor (opts: { maxBytes: number }) {
    this.lru = new LRUCache<string, CacheEntry>({
      maxSize: opts.maxBytes,
      sizeCalculation: (e) => Math.max(1, entryBytes(e)),
      // a single entry over a quarter of the tier would push out everything else
      maxEntrySize: Math.max(1, Math.floor(opts.maxBytes / 4))
    })
  }

  get (scope: string, key: string, now = Date.now()): CacheEntry | null {
    const e = this.lru.get(entryId(scope, key))
    if (!e) return null
    if (e.expiresAt <= now) { this.lru.delete(entryId(scope, key)); return null }
    return e
  }

  set (e: CacheEntry): void {
    this.lru.set(entryId(e.scope, e.key), e, { ttl: Math.max(1, e.expiresAt - Date.now()) })
  }

  /** Entries of `scope` with an embedding and the same parameters, for a semantic lookup. */
  * semanticCandidates (scope: string, paramsKey: string, now = Date.now()): Iterable<CacheEntry> {
    for (const e of this.lru.values()) {
      if (e.scope === scope && e.paramsKey === paramsKey && e.embedding && e.expiresAt > now) yield e
    }
  }

  /** Drop entries: all, one scope's, or one model's (within a scope or in all), optionally only those made before `before`. Returns how many. */
  purge (filter: { scope?: string, model?: string, before?: number } = {}): number {
    let n = 0
    for (const [id, e] of this.lru.entries()) {
      if ((filter.scope === undefined || e.scope === filter.scope) && (filter.model === undefined || e.model === filter.model) && (filter.before === undefined || e.createdAt < filter.before)) {
        this.lru.delete(id)
        n++
      }
    }
    return n
  }

  get size (): number { return this.lru.size }
  get bytes (): number { return this.lru.calculatedSize }
}
