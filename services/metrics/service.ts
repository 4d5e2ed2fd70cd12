import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { handlers, type HandlerTable } from '../../shared/mesh/peer.ts'
import type { MethodDef, RequestOf } from '../../shared/mesh/method.ts'
import { MeshError } from '../../shared/errors.ts'
import { allowedHosts, hostAllowed, hostRefusal } from '../../shared/host-allow.ts'
import { CommonProtocol } from '../../shared/protocol/common.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { MetricsProtocol, type ServiceHealth, type SystemHealth } from '../../shared/protocol/metrics.ts'
import { metricRow, type LabelOf, type MergedMetricName } from '../../shared/metric-table.ts'
import { checkClientMetric } from './client-metrics.ts'
import { ExpositionMerger, parseExposition } from './exposition.ts'

// One Prometheus endpoint for the whole mesh. At every scrape it pulls each member's own registry over
// RPC (CommonProtocol.metricsText), all members at once and each bounded by the same timeout, and merges
// the expositions: one HELP/TYPE per family, `service` and `instance` on every sample. A member that
// does not answer in time shows as `ai_platform_up 0` and never fails or stalls the scrape.
//
// Members come from the configured targets (or, with none, the local mesh file) and from every
// gateway's worker list, so a worker that joined from another machine is scraped too.

export interface MetricsTarget {
  /** configured name: a service kind, optionally numbered (inference-2) */
  name: string
  publicKey: string
  /** the `instance` label; default: the first 16 hex characters of the key */
  instance?: string
}

export interface MetricsServiceOptions extends Omit<MeshServiceOptions, 'name' | 'privateOnly'> {
  port: number
  host?: string
  targets: MetricsTarget[]
  /** a mesh.json to read members from (re-read when it changes) */
  meshFile?: string
  /** per-target budget for one scrape, ms */
  scrapeTimeoutMs?: number
  /** ask gateways for their connected workers and scrape those too (default true) */
  discoverWorkers?: boolean
  /** a discovered worker that left every gateway's list is forgotten after this long (ms) */
  forgetAfterMs?: number
}

interface Target {
  name: string
  service: string
  instance: string
  publicKey: string
  conn: MeshClient
  source: 'configured' | 'discovered'
  /** discovered: when a gateway last listed it */
  listedAt: number
}

interface Pull { target: Target, up: boolean, seconds: number, text: string | null, error: string | null }

/** `inference-2` → `inference`: numbered instances of one kind share the service label. */
export function serviceOf (name: string): string {
  return name.replace(/-\d+$/, '')
}

export class MetricsService extends MeshService {
  private readonly httpPort: number
  private readonly httpHost: string
  /** Host names the HTTP server answers to */
  private readonly hosts: ReadonlySet<string>
  private readonly scrapeTimeoutMs: number
  private readonly discoverWorkers: boolean
  private readonly forgetAfterMs: number
  private readonly meshFile: string | null
  private meshFileMtime = 0
  private readonly initial: MetricsTarget[]
  private readonly targets = new Map<string, Target>() // by public key
  /** what each gateway last said about its workers: instance → count */
  private readonly gatewayWorkers = new Map<string, number>()
  private server: http.Server | null = null
  private round: Promise<string> | null = null
  private probing: Promise<ServiceHealth[]> | null = null

  constructor (opts: MetricsServiceOptions) {
    super({ ...opts, name: 'metrics', privateOnly: true })
    this.httpPort = opts.port
    this.httpHost = opts.host ?? '127.0.0.1'
    this.hosts = allowedHosts(this.httpHost)
    this.initial = opts.targets
    this.meshFile = opts.meshFile ?? null
    this.scrapeTimeoutMs = opts.scrapeTimeoutMs ?? 2000
    this.discoverWorkers = opts.discoverWorkers ?? true
    this.forgetAfterMs = opts.forgetAfterMs ?? 10 * 60_000
  }

  get url (): string {
    const addr = this.server?.address() as AddressInfo | null
    if (!addr) throw new Error('metrics is not listening')
    return `http://${this.httpHost.includes(':') ? `[${this.httpHost}]` : this.httpHost}:${addr.port}`
  }

  get instance (): string { return this.publicKey.slice(0, 16) }

  /** Every member scraped now: configured and discovered. */
  listTargets (): Array<Omit<Target, 'conn'>> {
    return [...this.targets.values()].map(({ conn: _conn, ...t }) => t)
  }

  protected handlers (): HandlerTable {
    return handlers()
      .on(MetricsProtocol.getMetrics, async () => ({ contentType: this.metrics.registry.contentType, text: await this.scrape() }))
      .on(MetricsProtocol.getSystemHealth, () => this.getSystemHealth())
      .on(MetricsProtocol.recordMetric, (req) => this.recordMetric(req))
      .table
  }

