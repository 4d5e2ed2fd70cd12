import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { LocalMesh } from '../lib/localmesh.ts'
import { createNetNs } from '../../test/support/netns.ts'
import { GatewayConnection } from '../../shared/sdk/rpc-transport.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { whole, type ChaosMesh } from './faults.ts'
import type { LoadKey } from './load.ts'

// The mesh a chaos run faults: two gateways, three workers on this host and a fourth in its own
// network namespace (so its link can be cut), all on the synthetic backend at a steady speed, with
// its own embedded PostgreSQL (so it can be stopped), priced models, and three API keys: one with
// plenty of credit, one with a small key budget, one whose account has little credit left.

export const MAX_TOKENS = 24
const TOKENS_PER_SEC = '48'

export interface ChaosSetup extends ChaosMesh {
  pool: pg.Pool
  keys: LoadKey[]
  stop (): Promise<void>
  /** the last warnings and errors each service logged, one line each, prefixed with its name */
  warnings (): string[]
}

export async function startChaosMesh (log: (line: string) => void): Promise<ChaosSetup> {
  const made = createNetNs()
  if ('reason' in made) throw new Error(`chaos needs a network namespace to cut a worker's link, and this machine cannot make one: ${made.reason}`)
  const ns = made.ns
  const home = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'hyperinfer-chaos-'))
  const generous = { requestsPerHour: 1e6, userRequestsPerHour: 1e6, tokensPerHour: 1e9, tokensPerDay: 1e9 }
  const mesh = new LocalMesh({
    home,
    gateways: 2,
    workers: 3,
    publicHost: ns.hostIp,
    webPort: 0,
    metricsPort: 0,
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: {
        MODEL_PRICES: JSON.stringify({ synthetic: { input: 0, output: 1 } }),
        TIER_LIMITS: JSON.stringify({ default: generous, premium: generous }),
        STUCK_REQUEST_MS: '10000',
        SWEEP_INTERVAL_MS: '500',
        DRAIN_TIMEOUT_MS: '15000',
        WORKER_IDLE_TIMEOUT_MS: '5000'
      },
      inference: { SYNTHETIC_TOKENS_PER_SEC: TOKENS_PER_SEC }
    }
  })
  let pool: pg.Pool | null = null
  const stop = async () => {
    await pool?.end().catch(() => {}) // best effort: the run's results are taken already
    await mesh.stop()
    ns.destroy()
    fs.rmSync(home, { recursive: true, force: true })
  }
  try {
    log('starting the mesh: 2 gateways, 3 workers here, 1 in a network namespace, embedded PostgreSQL')
    await mesh.start()
    const netnsWorker = 'netns-worker'
    await mesh.spawn(netnsWorker, {
      HYPERINFER_HOME: home,
      HYPERINFER_BOOTSTRAP: mesh.bootstrapString,
      HYPERINFER_HOST: ns.nsIp,
      HYPERINFER_MESH_ALLOW: mesh.gatewayKeys.join(','),
      HYPERINFER_GATEWAYS: mesh.gatewayKeys.join(','),
      HYPERINFER_WORKER_TOKEN: mesh.workerToken,
      HYPERINFER_WORKER_NAME: netnsWorker,
      SYNTHETIC_TOKENS_PER_SEC: TOKENS_PER_SEC
    }, 'inference', 90_000, ['ip', 'netns', 'exec', ns.name])
    const c: ChaosMesh = { mesh, ns, netnsWorker, workers: new Set(['inference', 'inference-2', 'inference-3', netnsWorker]), log }
    await whole(c)
    pool = new pg.Pool({ connectionString: mesh.databaseUrl, max: 2 })
    pool.on('error', () => {}) // a connection the outage broke; the next query opens another
    const keys = await accounts(mesh)
    return { ...c, pool, keys, stop, warnings: () => serviceWarnings(path.join(home, 'logs')) }
  } catch (err) {
    await stop()
    throw err
  }
}

async function accounts (mesh: LocalMesh): Promise<LoadKey[]> {
  const conn = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
  try {
    const gw = await conn.open()
    const boss = (await login(gw, 'boss')).token
    const rich = await login(gw, 'rich' + crypto.randomBytes(3).toString('hex'))
    const poor = await login(gw, 'poor' + crypto.randomBytes(3).toString('hex'))
    // $1 per 1M completion tokens: a request of 24 tokens costs $0.000024
    await gw.call(GatewayProtocol.grantCredits, { token: boss, username: rich.name, amountUsd: 10 })
    await gw.call(GatewayProtocol.grantCredits, { token: boss, username: poor.name, amountUsd: 0.003 })
    const plenty = await gw.call(GatewayProtocol.createKey, { token: rich.token, name: 'plenty' })
    const budget = await gw.call(GatewayProtocol.createKey, { token: rich.token, name: 'budget', budgetUsd: 0.0012 })
    const little = await gw.call(GatewayProtocol.createKey, { token: poor.token, name: 'little' })
    return [{ name: 'plenty', key: plenty.key }, { name: 'budget', key: budget.key }, { name: 'little-credit', key: little.key }]
  } finally {
    await conn.close()
  }
}

async function login (gw: MeshClient, name: string): Promise<{ token: string, name: string }> {
  const password = 'chaos-' + crypto.randomBytes(8).toString('hex')
  await gw.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password }, 30_000)
  const { token } = await gw.call(GatewayProtocol.login, { email: `${name}@example.com`, password }, 30_000)
  return { token, name }
}

/** Each service log's last warnings and errors (pino level 40 and up), the message and error only. */
function serviceWarnings (dir: string, perService = 15): string[] {
  const out: string[] = []
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.log')).sort()) {
    const lines = fs.readFileSync(path.join(dir, file), 'utf8').split('\n').flatMap((l) => {
      try {
        const e = JSON.parse(l) as { level?: number, msg?: string, err?: unknown, code?: string }
        return (e.level ?? 0) >= 40 ? [`${file.replace(/\.log$/, '')}: ${e.msg ?? ''}${e.code ? ` [${e.code}]` : ''}${e.err ? ` (${typeof e.err === 'string' ? e.err : JSON.stringify(e.err).slice(0, 300)})` : ''}`] : []
      } catch { return [] }
    })
    out.push(...lines.slice(-perService))
  }
  return out
}
