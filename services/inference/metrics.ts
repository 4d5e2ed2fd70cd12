import type { ServiceMetrics } from '../../shared/metrics.ts'

// What a worker records beyond the shared inference families (shared/metric-table.ts has the rows):
// its backends' failures and its load, with their labels bounded here.

export interface WorkerLoad { capacity: number, inflight: Map<string, number> | Record<string, number> }

/** A backend call failed: counted by backend and error code (anything not code-shaped is INTERNAL). */
export function countBackendError (metrics: ServiceMetrics, backend: string, code: string): void {
  if (!metrics.enabled) return
  metrics.counter('ai_platform_backend_errors_total').inc({ backend: backend.slice(0, 40), code: /^[A-Z_]{1,40}$/.test(code) ? code : 'INTERNAL' })
}

/** The worker gauges (in flight by model, capacity, queue depth), read from `load` at scrape time. */
export function trackWorkerLoad (metrics: ServiceMetrics, load: () => WorkerLoad): void {
  const entries = (l: WorkerLoad) => l.inflight instanceof Map ? [...l.inflight] : Object.entries(l.inflight)
  metrics.onScrape('ai_platform_worker_inflight', (g) => {
    for (const [model, n] of entries(load())) g.set({ model: metrics.models.value(model) }, n)
  })
  metrics.onScrape('ai_platform_worker_capacity', (g) => g.set(load().capacity))
  metrics.onScrape('ai_platform_worker_queue_depth', (g) => {
    const l = load()
    const total = entries(l).reduce((s, [, n]) => s + n, 0)
    g.set(Math.max(0, total - l.capacity))
  })
}
