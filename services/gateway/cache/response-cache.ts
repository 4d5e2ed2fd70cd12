import crypto from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type pg from 'pg'
import { sha256Hex } from '../../../shared/apikey.ts'
import type { Logger } from '../../../shared/log.ts'
import type { ServiceMetrics } from '../../../shared/metrics.ts'
import type { KeyIdentity } from '../../../shared/protocol/auth.ts'
import type { InferResult } from '../../../shared/protocol/gateway.ts'
import type { ChatMessage, TokenChunk, Usage } from '../../../shared/protocol/inference.ts'
import { toUsd, type Pricing } from '../limits.ts'
import type { CacheConfig } from './config.ts'
import type { CacheEntry } from './entry.ts'
import { HitLog } from './hit-log.ts'
import { cacheKey, directiveOf, isDeterministic, paramsKey } from './key.ts'
import { LocalTier } from './local-tier.ts'
import { KeySettings, nearest } from './semantic.ts'
import { SharedTier, type PurgeFilter } from './shared-tier.ts'
import type { CancelSignal } from '../../../shared/mesh/cancel.ts'

// The response cache as the request pipeline sees it: lookup() before a request is admitted answers
// it from the local tier, the shared tier or (for keys that opted in) a semantic match, or hands back
// a ticket whose store() keeps the answer once the worker has given it. A hit is an answer of its own:
// a new request id, `cached: true`, the original chunks replayed to a streaming caller, a row in
// request_logs (cache = its tier) and the operator's cache price.

export type Tier = 'local' | 'shared' | 'semantic'

/** The request fields the cache reads: the inference request as the pipeline has it. */
export type CacheableRequest = Record<string, unknown> & { prompt?: string, messages?: ChatMessage[], stream?: boolean, traceId?: string, cache?: unknown }

export interface CacheCaller { readonly signal: CancelSignal, emit (chunk: TokenChunk): void }

/** The output checks of the safety policy in force now, which a replayed answer passes through as a fresh one would. */
export interface ReplayGuard {
  pass (text: string): { text: string, stop: boolean }
  flush (): Promise<{ text: string, stop: boolean }>
  attach (sink: { release (text: string): void, cut (): void }): void
}

/** How the pipeline names a request that may be answered from the cache, and checks what is replayed. */
export interface LookupOptions { id?: string, guard?: ReplayGuard | null }

/** What the answer to a request that missed the cache is kept as. */
export interface Answer { id: string, chunks: string[], usage: Usage, finishReason: string }

export type Lookup = { result: InferResult, store?: undefined } | { result?: undefined, store: (a: Answer) => void }

export interface ResponseCacheDeps {
  pool: pg.Pool
  pricing: Pricing
  metrics: ServiceMetrics
  log?: Logger
  gateway: string
  config: CacheConfig
  /** false: accounting is off (benchmarks), hits are not recorded */
  ledger: boolean
  /** the mesh's embedding model, for semantic lookups */
  embed: (text: string, signal: CancelSignal) => Promise<number[]>
  /** a request that could be cached went through (for predictive warm-up) */
  onCacheable?: (c: { scope: string, key: string, model: string, messages: ChatMessage[], req: CacheableRequest, identity: KeyIdentity, hit: Tier | null }) => void
}

export class ResponseCache {
  readonly local: LocalTier
  readonly shared: SharedTier
  readonly settings: KeySettings
  private readonly hits: HitLog
  private readonly deps: ResponseCacheDeps
  private pruneTimer: NodeJS.Timeout | null = null

  constructor (deps: ResponseCacheDeps) {
    this.deps = deps
    this.local = new LocalTier({ maxBytes: deps.config.localMaxBytes })
    this.shared = new SharedTier(deps.pool, deps.gateway, deps.log)
    this.settings = new KeySettings(deps.pool)
    this.hits = new HitLog(deps.pool, deps.log)
    deps.metrics.onScrape('ai_platform_cache_entries', (g) => g.set({ tier: 'local' }, this.local.size))
    deps.metrics.onScrape('ai_platform_cache_bytes', (g) => g.set({ tier: 'local' }, this.local.bytes))
  }

  get config (): CacheConfig { return this.deps.config }

  scopeOf (identity: KeyIdentity): string { return this.deps.config.scope === 'global' ? '*' : identity.userId }

