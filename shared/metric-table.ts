// Every metric family the mesh exports, one row each, in one table that every service, the metrics
// service and the alert rules (deploy/prometheus/alerts.yml) agree on. A new metric is a row here and
// the call that records it: `metrics.counter(name).inc(labels)`, `.histogram(name).observe(labels, v)`,
// `.gauge(name).set(labels, v)` or `.onScrape(name, read)` (shared/metrics.ts), which the compiler
// checks against the row's name, type and labels. Names, labels, help and buckets are what dashboards
// and alerts read: changing one is a migration for them, not a cleanup.
//
// Labels are bounded: service, method, status, model (through BoundedLabel), direction, backend,
// error code, time window; never user ids, key ids or prompts.
//
// `exportedBy` says where the family lives, so Prometheus sees a counter at 0 before its first
// increment (and increase() sees that increment):
//   'every'      every mesh service's registry, from construction
//   [services]   those services' registries, from open; any other service makes it on first use
//   'merge'      no registry: the metrics service adds it to each merged scrape

export interface MetricRow {
  readonly name: string
  readonly type: 'counter' | 'histogram' | 'gauge'
  readonly help: string
  readonly labels?: readonly string[]
  readonly buckets?: readonly number[]
  readonly exportedBy: 'every' | 'merge' | readonly string[]
}

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
const TTFT_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10]

