import crypto from 'node:crypto'
import type pg from 'pg'
import type { Logger } from '../../shared/log.ts'

// Request logs and daily usage, written in batches: one multi-row INSERT and one upsert per flush
// (every `intervalMs` or `maxBatch` rows), never a DB round trip per request or per token. A failed
// flush keeps its rows and retries; close() flushes what is left.

export interface UsageRecord {
  id: string
  userId: string
  keyId: string
  promptHash: string
  model: string
  worker: string | null
  responseTimeMs: number
  ttftMs: number | null
  tokensIn: number
  tokensOut: number
  status: 'success' | 'error' | 'timeout' | 'cancelled'
  errorCode: string | null
  createdAt: Date
}

export class UsageRecorder {
  private buffer: UsageRecord[] = []
  private readonly pool: pg.Pool
  private readonly log?: Logger
  private readonly intervalMs: number
  private readonly maxBatch: number
  private timer: NodeJS.Timeout | null = null
  private flushing: Promise<void> | null = null
  written = 0

  constructor (pool: pg.Pool, opts: { intervalMs?: number, maxBatch?: number, log?: Logger } = {}) {
    this.pool = pool
    this.log = opts.log
    this.intervalMs = opts.intervalMs ?? 250
    this.maxBatch = opts.maxBatch ?? 500
  }

  static newId (): string { return crypto.randomUUID() }

  get pending (): number { return this.buffer.length }

  start (): void {
    this.timer = setInterval(() => { void this.flush() }, this.intervalMs)
    this.timer.unref()
  }

  record (r: UsageRecord): void {
    this.buffer.push(r)
    if (this.buffer.length >= this.maxBatch) void this.flush()
  }

  flush (): Promise<void> {
    if (this.flushing) return this.flushing
    if (this.buffer.length === 0) return Promise.resolve()
    this.flushing = this.write().finally(() => { this.flushing = null })
    return this.flushing
  }

  private async write (): Promise<void> {
    const batch = this.buffer.splice(0, this.maxBatch * 4)
    const client = await this.pool.connect().catch((err) => { this.requeue(batch, err); return null })
    if (!client) return
    try {
      await client.query('BEGIN')
      const cols = 13
      const values: unknown[] = []
      const rows = batch.map((r, i) => {
        values.push(r.id, r.userId, r.keyId, r.promptHash, r.model, r.worker, r.responseTimeMs, r.ttftMs, r.tokensIn, r.tokensOut, r.tokensIn + r.tokensOut, r.status, r.errorCode)
        const b = i * cols
        return `($${b + 1},$${b + 2},$${b + 3},$${b + 4},$${b + 5},$${b + 6},$${b + 7},$${b + 8},$${b + 9},$${b + 10},$${b + 11},$${b + 12},$${b + 13},$${batch.length * cols + 1 + i})`
      })
      for (const r of batch) values.push(r.createdAt)
      await client.query(
        `INSERT INTO request_logs (id, user_id, api_key_id, prompt_hash, model_used, worker, response_time_ms, ttft_ms, tokens_in, tokens_out, tokens_used, status, error_code, created_at)
         VALUES ${rows.join(',')} ON CONFLICT (id) DO NOTHING`, values)
      const daily = new Map<string, { userId: string, keyId: string, date: string, requests: number, errors: number, tin: number, tout: number }>()
      for (const r of batch) {
        const date = r.createdAt.toISOString().slice(0, 10)
        const k = `${r.keyId}|${date}`
        let d = daily.get(k)
        if (!d) { d = { userId: r.userId, keyId: r.keyId, date, requests: 0, errors: 0, tin: 0, tout: 0 }; daily.set(k, d) }
        d.requests++
        if (r.status !== 'success') d.errors++
        d.tin += r.tokensIn
        d.tout += r.tokensOut
      }
      for (const d of daily.values()) {
        await client.query(
          `INSERT INTO usage_stats (user_id, api_key_id, date, request_count, error_count, tokens_in, tokens_out, tokens_used)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (api_key_id, date) DO UPDATE SET
             request_count = usage_stats.request_count + EXCLUDED.request_count,
             error_count = usage_stats.error_count + EXCLUDED.error_count,
             tokens_in = usage_stats.tokens_in + EXCLUDED.tokens_in,
             tokens_out = usage_stats.tokens_out + EXCLUDED.tokens_out,
             tokens_used = usage_stats.tokens_used + EXCLUDED.tokens_used,
             updated_at = now()`,
          [d.userId, d.keyId, d.date, d.requests, d.errors, d.tin, d.tout, d.tin + d.tout])
      }
      await client.query('COMMIT')
      this.written += batch.length
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      this.requeue(batch, err)
    } finally {
      client.release()
    }
  }

  private requeue (batch: UsageRecord[], err: unknown): void {
    this.log?.warn({ rows: batch.length, err: (err as Error).message }, 'usage flush failed; will retry')
    this.buffer.unshift(...batch)
  }

  async close (): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    for (let i = 0; i < 20 && (this.buffer.length > 0 || this.flushing); i++) {
      await this.flush()
      if (this.buffer.length > 0) await new Promise((r) => setTimeout(r, 100))
    }
  }
}
