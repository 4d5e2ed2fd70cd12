import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import createTestnet, { type Testnet } from 'hyperdht/testnet.js'
import { createPool, migrate } from '../../shared/db.ts'
import { startEmbeddedPostgres, freePort, loadPassword, type EmbeddedDatabase } from './embedded-pg.ts'
import { ensureAppRole } from './app-role.ts'
import { serviceKeyPair } from '../../shared/keys.ts'
import { readMeshFile, writeMeshFile, type MeshFile } from '../../shared/meshfile.ts'
import { loadSecret } from '../../shared/service-env.ts'
import { safeUrl } from '../../shared/log.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { GatewayConnection } from '../../shared/sdk/rpc-transport.ts'
import { entryArgs, PACKAGE_ROOT } from '../../shared/package.ts'

// A whole mesh on one machine, every service its own child process: a DHT bootstrapper on 127.0.0.1,
// PostgreSQL (DATABASE_URL, or embedded in the state dir), migrations, then auth, gateway, metrics,
// web and inference workers. Used by `npm start`, the end-to-end tests and the benchmark. Each child runs
// in the form this code runs in: compiled JS under `npm start`, see ../../shared/package.ts.

const SERVICES = ['auth', 'gateway', 'metrics', 'web'] as const

// How many DHT nodes the bootstrapper runs. A peer on another address (another machine, a network
// namespace) reaches a freshly started gateway by holepunching, and before punching each side asks
// up to four DHT nodes which address its new socket has: with fewer than three answers its NAT stays
// "unknown" and the gateway aborts the punch. The bootstrap node itself is in no peer's routing table,
// so three nodes left two to ask, and such a worker reached a restarted gateway only when its packets
// beat that abort (often after 20–90 s of attempts); six leave five.
const BOOTSTRAP_NODES = 6
type ServiceName = typeof SERVICES[number]

export interface LocalMeshOptions {
  home: string
  databaseUrl?: string
  webPort?: number
  metricsPort?: number
  dhtPort?: number
  /** address other machines reach this one at; the bootstrapper then binds all interfaces */
  publicHost?: string
  /** extra env for every child, and per service */
  env?: Record<string, string>
  serviceEnv?: Partial<Record<ServiceName | 'inference', Record<string, string>>>
  /** extra env for one instance by name (gateway-2, inference-3, …), after serviceEnv */
  instanceEnv?: Record<string, Record<string, string>>
  /** how many workers to start (default 1) */
  workers?: number
  /** how many gateways to start (default 1): gateway, gateway-2, …, sharing auth, database and workers */
  gateways?: number
  /** more mesh members: bare hex keys (operators' tools, e.g. a benchmark client) or `kind=key` */
  extraAllow?: string[]
  /** pipe child output to the console instead of log files */
  inheritLogs?: boolean
  onLog?: (line: string) => void
}

export interface ChildInfo { name: string, service: string, env: Record<string, string>, proc: ChildProcess, readyLine: string, publicKey: string, prefix: string[] }

export class LocalMesh {
  readonly opts: LocalMeshOptions
  readonly home: string
  testnet: Testnet | null = null
  db: EmbeddedDatabase | null = null
  /** the URL migrations run with (the embedded database's superuser, or DATABASE_URL as given) */
  databaseUrl = ''
  /** the URL the services connect with: the embedded database's app role, or DATABASE_URL as given */
  serviceDatabaseUrl = ''
  bootstrap: string[] = []
  readonly children = new Map<string, ChildInfo>()
  keys: Record<string, string> = {}
  workerToken = ''
  /** the model registry's key (written by the first gateway) */
  registryKey = ''
  webUrl: string | null = null
  metricsUrl: string | null = null
  private stopping: Promise<void> | null = null

  constructor (opts: LocalMeshOptions) {
    this.opts = opts
    this.home = path.resolve(opts.home)
  }

  get gatewayKey (): string { return this.keys.gateway! }
  get gatewayKeys (): string[] { return this.gatewayNames.map((n) => this.keys[n]!) }
  get gatewayNames (): string[] { return Array.from({ length: this.opts.gateways ?? 1 }, (_, i) => i === 0 ? 'gateway' : `gateway-${i + 1}`) }
  get bootstrapString (): string { return this.bootstrap.join(',') }

  private log (line: string): void { this.opts.onLog?.(line) }

