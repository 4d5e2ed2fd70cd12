import { z } from 'zod'
import { method } from '../mesh/method.ts'

// The metrics service: pulls every mesh member's metrics over RPC and serves one Prometheus endpoint.
// Its methods are for operators' tools (bare keys on its members list); recordMetric accepts only a fixed allow-list of metric names and label
// values (see services/metrics/service.ts), so a caller can never grow the series count without bound.

export interface ServiceHealth {
  /** the target's configured name (e.g. inference-2), or its service for discovered workers */
  name: string
  /** what kind of member it is: auth, gateway, inference, web, … */
  service: string
  /** the `instance` label its samples carry: a configured name or the first 16 hex of its key */
  instance: string
  publicKey: string
  up: boolean
  latencyMs: number
  version: string | null
  uptimeSeconds: number | null
  /** the error code when it did not answer (TIMEOUT, UNAVAILABLE, FORBIDDEN: add the metrics key to its allow-list) */
  error: string | null
  /** how it was found: configured (targets / mesh file) or discovered (a gateway's worker list) */
  source: 'configured' | 'discovered'
}

export interface SystemHealth {
  status: 'ok' | 'degraded'
  checkedAt: string
  /** one line per service kind: how many of its members answered */
  summary: Record<string, { up: number, total: number }>
  services: ServiceHealth[]
}

export const recordMetricRequest = z.object({
  name: z.string().min(1).max(100),
  value: z.number().finite(),
  labels: z.record(z.string().max(50), z.string().max(50)).refine((l) => Object.keys(l).length <= 8, 'at most 8 labels').optional()
}).strict()

export const MetricsProtocol = {
  /** the merged exposition of the whole mesh, as served on GET /metrics */
  getMetrics: method<Record<string, never>, { contentType: string, text: string }>('getMetrics', { from: ['operator'] }, z.object({}).strict()),
  getSystemHealth: method<Record<string, never>, SystemHealth>('getSystemHealth', { from: ['operator'] }, z.object({}).strict()),
  recordMetric: method<z.infer<typeof recordMetricRequest>, { recorded: true }>('recordMetric', { from: ['operator'] }, recordMetricRequest)
}
