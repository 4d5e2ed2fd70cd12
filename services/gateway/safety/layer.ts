import crypto from 'node:crypto'
import type pg from 'pg'
import { MeshError } from '../../../shared/errors.ts'
import type { Logger } from '../../../shared/log.ts'
import type { MeshClient } from '../../../shared/mesh/client.ts'
import type { HandlerBuilder } from '../../../shared/mesh/peer.ts'
import type { ServiceMetrics } from '../../../shared/metrics.ts'
import type { KeyIdentity, PublicUser } from '../../../shared/protocol/auth.ts'
import type { ChatMessage } from '../../../shared/protocol/inference.ts'
import { AuthSafetyProtocol, SafetyProtocol } from '../../../shared/protocol/safety.ts'
import type { InferResult } from '../../../shared/protocol/gateway.ts'
import type { WorkerDispatch } from '../dispatch.ts'
import type { ModelCandidate } from '../router.ts'
import { AnomalyDetector, type Alert } from './anomaly.ts'
import { AlertWebhook } from './webhook.ts'
import { SafetyEvents } from './events.ts'
import { ModerationModel } from './model-moderation.ts'
import { moderate } from './moderate.ts'
import { OutputGuard, type WindowModel } from './output-moderation.ts'
import { cutsOutput, effectivePolicy, type SafetyPolicy } from './policy.ts'
import { precheck, type Decision } from './precheck.ts'
import type { CancelSignal } from '../../../shared/mesh/cancel.ts'

// The safety layer as the gateway's request pipeline meets it: `admit` runs after the key is
// authenticated and before anything is held or routed (suspension, adaptive slowing, the anomaly
// score, the input pre-check and, when the mesh has one, the moderation model), and hands back the
// messages to send on and the guard that moderates the answer; `track` sees how the request ended,
// for the key's baseline. The methods of shared/protocol/safety.ts are answered here too.

export interface SafetyConfig {
  /** the policy of a key whose key and account set none */
  defaultPolicy: SafetyPolicy
  /** put redacted items back into the answer */
  restoreRedacted: boolean
  /** ask the mesh's moderation model (a model tagged `moderation`), when one is served: prompts under block, answers under block and redact */
  useModel: boolean
  /** the model on answers: characters per window, its verdict's timeout, what no verdict means, classifications at once */
  outputModel?: { window: number, timeoutMs: number, failClosed: boolean, maxInflight: number }
  anomaly: {
    threshold: number
    action: 'alert' | 'suspend'
    webhook: string | null
    /** signs the webhook's bodies (webhook.ts) */
    webhookSecret?: string | null
    webhookTimeoutMs?: number
    webhookAttempts?: number
  }
}

export const DEFAULT_OUTPUT_MODEL = { window: 400, timeoutMs: 5000, failClosed: false, maxInflight: 32 }

export interface SafetyDeps {
  config: SafetyConfig
  pool: pg.Pool | null
  metrics: ServiceMetrics
  log: Logger
  auth: () => MeshClient
  keys: { resolve (apiKey: string): Promise<KeyIdentity> }
  sessionUser: (token: string) => Promise<PublicUser>
  candidates: () => ModelCandidate[]
  dispatch: WorkerDispatch
  /** the configured kind of a mesh member's key (null: anyone else): only the web service may name an HTTP client */
  memberKind?: (remoteKey: string) => string | null
  /** the clock, ms (tests and benchmarks pass their own) */
  now?: () => number
}

/** What the pipeline gets back for a request that may go on. */
export interface RequestGuard {
  messages: ChatMessage[]
  /** whether `messages` differ from the request's (items were redacted) */
  changed: boolean
  output: OutputGuard | null
}

const REFUSED = new Set(['SAFETY_BLOCKED', 'RATE_LIMITED', 'QUOTA_EXCEEDED', 'INSUFFICIENT_CREDITS', 'BUDGET_EXCEEDED'])
const MAX_MODERATIONS_PER_KEY = 4

export class SafetyLayer {
  readonly events: SafetyEvents
  readonly anomaly: AnomalyDetector
  readonly moderation: ModerationModel
  private readonly deps: SafetyDeps
  private readonly now: () => number
  private readonly tracked = new WeakMap<object, { keyId: string }>()
  private readonly moderating = new Map<string, number>()
  private readonly webhook: AlertWebhook | null
  private readonly outputModel: NonNullable<SafetyConfig['outputModel']>
  /** the request whose anomaly check is running (alerts fire inside it) */
  private current: { id: string } | null = null

