import crypto from 'node:crypto'
import client from 'prom-client'
import { toWireError } from './errors.ts'
import type { HandlerTable } from './mesh/peer.ts'
import { METRICS, metricRow, type LabelOf, type MetricName, type MetricRow } from './metric-table.ts'

// One prom-client registry per service, holding the families of the metric table (shared/metric-table.ts)
// and nothing else but process metrics. The metrics service pulls this registry over RPC
// (CommonProtocol.metricsText) and adds `instance` to every sample.
//
// Recording goes through typed handles: `counter(name)`, `histogram(name)` and `gauge(name)` return the
// prom-client family (labels checked against the table row at compile time), made on first use if this
// service does not export it from the start. Gauges read at scrape time get a reader (`onScrape`).
// METRICS_DISABLED=1 (or METRICS_ENABLED=false) makes every handle a no-op and leaves the registry
// without process metrics: the switch the benchmark uses to measure what metrics cost. The families
// are still exported (at 0), so dashboards and alerts see the same series names either way.

export function metricsDisabled (env: NodeJS.ProcessEnv = process.env): boolean {
  const off = (v: string | undefined) => v !== undefined && /^(1|true|yes)$/i.test(v)
  const no = (v: string | undefined) => v !== undefined && /^(0|false|no)$/i.test(v)
  return off(env.METRICS_DISABLED) || no(env.METRICS_ENABLED)
}

/** Methods that are scraping itself, not traffic: never counted. */
const UNCOUNTED = new Set(['metricsText', 'serviceInfo'])

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
 * forgotten, so memory is bounded and the counts are exact up to that many users a day. A user seen
 * again within the same second is not hashed again (the hash costs microseconds on every request):
 * the ids of that second are held as they are until it ends.
 */
export class ActiveUsers {
  // hashed id → last seen (ms); re-inserted on every touch, so iteration order is oldest first
  private readonly lastSeen = new Map<string, number>()
  private readonly salt = crypto.randomBytes(16)
  /** the ids touched since `secondStarted`, so each is hashed once a second at most */
  private readonly thisSecond = new Set<string>()
  private secondStarted = 0
  private readonly maxTracked: number
  private readonly now: () => number

  constructor (opts: { maxTracked?: number, now?: () => number } = {}) {
    this.maxTracked = opts.maxTracked ?? 100_000
    this.now = opts.now ?? Date.now
  }

