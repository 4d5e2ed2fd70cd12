// `npm run bench`: latency and throughput of the mesh, measured in one run on real processes.
// Synthetic backend at zero delay, so what is measured is the mesh itself:
//   direct   bench client → worker (processPrompt over RPC; the worker's own server)
//   gateway  bench client → gateway (API key auth, rate limit, usage recording on) → worker
// at concurrency 1, 100 and 1000. Prints a table and writes bench-results/latest.json.
// BENCH_SCALE=0.2 shortens the run; DATABASE_URL uses that server instead of an embedded one;
// BENCH_SECTIONS=ttft,metrics runs only those of the sections after the main table (none: none of them).
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import RPC from '@hyperswarm/rpc'
import DHT from 'hyperdht'
import { LocalMesh } from './lib/localmesh.ts'
import { benchMetrics } from './bench-metrics.ts'
import { CpuMeter, formatTable, runLoad, type Row as TableRow } from './bench-lib.ts'
import { benchHostile } from './bench-hostile.ts'
import { benchLogin } from './bench-login.ts'
import { benchRouting } from './bench-routing.ts'
import { benchTtft } from './bench-ttft.ts'
import { benchFloor } from './bench-floor.ts'
import { benchTracing } from './bench-tracing.ts'
import { benchSafety } from './bench-safety.ts'
import { benchStartup } from './bench-startup.ts'
import { BenchHttp } from './bench-http.ts'
import { benchCache } from './bench-cache.ts'
import { benchLearned } from './bench-learned.ts'
import { benchReceipts } from './bench-receipts.ts'
import { benchSoak } from './bench-soak.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { wireJson } from '../shared/mesh/wire.ts'
import { bootstrapList } from '../shared/config.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { InferenceProtocol } from '../shared/protocol/inference.ts'

const SCALE = Number(process.env.BENCH_SCALE ?? 1)
const LEVELS = [
  { concurrency: 1, requests: Math.max(50, Math.round(500 * SCALE)) },
  { concurrency: 100, requests: Math.max(200, Math.round(5000 * SCALE)) },
  { concurrency: 1000, requests: Math.max(1000, Math.round(10000 * SCALE)) }
]
const MAX_TOKENS = 16

/** `cpu`: µs of CPU per request in each process on the request's way (client, gateway, worker, web, PostgreSQL) */
interface Row { path: string, concurrency: number, requests: number, errors: number, p50: number, p99: number, rps: number, cpu: Record<string, number> }

let meter: CpuMeter | null = null

async function run (name: string, concurrency: number, requests: number, once: (i: number) => Promise<unknown>): Promise<Row> {
  meter?.start()
  const r = await runLoad(concurrency, requests, once)
  const cpu = meter?.perRequest(requests) ?? {}
  return { path: name, concurrency, requests, errors: r.errors, p50: r.p50, p99: r.p99, rps: r.rps, cpu }
}

/** the CPU columns of a row: each process's µs per request and their sum (what two cores share) */
const CPU_HEADER = ['CPU µs/req: client', 'gateway', 'worker', 'web', 'PostgreSQL', 'all']
function cpuCells (r: Row): string[] {
  const { client = NaN, worker = NaN, web = NaN, PostgreSQL = NaN } = r.cpu
  const gateway = (r.cpu.gateway ?? NaN) + (r.cpu['gateway-2'] ?? NaN)
  return [client, gateway, worker, web, PostgreSQL, client + gateway + worker + web + PostgreSQL].map((v) => Number.isFinite(v) ? String(v) : '')
}

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-'))
const benchKeyPair = DHT.keyPair(crypto.randomBytes(32))
const mesh = new LocalMesh({
  home,
  databaseUrl: process.env.DATABASE_URL || undefined,
  webPort: 0,
  metricsPort: 0,
  extraAllow: [benchKeyPair.publicKey.toString('hex')],
  // gateway-2 is the same gateway with accounting off: the cost of exact accounting, in one run
  gateways: 2,
  instanceEnv: { 'gateway-2': { HYPERINFER_ACCOUNTING: 'off' } },
  serviceEnv: {
    gateway: {
      DEFAULT_RATE_LIMIT: '100000000', LOG_LEVEL: 'warn',
      TIER_LIMITS: JSON.stringify(Object.fromEntries(['default', 'premium'].map((t) => [t, { requestsPerHour: 100000000, userRequestsPerHour: 100000000, tokensPerHour: 1e12, tokensPerDay: 1e12 }])))
    },
    inference: { SYNTHETIC_TOKENS_PER_SEC: '0', WORKER_CAPACITY: '100000', LOG_LEVEL: 'warn' },
    auth: { LOG_LEVEL: 'warn' },
    // like every other service here: no per-request info lines (the web's access log) in what is measured
    web: { LOG_LEVEL: 'warn' }
  }
})