  async start (): Promise<MeshFile> {
    fs.mkdirSync(path.join(this.home, 'logs'), { recursive: true, mode: 0o700 })
    const previous = readMeshFile(this.home)

    // the bootstrapper keeps its port across restarts when it can, so running workers find it again
    const prevPort = previous?.bootstrap[0] ? Number(previous.bootstrap[0].split(':').pop()) : 0
    const port = await freePort(this.opts.dhtPort ?? prevPort ?? 0)
    this.testnet = await createTestnet(BOOTSTRAP_NODES, { host: this.opts.publicHost ?? '127.0.0.1', port })
    this.bootstrap = this.testnet.bootstrap.map((b) => `${b.host}:${b.port}`)
    this.log(`DHT bootstrapper on ${this.bootstrap[0]}`)

    const workerNames = Array.from({ length: this.opts.workers ?? 1 }, (_, i) => i === 0 ? 'inference' : `inference-${i + 1}`)
    for (const name of [...SERVICES, ...this.gatewayNames, ...workerNames]) this.keys[name] = serviceKeyPair(this.home, name).publicKey.toString('hex')
    this.workerToken = loadSecret(this.home, 'worker-token').toString('hex')
    // every member by name, so each service knows which key is which (its role); extra entries as given
    const members = [...Object.entries(this.keys).map(([name, key]) => `${name}=${key}`), ...(this.opts.extraAllow ?? [])].join(',')

    const common: Record<string, string> = {
      HYPERINFER_HOME: this.home,
      HYPERINFER_BOOTSTRAP: this.bootstrapString,
      HYPERINFER_MESH_ALLOW: members,
      ...(this.opts.env ?? {})
    }
    const se = this.opts.serviceEnv ?? {}
    // Every process starts at once, so their code loads while PostgreSQL starts; what needs something
    // not there yet is started held (shared/run.ts) and told to go, with what it was waiting for, when
    // it is: auth and the first gateway once the database is migrated (its URL), the other gateways
    // once the first has written the model registry (its key), and the edges (web, metrics) once
    // those answer, so their first connections find their peers up. The workers go at once: they
    // reach the gateways when those arrive (their clients reconnect).
    const workers = Promise.all(workerNames.map((name) => this.spawn(name, {
      ...common, HYPERINFER_WORKER_NAME: name, HYPERINFER_GATEWAYS: this.gatewayKeys.join(','), ...se.inference, ...this.opts.instanceEnv?.[name]
    }, 'inference')))
    const database = this.openDatabase().then(() => ({ DATABASE_URL: this.serviceDatabaseUrl }))
    // the first gateway writes the model registry; the others follow it by its key
    const gatewayEnv = (name: string, extra: Record<string, string> = {}) => ({
      ...common, HYPERINFER_SERVICE_NAME: name, HYPERINFER_AUTH_KEY: this.keys.auth!, HYPERINFER_WORKER_TOKEN: this.workerToken, ...se.gateway,
      ...extra, ...this.opts.instanceEnv?.[name]
    })
    // the writer vouches for the other gateways in the registry, so workers that know only the network key serve them
    const replicas = this.gatewayNames.slice(1).map((n) => this.keys[n]!).join(',')
    const first = this.spawn('gateway', gatewayEnv('gateway', { HYPERINFER_REPLICA_GATEWAYS: replicas }), 'gateway', 60_000, [], database)
    const registry = first.then(async (gw) => {
      this.registryKey = /registry=([0-9a-f]{64})/.exec(gw.readyLine)?.[1] ?? ''
      return { ...await database, HYPERINFER_REGISTRY_KEY: this.registryKey, HYPERINFER_REGISTRY_FROM: this.keys.gateway! }
    })
    const others = this.gatewayNames.slice(1).map((name) => this.spawn(name, gatewayEnv(name), 'gateway', 60_000, [], registry))
    const core = Promise.all([this.spawn('auth', { ...common, ...se.auth }, 'auth', 60_000, [], database), first, ...others])
    const targets = Object.entries(this.keys).filter(([n]) => n !== 'metrics').map(([n, k]) => `${n}=${k}`).join(',')
    const webPort = this.opts.webPort ?? 3000
    const metricsPort = this.opts.metricsPort ?? 3004
    const coreUp = core.then(() => ({}))
    const edges = Promise.all([
      this.spawn('metrics', { ...common, METRICS_SERVICE_PORT: String(metricsPort), HYPERINFER_METRICS_TARGETS: targets, ...se.metrics }, 'metrics', 60_000, [], coreUp),
      this.spawn('web', { ...common, WEB_SERVICE_PORT: String(webPort), HYPERINFER_AUTH_KEY: this.keys.auth!, HYPERINFER_GATEWAY_KEY: this.keys.gateway!, HYPERINFER_GATEWAY_KEYS: this.gatewayKeys.slice(1).join(','), ...se.web }, 'web', 60_000, [], coreUp)
    ])
    const usable = core.then(() => Promise.all(this.gatewayKeys.map((key) => this.waitUsable(workerNames.length, key))))
    await Promise.all([workers, core, edges, usable])
    this.webUrl = /(https?:\/\/\S+)/.exec(this.children.get('web')!.readyLine)?.[1] ?? null
    this.metricsUrl = /(https?:\/\/\S+)/.exec(this.children.get('metrics')!.readyLine)?.[1] ?? null

    const mesh: MeshFile = {
      version: 1,
      bootstrap: this.bootstrap,
      services: { auth: this.keys.auth!, gateway: this.keys.gateway!, metrics: this.keys.metrics!, web: this.keys.web!, inference: workerNames.map((n) => this.keys[n]!) },
      web: this.webUrl,
      metrics: this.metricsUrl,
      startedAt: new Date().toISOString(),
      pid: process.pid
    }
    writeMeshFile(this.home, mesh)
    return mesh
  }

