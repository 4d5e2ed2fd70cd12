import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { ServiceMetrics } from '../../shared/metrics.ts'
import type { KeyIdentity } from '../../shared/protocol/auth.ts'
import type { FeedbackResult } from '../../shared/protocol/learning.ts'
import { LearnedRouter, type ArmStats, type Outcome } from './learned-router.ts'

// What the gateway learns from outcomes, and where it keeps it. Every gateway's LearnedRouter reads
// and adds to the same arms in PostgreSQL (routing_arms, migrations/016_learned_routing.sql): its new
// observations go out as deltas every `syncEveryMs` and the merged arms come back, so gateways learn
// together and a restart loses at most one interval. User feedback (`feedback`) is checked against the
// caller's own requests, stored, and counted once per request.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

interface Served { id: string, user: string, model: string, context: string }

export interface LearningOptions {
  pool: pg.Pool
  metrics: ServiceMetrics
  log?: Logger
  exploration?: number
  halfLifeMs?: number
  syncEveryMs?: number
  /** resolves once the requests answered so far are in request_logs (their rows go in batches) */
  recorded?: () => Promise<void>
}

export class Learning {
  readonly router: LearnedRouter
  private readonly opts: LearningOptions
  /**
   * Requests this gateway served lately, by id and by trace id: whose, which model, and the context
   * it was routed in. Feedback on them needs no database read (their rows reach PostgreSQL in
   * batches, maybe after the user scores the answer) and credits the right context. Kept for one to
   * three minutes (by then the row is in request_logs), so memory follows the request rate, not uptime.
   */
  private readonly recent = new RecentMap<Served>(60_000, 50_000)
  private timer: NodeJS.Timeout | null = null
  private syncing: Promise<void> | null = null

  constructor (opts: LearningOptions) {
    this.opts = opts
    this.router = new LearnedRouter({
      exploration: opts.exploration, halfLifeMs: opts.halfLifeMs,
      onChoice: (mode) => opts.metrics.counter('ai_platform_router_decisions_total').inc({ strategy: 'learned', mode })
    })
  }

  /** A request ended: its model's outcome, in the context it was routed in (its task, else 'chat'). */
  observe (req: { id: string, user: string, trace: string | null }, context: string, model: string, o: Outcome): void {
    if (o.ok) {
      const served = { id: req.id, user: req.user, model, context }
      this.recent.set(req.id, served)
      if (req.trace) this.recent.set('trace:' + req.user + ':' + req.trace, served)
    }
    this.router.observe(context, model, o)
  }

