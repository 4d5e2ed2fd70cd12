// Where a request's time goes, read from its trace, and what tracing costs:
//   (a) HTTP /v1/chat/completions (whole answer, 16 tokens) through web → gateway → worker at
//       concurrency 1 and 100, on a mesh with tracing off and on one exporting every span over
//       OTLP/HTTP to a receiver in this process (scripts/lib/otlp-receiver.ts);
//   (b) from the traced run's spans, the p50 of each step of a request at both concurrencies.
// Standalone: `npx tsx scripts/bench-tracing.ts` (BENCH_SCALE=0.2 shortens it) prints a table.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalMesh } from './lib/localmesh.ts'
import { startEmbeddedPostgres, type EmbeddedDatabase } from './lib/embedded-pg.ts'
import { OtlpReceiver, type ReceivedSpan } from './lib/otlp-receiver.ts'
import { GatewayConnection } from '../shared/sdk/rpc-transport.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'

const LIMITS = JSON.stringify(Object.fromEntries(['default', 'premium'].map((tier) => [tier, { requestsPerHour: 100_000_000, userRequestsPerHour: 100_000_000, tokensPerHour: 1e12, tokensPerDay: 1e12 }])))

/** The steps of one request, in ms, from its spans (null: the trace is incomplete). */
function breakdown (spans: ReceivedSpan[]): Record<string, number> | null {
  const find = (service: string, name: string, parent?: ReceivedSpan) => spans.find((s) => s.service === service && s.name === name && (!parent || s.parentSpanId === parent.spanId))
  const web = find('web', 'POST /v1/chat/completions')
  const infer = find('gateway', 'infer')
  const dispatch = find('gateway', 'dispatch')
  const worker = find('inference', 'processPrompt')
  if (!web || !infer || !dispatch || !worker) return null
  const ms = (a: bigint, b: bigint) => Number(b - a) / 1e6
  const out: Record<string, number> = {
    'total (web span)': web.durationMs,
    'web → gateway (HTTP parse, RPC in)': ms(web.startNs, infer.startNs)
  }
  for (const step of ['authorize', 'admission.authenticate', 'routing', 'admission.hold', 'dispatch']) {
    const s = find('gateway', step, infer)
    if (s) out[`gateway ${step}`] = s.durationMs
  }
  const ft = find('gateway', 'first_token', dispatch)
  if (ft) out['gateway first_token (from dispatch)'] = ft.durationMs
  out['gateway → worker (RPC)'] = ms(dispatch.startNs, worker.startNs)
  out['worker processPrompt'] = worker.durationMs
  const wft = find('inference', 'first_token', worker)
  if (wft) out['worker first_token'] = wft.durationMs
  out['worker → gateway (RPC, last frame)'] = ms(worker.endNs, dispatch.endNs)
  const settle = find('gateway', 'settlement', infer)
  if (settle) out['gateway settlement'] = settle.durationMs
  out['gateway → web (RPC out, HTTP answer)'] = ms(infer.endNs, web.endNs)
  return out
}

function stepRows (byConcurrency: Map<number, Array<Record<string, number>>>): Row[] {
  const steps = [...new Set([...byConcurrency.values()].flatMap((list) => list.flatMap((b) => Object.keys(b))))]
  return steps.map((step) => {
    const row: Row = { bench: 'step p50 (from traces)', step }
    for (const [c, list] of byConcurrency) {
      const v = list.map((b) => b[step]).filter((x): x is number => x !== undefined).sort((a, b) => a - b)
      row[`c=${c} p50 ms`] = v.length ? percentile(v, 0.5).toFixed(2) : ''
      row[`c=${c} traces`] = v.length
    }
    return row
  })
}