  touch (id: string): void {
    const now = this.now()
    if (now - this.secondStarted >= 1000 || this.thisSecond.size >= this.maxTracked) { this.thisSecond.clear(); this.secondStarted = now }
    if (this.thisSecond.has(id)) return
    this.thisSecond.add(id)
    const h = crypto.createHmac('sha256', this.salt).update(id).digest('base64url').slice(0, 16)
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

/**
 * What a caller may do with a family: record into it with every label of its row, nothing else (the
 * registry stays ours). A family without labels takes a bare value.
 */
type Labels<N extends MetricName> = Record<LabelOf<N>, string | number>
type Unlabelled<N extends MetricName, Bare, Labelled> = [LabelOf<N>] extends [never] ? Bare : Labelled
export type CounterOf<N extends MetricName<'counter'>> = Unlabelled<N, { inc (value?: number): void }, { inc (labels: Labels<N>, value?: number): void }>
export type HistogramOf<N extends MetricName<'histogram'>> = Unlabelled<N, { observe (value: number): void }, { observe (labels: Labels<N>, value: number): void }>
export type GaugeOf<N extends MetricName<'gauge'>> = Unlabelled<N, { set (value: number): void }, { set (labels: Labels<N>, value: number): void }>

/** Every handle when metrics are disabled. */
const NOOP = { inc () {}, observe () {}, set () {} }

type Reader = (gauge: client.Gauge<string>) => void

const ROWS: readonly MetricRow[] = METRICS

export class ServiceMetrics {
  readonly registry = new client.Registry()
  readonly enabled: boolean
  readonly service: string
  /** model label guard shared by every per-model family of this service */
  readonly models: BoundedLabel
  readonly activeUsers: ActiveUsers
  private readonly counters = new Map<string, client.Counter>()
  private readonly histograms = new Map<string, client.Histogram>()
  private readonly gauges = new Map<string, client.Gauge>()
  /** gauge name → what sets it at scrape time */
  private readonly readers = new Map<string, Reader>()
  private readonly running = new Map<number, { method: string, started: number }>() // start order
  private readonly methodsSeen = new Set<string>()
  private nextRun = 0

  constructor (service: string, opts: { env?: NodeJS.ProcessEnv, maxModels?: number } = {}) {
    const env = opts.env ?? process.env
    this.service = service
    this.enabled = !metricsDisabled(env)
    this.models = new BoundedLabel(opts.maxModels ?? (Number(env.METRICS_MAX_MODELS) || 50))
    this.activeUsers = new ActiveUsers({ maxTracked: Number(env.METRICS_MAX_ACTIVE_USERS) || 100_000 })
    this.registry.setDefaultLabels({ service })
    if (this.enabled) {
      client.collectDefaultMetrics({ register: this.registry })
      // gauges named *_total break the exposition-format lint (promtool); they are sums of the
      // per-type gauges nodejs_active_{handles,requests,resources}, which remain
      for (const n of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(n)
    }
    for (const row of ROWS) if (row.exportedBy === 'every') this.family(row)
    this.onScrape('ai_platform_requests_in_flight', (g) => {
      const n = new Map<string, number>()
      for (const r of this.running.values()) n.set(r.method, (n.get(r.method) ?? 0) + 1)
      for (const m of this.methodsSeen) g.set({ service, method: m }, n.get(m) ?? 0)
    })
    this.onScrape('ai_platform_oldest_request_age_seconds', (g) => {
      const first = this.running.values().next().value
      g.set({ service }, first ? (Date.now() - first.started) / 1000 : 0)
    })
    // no family made here: only services that export it, or that saw a user (userActive), have one
    this.reader('ai_platform_active_users', (g) => {
      for (const [w, n] of Object.entries(this.activeUsers.counts())) g.set({ service, time_window: w }, n)
    })
  }

  /** Make the families this service exports (idempotent); MeshService calls it on open. */
  ensureFamilies (): void {
    for (const row of ROWS) if (typeof row.exportedBy !== 'string' && row.exportedBy.includes(this.service)) this.family(row)
  }

  counter<N extends MetricName<'counter'>> (name: N): CounterOf<N> {
    return this.enabled ? this.counters.get(name) ?? this.counterFamily(metricRow(name)) : NOOP
  }

  histogram<N extends MetricName<'histogram'>> (name: N): HistogramOf<N> {
    return this.enabled ? this.histograms.get(name) ?? this.histogramFamily(metricRow(name)) : NOOP
  }

  gauge<N extends MetricName<'gauge'>> (name: N): GaugeOf<N> {
    return this.enabled ? this.gauges.get(name) ?? this.gaugeFamily(metricRow(name)) : NOOP
  }

  /** At every scrape, `read` sets the gauge `name` (made now if it is not yet). */
  onScrape<N extends MetricName<'gauge'>> (name: N, read: (gauge: GaugeOf<N>) => void): void {
    this.reader(name, read)
    this.gaugeFamily(metricRow(name))
  }

  private reader<N extends MetricName<'gauge'>> (name: N, read: (gauge: GaugeOf<N>) => void): void {
    this.readers.set(name, read)
  }

  /**
   * `value` into the family `name` the way its type records (counter: add, histogram: observe, gauge:
   * set), for callers that hold the name as data and have checked the labels against the row.
   */
  record (name: MetricName, labels: Record<string, string>, value: number): void {
    if (!this.enabled) return
    const row = metricRow(name)
    if (row.type === 'counter') this.counterFamily(row).inc(labels, value)
    else if (row.type === 'histogram') this.histogramFamily(row).observe(labels, value)
    else this.gaugeFamily(row).set(labels, value)
  }

  private family (row: MetricRow): void {
    if (row.type === 'counter') this.counterFamily(row)
    else if (row.type === 'histogram') this.histogramFamily(row)
    else this.gaugeFamily(row)
  }

  private options (row: MetricRow) {
    return { name: row.name, help: row.help, labelNames: row.labels ?? [], registers: [this.registry] }
  }

  private counterFamily (row: MetricRow): client.Counter {
    let c = this.counters.get(row.name)
    if (!c) this.counters.set(row.name, c = new client.Counter(this.options(row)))
    return c
  }

  private histogramFamily (row: MetricRow): client.Histogram {
    let h = this.histograms.get(row.name)
    if (!h) this.histograms.set(row.name, h = new client.Histogram({ ...this.options(row), ...(row.buckets && { buckets: [...row.buckets] }) }))
    return h
  }

  private gaugeFamily (row: MetricRow): client.Gauge {
    let g = this.gauges.get(row.name)
    if (!g) {
      const readers = this.readers
      g = new client.Gauge({ ...this.options(row), collect () { readers.get(row.name)?.(this) } })
      this.gauges.set(row.name, g)
    }
    return g
  }

  // the request machinery every service shares (MeshService wires it)

  /** A served request ended: count it and time it. */
  observeRequest (method: string, outcome: string, seconds: number): void {
    if (!this.enabled || method.startsWith('_') || UNCOUNTED.has(method)) return
    const status = outcome === 'ok' ? 'success' : outcome.toLowerCase()
    this.counter('ai_platform_requests_total').inc({ service: this.service, method, status })
    this.histogram('ai_platform_rpc_duration_seconds').observe({ service: this.service, method }, seconds)
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

  // the shared inference and user families, with their label bounds applied here (nothing is
  // computed when metrics are disabled)

  /** An inference request finished (any outcome), after `seconds`. */
  observeInference (model: string, seconds: number): void {
    if (!this.enabled) return
    this.histogram('ai_platform_request_duration_seconds').observe({ service: this.service, model: this.models.value(model) }, seconds)
  }

  observeTtft (model: string, seconds: number): void {
    if (this.enabled) this.histogram('ai_platform_time_to_first_token_seconds').observe({ model: this.models.value(model) }, seconds)
  }

  countTokens (model: string, tokensIn: number, tokensOut: number): void {
    if (!this.enabled) return
    const tokens = this.counter('ai_platform_tokens_total')
    const m = this.models.value(model)
    if (tokensIn > 0) tokens.inc({ model: m, direction: 'in' }, tokensIn)
    if (tokensOut > 0) tokens.inc({ model: m, direction: 'out' }, tokensOut)
  }

  /** A user did something: counted in the active-users gauge (hashed; the id is not kept). */
  userActive (userId: string): void {
    if (!this.enabled) return
    this.gauge('ai_platform_active_users') // set at scrape time from activeUsers
    this.activeUsers.touch(userId)
  }

  async text (): Promise<{ contentType: string, text: string }> {
    this.ensureFamilies()
    return { contentType: this.registry.contentType, text: await this.registry.metrics() }
  }
}
