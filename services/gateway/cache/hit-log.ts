import type pg from 'pg'
import type { Logger } from '../../../shared/log.ts'

// Cache hits into request_logs, in batches: everything that arrives while a round trip is under way
// goes in the next one (hi_cache_hits in migrations/015_response_cache.sql). A free hit is answered
// without waiting for its row; a priced one waits, since the row carries its charge.

export interface HitRecord {
  id: string
  user: string
  key: string
  model: string
  kind: 'chat'
  promptHash: string
  trace: string
  gateway: string
  cache: 'local' | 'shared' | 'semantic'
  cachedFrom: string
  tokensIn: number
  tokensOut: number
  /** nano-USD */
  cost: number
  durationMs: number
  at: string
}

const MAX_BATCH = 500
const MAX_QUEUE = 50_000

export class HitLog {
  private queue: Array<{ hit: HitRecord, done: (ok: boolean) => void }> = []
  private running = false
  private readonly pool: pg.Pool
  private readonly log?: Logger
  dropped = 0

  constructor (pool: pg.Pool, log?: Logger) {
    this.pool = pool
    this.log = log
  }

  /** Record one hit; resolves true once stored, false if its charge could not be covered (or it was dropped). */
  record (hit: HitRecord): Promise<boolean> {
    if (this.queue.length >= MAX_QUEUE) {
      // the database is far behind: a free hit's row is lost rather than memory growing without end
      this.dropped++
      return Promise.resolve(false)
    }
    return new Promise((resolve) => {
      this.queue.push({ hit, done: resolve })
      if (!this.running) setImmediate(() => { void this.drain() })
    })
  }

  get busy (): boolean { return this.running || this.queue.length > 0 }

  private async drain (): Promise<void> {
    if (this.running) return
    this.running = true
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH)
        const results = await this.store(batch.map((b) => b.hit))
        batch.forEach((b, i) => b.done(results[i] ?? false))
      }
    } finally {
      this.running = false
    }
  }

  private async store (hits: HitRecord[]): Promise<boolean[]> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const { rows } = await this.pool.query<{ r: boolean[] }>('SELECT hi_cache_hits($1::jsonb) AS r', [JSON.stringify(hits)])
        return rows[0]!.r
      } catch (err) {
        this.log?.warn({ err: (err as Error).message, rows: hits.length, attempt }, 'recording cache hits failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt))
      }
    }
    this.log?.error({ rows: hits.length }, 'cache hits could not be recorded')
    return hits.map(() => false)
  }

  async close (): Promise<void> {
    const deadline = Date.now() + 10_000
    while (this.busy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