  constructor (deps: SafetyDeps) {
    this.deps = deps
    this.now = deps.now ?? Date.now
    this.events = new SafetyEvents(deps.pool, deps.metrics, deps.log)
    this.anomaly = new AnomalyDetector({ threshold: deps.config.anomaly.threshold, onAlert: (a) => this.alert(a) })
    this.outputModel = deps.config.outputModel ?? DEFAULT_OUTPUT_MODEL
    this.moderation = new ModerationModel(deps.candidates, deps.dispatch, this.outputModel.maxInflight)
    const a = deps.config.anomaly
    this.webhook = a.webhook
      ? new AlertWebhook({ url: a.webhook, secret: a.webhookSecret ?? null, timeoutMs: a.webhookTimeoutMs ?? 5000, attempts: a.webhookAttempts ?? 3, log: deps.log })
      : null
  }

  start (): void { this.events.start() }
  close (): Promise<void> { return this.events.close() }

  /** Whether `identity` may send this request on, and in what form; throws the refusal. */
  async admit (identity: KeyIdentity, req: { id: string, model: string, messages: ChatMessage[], caller: { signal: CancelSignal, remoteKey?: string }, clientIp?: string }): Promise<RequestGuard | null> {
    const { keyId, userId } = identity
    this.checkKey(identity)
    this.tracked.set(req.caller, { keyId })
    const now = this.now()
    const wait = this.anomaly.retryAfter(keyId, now)
    if (wait > 0) {
      this.events.record({ requestId: req.id, keyId, userId, stage: 'key', detector: 'anomaly', category: 'failures', action: 'slow' })
      throw MeshError.RATE_LIMITED(`this key's requests are being refused or failing in a burst; slowed down, retry in ${wait} s`, wait)
    }
    this.current = req
    try { this.anomaly.request(keyId, userId, this.sourceOf(req.caller.remoteKey, req.clientIp), req.model, now) } finally { this.current = null }
    const policy = effectivePolicy(identity.safety, identity.accountSafety, this.deps.config.defaultPolicy)
    if (policy === 'off') return null
    const pre = precheck(req.messages, policy)
    const decisions = [...pre.decisions]
    let blocked = pre.blocked
    // the model costs a round trip: it is asked where its verdict can refuse the request
    const model = !blocked && policy === 'block' && this.deps.config.useModel ? this.moderation.model() : null
    if (model) {
      const verdict = await this.moderation.classify(model, req.messages, req.caller.signal)
      for (const category of verdict?.categories ?? []) {
        const d: Decision = { detector: 'model', category, action: 'block' }
        decisions.push(d)
        if (d.action === 'block' && !blocked) blocked = d
      }
    }
    for (const d of decisions) this.events.record({ requestId: req.id, keyId, userId, stage: 'input', ...d })
    if (blocked) {
      this.anomaly.outcome(keyId, { tokens: 0, failed: false, refused: true }, this.now())
      const found = [...new Set(decisions.filter((d) => d.action === 'block').map((d) => d.category))]
      throw new MeshError('SAFETY_BLOCKED', `this key's safety policy refuses the prompt: it contains ${found.join(', ')}`, { categories: found })
    }
    const output = new OutputGuard({
      policy,
      restore: this.deps.config.restoreRedacted && pre.placeholders.size > 0 ? pre.placeholders : null,
      onFinding: (f) => this.events.record({ requestId: req.id, keyId, userId, stage: 'output', detector: f.detector, category: f.category, action: policy === 'flag' ? 'flag' : 'filter' }),
      model: this.answerModel(policy, pre.messages, req.caller.signal)
    })
    return { messages: pre.messages, changed: pre.placeholders.size > 0, output }
  }

  /** The guard for a replayed (cached) answer: the output checks of the policy in force now; null under off. */
  replayGuard (identity: KeyIdentity, req: { id: string, messages: ChatMessage[], signal: CancelSignal }): OutputGuard | null {
    const policy = effectivePolicy(identity.safety, identity.accountSafety, this.deps.config.defaultPolicy)
    if (policy === 'off') return null
    const { keyId, userId } = identity
    return new OutputGuard({
      policy,
      restore: null,
      onFinding: (f) => this.events.record({ requestId: req.id, keyId, userId, stage: 'output', detector: f.detector, category: f.category, action: policy === 'flag' ? 'flag' : 'filter' }),
      model: this.answerModel(policy, req.messages, req.signal)
    })
  }

  /** The moderation model judging answers under a policy that cuts them, when the mesh serves one. */
  private answerModel (policy: SafetyPolicy, prompt: ChatMessage[], signal: CancelSignal): WindowModel | null {
    if (!cutsOutput(policy) || !this.deps.config.useModel) return null
    const model = this.moderation.model()
    if (!model) return null
    const { window, timeoutMs, failClosed } = this.outputModel
    return {
      window,
      failClosed,
      classify: async (text) => {
        const v = await this.moderation.classifyAnswer(model, prompt, text, signal, timeoutMs)
        if (!v) this.deps.metrics.counter('ai_platform_safety_model_unavailable_total').inc({ stage: 'output' })
        return v ? v.categories : null
      }
    }
  }

