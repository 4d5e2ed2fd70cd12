import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { LocalMesh } from '../scripts/lib/localmesh.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { bootstrapList } from '../shared/config.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { InferenceProtocol } from '../shared/protocol/inference.ts'
import { runLoad } from '../scripts/bench-lib.ts'

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hq-'))
const kp = DHT.keyPair(crypto.randomBytes(32))
const limits = { requestsPerHour: 1e8, userRequestsPerHour: 1e8, tokensPerHour: 1e12, tokensPerDay: 1e12 }
const mesh = new LocalMesh({ home, webPort: 0, metricsPort: 0, extraAllow: [kp.publicKey.toString('hex')], gateways: 2,
  instanceEnv: { 'gateway-2': { HYPERINFER_ACCOUNTING: 'off' } },
  serviceEnv: { gateway: { LOG_LEVEL: 'warn', TIER_LIMITS: JSON.stringify({ default: limits, premium: limits }), ...(process.env.GWENV ? JSON.parse(process.env.GWENV) : {}) },
    inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: process.env.TTFT ? '50' : '0', WORKER_CAPACITY: '100000' }, auth: { LOG_LEVEL: 'warn' } } })
await mesh.start()
const dht = createDHT({ keyPair: kp, bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
const rpc = new RPC({ keyPair: kp, dht, valueEncoding: c.json })
const g1 = new MeshClient(rpc, Buffer.from(mesh.gatewayKeys[0]!, 'hex'), { name: 'g1' })
const g2 = new MeshClient(rpc, Buffer.from(mesh.gatewayKeys[1]!, 'hex'), { name: 'g2' })
const w = new MeshClient(rpc, Buffer.from(mesh.keys.inference!, 'hex'), { name: 'w' })
await g1.waitOpen(15000); await g2.waitOpen(15000); await w.waitOpen(15000)
const name = 'q' + Date.now()
await g1.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password: 'bench password' })
const { token } = await g1.call(GatewayProtocol.login, { email: `${name}@example.com`, password: 'bench password' })
const { key } = await g1.call(GatewayProtocol.createKey, { token, name: 'b' })
const via = (g: MeshClient) => (i: number) => g.stream(GatewayProtocol.infer, { apiKey: key, prompt: `bench prompt ${i}`, maxTokens: 16, stream: true }, { onChunk: () => {}, idleTimeout: 60000 })
const direct = (i: number) => w.stream(InferenceProtocol.processPrompt, { requestId: 'b' + i, model: 'synthetic', messages: [{ role: 'user', content: `bench prompt ${i}` }], maxTokens: 16 }, { onChunk: () => {}, idleTimeout: 60000 })
for (const [n, f] of [['direct', direct], ['on', via(g1)], ['off', via(g2)]] as const) await runLoad(10, 200, f)
if (process.env.TTFT) {
  for (const [n, g] of [['direct', null], ['on', g1], ['off', g2]] as const) {
    const ms: number[] = []
    for (let i = 0; i < 100; i++) { const t0 = performance.now(); let f = 0
      const on = () => { if (!f) f = performance.now() - t0 }
      if (g) await g.stream(GatewayProtocol.infer, { apiKey: key, prompt: `p ${i}`, maxTokens: 1, stream: true }, { onChunk: on, idleTimeout: 60000 })
      else await w.stream(InferenceProtocol.processPrompt, { requestId: 't' + i, model: 'synthetic', messages: [{ role: 'user', content: `p ${i}` }], maxTokens: 1 }, { onChunk: on, idleTimeout: 60000 })
      ms.push(f) }
    ms.sort((a, b) => a - b); console.log('ttft', n, ms[50]!.toFixed(2), ms[98]!.toFixed(2)) }
} else for (const conc of (process.env.CONC ?? '1,100').split(',').map(Number)) {
  for (const [n, f] of [['direct', direct], ['on', via(g1)], ['off', via(g2)]] as const) {
    const r = await runLoad(conc, conc === 1 ? 200 : 2000, f)
    console.log(conc, n, 'p50', r.p50.toFixed(2), 'p99', r.p99.toFixed(2), 'rps', r.rps.toFixed(0), 'err', r.errors, [...r.codes].join(','))
  }
}
if (process.env.PAUSE) { console.log('gateway pid', mesh.children.get('gateway')!.proc.pid); await new Promise((r) => setTimeout(r, Number(process.env.PAUSE))) }
await rpc.destroy({ force: true }).catch(() => {}); await dht.destroy().catch(() => {}); await mesh.stop(); fs.rmSync(home, { recursive: true, force: true })
process.exit(0)