  /** One of the caller's successful requests, by id or trace id: served here lately, else from request_logs. */
  private async find (userId: string, requestId: string): Promise<Served | null> {
    const here = this.recent.get(requestId) ?? this.recent.get('trace:' + userId + ':' + requestId)
    if (here) return here.user === userId ? here : null
    const byId = UUID.test(requestId)
    const read = () => this.opts.pool.query<{ id: string, model: string }>(
      byId
        ? 'SELECT id, model_used AS model FROM request_logs WHERE user_id = $1 AND (id = $2::uuid OR trace_id = $3) AND status = \'success\' ORDER BY (id = $2::uuid) DESC, created_at DESC LIMIT 1'
        : 'SELECT id, model_used AS model FROM request_logs WHERE user_id = $1 AND trace_id = $2 AND status = \'success\' ORDER BY created_at DESC LIMIT 1',
      byId ? [userId, requestId, requestId] : [userId, requestId])
    let { rows } = await read()
    // an answer this gateway gave moments ago may still be on its way to request_logs
    if (!rows[0] && this.opts.recorded) {
      await Promise.race([this.opts.recorded(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
      rows = (await read()).rows
    }
    return rows[0] ? { id: rows[0].id, user: userId, model: rows[0].model, context: 'chat' } : null
  }

  async feedback (identity: KeyIdentity, req: { requestId: string, score: number, comment?: string }): Promise<FeedbackResult> {
    const { pool } = this.opts
    const found = await this.find(identity.userId, req.requestId)
    // another account's request is as unknown to the caller as one that never existed
    if (!found) throw MeshError.NOT_FOUND(`no successful request '${req.requestId}' of yours to score`)
    const ins = await pool.query<{ first: boolean }>(
      `INSERT INTO request_feedback (request_id, user_id, score, comment) VALUES ($1, $2, $3, $4)
       ON CONFLICT (request_id) DO UPDATE SET score = EXCLUDED.score, comment = EXCLUDED.comment, created_at = now()
       RETURNING (xmax = 0) AS first`, [found.id, identity.userId, req.score, req.comment ?? null])
    // a changed score is stored, but the router counts each answer once
    if (ins.rows[0]?.first) this.router.feedback(found.context, found.model, req.score)
    this.opts.metrics.counter('ai_platform_feedback_total').inc()
    return { requestId: found.id, model: found.model, score: req.score }
  }

  /** Send this gateway's new observations and take every gateway's merged arms. */
  sync (): Promise<void> {
    this.syncing ??= this.syncOnce().finally(() => { this.syncing = null })
    return this.syncing
  }

  private async syncOnce (): Promise<void> {
    const { pool } = this.opts
    const deltas = this.router.takeDeltas()
    if (deltas.length > 0) {
      try {
        await pool.query('SELECT hi_learned_merge($1::jsonb, $2)', [JSON.stringify(deltas), this.router.halfLifeMs / 1000])
      } catch (err) {
        this.router.restoreDeltas(deltas)
        throw err
      }
    }
    const { rows } = await pool.query<{ context: string, model: string, n: number, ok_n: number, speed_sum: number, cost_sum: number, q_n: number, q_sum: number, updated_at: Date }>(
      'SELECT context, model, n, ok_n, speed_sum, cost_sum, q_n, q_sum, updated_at FROM routing_arms')
    this.router.load(rows.map((r): { context: string, model: string } & ArmStats => ({
      context: r.context, model: r.model, n: r.n, okN: r.ok_n, speedSum: r.speed_sum, costSum: r.cost_sum, qN: r.q_n, qSum: r.q_sum, at: r.updated_at.getTime()
    })))
  }

  async open (): Promise<void> {
    await this.sync().catch((err) => this.opts.log?.warn({ err: (err as Error).message }, 'learned routing starts without the shared arms'))
    this.timer = setInterval(() => {
      this.sync().catch((err) => this.opts.log?.warn({ err: (err as Error).message }, 'learned routing could not sync its arms; retrying'))
    }, this.opts.syncEveryMs ?? 2000)
    this.timer.unref()
  }

  async close (): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    await this.sync().catch((err) => this.opts.log?.warn({ err: (err as Error).message }, 'learned routing lost its last observations at close'))
  }
}

/**
 * A map whose entries live for at least one `generationMs` and at most three: writes go to the young generation, which
 * becomes the old one each period (the old one is dropped). Each generation holds at most `max`
 * entries (a burst past that drops the oldest generation early). No timer per entry.
 */
export class RecentMap<V> {
  private young = new Map<string, V>()
  private old = new Map<string, V>()
  private turnedAt: number

  constructor (private readonly generationMs: number, private readonly max: number, private readonly now = Date.now) {
    this.turnedAt = now()
  }

  private age (): void {
    const t = this.now()
    if (t - this.turnedAt < this.generationMs && this.young.size < this.max) return
    // two periods idle: both generations are past their time
    this.old = t - this.turnedAt >= 2 * this.generationMs ? new Map() : this.young
    this.young = new Map()
    this.turnedAt = t
  }

  set (key: string, value: V): void {
    this.age()
    this.young.set(key, value)
  }

  get (key: string): V | undefined {
    this.age()
    return this.young.get(key) ?? this.old.get(key)
  }

  get size (): number { return this.young.size + this.old.size }
}
