import type pg from 'pg'
import type { Logger } from '../../../shared/log.ts'
import type { ServiceMetrics } from '../../../shared/metrics.ts'
import type { SafetyEvent } from '../../../shared/protocol/safety.ts'

// The record of safety decisions: each is counted at once (ai_platform_safety_events_total) and
// written to safety_events in batches, off the request's path. A decision names the request, the
// key, the detector, the category and the action, never the text. The queue is bounded: under a
// database outage the oldest unwritten decisions are dropped (and said so in the log), the counts
// in the metric stay whole.

const FLUSH_MS = 1000
const MAX_QUEUED = 10_000
const BATCH = 500

export interface SafetyRecord {
  requestId: string
  keyId: string | null
  userId: string | null
  stage: SafetyEvent['stage']
  detector: string
  category: string
  action: string
}

export class SafetyEvents {
  private readonly pool: pg.Pool | null
  private readonly metrics: ServiceMetrics
  private readonly log: Logger
  private queue: SafetyRecord[] = []
  private dropped = 0
  private timer: NodeJS.Timeout | null = null
  private flushing: Promise<void> | null = null

  /** `pool` null: accounting is off (benchmarks), so decisions are counted but not stored */
  constructor (pool: pg.Pool | null, metrics: ServiceMetrics, log: Logger) {
    this.pool = pool
    this.metrics = metrics
    this.log = log
  }

  record (r: SafetyRecord): void {
    this.metrics.counter('ai_platform_safety_events_total').inc({ detector: r.detector, category: r.category, action: r.action })
    if (!this.pool) return
    if (this.queue.length >= MAX_QUEUED) { this.queue.shift(); this.dropped++ }
    this.queue.push(r)
  }

  start (): void {
    this.timer = setInterval(() => { void this.flush() }, FLUSH_MS)
    this.timer.unref()
  }

  async close (): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    await this.flush()
  }

  /** Write what is queued; one flush at a time. */
  flush (): Promise<void> {
    if (!this.flushing) this.flushing = this.write().finally(() => { this.flushing = null })
    return this.flushing
  }

  private async write (): Promise<void> {
    if (this.dropped > 0) { this.log.warn({ dropped: this.dropped }, 'safety decisions dropped unwritten (the database was not keeping up); their counts are in the metrics'); this.dropped = 0 }
    while (this.pool && this.queue.length > 0) {
      const batch = this.queue.slice(0, BATCH)
      const cols = ['request_id', 'api_key_id', 'user_id', 'stage', 'detector', 'category', 'action'] as const
      const values: unknown[] = []
      const tuples = batch.map((r, i) => {
        values.push(r.requestId, r.keyId, r.userId, r.stage, r.detector, r.category, r.action)
        return `(${cols.map((_, j) => `$${i * cols.length + j + 1}`).join(', ')})`
      })
      try {
        await this.pool.query(`INSERT INTO safety_events (${cols.join(', ')}) VALUES ${tuples.join(', ')}`, values)
        this.queue.splice(0, batch.length)
      } catch (err) {
        this.log.warn({ err: (err as Error).message, queued: this.queue.length }, 'safety decisions not written yet; retrying')
        return
      }
    }
  }

  /** A user's decisions (or everyone's, for an admin), newest first. */
  async list (q: { userId: string | null, keyId?: string, limit: number }): Promise<SafetyEvent[]> {
    if (!this.pool) return []
    await this.flush()
    const { rows } = await this.pool.query<{ request_id: string, api_key_id: string | null, stage: SafetyEvent['stage'], detector: string, category: string, action: string, created_at: Date }>(
      `SELECT request_id, api_key_id, stage, detector, category, action, created_at FROM safety_events
       WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::uuid IS NULL OR api_key_id = $2)
       ORDER BY created_at DESC, id DESC LIMIT $3`, [q.userId, q.keyId ?? null, q.limit])
    return rows.map((r) => ({ requestId: r.request_id, keyId: r.api_key_id, stage: r.stage, detector: r.detector, category: r.category, action: r.action, createdAt: r.created_at.toISOString() }))
  }
}
