import crypto from 'node:crypto'
import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { HandlerBuilder } from '../../shared/mesh/peer.ts'
import type { ServiceMetrics } from '../../shared/metrics.ts'
import type { KeyIdentity, PublicUser } from '../../shared/protocol/auth.ts'
import { GatewayProtocol, type WorkerSummary } from '../../shared/protocol/gateway.ts'
import type { CacheStats } from '../../shared/protocol/learning.ts'
import { defaultCacheConfig, type CacheConfig } from './cache/config.ts'
import { ResponseCache } from './cache/response-cache.ts'
import { Warmup, type WarmAnswer, type WarmRun } from './cache/warmup.ts'
import type { Catalog } from './catalog.ts'
import { DemandForecast } from './demand.ts'
import type { WorkerDispatch } from './dispatch.ts'
import { Learning } from './learning.ts'
import type { Pricing } from './limits.ts'
import type { PipelineDeps, RequestOutcome } from './pipeline.ts'
import { learnedContext } from './router.ts'
import { maxAnswerBytes } from './token-stream.ts'
import type { CancelSignal } from '../../shared/mesh/cancel.ts'

// The parts of the gateway that learn from its traffic, wired together: the response cache and its
// predictive warm-up (cache/), learned routing (learning.ts) and demand forecasts (demand.ts). The
// gateway gives them its pipeline hooks, four RPC methods, and its open and close.

export interface AdaptiveOptions {
  cache?: CacheConfig
  warmup?: { budgetTokensPerHour: number, minUses?: number, everyMs?: number }
  learned?: { exploration?: number, halfLifeMs?: number, syncEveryMs?: number }
}

export interface AdaptiveDeps {
  pool: pg.Pool
  pricing: Pricing
  metrics: ServiceMetrics
  log?: Logger
  gateway: string
  ledger: boolean
  dispatch: () => WorkerDispatch
  workers: () => WorkerSummary[]
  identity: (apiKey: string) => Promise<KeyIdentity>
  user: (token: string) => Promise<PublicUser>
  /** resolves once the requests answered so far are in request_logs */
  recorded?: () => Promise<void>
}

export class Adaptive {
  readonly cache: ResponseCache
  readonly warmup: Warmup
  readonly learning: Learning
  readonly demand: DemandForecast
  private readonly deps: AdaptiveDeps
  private readonly fingerprints = new Map<string, string>()

  constructor (deps: AdaptiveDeps, opts: AdaptiveOptions = {}) {
    this.deps = deps
    const config = opts.cache ?? defaultCacheConfig()
    this.cache = new ResponseCache({
      pool: deps.pool, pricing: deps.pricing, metrics: deps.metrics, log: deps.log, gateway: deps.gateway, config, ledger: deps.ledger,
      embed: (text, signal) => this.embed(text, signal),
      onCacheable: (c) => this.warmup.seen(c)
    })
    this.warmup = new Warmup({ cache: this.cache, run: (r) => this.warm(r), metrics: deps.metrics, log: deps.log }, opts.warmup ?? { budgetTokensPerHour: 0 })
    this.learning = new Learning({ pool: deps.pool, metrics: deps.metrics, log: deps.log, recorded: deps.recorded, ...opts.learned })
    this.demand = new DemandForecast({ metrics: deps.metrics, workers: deps.workers })
  }

  /** What the request pipeline takes from here. */
  pipelineDeps (): Pick<PipelineDeps, 'cache' | 'learner' | 'onOutcome'> {
    return { cache: this.cache, learner: this.learning.router, onOutcome: (o) => this.outcome(o) }
  }

  private outcome (o: RequestOutcome): void {
    const usdPerMTok = o.ok && o.tokens > 0 ? o.costNusd / 1e9 / o.tokens * 1e6 : null
    this.learning.observe({ id: o.id, user: o.user, trace: o.trace }, learnedContext(o.route ?? {}), o.model, { ok: o.ok, ttftMs: o.ttftMs, usdPerMTok })
    this.demand.record(o.model, o.seconds)
  }

  /** The cache and feedback methods, onto the gateway's handler table. */
  mount (table: HandlerBuilder): HandlerBuilder {
    return table
      .on(GatewayProtocol.cacheStats, async (req) => this.stats(await this.deps.user(req.token), req.all === true))
      .on(GatewayProtocol.cachePurge, async (req) => {
        const user = await this.deps.user(req.token)
        if (req.all && user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can purge every account\'s entries')
        const scope = req.all ? undefined : this.cache.config.scope === 'global' ? '*' : user.id
        if (!req.all && this.cache.config.scope === 'global' && user.role !== 'admin') throw MeshError.FORBIDDEN('entries are shared by every account here: only an admin can purge them')
        return this.cache.purge({ ...(scope !== undefined ? { scope } : {}), ...(req.model ? { model: req.model } : {}) })
      })
      .on(GatewayProtocol.cacheSettings, async (req) => {
        const user = await this.deps.user(req.token)
        const ok = await this.cache.settings.set(user.id, req.keyId, { semantic: req.semantic, threshold: req.threshold ?? null })
        if (!ok) throw MeshError.NOT_FOUND('no API key of yours has that id')
        return { keyId: req.keyId, semantic: req.semantic, threshold: req.threshold ?? null }
      })
      .on(GatewayProtocol.feedback, async (req) => this.learning.feedback(await this.deps.identity(req.apiKey), req))
  }

