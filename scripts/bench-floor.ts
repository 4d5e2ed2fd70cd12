// The floor under any gateway of this design: the same worker call made straight to the worker,
// through a process that only relays it (scripts/relay-floor.ts: one more process and two more
// encrypted hops, and no other work), and through the gateway (key check, admission, routing,
// safety, receipt, settlement), in one run on the same mesh. Latency at concurrency 1, requests per
// second at 100, each process's CPU per request, and the time each adds to the first token of a
// stream whose first token comes after 20 ms. What the relay adds no gateway can take away.
// Standalone: `npx tsx scripts/bench-floor.ts` (BENCH_SCALE shortens it).
import { spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LocalMesh } from './lib/localmesh.ts'
import { benchAccount, UNLIMITED_TIERS, withBenchMesh } from './lib/bench-mesh.ts'
import { CpuMeter, firstTokens, percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import { entryArgs, PACKAGE_ROOT } from '../shared/package.ts'
import { keyPairFromSeed } from '../shared/keys.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { InferenceProtocol } from '../shared/protocol/inference.ts'

const MAX_TOKENS = 16

/** start the relay and wait for its ready line */
async function startRelay (env: Record<string, string>): Promise<ChildProcess> {
  const proc = spawn(process.execPath, entryArgs('scripts/relay-floor'), { cwd: PACKAGE_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-2000) })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`the relay did not start: ${err}`)) }, 30_000)
    let out = ''
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('relay ready')) { clearTimeout(timer); resolve() }
    })
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the relay exited (${code}): ${err}`)) })
  })
  return proc
}

export async function benchFloor (scale: number): Promise<Row[]> {
  const relaySeed = crypto.randomBytes(32)
  const relayKey = keyPairFromSeed(relaySeed).publicKey.toString('hex')
  const opts = {
    // the bench's peer and the relay call the workers as operators' tools may
    memberAs: 'operator',
    extraAllow: [relayKey],
    workers: 2,
    // the second worker serves 'paced': its first token comes after 20 ms (50 tokens/s)
    instanceEnv: { 'inference-2': { SYNTHETIC_TOKENS_PER_SEC: '50', SYNTHETIC_MODELS: 'paced' } },
    serviceEnv: {
      gateway: { LOG_LEVEL: 'warn', TIER_LIMITS: UNLIMITED_TIERS },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: '0', WORKER_CAPACITY: '100000' },
      auth: { LOG_LEVEL: 'warn' },
      web: { LOG_LEVEL: 'warn' }
    }
  }
  return withBenchMesh('floor', opts, async ({ mesh, self, gateway, client }) => {
    const relay = await startRelay({
      HYPERINFER_HOME: mesh.home,
      HYPERINFER_BOOTSTRAP: mesh.bootstrapString,
      HYPERINFER_SEED: relaySeed.toString('hex'),
      HYPERINFER_MESH_ALLOW: self,
      RELAY_WORKERS: JSON.stringify({ synthetic: mesh.keys.inference, paced: mesh.keys['inference-2'] }),
      LOG_LEVEL: 'warn'
    })
    try {
      const relayClient = client(relayKey, 'relay')
      const worker = client(mesh.keys.inference!, 'worker')
      const paced = client(mesh.keys['inference-2']!, 'paced worker')
      for (const c of [relayClient, worker, paced]) await c.waitOpen(15_000)
      const { key } = await benchAccount(gateway, 'floor')
      return await measure(scale, mesh, relay, key, { gateway, relay: relayClient, worker, paced })
    } finally {
      relay.kill('SIGTERM')
    }
  })
}

type Call = (i: number, onChunk: () => void) => Promise<unknown>

async function measure (scale: number, mesh: LocalMesh, relay: ChildProcess, key: string, to: Record<'gateway' | 'relay' | 'worker' | 'paced', MeshClient>): Promise<Row[]> {
  const prompt = (c: MeshClient, model: string, tokens: number): Call => (i, onChunk) => c.stream(InferenceProtocol.processPrompt,
    { requestId: `f${i}`, model, messages: [{ role: 'user', content: `floor prompt ${i}` }], maxTokens: tokens }, { onChunk, idleTimeout: 60_000 })
  const infer = (model: string, tokens: number): Call => (i, onChunk) => to.gateway.stream(GatewayProtocol.infer,
    { apiKey: key, model, prompt: `floor prompt ${i}`, maxTokens: tokens, stream: true }, { onChunk, idleTimeout: 60_000 })
  // each path: its zero-delay call, and its call to the worker whose first token comes after 20 ms
  const paths: Array<[string, Call, Call]> = [
    ['direct → worker', prompt(to.worker, 'synthetic', MAX_TOKENS), prompt(to.paced, 'paced', 4)],
    ['relay only → worker', prompt(to.relay, 'synthetic', MAX_TOKENS), prompt(to.relay, 'paced', 4)],
    ['gateway → worker', infer('synthetic', MAX_TOKENS), infer('paced', 4)]
  ]
  const pid = (n: string) => mesh.children.get(n)?.proc.pid
  const meter = new CpuMeter(() => ({ relay: relay.pid, gateway: pid('gateway'), worker: pid('inference') }))
  const none = () => {}
  // warmed as the main table's paths are
  for (const [, call] of paths) {
    await runLoad(20, 400, (i) => call(i, none))
    await runLoad(100, Math.max(500, Math.round(3000 * scale)), (i) => call(i, none))
  }
  const rows: Row[] = []
  const settle = () => new Promise((resolve) => setTimeout(resolve, 2000))
  for (const level of [{ concurrency: 1, requests: Math.max(100, Math.round(500 * scale)) }, { concurrency: 100, requests: Math.max(500, Math.round(5000 * scale)) }]) {
    let directRps = 0
    for (const [label, call] of paths) {
      await settle()
      meter.start()
      const r = await runLoad(level.concurrency, level.requests, (i) => call(i, none))
      const cpu = meter.perRequest(level.requests)
      if (label.startsWith('direct')) directRps = r.rps
      rows.push({
        bench: `${MAX_TOKENS} tokens, zero delay`, path: label, concurrency: level.concurrency, requests: level.requests, errors: r.errors,
        'p50 ms': r.p50.toFixed(2), 'p99 ms': r.p99.toFixed(2), 'req/s': r.rps.toFixed(0), 'of direct rps': label.startsWith('direct') ? '' : (r.rps / directRps).toFixed(2),
        'CPU µs/req: client': cpu.client!, relay: cpu.relay!, gateway: cpu.gateway!, worker: cpu.worker!, PostgreSQL: cpu.PostgreSQL!
      })
    }
  }
  // time to first token, one stream at a time
  const n = Math.max(50, Math.round(300 * scale))
  let directP50 = 0
  for (const [label, , call] of paths) {
    await firstTokens(20, call)
    const ms = await firstTokens(n, call)
    if (label.startsWith('direct')) directP50 = percentile(ms, 0.5)
    rows.push({
      bench: 'TTFT, 4 tokens, first after 20 ms', path: label, concurrency: 1, requests: n, errors: 0,
      'TTFT p50 ms': percentile(ms, 0.5).toFixed(2), 'TTFT p99 ms': percentile(ms, 0.99).toFixed(2),
      'added p50 ms': label.startsWith('direct') ? '' : (percentile(ms, 0.5) - directP50).toFixed(2)
    })
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-floor', 'the same call direct, through a relay only, and through the gateway', `${MAX_TOKENS} tokens per request; synthetic backend`, benchFloor)
}