  /** PostgreSQL (DATABASE_URL, or embedded in the state dir), migrated, and the URL the services use. */
  private async openDatabase (): Promise<void> {
    if (this.opts.databaseUrl) {
      this.databaseUrl = this.opts.databaseUrl
      this.log(`PostgreSQL: ${safeUrl(this.databaseUrl)}`)
    } else {
      this.db = await startEmbeddedPostgres(path.join(this.home, 'pg'))
      this.databaseUrl = this.db.url
      this.log(`PostgreSQL: embedded, port ${this.db.port}, data in ${path.join(this.home, 'pg')}`)
    }
    const pool = createPool(this.databaseUrl, 1)
    try {
      const res = await migrate(pool)
      this.log(`migrations: ${res.applied.length} applied, ${res.skipped.length} already in place`)
    } finally {
      await pool.end()
    }
    // a DATABASE_URL given is the operator's choice of role; the embedded database gets its own app role
    this.serviceDatabaseUrl = this.db
      ? await ensureAppRole(this.databaseUrl, loadPassword(path.join(this.home, 'pg-app-password')))
      : this.databaseUrl
  }

  /**
   * Processes print their ready line once they listen; the mesh is usable once the gateway reaches
   * auth and every worker has registered. Ask the gateway itself, as a client would.
   */
  async waitUsable (workers: number, gateway = this.gatewayKey, timeoutMs = 45_000): Promise<void> {
    const conn = new GatewayConnection({ gateway, bootstrap: this.testnet!.bootstrap, connectTimeoutMs: 5000 })
    const deadline = Date.now() + timeoutMs
    let last = 'no answer from the gateway'
    try {
      while (Date.now() < deadline) {
        // not reachable yet (or no answer): poll again until the deadline, which reports `last`
        const h = await conn.open().then((client) => client.call(GatewayProtocol.getServiceHealth, {}, 5000)).catch(() => null)
        if (h) {
          if (h.auth === 'connected' && h.workerCount >= workers) return
          last = `auth ${h.auth}, ${h.workerCount}/${workers} workers registered`
        }
        await new Promise((r) => setTimeout(r, 100))
      }
      throw new Error(`the mesh did not become usable within ${timeoutMs / 1000} s (${last})`)
    } finally {
      await conn.close()
    }
  }

