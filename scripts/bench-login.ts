// Whether a password flood slows real logins, on real processes (LocalMesh: auth, a gateway,
// PostgreSQL): one user logs in over and over (c=1), alone and then while a stranger with its own
// key keeps 100 wrong-password logins in flight against another account. Reports the real logins'
// latency in both phases and what the flood got back (refused at once, or checked and wrong).
// The budget: a real login's p99 stays under 1 s during the flood.
// Standalone: `npx tsx scripts/bench-login.ts` (BENCH_SCALE=0.2 shortens it).
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import RPC from '@hyperswarm/rpc'
import DHT from 'hyperdht'
import { LocalMesh } from './lib/localmesh.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { wireJson } from '../shared/mesh/wire.ts'
import { bootstrapList } from '../shared/config.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { runLoad, runStandalone, type Row } from './bench-lib.ts'

const FLOOD = 100

/** A client with a key of its own: the gateway throttles by the caller's key, so user and attacker differ. */
async function dial (mesh: LocalMesh): Promise<{ gateway: MeshClient, close: () => Promise<void> }> {
  const keyPair = DHT.keyPair(crypto.randomBytes(32))
  const dht = createDHT({ keyPair, bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
  const rpc = new RPC({ keyPair, dht, valueEncoding: wireJson })
  const gateway = new MeshClient(rpc, Buffer.from(mesh.gatewayKey, 'hex'), { name: 'gateway' })
  await gateway.waitOpen(15_000)
  return {
    gateway,
    close: async () => {
      await gateway.close()
      await rpc.destroy({ force: true }).catch(() => {}) // best effort at the end of the bench
      await dht.destroy().catch(() => {}) // best effort at the end of the bench
    }
  }
}

export async function benchLogin (scale: number): Promise<Row[]> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-login-'))
  const mesh = new LocalMesh({
    home,
    databaseUrl: process.env.DATABASE_URL || undefined,
    webPort: 0,
    metricsPort: 0,
    serviceEnv: { gateway: { LOG_LEVEL: 'warn' }, auth: { LOG_LEVEL: 'warn' }, inference: { LOG_LEVEL: 'warn' } }
  })
  const closers: Array<() => Promise<void>> = []
  const rows: Row[] = []
  try {
    await mesh.start()
    const user = await dial(mesh)
    const attacker = await dial(mesh)
    closers.push(user.close, attacker.close)
    const account = async (name: string) => {
      const email = `${name}@example.com`
      await user.gateway.call(GatewayProtocol.register, { username: name, email, password: 'bench password' }, 30_000)
      return email
    }
    const me = await account('me' + Date.now())
    const target = await account('target' + Date.now())
    const n = Math.max(10, Math.round(40 * scale))
    const login = () => user.gateway.call(GatewayProtocol.login, { email: me, password: 'bench password' }, 30_000)

    await runLoad(1, 3, login) // warm
    const quiet = await runLoad(1, n, login)

    let running = true
    const outcomes = new Map<string, number>()
    const attempt = async () => {
      while (running) {
        const code = await attacker.gateway.call(GatewayProtocol.login, { email: target, password: 'wrong ' + crypto.randomBytes(4).toString('hex') }, 30_000)
          .then(() => 'LOGGED_IN', (err: { code?: string }) => err.code ?? 'UNKNOWN')
        outcomes.set(code, (outcomes.get(code) ?? 0) + 1)
      }
    }
    const flood = Array.from({ length: FLOOD }, attempt)
    const during = await runLoad(1, n, login)
    running = false
    await Promise.all(flood)

    const row = (phase: string, r: Awaited<ReturnType<typeof runLoad>>): Row => ({
      bench: 'real logins during a password flood', phase, logins: n, errors: r.errors, 'p50 ms': r.p50.toFixed(1), 'p99 ms': r.p99.toFixed(1)
    })
    rows.push(row('quiet', quiet))
    const got = [...outcomes].sort((a, b) => b[1] - a[1]).map(([code, k]) => `${code} ${k}`).join(', ')
    rows.push(row(`${FLOOD} wrong passwords in flight (${got})`, during))
  } finally {
    for (const close of closers) await close()
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-login', 'real logins alone and during a wrong-password flood', 'budget: p99 during the flood ≤ 1000 ms', benchLogin)
}
