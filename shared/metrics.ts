import crypto from 'node:crypto'
import client from 'prom-client'
import { toWireError } from './errors.ts'
import type { HandlerTable } from './mesh/peer.ts'

// One prom-client registry per service, with the seed's metric names and bounded labels only
// (service, method, status, model, direction, backend, error code, time window; never user ids, key
// ids or prompts). The metrics service pulls this registry over RPC (CommonProtocol.metricsText) and
// adds `instance` to every sample.
//
// Families a service needs (PRESET below) are made when it opens (ensureFamilies), so a counter is
// exported at 0 before its first increment and Prometheus' increase() sees that increment; a family the
// service already registered itself under the same name is reused. Anything else is made on first use.
// METRICS_DISABLED=1 (or METRICS_ENABLED=false) turns every recording method into a no-op and leaves
// the registry without process metrics: the switch the benchmark uses to measure what metrics cost.

export function metricsDisabled (env: NodeJS.ProcessEnv = process.env): boolean {
  const off = (v: string | undefined) => v !== undefined && /^(1|true|yes)$/i.test(v)
  const no = (v: string | undefined) => v !== undefined && /^(0|false|no)$/i.test(v)
  return off(env.METRICS_DISABLED) || no(env.METRICS_ENABLED)
}

/** Methods that are scraping itself, not traffic: never counted. */
const UNCOUNTED = new Set(['metricsText', 'serviceInfo'])

export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
export const TTFT_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10]
export const ACTIVE_WINDOWS = { '5m': 5 * 60_000, '1h': 60 * 60_000, '24h': 24 * 60 * 60_000 } as const
export type ActiveWindow = keyof typeof ACTIVE_WINDOWS

/**
 * A label whose values come from outside (model names): the first `max` distinct values pass, later
 * new ones become 'other', so a worker announcing thousands of models cannot grow the series count.
 * Values that are too long or not printable ASCII are 'other' too.
 */
export class BoundedLabel {
  private readonly seen = new Set<string>()
  readonly max: number
  readonly fallback: string
  readonly maxLength: number

  constructor (max = 50, opts: { fallback?: string, maxLength?: number } = {}) {
    this.max = max
    this.fallback = opts.fallback ?? 'other'
    this.maxLength = opts.maxLength ?? 100
  }

  value (v: string | null | undefined): string {
    if (!v) return 'unknown'
    if (this.seen.has(v)) return v
    if (v.length > this.maxLength || !/^[\x21-\x7e]+$/.test(v) || this.seen.size >= this.max) return this.fallback
    this.seen.add(v)
    return v
  }

  get size (): number { return this.seen.size }
}

/**
 * Distinct users seen in the last 5 minutes, hour and day. Ids are kept only as a salted hash (the
 * salt never leaves the process), at most `maxTracked` of them: past that the least recently seen is
 * forgotten, so memory is bounded and the counts are exact up to that many users a day.
 */
export class ActiveUsers {
  // hashed id → last seen (ms); re-inserted on every touch, so iteration order is oldest first
  private readonly lastSeen = new Map<string, number>()
  private readonly salt = crypto.randomBytes(16)
  private readonly maxTracked: number
  private readonly now: () => number

  constructor (opts: { maxTracked?: number, now?: () => number } = {}) {
    this.maxTracked = opts.maxTracked ?? 100_000
    this.now = opts.now ?? Date.now
  }

  touch (id: string): void {
    const h = crypto.createHmac('sha256', this.salt).update(id).digest('base64url').slice(0, 16)
    const now = this.now()
    this.lastSeen.delete(h)
    this.lastSeen.set(h, now)
    this.prune(now)
    while (this.lastSeen.size > this.maxTracked) this.lastSeen.delete(this.lastSeen.keys().next().value!)
  }

  private prune (now: number): void {
    const cutoff = now - ACTIVE_WINDOWS['24h']
    for (const [h, at] of this.lastSeen) {
      if (at >= cutoff) break
      this.lastSeen.delete(h)
    }
  }