  protected async onOpen (): Promise<void> {
    for (const t of this.initial) this.addTarget(t.name, t.publicKey, 'configured', t.instance)
    this.readMeshFile()
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

  private addTarget (name: string, publicKey: string, source: Target['source'], instance?: string): Target | null {
    const key = publicKey.toLowerCase()
    if (key === this.publicKey) return null
    const existing = this.targets.get(key)
    if (existing) return existing
    const t: Target = {
      name, service: serviceOf(name), instance: instance ?? key.slice(0, 16), publicKey: key, source, listedAt: Date.now(),
      conn: this.connectTo(key, { name })
    }
    this.targets.set(key, t)
    this.log.info({ target: name, instance: t.instance, source }, 'scraping a new mesh member')
    return t
  }

  /** The local mesh file, when configured: its members become targets (re-read only when it changed). */
  private readMeshFile (): void {
    if (!this.meshFile) return
    try {
      const st = fs.statSync(this.meshFile)
      if (st.mtimeMs === this.meshFileMtime) return
      this.meshFileMtime = st.mtimeMs
      const mesh = JSON.parse(fs.readFileSync(this.meshFile, 'utf8')) as { services?: Record<string, string | string[]> }
      for (const [name, keys] of Object.entries(mesh.services ?? {})) {
        const list = Array.isArray(keys) ? keys : [keys]
        list.forEach((k, i) => {
          if (typeof k === 'string' && /^[0-9a-f]{64}$/i.test(k)) this.addTarget(i === 0 ? name : `${name}-${i + 1}`, k, 'configured')
        })
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT') this.log.warn({ code: code ?? 'PARSE' }, 'mesh file unreadable')
    }
  }

  /** One call bounded by the scrape timeout, whatever the connection is doing. */
  private async bounded<Res> (t: Target, def: MethodDef<any, Res, any>): Promise<{ ok: true, value: Res, seconds: number } | { ok: false, error: string, seconds: number }> {
    const started = process.hrtime.bigint()
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9
    let timer: NodeJS.Timeout | null = null
    try {
      const value = await Promise.race([
        t.conn.call(def, {}, this.scrapeTimeoutMs),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(MeshError.TIMEOUT(`no answer within ${this.scrapeTimeoutMs} ms`)), this.scrapeTimeoutMs) })
      ])
      return { ok: true, value, seconds: seconds() }
    } catch (err) {
      const code = err instanceof MeshError ? err.code : 'INTERNAL'
      this.log.debug({ target: t.name, code }, 'target did not answer')
      return { ok: false, error: code, seconds: seconds() }
    } finally {
      if (timer) clearTimeout(timer)
    }
  }

  private async pull (t: Target): Promise<Pull> {
    const r = await this.bounded(t, CommonProtocol.metricsText)
    return r.ok
      ? { target: t, up: true, seconds: r.seconds, text: r.value.text, error: null }
      : { target: t, up: false, seconds: r.seconds, text: null, error: r.error }
  }

  /** Ask each reachable gateway for its workers; new ones become targets (scraped from the next round). */
  private async discover (): Promise<void> {
    if (!this.discoverWorkers) return
    const gateways = [...this.targets.values()].filter((t) => t.service === 'gateway')
    const now = Date.now()
    await Promise.all(gateways.map(async (g) => {
      const r = await this.bounded(g, GatewayProtocol.getServiceHealth)
      if (!r.ok) { this.gatewayWorkers.delete(g.instance); return }
      this.gatewayWorkers.set(g.instance, r.value.workerCount)
      for (const w of r.value.workers ?? []) {
        const t = this.targets.get(w.publicKey.toLowerCase()) ?? this.addTarget('inference', w.publicKey, 'discovered')
        if (t) t.listedAt = now
      }
    }))
    for (const t of [...this.targets.values()]) {
      if (t.source === 'discovered' && now - t.listedAt > this.forgetAfterMs) {
        this.targets.delete(t.publicKey)
        void t.conn.close()
        this.log.info({ target: t.name, instance: t.instance }, 'forgot a worker no gateway lists any more')
      }
    }
  }

  /** The merged exposition of the whole mesh; concurrent scrapes share one round. */
  scrape (): Promise<string> {
    if (!this.round) this.round = this.doScrape().finally(() => { this.round = null })
    return this.round
  }

  private async doScrape (): Promise<string> {
    const started = process.hrtime.bigint()
    this.readMeshFile()
    const targets = [...this.targets.values()]
    const [pulls, own] = await Promise.all([
      Promise.all(targets.map((t) => this.pull(t))),
      this.metrics.registry.metrics(),
      this.discover()
    ])
    const merger = new ExpositionMerger()
    merger.addText(own, { service: 'metrics', instance: this.instance })
    for (const p of pulls) if (p.text !== null) merger.addText(p.text, { service: p.target.service, instance: p.target.instance })
    const labels = (p: Pull) => ({ service: p.target.service, instance: p.target.instance })
    const gauge = (name: MergedMetricName, samples: Array<{ labels: Record<LabelOf<MergedMetricName>, string>, value: number }>) =>
      merger.addGauge(name, metricRow(name).help, samples)
    gauge('ai_platform_up', [
      { labels: { service: 'metrics', instance: this.instance }, value: 1 },
      ...pulls.map((p) => ({ labels: labels(p), value: p.up ? 1 : 0 }))
    ])
    gauge('ai_platform_scrape_duration_seconds', [
      ...pulls.map((p) => ({ labels: labels(p), value: p.seconds }))
    ])
    if (this.discoverWorkers) {
      gauge('ai_platform_gateway_workers_connected', [
        ...[...this.gatewayWorkers].map(([instance, n]) => ({ labels: { service: 'gateway', instance }, value: n }))
      ])
    }
    gauge('ai_platform_mesh_scrape_seconds', [
      { labels: { service: 'metrics', instance: this.instance }, value: Number(process.hrtime.bigint() - started) / 1e9 }
    ])
    gauge('ai_platform_mesh_scrape_dropped_families', [
      { labels: { service: 'metrics', instance: this.instance }, value: merger.conflicts }
    ])
    if (merger.conflicts || merger.malformed) this.log.warn({ conflicts: merger.conflicts, malformed: merger.malformed }, 'some member metrics were dropped')
    return merger.render()
  }

  async getSystemHealth (): Promise<SystemHealth> {
    if (!this.probing) this.probing = this.probeAll().finally(() => { this.probing = null })
    const services = await this.probing
    const summary: SystemHealth['summary'] = {}
    for (const s of services) {
      const e = summary[s.service] ?? (summary[s.service] = { up: 0, total: 0 })
      e.total++
      if (s.up) e.up++
    }
    return { status: services.every((s) => s.up) ? 'ok' : 'degraded', checkedAt: new Date().toISOString(), summary, services }
  }

  private async probeAll (): Promise<ServiceHealth[]> {
    this.readMeshFile()
    return Promise.all([...this.targets.values()].map(async (t) => {
      const r = await this.bounded(t, CommonProtocol.serviceInfo)
      return {
        name: t.name, service: t.service, instance: t.instance, publicKey: t.publicKey, source: t.source,
        up: r.ok, latencyMs: Math.round(r.seconds * 1000),
        version: r.ok ? r.value.version : null, uptimeSeconds: r.ok ? r.value.uptimeSeconds : null, error: r.ok ? null : r.error
      }
    }))
  }

  recordMetric (req: RequestOf<typeof MetricsProtocol.recordMetric>): { recorded: true } {
    const { name, labels, value } = checkClientMetric(req)
    this.metrics.record(name, labels, value)
    return { recorded: true }
  }

  /** The merged metrics as JSON, optionally only families whose name starts with one of `prefixes`. */
  async metricsJson (prefixes: string[]): Promise<{ families: Array<{ name: string, type: string, help: string | null, samples: Array<{ name: string, labels: Record<string, string>, value: number }> }> }> {
    const { families } = parseExposition(await this.scrape())
    return {
      families: families.filter((f) => prefixes.length === 0 || prefixes.some((p) => f.name.startsWith(p))).map((f) => ({
        name: f.name,
        type: f.type,
        help: f.help,
        samples: f.samples.map((s) => ({ name: s.name, labels: Object.fromEntries(s.labels.map(([k, v]) => [k, unescapeLabel(v)])), value: Number(s.value) }))
      }))
    }
  }

  private async serveHttp (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    if (!hostAllowed(req.headers.host, this.hosts)) {
      return send(res, 421, 'application/json', JSON.stringify({ error: { code: 'HOST_NOT_ALLOWED', message: hostRefusal(req.headers.host) } }))
    }
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'application/json', JSON.stringify({ error: { code: 'METHOD_NOT_ALLOWED', message: 'use GET' } }))
      if (path === '/metrics') return send(res, 200, this.metrics.registry.contentType, await this.scrape())
      if (path === '/health' || path === '/api/health') {
        const h = await this.getSystemHealth()
        return send(res, 200, 'application/json', JSON.stringify(h))
      }
      if (path === '/api/metrics') {
        const prefixes = url.searchParams.getAll('name').flatMap((n) => n.split(',')).map((n) => n.trim()).filter(Boolean)
        return send(res, 200, 'application/json', JSON.stringify(await this.metricsJson(prefixes)))
      }
      if (path === '/api/targets') return send(res, 200, 'application/json', JSON.stringify({ targets: this.listTargets() }))
      send(res, 404, 'application/json', JSON.stringify({ error: { code: 'NOT_FOUND', message: 'try /metrics, /health, /api/metrics or /api/targets' } }))
    } catch (err) {
      this.log.error({ err, path }, 'http request failed')
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: { code: 'INTERNAL', message: 'internal error' } }))
      else res.destroy()
    }
  }
}

function unescapeLabel (v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => c === 'n' ? '\n' : c)
}

function send (res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}
