import { LRUCache } from 'lru-cache'
import type { Logger } from '../../../shared/log.ts'
import type { ServiceMetrics } from '../../../shared/metrics.ts'
import type { ChatMessage, Usage } from '../../../shared/protocol/inference.ts'
import { generationFields, isDeterministic } from './key.ts'
import type { CacheableRequest, ResponseCache, Tier } from './response-cache.ts'

// Predictive warm-up: the deterministic prompts asked most in the recent past are answered again
// before their entries expire, and at once when their model's registry entry changes (another
// backend model, say), so the next caller gets a hit instead of a wait. The operator's budget bounds
// it: at most `budgetTokensPerHour` tokens (prompt and completion) an hour, on the operator's account
// (nobody is billed). Only requests whose every field the gateway can replay are warmed.

/** generation fields warm-up knows how to send again; a request with any other is never warmed */
const REPLAYABLE = new Set(['maxTokens', 'temperature', 'stop'])

export interface WarmupOptions {
  /** 0: no warm-up */
  budgetTokensPerHour: number
  /** uses (decayed) before a prompt counts as hot */
  minUses?: number
  everyMs?: number
  /** how many prompts are tracked (the most recently used) */
  maxTracked?: number
}

export interface WarmRun { model: string, messages: ChatMessage[], params: Record<string, unknown> }
export interface WarmAnswer { id: string, chunks: string[], usage: Usage, finishReason: 'stop' | 'length' }

interface Hot { scope: string, key: string, model: string, messages: ChatMessage[], params: Record<string, unknown>, uses: number, at: number, due: boolean }

export class Warmup {
  private readonly hot: LRUCache<string, Hot>
  private readonly opts: Required<WarmupOptions>
  private readonly cache: ResponseCache
  private readonly run: (r: WarmRun) => Promise<WarmAnswer>
  private readonly metrics: ServiceMetrics
  private readonly log?: Logger
  private spent = { hour: 0, tokens: 0 }
  private timer: NodeJS.Timeout | null = null
  private running = false

  constructor (deps: { cache: ResponseCache, run: (r: WarmRun) => Promise<WarmAnswer>, metrics: ServiceMetrics, log?: Logger }, opts: WarmupOptions) {
    this.opts = { minUses: 3, everyMs: 30_000, maxTracked: 500, ...opts }
    this.hot = new LRUCache({ max: this.opts.maxTracked })
    this.cache = deps.cache
    this.run = deps.run
    this.metrics = deps.metrics
    this.log = deps.log
  }

  get enabled (): boolean { return this.opts.budgetTokensPerHour > 0 }

  /** A cacheable request went through: count a use of its prompt. */
  seen (c: { scope: string, key: string, model: string, messages: ChatMessage[], req: CacheableRequest, hit: Tier | null }): void {
    if (!this.enabled || !isDeterministic(c.req)) return
    const params = generationFields(c.req)
    if (!Object.keys(params).every((k) => REPLAYABLE.has(k))) return
    const id = c.scope + '\0' + c.key
    const now = Date.now()
    const h = this.hot.get(id)
    // uses decay with a half-life of ten warm-up rounds, so "hot" means recently hot
    if (h) { h.uses = h.uses * Math.pow(0.5, (now - h.at) / (10 * this.opts.everyMs)) + 1; h.at = now } else this.hot.set(id, { scope: c.scope, key: c.key, model: c.model, messages: c.messages, params, uses: 1, at: now, due: false })
  }

  /**
   * A model's registry entry changed at `at` (the registry's clock) in a way that changes its answers:
   * its entries made before then go, and its hot prompts are warmed again. Entries made since (by a
   * gateway that heard of the change sooner and warmed already) stay.
   */
  async modelChanged (model: string, at: number): Promise<void> {
    await this.cache.purge({ model, before: at }).catch((err) => this.log?.warn({ err: (err as Error).message, model }, 'could not purge a changed model\'s cache entries'))
    for (const h of this.hot.values()) if (h.model === model) h.due = true
    if (this.enabled) await this.round()
  }

  /** One round: refresh hot prompts whose entry is gone, due, or expires before the next round. */
  async round (): Promise<number> {
    if (this.running || !this.enabled) return 0
    this.running = true
    let warmed = 0
    try {
      const now = Date.now()
      const hotNow = [...this.hot.values()].filter((h) => h.due || h.uses * Math.pow(0.5, (now - h.at) / (10 * this.opts.everyMs)) >= this.opts.minUses)
        .sort((a, b) => b.uses - a.uses)
      for (const h of hotNow) {
        const entry = this.cache.local.get(h.scope, h.key)
        if (!h.due && entry && entry.expiresAt > now + 2 * this.opts.everyMs) continue
        const hour = Math.floor(Date.now() / 3_600_000)
        if (hour !== this.spent.hour) this.spent = { hour, tokens: 0 }
        // the next request may spend up to its own ceiling (or what its last answer took)
        const estimate = entry ? entry.usage.promptTokens + entry.usage.completionTokens : Number(h.params.maxTokens ?? 256) + 256
        if (this.spent.tokens + estimate > this.opts.budgetTokensPerHour) break
        try {
          const a = await this.run({ model: h.model, messages: h.messages, params: h.params })
          const spent = a.usage.promptTokens + a.usage.completionTokens
          this.spent.tokens += spent
          this.metrics.counter('ai_platform_cache_warm_tokens_total').inc(spent)
          this.metrics.counter('ai_platform_cache_warm_requests_total').inc({ status: 'success' })
          const t = Date.now()
          this.cache.put({
            scope: h.scope, key: h.key, model: h.model, chunks: a.chunks, usage: a.usage, finishReason: a.finishReason, sourceId: a.id,
            createdAt: t, expiresAt: t + this.cache.config.ttlMs, warm: true
          })
          h.due = false
          warmed++
        } catch (err) {
          this.metrics.counter('ai_platform_cache_warm_requests_total').inc({ status: 'failed' })
          this.log?.warn({ err: (err as Error).message, model: h.model }, 'warm-up request failed')
        }
      }
    } finally {
      this.running = false
    }
    return warmed
  }

  /** Tokens spent this hour, and the budget. */
  budget (): { spent: number, perHour: number } {
    return { spent: this.spent.hour === Math.floor(Date.now() / 3_600_000) ? this.spent.tokens : 0, perHour: this.opts.budgetTokensPerHour }
  }

  open (): void {
    if (!this.enabled) return
    this.timer = setInterval(() => { void this.round() }, this.opts.everyMs)
    this.timer.unref()
  }

  close (): void { if (this.timer) clearInterval(this.timer) }
}