  counts (): Record<ActiveWindow, number> {
    const now = this.now()
    this.prune(now)
    const out = { '5m': 0, '1h': 0, '24h': this.lastSeen.size }
    for (const at of this.lastSeen.values()) {
      if (at >= now - ACTIVE_WINDOWS['1h']) out['1h']++
      if (at >= now - ACTIVE_WINDOWS['5m']) out['5m']++
    }
    return out
  }

  get tracked (): number { return this.lastSeen.size }
}

export interface WorkerLoad { capacity: number, inflight: Map<string, number> | Record<string, number> }

type Family = 'requestDuration' | 'ttft' | 'tokens' | 'rateLimitViolations' | 'activeUsers' | 'registrations' | 'keysCreated' | 'backendErrors' | 'worker'

/** What each service exports from its first scrape. */
const PRESET: Record<string, Family[]> = {
  auth: ['registrations', 'keysCreated', 'activeUsers'],
  gateway: ['requestDuration', 'ttft', 'tokens', 'rateLimitViolations', 'activeUsers'],
  inference: ['requestDuration', 'ttft', 'tokens', 'backendErrors', 'worker']
}

export class ServiceMetrics {
  readonly registry = new client.Registry()
  readonly enabled: boolean
  readonly requests: client.Counter<'service' | 'method' | 'status'>
  readonly duration: client.Histogram<'service' | 'method'>
  /** model label guard shared by every per-model family of this service */
  readonly models: BoundedLabel
  private readonly service: string
  private readonly running = new Map<number, { method: string, started: number }>() // start order
  private readonly methodsSeen = new Set<string>()
  private nextRun = 0
  private readonly made = new Map<Family, unknown>()
  private workerLoad: (() => WorkerLoad) | null = null