  private count (tier: Tier | 'none', result: 'hit' | 'miss' | 'bypass' | 'skip' | 'store'): void {
    this.deps.metrics.counter('ai_platform_cache_requests_total').inc({ tier, result })
  }

  /** Answer from the cache, or say how to keep the answer; null: this request is not for the cache. */
  async lookup (req: CacheableRequest, messages: ChatMessage[], model: string, identity: KeyIdentity, caller: CacheCaller, opts: LookupOptions = {}): Promise<Lookup | null> {
    const t0 = performance.now()
    if (!this.deps.config.enabled) return null
    const directive = directiveOf(req.cache)
    if (directive === 'no-store') { this.count('none', 'bypass'); return null }
    if (directive !== 'use' && !isDeterministic(req)) { this.count('none', 'skip'); return null }
    const scope = this.scopeOf(identity)
    // an answer made under one safety policy is not replayed to a key of the account under another
    const policy = { ...req, safetyPolicy: [identity.safety ?? null, identity.accountSafety ?? null] }
    const key = cacheKey(model, messages, policy)
    let tier: Tier | null = null
    let similarity: number | null = null
    let entry = this.local.get(scope, key)
    // an entry another gateway wrote (pushed here) counts as a shared-tier hit the first time it serves
    if (entry) { tier = entry.pushed ? 'shared' : 'local'; entry.pushed = false } else {
      this.count('local', 'miss')
      entry = await this.shared.get(scope, key).catch((err) => { this.deps.log?.warn({ err: (err as Error).message }, 'shared cache tier unreachable; treated as a miss'); return null })
      if (entry) { tier = 'shared'; this.local.set(entry) } else this.count('shared', 'miss')
    }
    let vector: number[] | null = null
    let pk: string | undefined
    const semantic = !entry && await this.semanticWanted(identity)
    if (semantic) {
      pk = paramsKey(model, policy, JSON.stringify(messages.slice(0, -1)))
      vector = await this.deps.embed(lastUserText(messages), caller.signal).catch((err) => { this.deps.log?.warn({ err: (err as Error).message }, 'no embedding for a semantic lookup'); return null })
      if (vector) {
        const threshold = semantic.threshold ?? this.deps.config.semanticThreshold
        const local = nearest(vector, this.local.semanticCandidates(scope, pk), threshold)
        const shared = local ? null : nearest(vector, await this.shared.semanticCandidates(scope, pk).catch(() => []), threshold)
        const best = local ?? shared
        if (best) { entry = best.entry; tier = 'semantic'; similarity = best.similarity; if (shared) this.local.set(best.entry) }
      }
      if (!entry) this.count('semantic', 'miss')
    }
    this.deps.onCacheable?.({ scope, key, model, messages, req, identity, hit: tier })
    if (entry && tier) {
      const result = await this.answer(entry, tier, similarity, req, messages, identity, caller, t0, opts)
      if (result) return { result }
    }
    return {
      store: (a) => {
        // a cut-short answer, or one that ended on tool calls, is not kept
        if ((a.finishReason !== 'stop' && a.finishReason !== 'length') || a.chunks.length === 0) return
        const now = Date.now()
        this.put({
          scope, key, model, chunks: a.chunks, usage: a.usage, finishReason: a.finishReason as 'stop' | 'length', sourceId: a.id, createdAt: now, expiresAt: now + this.deps.config.ttlMs,
          ...(vector && pk ? { embedding: vector, paramsKey: pk } : {})
        })
      }
    }
  }

  /** Keep an entry in both tiers; the shared write does not hold anything up. */
  put (e: CacheEntry): void {
    this.local.set(e)
    this.count('local', 'store')
    this.shared.put(e).then(() => this.count('shared', 'store'), (err: Error) => this.deps.log?.warn({ err: err.message }, 'could not write the shared cache tier'))
  }

  private async semanticWanted (identity: KeyIdentity): Promise<{ threshold: number | null } | null> {
    if (!this.deps.config.embedModel) return null
    const s = await this.settings.get(identity.keyId).catch(() => null)
    return s?.semantic ? { threshold: s.threshold } : null
  }

