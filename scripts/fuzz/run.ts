import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { LocalMesh } from '../lib/localmesh.ts'
import { createDHT } from '../../shared/mesh/dht.ts'
import { bootstrapList } from '../../shared/config.ts'
import { loadSecret } from '../../shared/service-env.ts'
import type { MethodDef } from '../../shared/mesh/method.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { AuthEvents, AuthProtocol } from '../../shared/protocol/auth.ts'
import { InferenceProtocol } from '../../shared/protocol/inference.ts'
import { MetricsProtocol } from '../../shared/protocol/metrics.ts'
import { CommonProtocol } from '../../shared/protocol/common.ts'
import { GatewayConnection } from '../../shared/sdk/rpc-transport.ts'
import type { Known, Rand } from './mutate.ts'
import { RpcFuzzer, type Identity, type RpcTarget } from './rpc.ts'
import { HttpFuzzer } from './http.ts'
import { ProcessMonitor, scanLogs, type ProcessReport } from './monitor.ts'
import { SecretScan, type Tally } from './tally.ts'

// One fuzz run against a real mesh: start it, make a user with a key and an admin, send mutated RPC
// frames (as a stranger and as a mesh member) and mutated HTTP bodies, then check that every process
// is alive, a real inference still works over RPC and HTTP, and no secret reached a response or a log.

export interface FuzzOptions {
  frames: number
  http: number
  seed: number
  concurrency: number
  timeoutMs: number
  home: string
  databaseUrl?: string
  log?: (line: string) => void
}

export interface FuzzReport {
  rpc: Tally
  http: Tally
  processes: ProcessReport[]
  postRun: { rpc: string, http: string }
  leaks: string[]
  logBytes: number
  seconds: number
  failures: string[]
}

const defs = (...protocols: Array<Record<string, MethodDef<any, any, any>>>) => protocols.flatMap((p) => Object.values(p))
const ADMIN_ONLY = new Set(['registryHistory', 'workers', 'joinTokens', 'grantCredits'])

async function runPool (count: number, concurrency: number, one: (i: number) => Promise<void>, progress?: (done: number) => void): Promise<void> {
  let next = 0
  let done = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++
      await one(i)
      if (++done % 5000 === 0) progress?.(done)
    }
  }))
}

