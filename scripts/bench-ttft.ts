// Time to first token, on real processes (LocalMesh: auth, one gateway with accounting on,
// PostgreSQL, two synthetic workers):
//   (a) what the gateway adds to it: a worker whose first token comes after a fixed 20 ms
//       (synthetic at 50 tokens/s), one streamed request at a time, straight to the worker and
//       through the gateway; the difference of the medians is the gateway's share.
//   (b) a burst: 10,000 streams opened at once through the gateway by one SDK client, on a worker
//       at 4 tokens/s (first token after 250 ms): time to first token over the burst, how long
//       until all have ended, the gateway's and the worker's peak memory (together under 1 GB) and
//       the CPU seconds each spent on the burst.
// Standalone: `npx tsx scripts/bench-ttft.ts` (BENCH_SCALE shortens (a); BURST_STREAMS sizes (b)).
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { LocalMesh } from './lib/localmesh.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { bootstrapList } from '../shared/config.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { InferenceProtocol } from '../shared/protocol/inference.ts'
import { AIInferenceClient } from '../shared/sdk/index.ts'
import { cpuSeconds, firstTokens, percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'

/** peak resident memory of a process, MB (Linux; NaN elsewhere) */
function peakRssMb (pid: number | undefined): number {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'))
    return line ? Number(line.split(/\s+/)[1]) / 1024 : NaN
  } catch { return NaN } // not Linux, or the process is gone: the column says so
}

