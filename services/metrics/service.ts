import http from 'node:http'
import type { AddressInfo } from 'node:net'
import client from 'prom-client'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { handlers, type HandlerTable } from '../../shared/mesh/peer.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import { MeshError } from '../../shared/errors.ts'
import { CommonProtocol } from '../../shared/protocol/common.ts'
import { MetricsProtocol, type ServiceHealth, type SystemHealth } from '../../shared/protocol/metrics.ts'

// One Prometheus endpoint for the whole mesh. At every scrape it asks each target for serviceInfo in
// parallel, each bounded by its own timeout, so a dead target shows as `ai_platform_up 0` and never
// fails or stalls the scrape. Clients may push a few client-side metrics, from a fixed allow-list.

export interface MetricsTarget { name: string, publicKey: string }

export interface MetricsServiceOptions extends Omit<MeshServiceOptions, 'name' | 'privateOnly'> {
  port: number
  host?: string
  targets: MetricsTarget[]
  /** per-target probe budget, ms */
  scrapeTimeoutMs?: number
}

const STATUS = ['success', 'error', 'cancelled', 'timeout']

interface ClientMetricSpec { type: 'counter' | 'histogram', help: string, labels: Record<string, string[]>, max: number, buckets?: number[] }

/** The only metrics recordMetric accepts, with every allowed label value: series stay bounded. */
export const CLIENT_METRICS: Record<string, ClientMetricSpec> = {
  ai_platform_client_requests_total: { type: 'counter', help: 'Requests made by clients, by outcome', labels: { status: STATUS }, max: 1000 },
  ai_platform_client_latency_seconds: {
    type: 'histogram', help: 'Request latency seen by clients', labels: { status: STATUS }, max: 3600,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
  },
  ai_platform_client_tokens_total: { type: 'counter', help: 'Tokens sent and received by clients', labels: { direction: ['in', 'out'] }, max: 1_000_000 }
}

interface Probe { target: MetricsTarget, instance: string, up: boolean, seconds: number, info: { version: string, uptimeSeconds: number } | null }

export class MetricsService extends MeshService {
  private readonly httpPort: number
  private readonly httpHost: string
  private readonly targets: MetricsTarget[]
  private readonly scrapeTimeoutMs: number
  private readonly conns = new Map<string, MeshClient>()
  private readonly clientMetrics = new Map<string, client.Counter | client.Histogram>()
  private server: http.Server | null = null
  private probing: Promise<Probe[]> | null = null

  constructor (opts: MetricsServiceOptions) {
    super({ ...opts, name: 'metrics', privateOnly: true })
    this.httpPort = opts.port
    this.httpHost = opts.host ?? '127.0.0.1'
    this.targets = opts.targets.map((t) => ({ name: t.name, publicKey: t.publicKey.toLowerCase() }))
    this.scrapeTimeoutMs = opts.scrapeTimeoutMs ?? 2000

    const registers = [this.metrics.registry]
    const self = this
    // both gauges refresh from one shared probe round per scrape (the registry collects in parallel)
    new client.Gauge({
      name: 'ai_platform_up',
      help: '1 if the target service answered serviceInfo within the scrape timeout',
      labelNames: ['target_service', 'instance'],
      registers,
      collect: async function (this: client.Gauge) { for (const p of await self.probe()) this.set(labelsOf(p), p.up ? 1 : 0) }
    })
    new client.Gauge({
      name: 'ai_platform_scrape_duration_seconds',
      help: 'Time the target took to answer serviceInfo (or the timeout)',
      labelNames: ['target_service', 'instance'],
      registers,
      collect: async function (this: client.Gauge) { for (const p of await self.probe()) this.set(labelsOf(p), p.seconds) }
    })
    for (const [name, spec] of Object.entries(CLIENT_METRICS)) {
      const labelNames = Object.keys(spec.labels)
      this.clientMetrics.set(name, spec.type === 'counter'
        ? new client.Counter({ name, help: spec.help, labelNames, registers })
        : new client.Histogram({ name, help: spec.help, labelNames, buckets: spec.buckets, registers }))
    }
  }

  get url (): string {
    const addr = this.server?.address() as AddressInfo | null
    if (!addr) throw new Error('metrics is not listening')
    return `http://${this.httpHost.includes(':') ? `[${this.httpHost}]` : this.httpHost}:${addr.port}`
  }