export async function runFuzz (opts: FuzzOptions): Promise<FuzzReport> {
  const log = opts.log ?? (() => {})
  const started = Date.now()
  const member = DHT.keyPair(crypto.randomBytes(32))
  const stranger = DHT.keyPair(crypto.randomBytes(32))
  const limits = { requestsPerHour: 1e8, userRequestsPerHour: 1e8, tokensPerHour: 1e12, tokensPerDay: 1e12 }
  const mesh = new LocalMesh({
    home: opts.home,
    databaseUrl: opts.databaseUrl,
    webPort: 0,
    metricsPort: 0,
    extraAllow: [member.publicKey.toString('hex')],
    // info level whatever the caller's LOG_LEVEL: the logs are checked for secrets after the run
    // and the fuzzer's stranger keeps being answered: its made-up keys would otherwise get it cut off
    // (shared/mesh/strikes.ts) and the rest of the run would test only the handshake's refusal
    env: { LOG_LEVEL: 'info', HYPERINFER_MAX_AUTH_FAILURES_PER_MINUTE: '100000000' },
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { DEFAULT_RATE_LIMIT: '100000000', TIER_LIMITS: JSON.stringify({ default: limits, premium: limits }) },
      inference: { SYNTHETIC_TOKENS_PER_SEC: '0' }
    }
  })
  let dht: DHT | null = null
  const rpcs: RPC[] = []
  let rpcFuzz: RpcFuzzer | null = null
  try {
    log('fuzz: starting the mesh (real processes, local DHT, PostgreSQL)…')
    await mesh.start()
    const monitor = new ProcessMonitor(mesh)
    monitor.start()

    // a user with a key, an admin, and the secrets no answer or log may ever contain
    const conn = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
    const gw = await conn.open()
    const password = 'pw-' + crypto.randomBytes(12).toString('hex')
    const adminPassword = 'boss-' + crypto.randomBytes(12).toString('hex')
    await gw.call(GatewayProtocol.register, { username: 'fuzzer', email: 'fuzzer@example.com', password })
    const { token } = await gw.call(GatewayProtocol.login, { email: 'fuzzer@example.com', password })
    const { key } = await gw.call(GatewayProtocol.createKey, { token, name: 'fuzz' })
    await gw.call(GatewayProtocol.register, { username: 'boss', email: 'boss@example.com', password: adminPassword })
    const { token: adminToken } = await gw.call(GatewayProtocol.login, { email: 'boss@example.com', password: adminPassword })
    const jwtSecret = loadSecret(mesh.home, 'jwt')
    const scan = new SecretScan({
      apiKey: key, session: token, adminSession: adminToken, password, adminPassword,
      jwtSecretHex: jwtSecret.toString('hex'), jwtSecretB64: jwtSecret.toString('base64'), workerToken: mesh.workerToken
    })

    dht = createDHT({ keyPair: member, bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
    const rpc = new RPC({ keyPair: member, dht, valueEncoding: c.json })
    rpcs.push(rpc)
    const known = (def: MethodDef<any, any, any>, r: Rand): Known => ({
      apiKey: () => r.chance(0.7) ? key : 'hi_' + 'q'.repeat(43),
      // logout would end the session the rest of the run uses
      token: () => def.name === 'logout' || r.chance(0.2) ? 'eyJ' + 'a'.repeat(40) : ADMIN_ONLY.has(def.name) ? adminToken : token,
      model: () => r.chance(0.7) ? 'synthetic' : 'x' + r.int(100),
      keyHash: () => crypto.createHash('sha256').update(r.chance(0.5) ? key : 'nope').digest('hex'),
      maxTokens: () => 1 + r.int(64)
    })
    const gatewayDefs = defs(GatewayProtocol, CommonProtocol, AuthEvents)
    const all: RpcTarget[] = [
      { service: 'gateway', publicKey: mesh.gatewayKey, defs: gatewayDefs },
      { service: 'inference', publicKey: mesh.keys.inference!, defs: defs(InferenceProtocol, CommonProtocol) },
      { service: 'auth', publicKey: mesh.keys.auth!, defs: defs(AuthProtocol, CommonProtocol) },
      { service: 'metrics', publicKey: mesh.keys.metrics!, defs: defs(MetricsProtocol, CommonProtocol) },
      { service: 'web', publicKey: mesh.keys.web!, defs: defs(CommonProtocol) }
    ]
    // a member is trusted to register as a worker; the fuzzer would then be routed real requests
    const memberTargets = all.map((t) => t.service === 'gateway' ? { ...t, defs: t.defs.filter((d) => d.name !== 'registerWorker' && d.name !== 'workerHeartbeat') } : t)
    // strangers reach only the services with public methods; the others refuse the connection
    const ids: Identity[] = [
      { name: 'stranger', rpc, keyPair: stranger, targets: all.filter((t) => t.service === 'gateway' || t.service === 'inference'), known },
      { name: 'member', rpc, keyPair: member, targets: memberTargets, known }
    ]
    rpcFuzz = new RpcFuzzer(ids, scan, { timeoutMs: opts.timeoutMs })
    const rf = rpcFuzz
    const httpFuzz = new HttpFuzzer(mesh.webUrl!, { apiKey: key, session: token }, opts.seed ^ 0x5eed, scan, opts.timeoutMs)

    log(`fuzz: ${opts.frames} RPC frames and ${opts.http} HTTP requests, concurrency ${opts.concurrency}, seed ${opts.seed}`)
    await Promise.all([
      runPool(opts.frames, opts.concurrency, (i) => rf.frame(i, opts.seed).catch((err) => rf.tally.count('failure', 'fuzzer', String(err))), (n) => log(`  rpc ${n}/${opts.frames}`)),
      runPool(opts.http, Math.max(1, Math.round(opts.concurrency / 2)), (i) => httpFuzz.request(i).catch((err) => httpFuzz.tally.count('failure', 'fuzzer', String(err))), (n) => log(`  http ${n}/${opts.http}`))
    ])
    rf.close()

    log('fuzz: checking the mesh after the run…')
    const postRun = { rpc: await postRpc(mesh, key), http: await postHttp(mesh.webUrl!, key) }
    await conn.close()
    const processes = monitor.stop()
    const logBytes = scanLogs(mesh.home, scan)

    const failures: string[] = []
    for (const p of processes) if (!p.alive) failures.push(`${p.name} is not running (${p.exit ?? 'gone'})`)
    if (postRun.rpc !== 'ok') failures.push(`post-run inference over RPC: ${postRun.rpc}`)
    if (postRun.http !== 'ok') failures.push(`post-run inference over HTTP: ${postRun.http}`)
    for (const t of [rf.tally, httpFuzz.tally]) {
      if (t.counts.failure) failures.push(`${t.counts.failure} bad ${t.kind} answers, e.g. ${t.failures.slice(0, 5).join(' | ')}`)
    }
    if (scan.leaks.length) failures.push(`secrets leaked: ${scan.leaks.slice(0, 10).join('; ')}`)
    return { rpc: rf.tally, http: httpFuzz.tally, processes, postRun, leaks: scan.leaks, logBytes, seconds: (Date.now() - started) / 1000, failures }
  } finally {
    rpcFuzz?.close()
    for (const x of rpcs) await x.destroy({ force: true }).catch(() => {})
    if (dht) await dht.destroy().catch(() => {})
    await mesh.stop()
  }
}

async function postRpc (mesh: LocalMesh, key: string): Promise<string> {
  const conn = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
  try {
    const gw = await conn.open()
    let streamed = ''
    const res = await gw.stream(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: 'still there?', maxTokens: 8, stream: true }, {
      onChunk: (ch) => { streamed += ch.text },
      idleTimeout: 20_000
    })
    return streamed.length > 0 && res.usage.completionTokens > 0 ? 'ok' : `empty answer (${JSON.stringify(res).slice(0, 200)})`
  } catch (err) {
    return (err as Error).message
  } finally {
    await conn.close()
  }
}

async function postHttp (webUrl: string, key: string): Promise<string> {
  try {
    const res = await fetch(webUrl + '/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: 'still there?' }], max_tokens: 8 }),
      signal: AbortSignal.timeout(20_000)
    })
    const body = await res.json() as { choices?: Array<{ message?: { content?: string } }> }
    const text = body.choices?.[0]?.message?.content ?? ''
    return res.status === 200 && text.length > 0 ? 'ok' : `HTTP ${res.status}: ${JSON.stringify(body).slice(0, 200)}`
  } catch (err) {
    return (err as Error).message
  }
}

/** A fresh state dir for a run. */
export function fuzzHome (base: string): string {
  return fs.mkdtempSync(path.join(base, 'hyperinfer-fuzz-'))
}