export async function benchTtft (scale: number): Promise<Row[]> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-ttft-'))
  const keyPair = DHT.keyPair(crypto.randomBytes(32))
  const limits = { requestsPerHour: 1e8, userRequestsPerHour: 1e8, tokensPerHour: 1e12, tokensPerDay: 1e12 }
  const mesh = new LocalMesh({
    home,
    databaseUrl: process.env.DATABASE_URL || undefined,
    webPort: 0,
    metricsPort: 0,
    extraAllow: [keyPair.publicKey.toString('hex')],
    workers: 2,
    instanceEnv: { 'inference-2': { SYNTHETIC_TOKENS_PER_SEC: '4', SYNTHETIC_MODELS: 'slow' } },
    serviceEnv: {
      gateway: { LOG_LEVEL: 'warn', TIER_LIMITS: JSON.stringify({ default: limits, premium: limits }) },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: '50', WORKER_CAPACITY: '100000' },
      auth: { LOG_LEVEL: 'warn' }
    }
  })
  let rpc: RPC | null = null
  let dht: DHT | null = null
  let sdk: AIInferenceClient | null = null
  const rows: Row[] = []
  try {
    await mesh.start()
    dht = createDHT({ keyPair, bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
    rpc = new RPC({ keyPair, dht, valueEncoding: c.json })
    const gateway = new MeshClient(rpc, Buffer.from(mesh.gatewayKey, 'hex'), { name: 'gateway' })
    const worker = new MeshClient(rpc, Buffer.from(mesh.keys.inference!, 'hex'), { name: 'worker' })
    await gateway.waitOpen(15_000)
    await worker.waitOpen(15_000)
    const name = 'ttft' + Date.now()
    await gateway.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password: 'bench password' })
    const { token } = await gateway.call(GatewayProtocol.login, { email: `${name}@example.com`, password: 'bench password' })
    const { key } = await gateway.call(GatewayProtocol.createKey, { token, name: 'bench' })

    // a streamed answer of 4 tokens 20 ms apart (its first token is not its end, as in any real
    // stream), and a one-token answer, whose first token arrives with the answer's settlement
    const direct = (tokens: number) => (i: number, onFirst: () => void) => worker.stream(InferenceProtocol.processPrompt,
      { requestId: `t${tokens}-${i}`, model: 'synthetic', messages: [{ role: 'user', content: `ttft prompt ${i}` }], maxTokens: tokens }, { onChunk: onFirst, idleTimeout: 30_000 })
    const viaGateway = (tokens: number) => (i: number, onFirst: () => void) => gateway.stream(GatewayProtocol.infer,
      { apiKey: key, model: 'synthetic', prompt: `ttft prompt ${i}`, maxTokens: tokens, stream: true }, { onChunk: onFirst, idleTimeout: 30_000 })
    const n = Math.max(50, Math.round(300 * scale))
    // both paths warmed as a serving mesh is: under load until the JIT has compiled what they run
    // (20 calls leave most of the gateway's path cold, and the direct path's little code hot)
    const none = () => {}
    for (const path of [direct(4), viaGateway(4)]) await runLoad(100, Math.max(500, Math.round(2000 * scale)), (i) => path(i, none))
    for (const [tokens, label] of [[4, 'TTFT, 4-token stream, first after 20 ms'], [1, 'TTFT, one-token answer after 20 ms']] as const) {
      await firstTokens(20, direct(tokens))
      await firstTokens(20, viaGateway(tokens))
      const d = await firstTokens(n, direct(tokens))
      const g = await firstTokens(n, viaGateway(tokens))
      const ttftRow = (p: string, ms: number[]): Row => ({ bench: label, path: p, streams: n, errors: 0, 'TTFT p50 ms': percentile(ms, 0.5).toFixed(2), 'TTFT p99 ms': percentile(ms, 0.99).toFixed(2) })
      rows.push(ttftRow('direct → worker', d))
      rows.push({ ...ttftRow('gateway → worker', g), 'added p50 ms': (percentile(g, 0.5) - percentile(d, 0.5)).toFixed(2), 'added p99 ms': (percentile(g, 0.99) - percentile(d, 0.99)).toFixed(2) })
    }
    await gateway.close()
    await worker.close()

    // one SDK client, every stream opened in the same tick
    const streams = Number(process.env.BURST_STREAMS ?? 10_000)
    sdk = new AIInferenceClient({ apiKey: key, gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, timeoutMs: 120_000 })
    await sdk.inference({ model: 'slow', prompt: 'warm', maxTokens: 1 })
    const ttft: number[] = []
    let errors = 0
    // the slow model's worker is inference-2; CPU seconds each spent on the burst (the machine's load moves time, not these)
    const gw = mesh.children.get('gateway')?.proc.pid
    const wk = mesh.children.get('inference-2')?.proc.pid
    const gwCpu = cpuSeconds(gw, 0)
    const wkCpu = cpuSeconds(wk, 0)
    const t0 = process.hrtime.bigint()
    await Promise.all(Array.from({ length: streams }, async (_, i) => {
      const s = sdk!.stream({ model: 'slow', prompt: `burst ${i}`, maxTokens: 2 })
      try {
        let first = true
        for await (const delta of s) {
          if (first && delta) { ttft.push(Number(process.hrtime.bigint() - t0) / 1e6); first = false }
        }
        await s.result
      } catch { errors++ } // counted: the row reports them
    }))
    const allMs = Number(process.hrtime.bigint() - t0) / 1e6
    const gwRss = peakRssMb(gw)
    const wkRss = peakRssMb(wk)
    ttft.sort((a, b) => a - b)
    rows.push({
      bench: `burst: ${streams} streams at once, 4 tokens/s`, path: 'SDK → gateway → worker', streams, errors,
      'TTFT p50 ms': percentile(ttft, 0.5).toFixed(0), 'TTFT p99 ms': percentile(ttft, 0.99).toFixed(0),
      'all ended s': (allMs / 1000).toFixed(1), 'gateway peak RSS MB': gwRss.toFixed(0), 'worker peak RSS MB': wkRss.toFixed(0),
      'gateway + worker MB': (gwRss + wkRss).toFixed(0), 'gateway CPU s': cpuSeconds(gw, gwCpu).toFixed(1), 'worker CPU s': cpuSeconds(wk, wkCpu).toFixed(1)
    })
  } finally {
    await sdk?.close().catch(() => {})
    await rpc?.destroy({ force: true }).catch(() => {})
    await dht?.destroy().catch(() => {})
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-ttft', 'time to first token: the gateway\'s share, and a burst of streams', 'targets: added p50 ≤ 0.5 ms; burst TTFT p99 ≤ 1000 ms', benchTtft)
}
