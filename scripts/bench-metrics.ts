// What metrics cost, measured on real parts:
//   (a) scrape time of the metrics service's /metrics with 1 and 20 mesh members (members are real
//       MeshServices on a local DHT, in this process, each with the worker's metric families and some
//       traffic counted), and with the 4 processes + worker of a real mesh;
//   (b) requests per second through the gateway (API key, rate limit, usage recording, streamed
//       synthetic tokens at zero delay) with metrics on, and with METRICS_DISABLED=1 on every process.
// Standalone: `npx tsx scripts/bench-metrics.ts` (BENCH_SCALE=0.2 shortens it) prints a table.
// scripts/bench.ts can import benchMetrics(scale) and print/write the rows with its own.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { LocalMesh } from './lib/localmesh.ts'
import { startEmbeddedPostgres, type EmbeddedDatabase } from './lib/embedded-pg.ts'
import { localTestnet } from '../test/support/testnet.ts'
import { MeshService } from '../shared/mesh/service.ts'
import { handlers, type HandlerTable } from '../shared/mesh/peer.ts'
import { method } from '../shared/mesh/method.ts'
import { keyPairFromSeed } from '../shared/keys.ts'
import { createLogger } from '../shared/log.ts'
import { GatewayConnection } from '../shared/sdk/rpc-transport.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { MetricsService } from '../services/metrics/service.ts'
import { percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'


const ping = method<{ i: number }, { ok: true }>('ping', { from: ['stranger'] }, z.object({ i: z.number() }).strict())
class Member extends MeshService {
  protected handlers (): HandlerTable { return handlers().on(ping, () => ({ ok: true as const })).table }
}


async function timeScrapes (url: string, n: number): Promise<{ p50: number, p99: number, bytes: number, samples: number, families: number }> {
  const ms: number[] = []
  let text = ''
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    const res = await fetch(url)
    text = await res.text()
    if (res.status !== 200) throw new Error(`scrape answered ${res.status}`)
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  ms.sort((a, b) => a - b)
  const lines = text.split('\n')
  return {
    p50: ms.length ? percentile(ms, 0.5) : NaN,
    p99: percentile(ms, 0.99),
    bytes: Buffer.byteLength(text),
    samples: lines.filter((l) => l && !l.startsWith('#')).length,
    families: lines.filter((l) => l.startsWith('# TYPE ')).length
  }
}

/** Scrape until `members` members (besides the metrics service) report up 1: connections are made. */
async function waitAllUp (url: string, members: number): Promise<void> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const text = await (await fetch(url)).text()
    const ups = text.split('\n').filter((l) => l.startsWith('ai_platform_up{') && !l.includes('service="metrics"'))
    if (ups.length === members && ups.every((l) => l.endsWith(' 1'))) return
    if (Date.now() > deadline) throw new Error(`not all ${members} members answered the metrics service`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** (a) in-process members on a local DHT, scraped through a real MetricsService over HTTP. */
async function scrapeBench (members: number, scrapes: number): Promise<Row> {
  const log = createLogger('bench', 'silent')
  const { testnet, bootstrap } = await localTestnet(3)
  const metricsKp = keyPairFromSeed(crypto.randomBytes(32))
  const callerKp = keyPairFromSeed(crypto.randomBytes(32))
  const allow = ['metrics=' + metricsKp.publicKey.toString('hex')]
  const list: Member[] = []
  let metrics: MetricsService | null = null
  const caller = new Member({ name: 'caller', keyPair: callerKp, log, bootstrap })
  try {
    for (let i = 0; i < members; i++) {
      const m = new Member({ name: 'inference', keyPair: keyPairFromSeed(crypto.randomBytes(32)), log, bootstrap, allow })
      await m.open()
      list.push(m)
    }
    await caller.open()
    // some traffic on every member, so each registry has real samples in its histograms
    await Promise.all(list.map(async (m) => {
      const c = caller.connectTo(m.publicKey, { name: 'm' })
      for (let i = 0; i < 20; i++) await c.call(ping, { i }, 10_000)
    }))
    metrics = new MetricsService({
      keyPair: metricsKp, log, bootstrap, allow: [], port: 0, scrapeTimeoutMs: 5000,
      targets: list.map((m, i) => ({ name: `inference-${i + 1}`, publicKey: m.publicKey }))
    })
    await metrics.open()
    await waitAllUp(metrics.url + '/metrics', members)
    await timeScrapes(metrics.url + '/metrics', 5)
    const r = await timeScrapes(metrics.url + '/metrics', scrapes)
    return { bench: 'scrape /metrics', setup: `${members} member${members === 1 ? '' : 's'} (in-process)`, scrapes, 'p50 ms': r.p50.toFixed(1), 'p99 ms': r.p99.toFixed(1), families: r.families, samples: r.samples, 'KiB': (r.bytes / 1024).toFixed(0) }
  } finally {
    await metrics?.close()
    await caller.close()
    for (const m of list) await m.close()
    await testnet.destroy()
  }
}

/** (b) one real mesh (processes), metrics on or off everywhere; RPS through the gateway. */
async function gatewayBench (databaseUrl: string, metricsOn: boolean, requests: number, concurrency: number, scrapes: number): Promise<Row[]> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-metrics-'))
  const off = metricsOn ? {} : { METRICS_DISABLED: '1' }
  const mesh = new LocalMesh({
    home, databaseUrl, webPort: 0, metricsPort: 0,
    env: { LOG_LEVEL: 'warn', ...off } as Record<string, string>,
    serviceEnv: {
      // limits out of the way: what is measured is the request path, not the limiter refusing
      gateway: {
        DEFAULT_RATE_LIMIT: '100000000',
        TIER_LIMITS: JSON.stringify(Object.fromEntries(['default', 'premium'].map((tier) => [tier, { userRequestsPerHour: 100_000_000, tokensPerHour: 1_000_000_000, tokensPerDay: 1_000_000_000 }])))
      },
      inference: { SYNTHETIC_TOKENS_PER_SEC: '0', WORKER_CAPACITY: '100000' }
    }
  })
  let gw: GatewayConnection | null = null
  try {
    await mesh.start()
    gw = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
    const client = await gw.open()
    const name = 'bench' + crypto.randomBytes(4).toString('hex')
    await client.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password: 'bench password' })
    const { token } = await client.call(GatewayProtocol.login, { email: `${name}@example.com`, password: 'bench password' })
    const { key } = await client.call(GatewayProtocol.createKey, { token, name: 'bench' })
    const once = (i: number) => client.stream(GatewayProtocol.infer, { apiKey: key, prompt: `bench prompt ${i}`, maxTokens: 16, stream: true }, { onChunk: () => {}, idleTimeout: 60_000 })
    const load = async (n: number) => {
      const r = await runLoad(concurrency, n, once)
      return { ...r, errors: r.errors ? `${r.errors} (${[...r.codes].map(([c, k]) => `${c}×${k}`).join(', ')})` : 0 }
    }
    await load(Math.min(400, requests)) // warm-up: JIT, key cache, connections
    const r = await load(requests)
    const rows: Row[] = [{
      bench: 'gateway infer (streamed, 16 tokens)', setup: metricsOn ? 'metrics on' : 'METRICS_DISABLED=1', requests, concurrency,
      errors: r.errors, 'p50 ms': r.p50.toFixed(2), 'p99 ms': r.p99.toFixed(2), 'req/s': Math.round(r.rps)
    }]
    if (metricsOn) {
      const url = new URL(mesh.metricsUrl!).origin + '/metrics'
      await waitAllUp(url, mesh.children.size - 1)
      const s = await timeScrapes(url, scrapes)
      rows.push({ bench: 'scrape /metrics', setup: `real mesh: ${mesh.children.size - 1} processes + itself`, scrapes, 'p50 ms': s.p50.toFixed(1), 'p99 ms': s.p99.toFixed(1), families: s.families, samples: s.samples, 'KiB': (s.bytes / 1024).toFixed(0) })
    }
    return rows
  } finally {
    await gw?.close()
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
}