  /**
   * Start one service process and wait for its ready line; `prefix` runs it through a command (e.g.
   * `ip netns exec NAME`). With `late`, it starts held (shared/run.ts) and goes on with that env added
   * once `late` resolves; if `late` fails, the process is stopped and the start fails with its error.
   */
  async spawn (name: string, env: Record<string, string>, service = name, timeoutMs = 60_000, prefix: string[] = [], late?: Promise<Record<string, string>>): Promise<ChildInfo> {
    // a start that failed part-way is being stopped: what it would still start is not started
    if (this.stopping) throw new Error(`the mesh is stopping: ${name} not started`)
    const logFile = path.join(this.home, 'logs', `${name}.log`)
    const out = this.opts.inheritLogs ? null : fs.openSync(logFile, 'a')
    // NODE_ARGS in a child's env: node flags NODE_OPTIONS refuses (--cpu-prof, to profile one service)
    const nodeArgs = env.NODE_ARGS ? env.NODE_ARGS.split(' ').filter(Boolean) : []
    const [cmd, ...argv] = [...prefix, process.execPath, ...nodeArgs, ...entryArgs(`services/${service}/index`)]
    const proc = spawn(cmd!, argv, {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, ...env, ...(late ? { HYPERINFER_HELD: '1' } : {}) },
      // the IPC channel closes when this process dies, however it dies; the child then stops itself
      stdio: ['ignore', 'pipe', 'pipe', 'ipc']
    })
    const info: ChildInfo = { name, service, env, proc, readyLine: '', publicKey: this.keys[name] ?? '', prefix }
    this.children.set(name, info)
    let stderrTail = ''
    proc.stderr!.on('data', (d: Buffer) => {
      stderrTail = (stderrTail + d.toString()).slice(-2000)
      if (out !== null) fs.writeSync(out, d)
      else process.stderr.write(d)
    })
    return new Promise<ChildInfo>((resolve, reject) => {
      let buf = ''
      const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`${name} did not start within ${timeoutMs} ms`)) }, timeoutMs)
      late?.then((extra) => {
        // a restart starts it as it runs now, not held
        info.env = { ...env, ...extra }
        if (proc.connected) proc.send({ start: extra })
      }, (err: Error) => {
        clearTimeout(timer)
        proc.kill('SIGKILL')
        reject(err)
      })
      proc.stdout!.on('data', (d: Buffer) => {
        if (out !== null) fs.writeSync(out, d)
        if (info.readyLine) return
        buf += d.toString()
        const m = new RegExp(`^${service} ready .*$`, 'm').exec(buf)
        if (m) { info.readyLine = m[0]; clearTimeout(timer); resolve(info) }
      })
      // output can still arrive after 'exit': the log file closes once the pipes have ('close')
      proc.on('close', () => { if (out !== null) { try { fs.closeSync(out) } catch {} } }) // best effort: the descriptor is done with either way
      proc.on('exit', (code, signal) => {
        if (!info.readyLine) {
          clearTimeout(timer)
          reject(new Error(`${name} exited before it was ready (code ${code ?? signal}): ${stderrTail.trim().split('\n').slice(-3).join(' | ')}`))
        }
      })
    })
  }

  /** Start a stopped (or killed) service again, as it was started. */
  async restartChild (name: string): Promise<ChildInfo> {
    const c = this.children.get(name)
    if (!c) throw new Error(`no child named ${name}`)
    await this.stopChild(name)
    return this.spawn(name, c.env, c.service, 60_000, c.prefix)
  }

  /** The embedded PostgreSQL stopped (an outage), or started again on its port and data. */
  async stopDatabase (): Promise<void> {
    if (!this.db) throw new Error('the mesh uses DATABASE_URL: its database is not ours to stop')
    await this.db.stop()
  }

  async startDatabase (): Promise<void> {
    if (!this.db) throw new Error('the mesh uses DATABASE_URL: its database is not ours to start')
    this.db = await startEmbeddedPostgres(path.join(this.home, 'pg'), { port: this.db.port })
  }

  /** SIGTERM one service and wait for it to exit. */
  async stopChild (name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const c = this.children.get(name)
    if (!c || c.proc.exitCode !== null || c.proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => c.proc.once('exit', () => resolve()))
    c.proc.kill(signal)
    // a gateway drains its running requests first (DRAIN_TIMEOUT_MS, 20 s at most by default)
    const t = setTimeout(() => c.proc.kill('SIGKILL'), 35_000)
    await exited
    clearTimeout(t)
  }

  stop (): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop()
    return this.stopping
  }

  private async doStop (): Promise<void> {
    // workers and edges first, the gateway next (it flushes usage), auth last
    const order = [...this.children.keys()].sort((a, b) => rank(a) - rank(b))
    for (const name of order) await this.stopChild(name)
    // best effort: stop() tears down whatever it can; the children are gone already
    if (this.db) await this.db.stop().catch(() => {})
    if (this.testnet) await this.testnet.destroy().catch(() => {})
  }
}

function rank (name: string): number {
  if (name.startsWith('inference')) return 0
  if (name === 'web' || name === 'metrics') return 1
  if (name.startsWith('gateway')) return 2
  return 3
}
