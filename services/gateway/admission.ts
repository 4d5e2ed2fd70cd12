import { MeshError } from '../../shared/errors.ts'
import type { ServiceMetrics } from '../../shared/metrics.ts'
import type { KeyIdentity } from '../../shared/protocol/auth.ts'
import type { AdmitRequest, AdmitResult } from './accounting.ts'
import { countersFor, describeCounter, toUsd, type Pricing, type TierLimits } from './limits.ts'

// The gate every request passes before any worker sees it, in the order the pipeline calls it:
// authenticate the key; permit: its scope, the model and the key's model list; then (once the
// prompt is counted) hold the request's worst case on every limit and on the credits, from this
// gateway's leased slices in memory (accounting.ts, leases.ts). Refusals are
// coded: FORBIDDEN, UNKNOWN_MODEL, RATE_LIMITED, QUOTA_EXCEEDED, INSUFFICIENT_CREDITS, BUDGET_EXCEEDED.

export interface AdmissionDeps {
  keys: { resolve (apiKey: string): Promise<KeyIdentity> }
  /** the models connected, approved workers serve now */
  served: { serves (model: string): boolean, modelIds (): string[] }
  /** null: accounting is off (benchmarks), so no limits, no credits and no request rows */
  accounting: { admit (req: AdmitRequest): Promise<AdmitResult> } | null
  pricing: Pricing
  tiers: Record<string, TierLimits>
  metrics: ServiceMetrics
  /** this gateway's public key, recorded with each request */
  gateway: string
  /** the model of a request that names none; else the first model served */
  defaultModel?: string
}

/** What one request asks to hold: its id and kind, and its worst case in tokens. */
export interface AdmissionTicket {
  id: string
  kind: 'chat' | 'embed'
  /** prompt tokens to hold (limits.ts measurePrompt) */
  promptHold: number
  completionTokens: number
  trace: string | null
  promptHash: string
}

export class Admission {
  private readonly deps: AdmissionDeps
  private readonly metrics: ServiceMetrics

  constructor (deps: AdmissionDeps) {
    this.deps = deps
    this.metrics = deps.metrics
  }

  /** The key's identity, or INVALID_API_KEY: a bad key is refused before anything else is done. */
  authenticate (apiKey: string): Promise<KeyIdentity> {
    return this.deps.keys.resolve(apiKey)
  }

  /** Whether a request that names no model gets the configured default rather than the first served. */
  get hasDefaultModel (): boolean { return !!this.deps.defaultModel }

  /**
   * Whether this key may run a request on `requested` (or the default model), and on which: its
   * scope, its model list and the models served. No limit is held yet, and nothing is counted.
   */
  permit (identity: KeyIdentity, requested: string | undefined): string {
    this.metrics.userActive(identity.userId)
    if (!identity.scopes.includes('inference')) throw MeshError.FORBIDDEN('this API key lacks the inference scope')
    const model = requested ?? this.defaultModel()
    if (identity.models && !identity.models.includes(model)) throw MeshError.FORBIDDEN(`this API key may not use '${model}' (allowed: ${identity.models.join(', ')})`)
    if (!this.deps.served.serves(model)) throw MeshError.UNKNOWN_MODEL(model, this.deps.served.modelIds())
    return model
  }

  /** Hold the request's worst case on every limit of the key and its user, and on the credits. */
  async hold (identity: KeyIdentity, model: string, r: AdmissionTicket): Promise<void> {
    const { accounting, pricing } = this.deps
    if (!accounting) return
    const holdIn = r.promptHold
    // the most any worker serving the model would charge: a retry may land on another one
    const credit = pricing.holdCost(model, holdIn, r.completionTokens)
    const now = new Date()
    const counters = countersFor({ keyId: identity.keyId, userId: identity.userId, keyTier: identity.tier, userTier: identity.userTier, budgetNusd: identity.budgetNusd },
      this.deps.tiers, { tokens: holdIn + r.completionTokens, nusd: credit }, now)
    const result = await accounting.admit({
      id: r.id, user: identity.userId, key: identity.keyId, model, kind: r.kind, promptHash: r.promptHash, trace: r.trace ?? r.id,
      gateway: this.deps.gateway, credit, at: now.toISOString(), counters
    })
    if (!result.ok) throw this.refusal(result)
  }

  private defaultModel (): string {
    const preferred = this.deps.defaultModel
    if (preferred) return preferred
    const ids = this.deps.served.modelIds()
    if (ids.length === 0) throw MeshError.NO_WORKER('no inference worker is connected')
    return ids[0]!
  }

  private refusal (r: Exclude<AdmitResult, { ok: true }>): MeshError {
    if (r.code === 'BAD_REQUEST') return MeshError.BAD_REQUEST('this request carries a value that cannot be recorded')
    const retryAfterSeconds = r.expires ? Math.max(1, Math.ceil((Date.parse(r.expires) - Date.now()) / 1000)) : null
    if (r.code === 'RATE_LIMITED') {
      this.metrics.counter('ai_platform_rate_limit_violations_total').inc({ service: this.metrics.service })
      return MeshError.RATE_LIMITED(`rate limit of ${r.cap} ${describeCounter(r.counter)} reached; retry in ${retryAfterSeconds} s`, retryAfterSeconds ?? 60, { limit: r.cap })
    }
    if (r.code === 'QUOTA_EXCEEDED') {
      this.metrics.counter('ai_platform_rate_limit_violations_total').inc({ service: this.metrics.service })
      return MeshError.LIMIT('QUOTA_EXCEEDED', `this request could use more than the ${r.cap - r.used} ${describeCounter(r.counter)} left (of ${r.cap}); lower maxTokens or retry in ${retryAfterSeconds} s`,
        { limit: r.cap, used: r.used, retryAfterSeconds })
    }
    if (r.code === 'BUDGET_EXCEEDED') {
      return MeshError.LIMIT('BUDGET_EXCEEDED', `this key's budget of $${toUsd(r.cap)} cannot cover this request's worst case; $${toUsd(r.cap - r.used)} left`, { budgetUsd: toUsd(r.cap), leftUsd: toUsd(r.cap - r.used) })
    }
    return MeshError.LIMIT('INSUFFICIENT_CREDITS', `your available credits ($${toUsd(r.cap - r.used)}) cannot cover this request's worst case ($${toUsd(r.need ?? 0)}); lower maxTokens or add credits`,
      { availableUsd: toUsd(r.cap - r.used), neededUsd: toUsd(r.need ?? 0) })
  }
}