export async function benchMetrics (scale: number): Promise<Row[]> {
  const scrapes = Math.max(20, Math.round(100 * scale))
  const requests = Math.max(500, Math.round(5000 * scale))
  const rows: Row[] = []
  rows.push(await scrapeBench(1, scrapes))
  rows.push(await scrapeBench(20, scrapes))
  let db: EmbeddedDatabase | null = null
  let databaseUrl = process.env.DATABASE_URL
  const pgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-pg-'))
  try {
    if (!databaseUrl) {
      db = await startEmbeddedPostgres(pgDir)
      databaseUrl = db.url
    }
    // off first, then on: if anything, the later run has the warmer machine
    const offRows = await gatewayBench(databaseUrl, false, requests, 100, scrapes)
    const onRows = await gatewayBench(databaseUrl, true, requests, 100, scrapes)
    const on = Number(onRows[0]!['req/s'])
    const off = Number(offRows[0]!['req/s'])
    onRows[0]!['on/off rps'] = (on / off).toFixed(2)
    rows.push(...offRows, ...onRows)
  } finally {
    await db?.stop().catch(() => {}) // best effort: its data dir is removed next either way
    fs.rmSync(pgDir, { recursive: true, force: true })
  }
  return rows
}


if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-metrics', 'scrape time with 1 and 20 members, gateway RPS with metrics on and off', 'synthetic backend at zero delay', benchMetrics)
}
