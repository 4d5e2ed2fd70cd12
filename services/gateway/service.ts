import crypto from 'node:crypto'
import type pg from 'pg'
import client from 'prom-client'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import { handlers, type HandlerContext, type HandlerTable } from '../../shared/mesh/peer.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import { AuthEvents, AuthProtocol, type KeyIdentity } from '../../shared/protocol/auth.ts'
import { GatewayProtocol, type AiResponse, type GatewayHealth, type InferResult, type Quota } from '../../shared/protocol/gateway.ts'
import { InferenceProtocol, type ChatMessage, type TokenChunk } from '../../shared/protocol/inference.ts'
import { MeshError } from '../../shared/errors.ts'
import { sha256Hex } from '../../shared/apikey.ts'
import { KeyCache } from './keycache.ts'
import { RateLimiter } from './ratelimit.ts'
import { UsageRecorder } from './usage.ts'
import { WorkerPool, type WorkerConn } from './workers.ts'
import { DEFAULT_PREFERENCES, route } from './router.ts'

// The public entry of the mesh. Per inference request: validate → authenticate the key (cached) →
// check the model → take a rate-limit slot → pick a worker → stream tokens back → record usage.

export interface GatewayOptions extends Omit<MeshServiceOptions, 'name' | 'privateOnly'> {
  pool: pg.Pool
  authKey: string
  workerToken?: string
  rateLimits?: { default: number, premium: number }
  maxPromptChars?: number
  defaultModel?: string
  keyCacheTtlMs?: number
  /** no token or response from a worker for this long fails the attempt */
  workerIdleTimeoutMs?: number
  maxAttempts?: number
  usageFlushMs?: number
}

const RETRYABLE = new Set(['UNAVAILABLE', 'TIMEOUT', 'BACKEND_ERROR', 'SHUTTING_DOWN', 'INTERNAL', 'UNKNOWN_MODEL'])

export class GatewayService extends MeshService {
  private readonly pool: pg.Pool
  private readonly opts: GatewayOptions
  private auth!: MeshClient
  readonly workers = new WorkerPool()
  readonly keys: KeyCache
  readonly limiter: RateLimiter
  readonly usage: UsageRecorder
  private sweepTimer: NodeJS.Timeout | null = null
  private dbProbe: { at: number, ok: Promise<boolean> } | null = null
  /** moving average of time to first token per model, as this gateway measured it */
  private readonly ttftAvg = new Map<string, number>()
  private readonly rateLimited: client.Counter<'service'>
  private readonly tokens: client.Counter<'model' | 'direction'>
  private readonly ttft: client.Histogram<'model'>