  /** Where a request came from, for the anomaly baseline: the HTTP client's address when the mesh's web service relays it, else the calling peer. */
  private sourceOf (remoteKey: string | undefined, clientIp: string | undefined): string | null {
    if (clientIp && remoteKey && this.deps.memberKind?.(remoteKey) === 'web') return 'ip:' + clientIp
    return remoteKey ? 'peer:' + remoteKey : null
  }

  /** Refuse a key suspended pending review (every request that spends: inference, embeddings, moderation). */
  checkKey (identity: KeyIdentity): void {
    if (identity.suspendedAt) throw MeshError.FORBIDDEN('this API key is suspended pending an administrator\'s review')
  }

  /** Run one request, and tell the key's baseline how it ended. */
  async track<T extends Pick<InferResult, 'usage' | 'finishReason'>> (caller: object, run: () => Promise<T>): Promise<T> {
    try {
      const r = await run()
      this.ended(caller, { tokens: r.usage.promptTokens + r.usage.completionTokens, failed: false, refused: r.finishReason === 'content_filter' })
      return r
    } catch (err) {
      const code = err instanceof MeshError ? err.code : 'INTERNAL'
      // a safety refusal was counted where it was made
      if (code !== 'SAFETY_BLOCKED') this.ended(caller, { tokens: 0, failed: code === 'BAD_REQUEST' || code === 'PROMPT_TOO_LARGE', refused: REFUSED.has(code) })
      throw err
    }
  }

  private ended (caller: object, o: { tokens: number, failed: boolean, refused: boolean }): void {
    const t = this.tracked.get(caller)
    if (t) this.anomaly.outcome(t.keyId, o, this.now())
  }

  mount (table: HandlerBuilder): void {
    const auth = () => this.deps.auth()
    table
      .on(SafetyProtocol.setKeySafety, (req) => auth().call(AuthSafetyProtocol.setApiKeySafety, req, 15_000))
      .on(SafetyProtocol.accountSafety, (req) => auth().call(AuthSafetyProtocol.accountSafetyPolicy, req, 15_000))
      .on(SafetyProtocol.resumeKey, (req) => auth().call(AuthSafetyProtocol.resumeApiKey, req, 15_000))
      .on(SafetyProtocol.safetyEvents, async (req) => {
        const user = await this.deps.sessionUser(req.token)
        if (req.all && user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can read every account\'s safety events')
        return { events: await this.events.list({ userId: req.all ? null : user.id, keyId: req.keyId, limit: req.limit ?? 100 }) }
      })
      .on(SafetyProtocol.moderate, async (req, ctx) => {
        const identity = await this.deps.keys.resolve(req.apiKey)
        this.checkKey(identity)
        const open = this.moderating.get(identity.keyId) ?? 0
        if (open >= MAX_MODERATIONS_PER_KEY) throw MeshError.RATE_LIMITED(`at most ${MAX_MODERATIONS_PER_KEY} moderation requests at once per key`, 1)
        this.moderating.set(identity.keyId, open + 1)
        try {
          return await moderate(req, { model: this.deps.config.useModel ? this.moderation : null, signal: ctx.signal })
        } finally {
          const left = (this.moderating.get(identity.keyId) ?? 1) - 1
          if (left > 0) this.moderating.set(identity.keyId, left)
          else this.moderating.delete(identity.keyId)
        }
      })
  }

  /** A key scored over the threshold: count, record, report to auth (which suspends if asked), and call the webhook. */
  private alert (a: Alert): void {
    const { action } = this.deps.config.anomaly
    const requestId = this.current?.id ?? crypto.randomUUID()
    this.deps.metrics.counter('ai_platform_anomaly_alerts_total').inc({ action })
    this.events.record({ requestId, keyId: a.keyId, userId: a.userId, stage: 'key', detector: 'anomaly', category: 'traffic', action: action === 'suspend' ? 'suspend' : 'alert' })
    this.deps.log.warn({ keyId: a.keyId, score: a.score, signals: a.signals, action }, 'API key traffic is anomalous')
    const signals = Object.fromEntries(Object.entries(a.signals).map(([k, v]) => [k, Math.round(v * 100) / 100]))
    this.deps.auth().call(AuthSafetyProtocol.reportKeyAnomaly, { keyId: a.keyId, score: a.score, signals, suspend: action === 'suspend' }, 15_000)
      .catch((err) => this.deps.log.error({ keyId: a.keyId, err: (err as Error).message }, 'anomaly alert not recorded at auth'))
    void this.webhook?.send({ event: 'apikey.anomaly', keyId: a.keyId, userId: a.userId, score: a.score, signals, action, at: new Date(a.at).toISOString() })
  }
}
