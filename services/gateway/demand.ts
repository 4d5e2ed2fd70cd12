import type { ServiceMetrics } from '../../shared/metrics.ts'
import type { WorkerSummary } from '../../shared/protocol/gateway.ts'

// Demand per model, and whether the workers can meet it. Every minute each model's request count
// feeds Holt's linear trend method (a level and a trend, each exponentially smoothed); the forecast
// `horizon` minutes ahead is exported with the capacity it compares to — the connected workers'
// concurrency over the model's mean request duration, in requests per minute — so the alert rule
// HyperinferDemandAboveCapacity (deploy/prometheus/alerts.yml) can tell operators to add workers
// before the queue grows.

export class Holt {
  level: number | null = null
  trend = 0
  constructor (readonly alpha = 0.5, readonly beta = 0.3) {}

  /** Take the next observation. */
  push (x: number): void {
    if (this.level === null) { this.level = x; return }
    const prev = this.level
    this.level = this.alpha * x + (1 - this.alpha) * (prev + this.trend)
    this.trend = this.beta * (this.level - prev) + (1 - this.beta) * this.trend
  }

  /** The forecast `h` steps ahead (never below 0). */
  forecast (h: number): number {
    return this.level === null ? 0 : Math.max(0, this.level + h * this.trend)
  }
}

export interface DemandOptions {
  metrics: ServiceMetrics
  /** the workers connected now, with their models and capacity */
  workers: () => WorkerSummary[]
  stepMs?: number
  /** minutes ahead */
  horizon?: number
}

export class DemandForecast {
  private readonly opts: DemandOptions
  private readonly models = new Map<string, { holt: Holt, count: number, meanSeconds: number | null }>()
  private timer: NodeJS.Timeout | null = null

  constructor (opts: DemandOptions) {
    this.opts = opts
    opts.metrics.onScrape('ai_platform_demand_forecast_requests_per_minute', (g) => {
      for (const [model, m] of this.models) g.set({ model: opts.metrics.models.value(model) }, this.forecast(model) ?? m.count)
    })
    opts.metrics.onScrape('ai_platform_model_capacity_requests_per_minute', (g) => {
      for (const [model, cap] of this.capacity()) g.set({ model: opts.metrics.models.value(model) }, cap)
    })
  }

  private model (id: string) {
    let m = this.models.get(id)
    if (!m) {
      if (this.models.size >= 1000) return null // model names come from workers: bounded
      this.models.set(id, m = { holt: new Holt(), count: 0, meanSeconds: null })
    }
    return m
  }

  /** A request for `model` ended after `seconds`. */
  record (model: string, seconds: number): void {
    const m = this.model(model)
    if (!m) return
    m.count++
    m.meanSeconds = m.meanSeconds === null ? seconds : 0.9 * m.meanSeconds + 0.1 * seconds
  }

  /** Close the current minute. */
  step (): void {
    for (const m of this.models.values()) { m.holt.push(m.count * 60_000 / (this.opts.stepMs ?? 60_000)); m.count = 0 }
  }

  /** Requests per minute forecast `horizon` minutes ahead; null before the first step. */
  forecast (model: string): number | null {
    const m = this.models.get(model)
    if (!m || m.holt.level === null) return null
    const steps = (this.opts.horizon ?? 5) * 60_000 / (this.opts.stepMs ?? 60_000)
    return Math.round(m.holt.forecast(steps) * 100) / 100
  }

  /** Requests per minute the connected workers can serve, per model (a model never measured: 1 s a request). */
  capacity (): Map<string, number> {
    const concurrency = new Map<string, number>()
    for (const w of this.opts.workers()) for (const id of w.models) concurrency.set(id, (concurrency.get(id) ?? 0) + w.capacity)
    const out = new Map<string, number>()
    for (const [id, c] of concurrency) out.set(id, Math.round(c * 60 / Math.max(0.001, this.models.get(id)?.meanSeconds ?? 1) * 100) / 100)
    return out
  }

  open (): void {
    this.timer = setInterval(() => this.step(), this.opts.stepMs ?? 60_000)
    this.timer.unref()
  }

  close (): void { if (this.timer) clearInterval(this.timer) }
}