  constructor (opts: GatewayOptions) {
    super({ ...opts, name: 'gateway' })
    this.opts = opts
    this.pool = opts.pool
    this.keys = new KeyCache((keyHash) => this.auth.call(AuthProtocol.validateApiKey, { keyHash }, 5000), opts.keyCacheTtlMs)
    this.limiter = new RateLimiter({ history: (keyId, since) => this.keyHistory(keyId, since) })
    this.usage = new UsageRecorder(this.pool, { intervalMs: opts.usageFlushMs, log: this.log })
    const registers = [this.metrics.registry]
    this.rateLimited = new client.Counter({ name: 'ai_platform_rate_limit_violations_total', help: 'Requests refused by the rate limiter', labelNames: ['service'], registers })
    this.tokens = new client.Counter({ name: 'ai_platform_tokens_total', help: 'Tokens processed, by model and direction (in/out)', labelNames: ['model', 'direction'], registers })
    this.ttft = new client.Histogram({ name: 'ai_platform_time_to_first_token_seconds', help: 'Time from dispatch to first token', labelNames: ['model'], buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10], registers })
  }

  private limitFor (identity: KeyIdentity): number {
    const l = this.opts.rateLimits ?? { default: 100, premium: 1000 }
    return identity.tier === 'premium' ? l.premium : l.default
  }

  protected handlers (): HandlerTable {
    // account and key methods are proxied to auth, so a CLI needs nothing but the gateway's key
    const t = 15_000
    return handlers()
      .on(GatewayProtocol.register, (req) => this.auth.call(AuthProtocol.registerUser, req, t))
      .on(GatewayProtocol.login, (req) => this.auth.call(AuthProtocol.loginUser, req, t))
      .on(GatewayProtocol.createKey, (req) => this.auth.call(AuthProtocol.generateApiKey, req, t))
      .on(GatewayProtocol.listKeys, (req) => this.auth.call(AuthProtocol.listApiKeys, req, t))
      .on(GatewayProtocol.revokeKey, (req) => this.auth.call(AuthProtocol.revokeApiKey, req, t))
      .on(GatewayProtocol.usage, (req) => this.auth.call(AuthProtocol.getUserUsage, req, t))
      .on(GatewayProtocol.infer, (req, ctx) => this.infer(req, ctx))
      .on(GatewayProtocol.embed, (req, ctx) => this.embed(req, ctx))
      .on(GatewayProtocol.aiRequest, (req, ctx) => this.aiRequest(req, ctx))
      .on(GatewayProtocol.models, () => ({ models: this.workers.listing() }))
      .on(GatewayProtocol.getServiceHealth, () => this.health())
      .on(GatewayProtocol.getUserQuota, (req) => this.quota(req.apiKey))
      .on(GatewayProtocol.registerWorker, (req, ctx) => this.registerWorker(req, ctx))
      .table
  }

  protected async onOpen (): Promise<void> {
    this.auth = this.connectTo(this.opts.authKey, {
      name: 'auth',
      handlers: handlers().on(AuthEvents.keyRevoked, (ev) => { this.keys.dropKeyId(ev.keyId) }).table
    })
    // a revocation pushed while we were disconnected would be missed: forget every cached key
    this.auth.on('close', () => this.keys.clear())
    this.auth.on('open', () => this.keys.clear())
    this.usage.start()
    this.sweepTimer = setInterval(() => { this.limiter.sweep(); this.keys.sweep() }, 60_000)
    this.sweepTimer.unref()
  }

  protected async onClose (): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    await this.usage.close()
  }

  private async keyHistory (keyId: string, since: Date): Promise<number[]> {
    const { rows } = await this.pool.query<{ t: string }>(
      'SELECT (extract(epoch FROM created_at) * 1000)::bigint AS t FROM request_logs WHERE api_key_id = $1 AND created_at > $2', [keyId, since])
    return rows.map((r) => Number(r.t))
  }

  private registerWorker (req: RequestOf<typeof GatewayProtocol.registerWorker>, ctx: HandlerContext<any>) {
    const member = this.isMeshMember(ctx.remoteKey)
    const token = this.opts.workerToken
    // compare digests: equal length whatever the input, so the comparison is constant-time and cannot throw
    const digest = (v: string) => crypto.createHash('sha256').update(v).digest()
    const tokenOk = !!token && !!req.token && crypto.timingSafeEqual(digest(req.token), digest(token))
    if (!member && !tokenOk) throw MeshError.FORBIDDEN('worker is not admitted: present the network worker token')
    const w = this.workers.upsert(ctx.peer, req.models, req.capacity ?? 64, req.label ?? null)
    this.log.info({ worker: w.publicKey.slice(0, 16), models: req.models.map((m) => m.id) }, 'worker registered')
    return { accepted: true as const, gateway: this.publicKey }
  }

  async infer (req: RequestOf<typeof GatewayProtocol.infer>, ctx: HandlerContext<TokenChunk>): Promise<InferResult> {
    const started = Date.now()
    const messages: ChatMessage[] = req.messages ?? [{ role: 'user', content: req.prompt ?? '' }]
    const chars = messages.reduce((n, m) => n + m.content.length, 0)
    const max = this.opts.maxPromptChars ?? 100_000
    if (chars > max) throw MeshError.PROMPT_TOO_LARGE(`prompt is ${chars} characters; the limit is ${max}`)
    if (chars === 0) throw MeshError.BAD_REQUEST('prompt is empty')

    const { identity, model } = await this.admit(req.apiKey, req.model)

    const promptHash = sha256Hex(req.prompt ?? JSON.stringify(messages))
    const id = UsageRecorder.newId()
    let text = ''
    let firstTokenAt: number | null = null
    const out = await this.dispatch(model, ctx.signal, (worker) => {
      const dispatched = Date.now()
      return worker.peer.stream(InferenceProtocol.processPrompt, {
        requestId: id, model, messages, maxTokens: req.maxTokens, temperature: req.temperature, ...(req.stop ? { stop: req.stop } : {})
      }, {
        signal: ctx.signal,
        idleTimeout: this.opts.workerIdleTimeoutMs ?? 60_000,
        onChunk: (chunk) => {
          if (firstTokenAt === null) {
            firstTokenAt = Date.now()
            const ms = firstTokenAt - dispatched
            this.ttft.observe({ model }, ms / 1000)
            const prev = this.ttftAvg.get(model)
            this.ttftAvg.set(model, prev === undefined ? ms : prev * 0.8 + ms * 0.2)
          }
          if (req.stream) ctx.emit(chunk)
          else text += chunk.text
        }
      })
    // once a token reached the caller, another worker would repeat it: fail instead of retrying
    }, () => firstTokenAt === null)

    if (!out.ok) throw this.failed(out, id, identity, promptHash, model, started, firstTokenAt, ctx.signal)
    const result = out.value
    this.tokens.inc({ model, direction: 'in' }, result.usage.promptTokens)
    this.tokens.inc({ model, direction: 'out' }, result.usage.completionTokens)
    this.record(id, identity, promptHash, model, out.worker.publicKey, started, firstTokenAt, result.usage.promptTokens, result.usage.completionTokens, 'success', null)
    return {
      id, model, worker: out.worker.publicKey, text: req.stream ? '' : text, usage: result.usage,
      finishReason: result.finishReason, ttftMs: firstTokenAt === null ? null : firstTokenAt - started, durationMs: Date.now() - started
    }
  }

  async embed (req: RequestOf<typeof GatewayProtocol.embed>, ctx: HandlerContext<any>) {
    const started = Date.now()
    const input = typeof req.input === 'string' ? [req.input] : req.input
    const chars = input.reduce((n, t) => n + t.length, 0)
    const max = this.opts.maxPromptChars ?? 100_000
    if (chars > max) throw MeshError.PROMPT_TOO_LARGE(`input is ${chars} characters; the limit is ${max}`)
    const { identity } = await this.admit(req.apiKey, req.model)
    const id = UsageRecorder.newId()
    const promptHash = sha256Hex(JSON.stringify(input))
    const out = await this.dispatch(req.model, ctx.signal, (worker) =>
      worker.peer.call(InferenceProtocol.embed, { requestId: id, model: req.model, input }, { timeout: this.opts.workerIdleTimeoutMs ?? 60_000 }), () => true)
    if (!out.ok) throw this.failed(out, id, identity, promptHash, req.model, started, null, ctx.signal)
    this.tokens.inc({ model: req.model, direction: 'in' }, out.value.usage.promptTokens)
    this.record(id, identity, promptHash, req.model, out.worker.publicKey, started, null, out.value.usage.promptTokens, 0, 'success', null)
    return { ...out.value, id, worker: out.worker.publicKey }
  }

  /**
   * Seed 000's task-level request: the caller names a task and preferences, the router picks the
   * model. Embedding tasks try embedding-named models first and move on from models that cannot embed.
   */
  async aiRequest (req: RequestOf<typeof GatewayProtocol.aiRequest>, ctx: HandlerContext<any>): Promise<AiResponse> {
    await this.keys.resolve(req.apiKey) // a bad key is refused before anything is routed
    const prefs = req.preferences ? { speed: req.preferences.speed ?? 0, cost: req.preferences.cost ?? 0, quality: req.preferences.quality ?? 0 } : DEFAULT_PREFERENCES
    const candidates = this.workers.listing().map((m) => ({ id: m.id, backend: m.backend, workers: m.workers, ttftMs: this.ttftAvg.get(m.id) ?? null, inflight: this.workers.inflightFor(m.id) }))
    const routing = route(candidates, prefs)
    if (routing.ranked.length === 0) throw MeshError.NO_WORKER('no inference worker is connected')
    const backendOf = new Map(candidates.map((c) => [c.id, c.backend]))
    const costOf = (model: string) => backendOf.get(model) === 'synthetic' || backendOf.get(model) === 'ollama' ? 0 : null

    if (/^embed(ding)?s?$/i.test(req.task)) {
      const input = typeof req.input === 'string' ? req.input : req.input.map((m) => m.content).join('\n')
      const order = [...routing.ranked].sort((a, b) => Number(/embed/i.test(b.id)) - Number(/embed/i.test(a.id)))
      let last: unknown = null
      for (const choice of order.slice(0, 3)) {
        try {
          const r = await this.embed({ apiKey: req.apiKey, model: choice.id, input }, ctx)
          const reason = choice.id === routing.ranked[0]!.id ? routing.reason : `${choice.id}: the first model that makes embeddings, in order of score`
          return { id: r.id, model: r.model, worker: r.worker, response: r.embeddings, usage: { tokens: r.usage.promptTokens, promptTokens: r.usage.promptTokens, completionTokens: 0, cost: costOf(r.model) }, routing: { ...routing, reason } }
        } catch (err) {
          last = err
          const code = (err as MeshError).code
          if (code !== 'BAD_REQUEST' && code !== 'BACKEND_ERROR') throw err
        }
      }
      throw last instanceof MeshError ? last : MeshError.NO_WORKER('no model could make embeddings')
    }

    const model = routing.ranked[0]!.id
    const r = await this.infer({
      apiKey: req.apiKey, model, stream: false,
      ...(typeof req.input === 'string' ? { prompt: req.input } : { messages: req.input }),
      ...(req.maxTokens !== undefined ? { maxTokens: req.maxTokens } : {})
    }, ctx)
    return {
      id: r.id, model: r.model, worker: r.worker, response: r.text,
      usage: { tokens: r.usage.promptTokens + r.usage.completionTokens, promptTokens: r.usage.promptTokens, completionTokens: r.usage.completionTokens, cost: costOf(r.model) },
      routing
    }
  }

  /** Authenticate, check the model exists and take a rate-limit slot: the gate every request passes. */
  private async admit (apiKey: string, requested: string | undefined): Promise<{ identity: KeyIdentity, model: string }> {
    const identity = await this.keys.resolve(apiKey)
    if (!identity.scopes.includes('inference')) throw MeshError.FORBIDDEN('this API key lacks the inference scope')
    const model = requested ?? this.defaultModel()
    if (!this.workers.serves(model)) throw MeshError.UNKNOWN_MODEL(model, this.workers.modelIds())
    try {
      await this.limiter.take(identity.keyId, this.limitFor(identity))
    } catch (err) {
      if ((err as MeshError).code === 'RATE_LIMITED') this.rateLimited.inc({ service: 'gateway' })
      throw err
    }
    return { identity, model }
  }

  /**
   * Run `attempt` on the least-loaded worker that serves `model`. If it fails with a retryable code
   * while `mayRetry()` holds, the next worker gets the request; each worker is tried at most once.
   */
  private async dispatch<T> (model: string, signal: AbortSignal, attempt: (w: WorkerConn) => Promise<T>, mayRetry: () => boolean):
    Promise<{ ok: true, value: T, worker: WorkerConn } | { ok: false, err: unknown, worker: WorkerConn | null }> {
    const tried = new Set<string>()
    let err: unknown = MeshError.NO_WORKER(`no worker could serve '${model}'`)
    let last: WorkerConn | null = null
    for (let i = 0; i < (this.opts.maxAttempts ?? 3); i++) {
      const worker = this.workers.pick(model, tried)
      if (!worker) break
      tried.add(worker.publicKey)
      last = worker
      worker.inflight++
      try {
        const value = await attempt(worker)
        worker.served++
        return { ok: true, value, worker }
      } catch (e) {
        err = e
        worker.failures++
        const code = (e as MeshError).code
        if (signal.aborted || !RETRYABLE.has(code) || !mayRetry()) break
        this.log.warn({ worker: worker.publicKey.slice(0, 16), code, attempt: i }, 'worker failed before answering; retrying elsewhere')
      } finally {
        worker.inflight--
      }
    }
    return { ok: false, err, worker: last }
  }

  /** Log a failed request and return the error to throw. */
  private failed (out: { err: unknown, worker: WorkerConn | null }, id: string, identity: KeyIdentity, promptHash: string, model: string,
    started: number, firstTokenAt: number | null, signal: AbortSignal): MeshError {
    const err = out.err instanceof MeshError ? out.err : MeshError.INTERNAL()
    const code = signal.aborted ? 'CANCELLED' : err.code
    const status = code === 'CANCELLED' ? 'cancelled' : code === 'TIMEOUT' ? 'timeout' : 'error'
    this.record(id, identity, promptHash, model, out.worker?.publicKey ?? null, started, firstTokenAt, 0, 0, status, code)
    return err
  }

  private record (id: string, identity: KeyIdentity, promptHash: string, model: string, worker: string | null, started: number,
    firstTokenAt: number | null, tokensIn: number, tokensOut: number, status: 'success' | 'error' | 'timeout' | 'cancelled', errorCode: string | null): void {
    this.usage.record({
      id, userId: identity.userId, keyId: identity.keyId, promptHash, model, worker,
      responseTimeMs: Date.now() - started, ttftMs: firstTokenAt === null ? null : firstTokenAt - started,
      tokensIn, tokensOut, status, errorCode, createdAt: new Date(started)
    })
  }

  private defaultModel (): string {
    const preferred = this.opts.defaultModel
    if (preferred) return preferred
    const ids = this.workers.modelIds()
    if (ids.length === 0) throw MeshError.NO_WORKER('no inference worker is connected')
    return ids[0]!
  }

  async quota (apiKey: string): Promise<Quota> {
    const identity = await this.keys.resolve(apiKey)
    const s = await this.limiter.peek(identity.keyId, this.limitFor(identity))
    return { tier: identity.tier, limit: s.limit, used: s.used, remaining: s.remaining, windowSeconds: 3600, resetsAt: s.resetsAt ? new Date(s.resetsAt).toISOString() : null }
  }

  /**
   * getServiceHealth is public: strangers calling it in a loop must not become database load. One
   * probe at a time, its answer reused for a second.
   */
  private databaseOk (): Promise<boolean> {
    const now = Date.now()
    if (!this.dbProbe || now - this.dbProbe.at > 1000) {
      this.dbProbe = { at: now, ok: this.pool.query('SELECT 1').then(() => true, () => false) }
    }
    return this.dbProbe.ok
  }

  async health (): Promise<GatewayHealth> {
    const dbOk = await this.databaseOk()
    const authUp = this.auth.connected
    return {
      status: authUp && dbOk && this.workers.size > 0 ? 'ok' : 'degraded',
      publicKey: this.publicKey,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      auth: authUp ? 'connected' : 'disconnected',
      database: dbOk ? 'ok' : 'error',
      workers: this.workers.summaries(),
      models: this.workers.modelIds(),
      inflight: this.workers.inflight()
    }
  }
}
