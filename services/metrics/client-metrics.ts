import { MeshError } from '../../shared/errors.ts'
import type { LabelOf, MetricName } from '../../shared/metric-table.ts'

// What clients may push through MetricsProtocol.recordMetric: a few families of the metric table
// (shared/metric-table.ts), each with every allowed value of every label and the largest value taken,
// so nothing a client sends can grow the series count.

const STATUS = ['success', 'error', 'cancelled', 'timeout']

interface ClientMetricSpec<N extends MetricName> { labels: Record<LabelOf<N>, readonly string[]>, max: number }

/** The only metrics recordMetric accepts, with every allowed label value: series stay bounded. */
export const CLIENT_METRICS = {
  ai_platform_client_requests_total: { labels: { status: STATUS }, max: 1000 },
  ai_platform_client_latency_seconds: { labels: { status: STATUS }, max: 3600 },
  ai_platform_client_tokens_total: { labels: { direction: ['in', 'out'] }, max: 1_000_000 }
} satisfies { [N in MetricName]?: ClientMetricSpec<N> }

export type ClientMetric = keyof typeof CLIENT_METRICS

function isClientMetric (name: string): name is ClientMetric {
  return Object.hasOwn(CLIENT_METRICS, name)
}

/** The pushed sample if it is allowed; a BAD_REQUEST saying why not otherwise. */
export function checkClientMetric (req: { name: string, labels?: Record<string, string>, value: number }): { name: ClientMetric, labels: Record<string, string>, value: number } {
  const name = req.name
  if (!isClientMetric(name)) throw MeshError.BAD_REQUEST(`unknown metric '${name.slice(0, 100)}'`, { allowed: Object.keys(CLIENT_METRICS) })
  const spec = CLIENT_METRICS[name]
  if (req.value < 0 || req.value > spec.max) throw MeshError.BAD_REQUEST(`value for ${name} must be between 0 and ${spec.max}`)
  const labels = req.labels ?? {}
  for (const key of Object.keys(labels)) {
    if (!(key in spec.labels)) throw MeshError.BAD_REQUEST(`label '${key}' is not allowed on ${name}`, { allowed: Object.keys(spec.labels) })
  }
  for (const [key, allowed] of Object.entries(spec.labels)) {
    if (!allowed.includes(labels[key] ?? '')) throw MeshError.BAD_REQUEST(`label ${key} must be one of ${allowed.join(', ')}`)
  }
  return { name, labels, value: req.value }
}