  /** The hit as an answer: replayed, recorded and billed. Null if its price could not be covered. */
  private async answer (entry: CacheEntry, tier: Tier, similarity: number | null, req: CacheableRequest, messages: ChatMessage[], identity: KeyIdentity, caller: CacheCaller, t0: number, opts: LookupOptions): Promise<InferResult | null> {
    const id = opts.id ?? crypto.randomUUID()
    const cost = Math.round(this.deps.config.priceFraction * this.deps.pricing.cost(entry.model, entry.usage.promptTokens, entry.usage.completionTokens))
    if (this.deps.ledger) {
      const recorded = this.hits.record({
        id, user: identity.userId, key: identity.keyId, model: entry.model, kind: 'chat', promptHash: sha256Hex(req.prompt ?? JSON.stringify(messages)),
        trace: req.traceId ?? id, gateway: this.deps.gateway, cache: tier, cachedFrom: entry.sourceId, tokensIn: entry.usage.promptTokens,
        tokensOut: entry.usage.completionTokens, cost, durationMs: Math.round(performance.now() - t0), at: new Date().toISOString()
      })
      // a priced hit is served only once its charge is committed; a free one does not wait for its row
      if (cost > 0 && !await recorded) return null
    }
    // the answer was kept under the policy of its day: it passes today's output checks before anyone sees it
    const replay = opts.guard ? await recheck(entry.chunks, opts.guard) : { chunks: entry.chunks, cut: false }
    this.count(tier, 'hit')
    if (entry.warm) this.deps.metrics.counter('ai_platform_cache_warm_hits_total').inc()
    if (req.stream === true) replay.chunks.forEach((text, i) => caller.emit(i === 0 ? { text, cached: true } : { text }))
    const how = tier === 'semantic' ? `a semantic match (similarity ${similarity!.toFixed(3)})` : `the ${tier} cache`
    return {
      id, model: entry.model, worker: 'cache', text: req.stream === true ? '' : replay.chunks.join(''), usage: entry.usage, costUsd: toUsd(cost),
      finishReason: replay.cut ? 'content_filter' : entry.finishReason, ttftMs: 0, durationMs: Math.round((performance.now() - t0) * 1000) / 1000,
      routing: { strategy: 'cache', reason: `answered from ${how}: the answer to request ${entry.sourceId}`, score: similarity, attempts: 0 },
      cached: true, cache: { tier, sourceId: entry.sourceId, ...(similarity !== null ? { similarity } : {}) }
    }
  }

  /** Drop entries in every tier and on every gateway. */
  async purge (filter: PurgeFilter): Promise<{ shared: number, local: number }> {
    const local = this.local.purge(filter)
    const shared = await this.shared.purge(filter)
    return { shared, local }
  }

  async open (): Promise<void> {
    if (!this.deps.config.enabled) return
    await this.shared.listen({ purge: (f) => { this.local.purge(f) }, put: (e) => this.local.set({ ...e, pushed: true }) }).catch((err) => this.deps.log?.warn({ err: (err as Error).message }, 'cache purges from other gateways will not be heard'))
    this.pruneTimer = setInterval(() => {
      this.shared.prune(this.deps.config.sharedMaxBytes).catch((err) => this.deps.log?.warn({ err: (err as Error).message }, 'cache prune failed'))
    }, this.deps.config.pruneEveryMs)
    this.pruneTimer.unref()
  }

  async close (): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer)
    await this.hits.close()
    this.shared.close()
  }
}

/** A kept answer through an output guard, frame by frame: what passes, and whether the guard cut it. */
async function recheck (chunks: string[], guard: ReplayGuard): Promise<{ chunks: string[], cut: boolean }> {
  const out: string[] = []
  let cut = false
  guard.attach({ release: (text) => { if (text && !cut) out.push(text) }, cut: () => { cut = true } })
  for (const c of chunks) {
    const p = guard.pass(c)
    if (p.text) out.push(p.text)
    if (p.stop) cut = true
    if (cut) return { chunks: out, cut }
  }
  const f = await guard.flush()
  if (f.text) out.push(f.text)
  return { chunks: out, cut: cut || f.stop }
}

function lastUserText (messages: ChatMessage[]): string {
  return ([...messages].reverse().find((m) => m.role === 'user') ?? messages[messages.length - 1]!).content
}
