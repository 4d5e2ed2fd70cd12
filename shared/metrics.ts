import client from 'prom-client'

// One prom-client registry per service, with the seed's metric names and bounded labels only
// (service, method, status code; never user ids, key ids or prompts).

export class ServiceMetrics {
  readonly registry = new client.Registry()
  readonly requests: client.Counter<'service' | 'method' | 'status'>
  readonly duration: client.Histogram<'service' | 'method'>
  private readonly service: string

  constructor (service: string) {
    this.service = service
    this.registry.setDefaultLabels({ service })
    client.collectDefaultMetrics({ register: this.registry })
    this.requests = new client.Counter({
      name: 'ai_platform_requests_total',
      help: 'RPC requests served, by method and outcome',
      labelNames: ['service', 'method', 'status'],
      registers: [this.registry]
    })
    this.duration = new client.Histogram({
      name: 'ai_platform_rpc_duration_seconds',
      help: 'Time to serve an RPC request',
      labelNames: ['service', 'method'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers: [this.registry]
    })
  }

  observeRequest (method: string, outcome: string, seconds: number): void {
    if (method.startsWith('_') || method === 'metricsText') return
    const status = outcome === 'ok' ? 'success' : outcome.toLowerCase()
    this.requests.inc({ service: this.service, method, status })
    this.duration.observe({ service: this.service, method }, seconds)
  }
}
