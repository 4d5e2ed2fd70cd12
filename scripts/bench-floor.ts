// The floor under any gateway of this design: the same worker call made straight to the worker,
// through a process that only relays it (scripts/relay-floor.ts: one more process and two more
// encrypted hops, and no other work), and through the gateway (key check, admission, routing,
// safety, receipt, settlement), in one run on the same mesh. Latency at concurrency 1, requests per
// second at 100, each process's CPU per request, and the time each adds to the first token of a
// stream whose first token comes after 20 ms. What the relay adds no gateway can take away.
// Standalone: `npx tsx scripts/bench-floor.ts` (BENCH_SCALE shortens it).
import { spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import RPC from '@hyperswarm/rpc'
import DHT from 'hyperdht'
import { LocalMesh } from './lib/localmesh.ts'
import { CpuMeter, percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { wireJson } from '../shared/mesh/wire.ts'
import { bootstrapList } from '../shared/config.ts'
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
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-floor-'))
  const client = DHT.keyPair(crypto.randomBytes(32))
  const relaySeed = crypto.randomBytes(32)
  const relayKey = keyPairFromSeed(relaySeed).publicKey.toString('hex')
  const limits = { requestsPerHour: 1e8, userRequestsPerHour: 1e8, tokensPerHour: 1e12, tokensPerDay: 1e12 }
  const mesh = new LocalMesh({
    home,
    databaseUrl: process.env.DATABASE_URL || undefined,
    webPort: 0,
    metricsPort: 0,
    // the bench client and the relay call the workers as operators' tools may
    extraAllow: [client.publicKey.toString('hex'), relayKey],
    workers: 2,
    // the second worker serves 'paced': its first token comes after 20 ms (50 tokens/s)
    instanceEnv: { 'inference-2': { SYNTHETIC_TOKENS_PER_SEC: '50', SYNTHETIC_MODELS: 'paced' } },
    serviceEnv: {
      gateway: { LOG_LEVEL: 'warn', DEFAULT_RATE_LIMIT: '100000000', TIER_LIMITS: JSON.stringify({ default: limits, premium: limits }) },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: '0', WORKER_CAPACITY: '100000' },
      auth: { LOG_LEVEL: 'warn' },
      web: { LOG_LEVEL: 'warn' }
    }
  })
  let relay: ChildProcess | null = null
  let rpc: RPC | null = null
  let dht: DHT | null = null
  const rows: Row[] = []
  try {
    await mesh.start()
    relay = await startRelay({
      HYPERINFER_HOME: home,
      HYPERINFER_BOOTSTRAP: mesh.bootstrapString,
      HYPERINFER_SEED: relaySeed.toString('hex'),
      HYPERINFER_MESH_ALLOW: client.publicKey.toString('hex'),
      RELAY_WORKERS: JSON.stringify({ synthetic: mesh.keys.inference, paced: mesh.keys['inference-2'] }),
      LOG_LEVEL: 'warn'
    })
    dht = createDHT({ keyPair: client, bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
    rpc = new RPC({ keyPair: client, dht, valueEncoding: wireJson })
    const gateway = new MeshClient(rpc, Buffer.from(mesh.gatewayKey, 'hex'), { name: 'gateway' })
    const relayClient = new MeshClient(rpc, Buffer.from(relayKey, 'hex'), { name: 'relay' })
    const worker = new MeshClient(rpc, Buffer.from(mesh.keys.inference!, 'hex'), { name: 'worker' })
    const paced = new MeshClient(rpc, Buffer.from(mesh.keys['inference-2']!, 'hex'), { name: 'paced worker' })
    for (const c of [gateway, relayClient, worker, paced]) await c.waitOpen(15_000)
    const name = 'floor' + Date.now()
    await gateway.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password: 'bench password' })
    const { token } = await gateway.call(GatewayProtocol.login, { email: `${name}@example.com`, password: 'bench password' })
    const { key } = await gateway.call(GatewayProtocol.createKey, { token, name: 'bench' })

    type Call = (i: number, onChunk: () => void) => Promise<unknown>
    const prompt = (to: MeshClient, model: string, tokens: number): Call => (i, onChunk) => to.stream(InferenceProtocol.processPrompt,
      { requestId: `f${i}`, model, messages: [{ role: 'user', content: `floor prompt ${i}` }], maxTokens: tokens }, { onChunk, idleTimeout: 60_000 })
    const infer = (model: string, tokens: number): Call => (i, onChunk) => gateway.stream(GatewayProtocol.infer,
      { apiKey: key, model, prompt: `floor prompt ${i}`, maxTokens: tokens, stream: true }, { onChunk, idleTimeout: 60_000 })
    const paths: Array<[string, Call, Call]> = [
      ['direct → worker', prompt(worker, 'synthetic', MAX_TOKENS), prompt(paced, 'paced', 4)],
      ['relay only → worker', prompt(relayClient, 'synthetic', MAX_TOKENS), prompt(relayClient, 'paced', 4)],
      ['gateway → worker', infer('synthetic', MAX_TOKENS), infer('paced', 4)]
    ]
    const pid = (n: string) => mesh.children.get(n)?.proc.pid
    const meter = new CpuMeter(() => ({ relay: relay?.pid, gateway: pid('gateway'), worker: pid('inference') }))
    const none = () => {}
    for (const [, call] of paths) {
      await runLoad(20, 400, (i) => call(i, none))
      await runLoad(100, Math.max(500, Math.round(3000 * scale)), (i) => call(i, none))
    }
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
    // time to first token, one stream at a time: the worker's first token comes after 20 ms
    const n = Math.max(50, Math.round(300 * scale))
    let directP50 = 0
    for (const [label, , call] of paths) {
      for (let i = 0; i < 20; i++) await call(i, none)
      const ms: number[] = []
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint()
        let first = 0
        await call(i, () => { if (!first) first = Number(process.hrtime.bigint() - t0) / 1e6 })
        ms.push(first)
      }
      ms.sort((a, b) => a - b)
      if (label.startsWith('direct')) directP50 = percentile(ms, 0.5)
      rows.push({
        bench: 'TTFT, 4 tokens, first after 20 ms', path: label, concurrency: 1, requests: n, errors: 0,
        'TTFT p50 ms': percentile(ms, 0.5).toFixed(2), 'TTFT p99 ms': percentile(ms, 0.99).toFixed(2),
        'added p50 ms': label.startsWith('direct') ? '' : (percentile(ms, 0.5) - directP50).toFixed(2)
      })
    }
    for (const c of [gateway, relayClient, worker, paced]) await c.close()
  } finally {
    await rpc?.destroy({ force: true }).catch(() => {})
    await dht?.destroy().catch(() => {})
    relay?.kill('SIGTERM')
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-floor', 'the same call direct, through a relay only, and through the gateway', `${MAX_TOKENS} tokens per request; synthetic backend`, benchFloor)
}