  private async stats (user: PublicUser, all: boolean): Promise<CacheStats> {
    if (all && user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can see the whole mesh\'s cache')
    const { pool, pricing } = this.deps
    const { rows } = await pool.query<{ cache: string | null, model: string, requests: string, tin: string, tout: string, cost: string }>(
      `SELECT cache, model_used AS model, count(*) AS requests, sum(tokens_in) AS tin, sum(tokens_out) AS tout, sum(cost_nusd) AS cost
       FROM request_logs WHERE created_at > now() - interval '24 hours' AND kind = 'chat' AND status = 'success' AND ($1::uuid IS NULL OR user_id = $1)
       GROUP BY 1, 2`, [all ? null : user.id])
    const hits = { local: 0, shared: 0, semantic: 0, total: 0 }
    let requests = 0
    let saved = 0
    for (const r of rows) {
      const n = Number(r.requests)
      requests += n
      if (r.cache === 'local' || r.cache === 'shared' || r.cache === 'semantic') {
        hits[r.cache] += n
        hits.total += n
        saved += pricing.cost(r.model, Number(r.tin), Number(r.tout)) - Number(r.cost)
      }
    }
    const scope = all ? null : this.cache.config.scope === 'global' ? '*' : user.id
    const shared = await this.cache.shared.stats(scope)
    return {
      scope: all ? 'mesh' : 'account', window: '24h', requests, hits, hitRate: requests ? Math.round(hits.total / requests * 1000) / 1000 : 0,
      savedUsd: Math.max(0, saved) / 1e9, entries: shared.entries, bytes: shared.bytes, warmEntries: shared.warm,
      local: { entries: this.cache.local.size, bytes: this.cache.local.bytes }, ttlSeconds: Math.round(this.cache.config.ttlMs / 1000),
      semanticModel: this.cache.config.embedModel
    }
  }

  private async embed (text: string, signal: CancelSignal): Promise<number[]> {
    const model = this.cache.config.embedModel
    if (!model) throw MeshError.UNAVAILABLE('no embedding model is configured')
    const out = await this.deps.dispatch().embed({ requestId: crypto.randomUUID(), model, input: [text] }, signal)
    if (!out.ok) throw out.err
    const v = out.value.embeddings[0]
    if (!Array.isArray(v) || v.length === 0 || v.length > 8192 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw MeshError.BACKEND_ERROR('the embedding model gave no usable vector')
    return v
  }

  /** Ask a worker again, on the operator's account: no admission, nothing billed. */
  private async warm (r: WarmRun): Promise<WarmAnswer> {
    const chunks: string[] = []
    let bytes = 0
    const id = crypto.randomUUID()
    const maxBytes = maxAnswerBytes(typeof r.params.maxTokens === 'number' ? r.params.maxTokens : 1024)
    const out = await this.deps.dispatch().prompt({ requestId: id, model: r.model, messages: r.messages, ...r.params }, {
      signal: AbortSignal.timeout(60_000),
      onAttempt: () => { chunks.length = 0; bytes = 0 },
      onChunk: (c) => {
        if (typeof c?.text !== 'string') return null
        bytes += Buffer.byteLength(c.text)
        // a worker's answer is held to the same bound as a caller's (token-stream.ts)
        if (bytes > maxBytes) return MeshError.BACKEND_ERROR('the worker\'s answer passed its byte bound')
        chunks.push(c.text)
        return null
      },
      mayRetry: () => true
    })
    if (!out.ok) throw out.err
    const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0
    return {
      id, chunks,
      usage: { promptTokens: count(out.value.usage?.promptTokens), completionTokens: count(out.value.usage?.completionTokens) || chunks.length },
      finishReason: out.value.finishReason === 'length' ? 'length' : 'stop'
    }
  }

  /** A registry change: a model whose answers would differ now (another provider or backend model) is warmed anew. */
  private registryChanged (catalog: Catalog): void {
    for (const m of catalog.allModels()) {
      const fp = `${m.provider}\0${m.backendModel}\0${m.contextLength}`
      const before = this.fingerprints.get(m.id)
      this.fingerprints.set(m.id, fp)
      if (before !== undefined && before !== fp) void this.warmup.modelChanged(m.id, m.updatedAt)
    }
  }

  async open (catalog: Catalog): Promise<void> {
    this.registryChanged(catalog)
    catalog.onChange((keys) => { if (keys.some((k) => k.startsWith('models/'))) this.registryChanged(catalog) })
    await this.cache.open()
    await this.learning.open()
    this.demand.open()
    this.warmup.open()
  }

  async close (): Promise<void> {
    this.warmup.close()
    this.demand.close()
    await this.learning.close()
    await this.cache.close()
  }
}