  protected handlers (): HandlerTable {
    return handlers()
      .on(MetricsProtocol.getMetrics, () => this.scrape())
      .on(MetricsProtocol.getSystemHealth, () => this.getSystemHealth())
      .on(MetricsProtocol.recordMetric, (req) => this.recordMetric(req))
      .table
  }

  protected async onOpen (): Promise<void> {
    for (const t of this.targets) this.conns.set(t.publicKey, this.connectTo(t.publicKey, { name: t.name }))
    const server = http.createServer((req, res) => { void this.serveHttp(req, res) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.httpPort, this.httpHost, () => { server.off('error', reject); resolve() })
    })
    this.server = server
  }

  protected async onClose (): Promise<void> {
    const server = this.server
    this.server = null
    if (!server) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  async scrape (): Promise<{ contentType: string, text: string }> {
    const registry = this.metrics.registry
    return { contentType: registry.contentType, text: await registry.metrics() }
  }

  async getSystemHealth (): Promise<SystemHealth> {
    const services: ServiceHealth[] = (await this.probe()).map((p) => ({
      name: p.target.name,
      publicKey: p.target.publicKey,
      up: p.up,
      latencyMs: Math.round(p.seconds * 1000),
      version: p.info?.version ?? null,
      uptimeSeconds: p.info?.uptimeSeconds ?? null
    }))
    return { status: services.every((s) => s.up) ? 'ok' : 'degraded', services }
  }

  recordMetric (req: RequestOf<typeof MetricsProtocol.recordMetric>): { recorded: true } {
    const spec = CLIENT_METRICS[req.name]
    const metric = this.clientMetrics.get(req.name)
    if (!spec || !metric) throw MeshError.BAD_REQUEST(`unknown metric '${req.name}'`, { allowed: Object.keys(CLIENT_METRICS) })
    if (req.value < 0 || req.value > spec.max) throw MeshError.BAD_REQUEST(`value for ${req.name} must be between 0 and ${spec.max}`)
    const labels = req.labels ?? {}
    for (const key of Object.keys(labels)) {
      if (!(key in spec.labels)) throw MeshError.BAD_REQUEST(`label '${key}' is not allowed on ${req.name}`)
    }
    for (const [key, allowed] of Object.entries(spec.labels)) {
      if (!allowed.includes(labels[key] ?? '')) throw MeshError.BAD_REQUEST(`label ${key} must be one of ${allowed.join(', ')}`)
    }
    if (metric instanceof client.Counter) metric.inc(labels, req.value)
    else metric.observe(labels, req.value)
    return { recorded: true }
  }

  /** Probe every target at once; concurrent callers share one round. */
  private probe (): Promise<Probe[]> {
    if (!this.probing) {
      this.probing = Promise.all(this.targets.map((t) => this.probeOne(t))).finally(() => { this.probing = null })
    }
    return this.probing
  }

  private async probeOne (target: MetricsTarget): Promise<Probe> {
    const started = process.hrtime.bigint()
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9
    const instance = target.publicKey.slice(0, 16)
    const conn = this.conns.get(target.publicKey)
    if (!conn) return { target, instance, up: false, seconds: 0, info: null }
    try {
      const info = await conn.call(CommonProtocol.serviceInfo, {}, this.scrapeTimeoutMs)
      return { target, instance, up: true, seconds: seconds(), info: { version: info.version, uptimeSeconds: info.uptimeSeconds } }
    } catch (err) {
      this.log.debug({ target: target.name, code: (err as MeshError).code }, 'probe failed')
      return { target, instance, up: false, seconds: seconds(), info: null }
    }
  }

  private async serveHttp (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'application/json', JSON.stringify({ error: 'method not allowed' }))
      if (path === '/metrics') {
        const { contentType, text } = await this.scrape()
        return send(res, 200, contentType, text)
      }
      if (path === '/health') return send(res, 200, 'application/json', JSON.stringify(await this.getSystemHealth()))
      send(res, 404, 'application/json', JSON.stringify({ error: 'not found' }))
    } catch (err) {
      this.log.error({ err, path }, 'http request failed')
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: 'internal error' }))
      else res.destroy()
    }
  }
}

function labelsOf (p: Probe) {
  return { target_service: p.target.name, instance: p.instance }
}

function send (res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}