// Row order is registration order, hence the order of families in a service's exposition.
export const METRICS = [
  // RPC traffic of every service (counted by MeshService, never the scrape methods themselves)
  {
    name: 'ai_platform_requests_total', type: 'counter', exportedBy: 'every', labels: ['service', 'method', 'status'],
    help: 'RPC requests served, by method and outcome (success or the lower-cased error code)'
  },
  {
    name: 'ai_platform_rpc_duration_seconds', type: 'histogram', exportedBy: 'every', labels: ['service', 'method'],
    help: 'Time to serve an RPC request', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120]
  },
  {
    name: 'ai_platform_requests_in_flight', type: 'gauge', exportedBy: 'every', labels: ['service', 'method'],
    help: 'RPC requests being served right now, by method'
  },
  {
    name: 'ai_platform_oldest_request_age_seconds', type: 'gauge', exportedBy: 'every', labels: ['service'],
    help: 'Age of the oldest RPC request still being served (0 when none): a stuck request keeps growing it'
  },

  // inference traffic, as the gateway and the worker each see it
  {
    name: 'ai_platform_request_duration_seconds', type: 'histogram', exportedBy: ['gateway', 'inference'], labels: ['service', 'model'],
    help: 'Inference request duration, by model (gateway: whole request; inference: on the worker)', buckets: DURATION_BUCKETS
  },
  {
    name: 'ai_platform_time_to_first_token_seconds', type: 'histogram', exportedBy: ['gateway', 'inference'], labels: ['model'],
    help: 'Time from dispatch to first token', buckets: TTFT_BUCKETS
  },
  {
    name: 'ai_platform_tokens_total', type: 'counter', exportedBy: ['gateway', 'inference'], labels: ['model', 'direction'],
    help: 'Tokens processed, by model and direction (in/out)'
  },
  {
    name: 'ai_platform_rate_limit_violations_total', type: 'counter', exportedBy: ['gateway'], labels: ['service'],
    help: 'Requests refused by the rate limiter'
  },

  // the safety layer (services/gateway/safety): every decision, and keys that behave strangely
  {
    name: 'ai_platform_safety_events_total', type: 'counter', exportedBy: ['gateway'], labels: ['detector', 'category', 'action'],
    help: 'Safety decisions, by detector, category and action (flag, redact, block, filter, slow, suspend)'
  },
  {
    name: 'ai_platform_anomaly_alerts_total', type: 'counter', exportedBy: ['gateway'], labels: ['action'],
    help: 'API keys whose traffic scored over the anomaly threshold, by what was done (alert or suspend)'
  },
  {
    name: 'ai_platform_safety_model_unavailable_total', type: 'counter', exportedBy: ['gateway'], labels: ['stage'],
    help: 'Windows of answers the moderation model gave no verdict on (busy, timed out, failed); SAFETY_MODEL_FAILURE says whether they passed'
  },
  // the response cache (services/gateway/cache/)
  {
    name: 'ai_platform_cache_requests_total', type: 'counter', exportedBy: ['gateway'], labels: ['tier', 'result'],
    help: 'Response cache lookups and writes, by tier (local, shared, semantic; none for requests not looked up) and result (hit, miss, store, bypass: no-store, skip: not deterministic)'
  },
  { name: 'ai_platform_cache_entries', type: 'gauge', exportedBy: ['gateway'], labels: ['tier'], help: 'Entries in the gateway\'s local response cache tier' },
  { name: 'ai_platform_cache_bytes', type: 'gauge', exportedBy: ['gateway'], labels: ['tier'], help: 'Bytes held by the gateway\'s local response cache tier' },
  { name: 'ai_platform_cache_warm_hits_total', type: 'counter', exportedBy: ['gateway'], help: 'Cache hits on entries written by predictive warm-up' },
  { name: 'ai_platform_cache_warm_requests_total', type: 'counter', exportedBy: ['gateway'], labels: ['status'], help: 'Requests predictive warm-up sent to workers, by outcome' },
  { name: 'ai_platform_cache_warm_tokens_total', type: 'counter', exportedBy: ['gateway'], help: 'Tokens (in and out) predictive warm-up spent' },

  // learned routing and demand (services/gateway/learned-router.ts, demand.ts)
  {
    name: 'ai_platform_router_decisions_total', type: 'counter', exportedBy: ['gateway'], labels: ['strategy', 'mode'],
    help: 'Models chosen by the router, by strategy and mode (exploit: the best estimate; explore: a posterior sample)'
  },
  { name: 'ai_platform_feedback_total', type: 'counter', exportedBy: ['gateway'], help: 'User feedback scores received' },
  {
    name: 'ai_platform_demand_forecast_requests_per_minute', type: 'gauge', exportedBy: ['gateway'], labels: ['model'],
    help: 'Forecast requests per minute for the next minutes (Holt\'s linear trend over per-minute counts), by model'
  },
  {
    name: 'ai_platform_model_capacity_requests_per_minute', type: 'gauge', exportedBy: ['gateway'], labels: ['model'],
    help: 'Requests per minute the connected workers can serve for a model: their capacity over its mean request duration'
  },

  // accounts
  { name: 'ai_platform_registrations_total', type: 'counter', exportedBy: ['auth'], help: 'User accounts created' },
  { name: 'ai_platform_api_keys_created_total', type: 'counter', exportedBy: ['auth'], help: 'API keys created' },
  {
    name: 'ai_platform_active_users', type: 'gauge', exportedBy: ['auth', 'gateway'], labels: ['service', 'time_window'],
    help: 'Distinct users seen in the time window (counted from salted hashes, never ids)'
  },

  // the worker
  {
    name: 'ai_platform_backend_errors_total', type: 'counter', exportedBy: ['inference'], labels: ['backend', 'code'],
    help: 'Failed backend calls on a worker, by backend and error code'
  },
  {
    name: 'ai_platform_worker_inflight', type: 'gauge', exportedBy: ['inference'], labels: ['model'],
    help: 'Requests this worker is running, by model'
  },
  {
    name: 'ai_platform_worker_capacity', type: 'gauge', exportedBy: ['inference'],
    help: 'Concurrent requests this worker announces it can run'
  },
  {
    name: 'ai_platform_worker_queue_depth', type: 'gauge', exportedBy: ['inference'],
    help: 'Requests beyond the announced capacity, waiting on the backend'
  },

  // pushed by clients through MetricsProtocol.recordMetric (allowed label values: services/metrics)
  {
    name: 'ai_platform_client_requests_total', type: 'counter', exportedBy: ['metrics'], labels: ['status'],
    help: 'Requests made by clients, by outcome'
  },
  {
    name: 'ai_platform_client_latency_seconds', type: 'histogram', exportedBy: ['metrics'], labels: ['status'],
    help: 'Request latency seen by clients', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
  },
  {
    name: 'ai_platform_client_tokens_total', type: 'counter', exportedBy: ['metrics'], labels: ['direction'],
    help: 'Tokens sent and received by clients'
  },

  // the metrics service's view of the mesh, added to every merged scrape
  {
    name: 'ai_platform_up', type: 'gauge', exportedBy: 'merge', labels: ['service', 'instance'],
    help: 'Whether the mesh member answered the metrics service within the scrape timeout (1) or not (0)'
  },
  {
    name: 'ai_platform_scrape_duration_seconds', type: 'gauge', exportedBy: 'merge', labels: ['service', 'instance'],
    help: 'Time the mesh member took to return its metrics (or the timeout)'
  },
  {
    name: 'ai_platform_gateway_workers_connected', type: 'gauge', exportedBy: 'merge', labels: ['service', 'instance'],
    help: 'Inference workers connected to the gateway, as the gateway reports them'
  },
  {
    name: 'ai_platform_mesh_scrape_seconds', type: 'gauge', exportedBy: 'merge', labels: ['service', 'instance'],
    help: 'Time the metrics service took to pull and merge every member'
  },
  {
    name: 'ai_platform_mesh_scrape_dropped_families', type: 'gauge', exportedBy: 'merge', labels: ['service', 'instance'],
    help: 'Families dropped in the last scrape because members disagreed on their type'
  }
] as const satisfies readonly MetricRow[]

type Row = (typeof METRICS)[number]
type Registered = Exclude<Row, { exportedBy: 'merge' }>

/** A family a service registry holds, optionally only those of one type. */
export type MetricName<T extends MetricRow['type'] = MetricRow['type']> = Extract<Registered, { type: T }>['name']
/** A family the metrics service adds to the merged scrape. */
export type MergedMetricName = Extract<Row, { exportedBy: 'merge' }>['name']
/** The label names of family N (never for a family without labels). */
export type LabelOf<N extends Row['name']> = Extract<Row, { name: N }> extends { labels: readonly (infer L extends string)[] } ? L : never

const BY_NAME: ReadonlyMap<string, MetricRow> = new Map(METRICS.map((r) => [r.name, r]))

export function metricRow (name: Row['name']): MetricRow {
  const row = BY_NAME.get(name)
  if (!row) throw new Error(`no metric row named ${name}`) // unreachable: the name type lists the rows
  return row
}