async function meshRun (databaseUrl: string, receiver: OtlpReceiver | null, levels: Array<{ concurrency: number, requests: number }>):
  Promise<{ rows: Row[], steps: Map<number, Array<Record<string, number>>> }> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-tracing-'))
  // every span kept: a large queue, exported often (the defaults drop spans past 2048 queued)
  const tracing: Record<string, string> = receiver ? { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: '200', OTEL_BSP_MAX_QUEUE_SIZE: '100000', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2048' } : {}
  const mesh = new LocalMesh({
    home, databaseUrl, webPort: 0, metricsPort: 0,
    env: { LOG_LEVEL: 'warn', ...tracing },
    serviceEnv: { gateway: { DEFAULT_RATE_LIMIT: '100000000', TIER_LIMITS: LIMITS }, inference: { SYNTHETIC_TOKENS_PER_SEC: '0', WORKER_CAPACITY: '100000' } }
  })
  let gw: GatewayConnection | null = null
  try {
    await mesh.start()
    gw = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
    const client = await gw.open()
    const name = 'bench' + crypto.randomBytes(4).toString('hex')
    await client.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password: 'bench password' }, 60_000)
    const { token } = await client.call(GatewayProtocol.login, { email: `${name}@example.com`, password: 'bench password' }, 60_000)
    const { key } = await client.call(GatewayProtocol.createKey, { token, name: 'bench' }, 60_000)
    const ids: string[] = []
    const once = async (i: number) => {
      const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: `bench prompt ${i}` }], max_tokens: 16 })
      })
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`)
      await res.json()
      ids.push(res.headers.get('x-request-id') ?? '')
    }
    await runLoad(100, 400, once) // warm-up: JIT, key cache, connection pools
    const rows: Row[] = []
    const steps = new Map<number, Array<Record<string, number>>>()
    for (const level of levels) {
      ids.length = 0
      const r = await runLoad(level.concurrency, level.requests, once)
      rows.push({ bench: 'HTTP /v1 chat (whole, 16 tokens)', setup: receiver ? 'tracing on (OTLP)' : 'tracing off', concurrency: level.concurrency, requests: level.requests, errors: r.errors, 'p50 ms': r.p50.toFixed(2), 'p99 ms': r.p99.toFixed(2), 'req/s': Math.round(r.rps) })
      if (receiver) {
        await new Promise((resolve) => setTimeout(resolve, 1500)) // the last batches of spans arrive
        const byTrace = new Map<string, ReceivedSpan[]>()
        for (const s of receiver.spans) (byTrace.get(s.traceId) ?? byTrace.set(s.traceId, []).get(s.traceId)!).push(s)
        steps.set(level.concurrency, ids.map((id) => breakdown(byTrace.get(id) ?? [])).filter((b): b is Record<string, number> => b !== null))
        receiver.spans.length = 0
      }
    }
    return { rows, steps }
  } finally {
    await gw?.close()
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
}

export async function benchTracing (scale: number): Promise<Row[]> {
  const levels = [{ concurrency: 1, requests: Math.max(100, Math.round(500 * scale)) }, { concurrency: 100, requests: Math.max(500, Math.round(3000 * scale)) }]
  let db: EmbeddedDatabase | null = null
  let databaseUrl = process.env.DATABASE_URL
  const pgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-pg-'))
  const receiver = new OtlpReceiver()
  try {
    if (!databaseUrl) {
      db = await startEmbeddedPostgres(pgDir)
      databaseUrl = db.url
    }
    await receiver.listen()
    const off = await meshRun(databaseUrl, null, levels)
    const on = await meshRun(databaseUrl, receiver, levels)
    on.rows.forEach((r, i) => { r['on/off rps'] = (Number(r['req/s']) / Number(off.rows[i]!['req/s'])).toFixed(2) })
    return [...off.rows, ...on.rows, ...stepRows(on.steps)]
  } finally {
    await receiver.close()
    await db?.stop().catch(() => {}) // best effort: its data dir is removed next either way
    fs.rmSync(pgDir, { recursive: true, force: true })
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-tracing', 'HTTP requests with tracing off and on; each step\'s p50 from the traces', 'synthetic backend at zero delay', benchTracing)
}
