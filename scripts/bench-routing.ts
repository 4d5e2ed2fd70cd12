// What routing costs, on real parts: a real gateway process (LocalMesh: auth, gateway, PostgreSQL)
// and N inference workers (the real InferenceService with the synthetic backend, in this process,
// each with its own DHT node and key, all serving the same model):
//   (a) per-request latency (c=1) and throughput (c=50) through the gateway with 1, 10 and 100
//       registered workers: the routing decision (registry lookups, power-of-two choices, breaker)
//       is the only part that grows with N;
//   (b) time from a new worker's start to the first request routed to it (its own model, polled).
// Standalone: `npx tsx scripts/bench-routing.ts` (BENCH_SCALE=0.2 shortens it).
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalMesh } from './lib/localmesh.ts'
import { keyPairFromSeed } from '../shared/keys.ts'
import { createLogger } from '../shared/log.ts'
import { bootstrapList } from '../shared/config.ts'
import { GatewayConnection } from '../shared/sdk/rpc-transport.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { InferenceService } from '../services/inference/service.ts'
import { createBackends } from '../services/inference/backends/index.ts'
import { percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'


const load = runLoad

export async function benchRouting (scale: number): Promise<Row[]> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-routing-'))
  const maxWorkers = 100
  const seeds = Array.from({ length: maxWorkers + 5 }, () => crypto.randomBytes(32))
  const pairs = seeds.map(keyPairFromSeed)
  const mesh = new LocalMesh({
    home,
    databaseUrl: process.env.DATABASE_URL || undefined,
    webPort: 0,
    metricsPort: 0,
    workers: 1,
    extraAllow: pairs.map((p) => p.publicKey.toString('hex')),
    serviceEnv: {
      gateway: {
        LOG_LEVEL: 'warn',
        TIER_LIMITS: JSON.stringify(Object.fromEntries(['default', 'premium'].map((t) => [t, { requestsPerHour: 1e8, userRequestsPerHour: 1e8, tokensPerHour: 1e12, tokensPerDay: 1e12 }])))
      },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_MODELS: 'baseline' },
      auth: { LOG_LEVEL: 'warn' }
    }
  })
  const workers: InferenceService[] = []
  const log = createLogger('bench-worker', 'silent')
  const conn = { close: async () => {} } as { close: () => Promise<void> }
  const rows: Row[] = []
  try {
    await mesh.start()
    const bootstrap = bootstrapList(mesh.bootstrapString)
    const allow = [mesh.gatewayKey]
    const startWorker = async (i: number, model: string) => {
      const w = new InferenceService({
        keyPair: pairs[i]!, log, bootstrap, host: '127.0.0.1', allow,
        backends: await createBackends({ SYNTHETIC_MODELS: model }), gateways: [mesh.gatewayKey], capacity: 64
      })
      await w.open()
      workers.push(w)
      return w
    }
    const gw = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
    conn.close = () => gw.close()
    const client = await gw.open()
    const email = `bench-${Date.now()}@example.com`
    await client.call(GatewayProtocol.register, { username: 'bench' + Date.now(), email, password: 'bench password' })
    const { token } = await client.call(GatewayProtocol.login, { email, password: 'bench password' })
    const { key } = await client.call(GatewayProtocol.createKey, { token, name: 'bench' })
    const workersOf = async (model: string) => (await client.call(GatewayProtocol.models, {})).models.find((m) => m.id === model)?.workers ?? 0
    const infer = (i: number) => client.call(GatewayProtocol.infer, { apiKey: key, model: 'shared', prompt: `route ${i}`, maxTokens: 4 }, 30_000)

    const n1 = Math.max(100, Math.round(1000 * scale))
    const n50 = Math.max(500, Math.round(5000 * scale))
    for (const target of [1, 10, 100]) {
      while (workers.length < target) await startWorker(workers.length, 'shared')
      const deadline = Date.now() + 120_000
      while (await workersOf('shared') < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
      const registered = await workersOf('shared')
      await load(20, 400, infer) // warm
      const c1 = await load(1, n1, infer)
      const c50 = await load(50, n50, infer)
      rows.push({ bench: 'infer through the gateway', workers: registered, concurrency: 1, requests: n1, errors: c1.errors, 'p50 ms': c1.p50.toFixed(2), 'p99 ms': c1.p99.toFixed(2), 'req/s': c1.rps.toFixed(0) })
      rows.push({ bench: 'infer through the gateway', workers: registered, concurrency: 50, requests: n50, errors: c50.errors, 'p50 ms': c50.p50.toFixed(2), 'p99 ms': c50.p99.toFixed(2), 'req/s': c50.rps.toFixed(0) })
      console.log(`  ${registered} workers: c=1 p50 ${c1.p50.toFixed(2)} ms, c=50 ${c50.rps.toFixed(0)} req/s`)
    }

    // a new worker with its own model: start → first request routed to it
    const joins: number[] = []
    for (let j = 0; j < 5; j++) {
      const model = `fresh-${j}`
      const t0 = Date.now()
      await startWorker(maxWorkers + j, model)
      for (;;) {
        const ok = await client.call(GatewayProtocol.infer, { apiKey: key, model, prompt: 'hello', maxTokens: 1 }, 5000).then(() => true, () => false)
        if (ok) break
        if (Date.now() - t0 > 60_000) throw new Error('a new worker was not routed to within 60 s')
        await new Promise((r) => setTimeout(r, 10))
      }
      joins.push(Date.now() - t0)
    }
    joins.sort((a, b) => a - b)
    rows.push({ bench: 'new worker: start → first routed request', workers: workers.length, requests: joins.length, 'p50 ms': percentile(joins, 0.5).toFixed(0), 'p99 ms': joins[joins.length - 1]!.toFixed(0) })
  } finally {
    // best effort teardown: the mesh is stopped and its home removed next either way
    await conn.close().catch(() => {})
    await Promise.all(workers.map((w) => w.close().catch(() => {})))
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-routing', 'gateway latency and throughput with 1, 10 and 100 workers; time from worker start to first routed request', '4 tokens per request; synthetic backend at zero delay', benchRouting)
}
