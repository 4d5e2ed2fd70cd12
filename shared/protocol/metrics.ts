import { z } from 'zod'
import { method } from '../mesh/method.ts'

// The metrics service: scrapes every mesh service over RPC and serves one Prometheus endpoint. All
// methods are internal; recordMetric accepts only a fixed allow-list of metric names and label values
// (see services/metrics/service.ts), so a caller can never grow the series count without bound.

export interface ServiceHealth {
  name: string
  publicKey: string
  up: boolean
  latencyMs: number
  version: string | null
  uptimeSeconds: number | null
}

export interface SystemHealth { status: 'ok' | 'degraded', services: ServiceHealth[] }

export const recordMetricRequest = z.object({
  name: z.string().min(1).max(100),
  value: z.number().finite(),
  labels: z.record(z.string().max(50), z.string().max(50)).optional()
}).strict()

export const MetricsProtocol = {
  getMetrics: method<Record<string, never>, { contentType: string, text: string }>('getMetrics', 'internal', z.object({}).strict()),
  getSystemHealth: method<Record<string, never>, SystemHealth>('getSystemHealth', 'internal', z.object({}).strict()),
  recordMetric: method<z.infer<typeof recordMetricRequest>, { recorded: true }>('recordMetric', 'internal', recordMetricRequest)
}