let exitCode = 0
let rpc: RPC | null = null
let dht: DHT | null = null
try {
  console.log('bench: starting the mesh (real processes, local DHT, PostgreSQL)…')
  await mesh.start()
  dht = createDHT({ keyPair: benchKeyPair, bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
  rpc = new RPC({ keyPair: benchKeyPair, dht, valueEncoding: wireJson }) // the encoding every mesh client uses
  const gateway = new MeshClient(rpc, Buffer.from(mesh.gatewayKey, 'hex'), { name: 'gateway' })
  const unaccounted = new MeshClient(rpc, Buffer.from(mesh.gatewayKeys[1]!, 'hex'), { name: 'gateway-2' })
  const worker = new MeshClient(rpc, Buffer.from(mesh.keys.inference!, 'hex'), { name: 'worker' })
  await gateway.waitOpen(15_000)
  await worker.waitOpen(15_000)
  const pid = (name: string) => mesh.children.get(name)?.proc.pid
  // the two gateways are one column: each row loads one of them, and the other idles
  meter = new CpuMeter(() => ({ gateway: pid('gateway'), 'gateway-2': pid('gateway-2'), worker: pid('inference'), web: pid('web') }))
  await unaccounted.waitOpen(15_000)

  const email = `bench-${Date.now()}@example.com`
  await gateway.call(GatewayProtocol.register, { username: 'bench' + Date.now(), email, password: 'bench password' })
  const { token } = await gateway.call(GatewayProtocol.login, { email, password: 'bench password' })
  const { key } = await gateway.call(GatewayProtocol.createKey, { token, name: 'bench' })

  const direct = (i: number) => worker.stream(InferenceProtocol.processPrompt,
    { requestId: 'b' + i, model: 'synthetic', messages: [{ role: 'user', content: `bench prompt ${i}` }], maxTokens: MAX_TOKENS },
    { onChunk: () => {}, idleTimeout: 60_000 })
  const viaGateway = (i: number) => gateway.stream(GatewayProtocol.infer,
    { apiKey: key, prompt: `bench prompt ${i}`, maxTokens: MAX_TOKENS, stream: true },
    { onChunk: () => {}, idleTimeout: 60_000 })

  const viaUnaccounted = (i: number) => unaccounted.stream(GatewayProtocol.infer,
    { apiKey: key, prompt: `bench prompt ${i}`, maxTokens: MAX_TOKENS, stream: true },
    { onChunk: () => {}, idleTimeout: 60_000 })

  // warm every path until it runs as it will under load: JIT tiers, the key cache, connections, and
  // the gateway's lease slices, which grow to the demand they see (a first run at concurrency 100
  // after a light warm-up measured the gateway about a fifth slower than the same run a second later)
  for (const path of [direct, viaGateway, viaUnaccounted]) {
    await run('warmup', 20, 400, path)
    await run('warmup', 100, Math.max(500, Math.round(3000 * SCALE)), path)
  }

  // each level starts on a quiet mesh: what the previous load left to do (settlements going to
  // PostgreSQL, slices going back) would otherwise land on the next level's first requests
  const settle = () => new Promise((resolve) => setTimeout(resolve, 3000))
  const rows: Row[] = []
  for (const level of LEVELS) {
    await settle()
    rows.push(await run('direct → worker', level.concurrency, level.requests, direct))
    await settle()
    rows.push(await run('gateway → worker', level.concurrency, level.requests, viaGateway))
    const [d, g] = rows.slice(-2) as [Row, Row]
    console.log(`  c=${level.concurrency}: direct ${d.rps.toFixed(0)} req/s, gateway ${g.rps.toFixed(0)} req/s`)
  }

  // exact accounting (admission hold + group-committed settlement in Postgres) on vs off
  const accountingRows: Row[] = []
  for (const level of [{ concurrency: 1, requests: Math.max(50, Math.round(500 * SCALE)) }, { concurrency: 100, requests: Math.max(200, Math.round(5000 * SCALE)) }]) {
    await settle()
    accountingRows.push(await run('gateway, accounting off', level.concurrency, level.requests, viaUnaccounted))
    await settle()
    accountingRows.push(await run('gateway, accounting on', level.concurrency, level.requests, viaGateway))
  }

  // the HTTP edge: OpenAI-compatible /v1/chat/completions through web → gateway → worker, against
  // the same request over RPC, at concurrency 100, streamed and not
  const httpRows: Row[] = []
  const httpN = Math.max(500, Math.round(3000 * SCALE))
  const body = (i: number, stream: boolean) => JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: `bench prompt ${i}` }], max_tokens: MAX_TOKENS, stream })
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
  // one keep-alive connection per concurrent caller, so the client measured is not what limits the edge
  const http = new BenchHttp(mesh.webUrl!, 100)
  const post = (i: number, stream: boolean) => http.post('/v1/chat/completions', headers, body(i, stream))
  const httpWhole = async (i: number) => {
    const res = await post(i, false)
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`)
    JSON.parse(res.body)
  }
  const httpStream = async (i: number) => {
    const res = await post(i, true)
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`)
    if (!res.body.endsWith('data: [DONE]\n\n')) throw new Error('stream did not finish')
  }
  const rpcWhole = (i: number) => gateway.stream(GatewayProtocol.infer, { apiKey: key, prompt: `bench prompt ${i}`, maxTokens: MAX_TOKENS, stream: false }, { onChunk: () => {}, idleTimeout: 60_000 })
  // every compared path warmed as the paths above are (the web's code and the gateway's whole-answer
  // path are not yet hot after a few hundred requests), at the measured concurrency, so the HTTP
  // client's connection pool is already open
  for (const path of [rpcWhole, httpWhole, httpStream]) await run('warmup', 100, Math.max(500, Math.round(3000 * SCALE)), path)
  // each row on a quiet mesh, as above: a row would otherwise pay for the settlements the one before left
  for (const [label, path] of [['RPC, whole answer', rpcWhole], ['HTTP /v1, whole answer', httpWhole], ['RPC, streamed', viaGateway], ['HTTP /v1, streamed (SSE)', httpStream]] as const) {
    await settle()
    httpRows.push(await run(label, 100, httpN, path))
  }
  await http.close()

  const header = ['path', 'concurrency', 'requests', 'errors', 'p50 ms', 'p99 ms', 'req/s', 'gateway/direct rps', ...CPU_HEADER]
  const lines = rows.map((r, i) => {
    const ratio = i % 2 === 1 ? (r.rps / rows[i - 1]!.rps).toFixed(2) : ''
    return [r.path, String(r.concurrency), String(r.requests), String(r.errors), r.p50.toFixed(2), r.p99.toFixed(2), r.rps.toFixed(0), ratio, ...cpuCells(r)]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const fmt = (cells: string[]) => '| ' + cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ') + ' |'
  console.log('\n' + fmt(header))
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|')
  for (const l of lines) console.log(fmt(l))
  console.log(`\n${MAX_TOKENS} tokens per request, streamed; synthetic backend at zero delay; ${os.cpus().length} CPUs; node ${process.version}`)

  const h2 = ['edge (gateway → worker behind both)', 'concurrency', 'requests', 'errors', 'p50 ms', 'p99 ms', 'req/s', 'HTTP/RPC rps', ...CPU_HEADER]
  const l2 = httpRows.map((r, i) => [r.path, String(r.concurrency), String(r.requests), String(r.errors), r.p50.toFixed(2), r.p99.toFixed(2), r.rps.toFixed(0),
    i % 2 === 1 ? (r.rps / httpRows[i - 1]!.rps).toFixed(2) : '', ...cpuCells(r)])
  const w2 = h2.map((h, i) => Math.max(h.length, ...l2.map((l) => l[i]!.length)))
  const f2 = (cells: string[]) => '| ' + cells.map((cell, i) => cell.padEnd(w2[i]!)).join(' | ') + ' |'
  console.log('\n' + f2(h2))
  console.log('|' + w2.map((w) => '-'.repeat(w + 2)).join('|') + '|')
  for (const l of l2) console.log(f2(l))

  const outDir = path.resolve('bench-results')
  fs.mkdirSync(outDir, { recursive: true })
  const h3 = ['gateway', 'concurrency', 'requests', 'errors', 'p50 ms', 'p99 ms', 'req/s', 'on/off rps', 'on/off p99', ...CPU_HEADER]
  const l3 = accountingRows.map((r, i) => [r.path, String(r.concurrency), String(r.requests), String(r.errors), r.p50.toFixed(2), r.p99.toFixed(2), r.rps.toFixed(0),
    i % 2 === 1 ? (r.rps / accountingRows[i - 1]!.rps).toFixed(2) : '', i % 2 === 1 ? (r.p99 / accountingRows[i - 1]!.p99).toFixed(2) : '', ...cpuCells(r)])
  const w3 = h3.map((h, i) => Math.max(h.length, ...l3.map((l) => l[i]!.length)))
  const f3 = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(w3[i]!)).join(' | ') + ' |'
  console.log('\n' + f3(h3))
  console.log('|' + w3.map((w) => '-'.repeat(w + 2)).join('|') + '|')
  for (const l of l3) console.log(f3(l))

  const report: Record<string, unknown> = { at: new Date().toISOString(), node: process.version, cpus: os.cpus().length, tokensPerRequest: MAX_TOKENS, scale: SCALE, rows, httpVsRpc: httpRows, accounting: accountingRows }
  fs.writeFileSync(path.join(outDir, 'latest.json'), JSON.stringify(report, null, 2) + '\n')
  console.log(`wrote ${path.join(outDir, 'latest.json')}`)
  await gateway.close()
  await unaccounted.close()
  await worker.close()
  await rpc.destroy({ force: true }).catch(() => {}) // best effort: the bench is done with it
  await mesh.stop()
  // the benches that start meshes of their own, one after another, each a table and a key in the report
  const sections: Array<[key: string, title: string, bench: (scale: number) => Promise<TableRow[]>]> = [
    ['metrics', 'metrics', benchMetrics], // scrape time with 1 and 20 members; the request path with metrics on vs off
    ['routing', 'routing', benchRouting], // the gateway with 1, 10 and 100 workers; a new worker's time to its first request
    ['hostile', 'event-loop delay during hostile prompts', benchHostile], // small requests alone and during 100k-character prompts
    ['login', 'real logins during a password flood', benchLogin], // a flood against one account; another user's logins
    ['floor', 'the floor: the same call direct, through a relay only, and through the gateway', benchFloor], // c=1, c=100, TTFT
    ['ttft', 'time to first token: the gateway\'s share, and 10,000 streams at once', benchTtft], // first token after 20 ms direct vs gateway; a burst
    ['tracing', 'tracing off and on; each step of a request from its trace', benchTracing], // HTTP /v1 at c=1 and 100
    ['safety', 'the safety pre-check', benchSafety], // the same request with key safety off, flag and redact
    ['startup', 'start-up as a user runs it', benchStartup], // `hyperinfer --help`, a warm `npm start`, `hyperinfer infer` to first token
    ['cache', 'response cache', benchCache], // misses against local and shared hits; semantic hit and false-hit rates
    ['learned', 'learned routing in simulation', benchLearned], // regret against an oracle, with drift
    ['receipts', 'signed usage receipts', benchReceipts], // sign, check, countersign, verify: CPU per receipt
    ['soak', 'soak: three minutes of steady mixed load', benchSoak] // RSS slope per process, descriptors, p99 over time
  ]
  const only = process.env.BENCH_SECTIONS?.split(',').map((k) => k.trim())
  for (const [key, title, bench] of sections) {
    if (only && !only.includes(key)) continue
    console.log(`\nbench: ${title}…`)
    const sectionRows = await bench(SCALE)
    console.log('\n' + formatTable(sectionRows))
    report[key] = sectionRows
  }
  fs.writeFileSync(path.join(outDir, 'latest.json'), JSON.stringify(report, null, 2) + '\n')
} catch (err) {
  console.error(`bench failed: ${(err as Error).message}`)
  exitCode = 1
} finally {
  // best effort teardown: the results are written (or the failure reported) already
  await rpc?.destroy({ force: true }).catch(() => {})
  await dht?.destroy().catch(() => {})
  await mesh.stop()
  fs.rmSync(home, { recursive: true, force: true })
}
process.exit(exitCode)