  constructor (service: string, opts: { env?: NodeJS.ProcessEnv, maxModels?: number } = {}) {
    const env = opts.env ?? process.env
    this.service = service
    this.enabled = !metricsDisabled(env)
    this.models = new BoundedLabel(opts.maxModels ?? (Number(env.METRICS_MAX_MODELS) || 50))
    this.registry.setDefaultLabels({ service })
    if (this.enabled) {
      client.collectDefaultMetrics({ register: this.registry })
      // gauges named *_total break the exposition-format lint (promtool); they are sums of the
      // per-type gauges nodejs_active_{handles,requests,resources}, which remain
      for (const n of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(n)
    }
    const registers = [this.registry]
    this.requests = new client.Counter({
      name: 'ai_platform_requests_total',
      help: 'RPC requests served, by method and outcome (success or the lower-cased error code)',
      labelNames: ['service', 'method', 'status'],
      registers
    })
    this.duration = new client.Histogram({
      name: 'ai_platform_rpc_duration_seconds',
      help: 'Time to serve an RPC request',
      labelNames: ['service', 'method'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers
    })
    const self = this
    new client.Gauge({
      name: 'ai_platform_requests_in_flight',
      help: 'RPC requests being served right now, by method',
      labelNames: ['service', 'method'],
      registers,
      collect (this: client.Gauge) {
        const n = new Map<string, number>()
        for (const r of self.running.values()) n.set(r.method, (n.get(r.method) ?? 0) + 1)
        for (const m of self.methodsSeen) this.set({ service, method: m }, n.get(m) ?? 0)
      }
    })
    new client.Gauge({
      name: 'ai_platform_oldest_request_age_seconds',
      help: 'Age of the oldest RPC request still being served (0 when none): a stuck request keeps growing it',
      labelNames: ['service'],
      registers,
      collect (this: client.Gauge) {
        const first = self.running.values().next().value
        this.set({ service }, first ? (Date.now() - first.started) / 1000 : 0)
      }
    })
  }

  /** Make this service's PRESET families (idempotent); MeshService calls it on open. */
  ensureFamilies (): void {
    for (const f of PRESET[this.service] ?? []) this.family(f)
  }

  /** A served request ended: count it and time it. */
  observeRequest (method: string, outcome: string, seconds: number): void {
    if (!this.enabled || method.startsWith('_') || UNCOUNTED.has(method)) return
    const status = outcome === 'ok' ? 'success' : outcome.toLowerCase()
    this.requests.inc({ service: this.service, method, status })
    this.duration.observe({ service: this.service, method }, seconds)
  }

  /** A served request started; call the result with its outcome ('ok' or an error code) when it ends. */
  begin (method: string, count = true): (outcome: string) => void {
    if (!this.enabled || method.startsWith('_') || UNCOUNTED.has(method)) return () => {}
    const id = this.nextRun++
    const started = Date.now()
    const t0 = process.hrtime.bigint()
    this.methodsSeen.add(method)
    this.running.set(id, { method, started })
    return (outcome) => {
      if (!this.running.delete(id)) return
      if (count) this.observeRequest(method, outcome, Number(process.hrtime.bigint() - t0) / 1e9)
    }
  }

  /**
   * The same handlers, tracked while they run (in-flight gauge, oldest-request age). With count, each
   * also counts and times itself: for handlers served on a connection this service dialled, where no
   * server-side observe hook sees them (a worker serving its gateway).
   */
  instrument (table: HandlerTable, opts: { count: boolean }): HandlerTable {
    if (!this.enabled) return table
    const out: HandlerTable = new Map()
    for (const [name, entry] of table) {
      out.set(name, {
        def: entry.def,
        fn: async (req, ctx) => {
          const end = this.begin(name, opts.count)
          try {
            const value = await entry.fn(req, ctx)
            end('ok')
            return value
          } catch (err) {
            end(toWireError(err).code)
            throw err
          }
        }
      })
    }
    return out
  }

  private family<T> (f: Family): T {
    let m = this.made.get(f)
    if (m) return m as T
    const registers = [this.registry]
    // reuse a family a service registered itself under the same name (the gateway's own counters)
    const existing = (name: string) => this.registry.getSingleMetric(name)
    const service = this.service
    const self = this
    switch (f) {
      case 'requestDuration':
        m = existing('ai_platform_request_duration_seconds') ?? new client.Histogram({
          name: 'ai_platform_request_duration_seconds',
          help: 'Inference request duration, by model (gateway: whole request; inference: on the worker)',
          labelNames: ['service', 'model'],
          buckets: DURATION_BUCKETS,
          registers
        })
        break
      case 'ttft':
        m = existing('ai_platform_time_to_first_token_seconds') ?? new client.Histogram({
          name: 'ai_platform_time_to_first_token_seconds', help: 'Time from dispatch to first token', labelNames: ['model'], buckets: TTFT_BUCKETS, registers
        })
        break
      case 'tokens':
        m = existing('ai_platform_tokens_total') ?? new client.Counter({
          name: 'ai_platform_tokens_total', help: 'Tokens processed, by model and direction (in/out)', labelNames: ['model', 'direction'], registers
        })
        break
      case 'rateLimitViolations':
        m = existing('ai_platform_rate_limit_violations_total') ?? new client.Counter({
          name: 'ai_platform_rate_limit_violations_total', help: 'Requests refused by the rate limiter', labelNames: ['service'], registers
        })
        break
      case 'registrations':
        m = new client.Counter({ name: 'ai_platform_registrations_total', help: 'User accounts created', registers })
        break
      case 'keysCreated':
        m = new client.Counter({ name: 'ai_platform_api_keys_created_total', help: 'API keys created', registers })
        break
      case 'backendErrors':
        m = new client.Counter({
          name: 'ai_platform_backend_errors_total', help: 'Failed backend calls on a worker, by backend and error code', labelNames: ['backend', 'code'], registers
        })
        break
      case 'activeUsers': {
        const users = new ActiveUsers({ maxTracked: Number(process.env.METRICS_MAX_ACTIVE_USERS) || 100_000 })
        new client.Gauge({
          name: 'ai_platform_active_users',
          help: 'Distinct users seen in the time window (counted from salted hashes, never ids)',
          labelNames: ['service', 'time_window'],
          registers,
          collect (this: client.Gauge) {
            for (const [w, n] of Object.entries(users.counts())) this.set({ service, time_window: w }, n)
          }
        })
        m = users
        break
      }
      case 'worker': {
        const load = () => self.workerLoad?.() ?? { capacity: 0, inflight: {} }
        const entries = (l: WorkerLoad) => l.inflight instanceof Map ? [...l.inflight] : Object.entries(l.inflight)
        new client.Gauge({
          name: 'ai_platform_worker_inflight', help: 'Requests this worker is running, by model', labelNames: ['model'], registers,
          collect (this: client.Gauge) { for (const [model, n] of entries(load())) this.set({ model: self.models.value(model) }, n) }
        })
        new client.Gauge({
          name: 'ai_platform_worker_capacity', help: 'Concurrent requests this worker announces it can run', registers,
          collect (this: client.Gauge) { this.set(load().capacity) }
        })
        new client.Gauge({
          name: 'ai_platform_worker_queue_depth', help: 'Requests beyond the announced capacity, waiting on the backend', registers,
          collect (this: client.Gauge) {
            const l = load()
            const total = entries(l).reduce((s, [, n]) => s + n, 0)
            this.set(Math.max(0, total - l.capacity))
          }
        })
        m = true
        break
      }
    }
    this.made.set(f, m)
    return m as T
  }

  // families, made on first use (or at construction, per PRESET)
  get requestDuration (): client.Histogram<'service' | 'model'> { return this.family('requestDuration') }
  get ttft (): client.Histogram<'model'> { return this.family('ttft') }
  get tokens (): client.Counter<'model' | 'direction'> { return this.family('tokens') }
  get rateLimitViolations (): client.Counter<'service'> { return this.family('rateLimitViolations') }
  get registrations (): client.Counter { return this.family('registrations') }
  get keysCreated (): client.Counter { return this.family('keysCreated') }
  get backendErrors (): client.Counter<'backend' | 'code'> { return this.family('backendErrors') }
  get activeUsers (): ActiveUsers { return this.family('activeUsers') }

  // recording helpers: bounded labels applied here, no-ops when metrics are disabled

  /** An inference request finished (any outcome), after `seconds`. */
  observeInference (model: string, seconds: number): void {
    if (!this.enabled) return
    this.requestDuration.observe({ service: this.service, model: this.models.value(model) }, seconds)
  }

  observeTtft (model: string, seconds: number): void {
    if (this.enabled) this.ttft.observe({ model: this.models.value(model) }, seconds)
  }

  countTokens (model: string, tokensIn: number, tokensOut: number): void {
    if (!this.enabled) return
    const m = this.models.value(model)
    if (tokensIn > 0) this.tokens.inc({ model: m, direction: 'in' }, tokensIn)
    if (tokensOut > 0) this.tokens.inc({ model: m, direction: 'out' }, tokensOut)
  }

  rateLimited (): void {
    if (this.enabled) this.rateLimitViolations.inc({ service: this.service })
  }

  /** A user did something: counted in the active-users gauge (hashed; the id is not kept). */
  userActive (userId: string): void {
    if (this.enabled) this.activeUsers.touch(userId)
  }

  registered (): void { if (this.enabled) this.registrations.inc() }
  keyCreated (): void { if (this.enabled) this.keysCreated.inc() }

  backendError (backend: string, code: string): void {
    if (this.enabled) this.backendErrors.inc({ backend: backend.slice(0, 40), code: /^[A-Z_]{1,40}$/.test(code) ? code : 'INTERNAL' })
  }

  /** Where the worker gauges read from at scrape time. */
  trackWorkerLoad (load: () => WorkerLoad): void {
    this.workerLoad = load
    this.family('worker')
  }

  async text (): Promise<{ contentType: string, text: string }> {
    this.ensureFamilies()
    return { contentType: this.registry.contentType, text: await this.registry.metrics() }
  }
}
