import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test from 'brittle'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import pg from 'pg'
import { LocalMesh } from '../scripts/lib/localmesh.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { keyPairFromSeed } from '../shared/keys.ts'
import { GatewayConnection } from '../shared/sdk/rpc-transport.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { MeshError } from '../shared/errors.ts'
import { ADMIN_PASSWORD, registerAdmin, runCli, until, userWithKey } from './support/harness.ts'

// The mesh as a hostile DHT peer and a hostile web page see it. One mesh, started the way `npm start`
// starts it (embedded PostgreSQL in the state dir, no DATABASE_URL), serves every test in this file:
// the first test starts it, the last stops it.

const PER_PEER = 3
const MAX_AUTH_FAILURES = 5
const BAN_SECONDS = 3
let mesh: LocalMesh | null = null
let home = ''
const closers: Array<() => Promise<unknown>> = []

async function stranger (): Promise<MeshClient> {
  const conn = new GatewayConnection({ gateway: mesh!.gatewayKey, bootstrap: mesh!.bootstrapString, connectTimeoutMs: 15_000 })
  closers.push(() => conn.close())
  return conn.open()
}

async function codeOf (p: Promise<unknown>): Promise<string> {
  try { await p; return 'ok' } catch (err) { return err instanceof MeshError ? err.code : 'not a MeshError: ' + String(err) }
}

/** A GET with any Host header (fetch will not send a forged one). */
function get (url: string, host: string): Promise<{ status: number, body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { host } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => {
        let body: unknown = text
        try { body = JSON.parse(text) } catch {} // a non-JSON body is kept as text for the assertion
        resolve({ status: res.statusCode ?? 0, body })
      })
    })
    req.on('error', reject)
  })
}

test('hardening: a mesh started as npm start starts it', { timeout: 240_000 }, async (t) => {
  home = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'hardening-'))
  mesh = new LocalMesh({
    home,
    webPort: 0,
    metricsPort: 0,
    serviceEnv: { auth: { ADMIN_USERS: 'boss' }, gateway: { HYPERINFER_MAX_CONNECTIONS_PER_PEER: String(PER_PEER), HYPERINFER_MAX_AUTH_FAILURES_PER_MINUTE: String(MAX_AUTH_FAILURES), HYPERINFER_AUTH_FAILURE_BAN_SECONDS: String(BAN_SECONDS) } }
  })
  await mesh.start()
  t.ok(mesh.gatewayKey, 'the mesh is up')
})

test('database: the services connect as a role that is no superuser; the superuser password is random and kept 0600', { timeout: 120_000 }, async (t) => {
  const url = mesh!.children.get('gateway')!.env.DATABASE_URL!
  t.is(mesh!.children.get('auth')!.env.DATABASE_URL, url, 'auth and the gateway use the same URL')
  const app = new pg.Client({ connectionString: url })
  await app.connect()
  t.teardown(() => app.end())
  const role = (await app.query('SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = current_user')).rows[0]
  t.alike([role.rolsuper, role.rolcreatedb, role.rolcreaterole, role.rolbypassrls], [false, false, false, false], `the services' role (${role.rolname}) is no superuser and cannot create databases or roles`)
  t.ok((await app.query('SELECT count(*)::int AS n FROM schema_migrations')).rows[0].n > 0, 'the migrations ran')
  t.is(await app.query('CREATE TABLE evil (x int)').then(() => 'ok', (e) => e.code), '42501', 'it cannot create a table')
  t.is(await app.query('ALTER TABLE credit_ledger DISABLE TRIGGER ALL').then(() => 'ok', (e) => e.code), '42501', 'nor switch off the ledger\'s append-only trigger')
  t.is(await app.query('DELETE FROM audit_log').then(() => 'ok', (e) => e.code), '42501', 'nor delete from the audit log')

  const file = path.join(home, 'pg-password')
  t.ok(fs.existsSync(file), 'the superuser password is kept in the state dir')
  if (fs.existsSync(file)) {
    t.is(fs.statSync(file).mode & 0o777, 0o600, 'mode 0600')
    const password = fs.readFileSync(file, 'utf8').trim()
    t.ok(password.length >= 32 && password !== 'hyperinfer', 'a random password, not the old fixed one')
  }
  const port = new URL(url).port
  const legacy = new pg.Client({ connectionString: `postgres://hyperinfer:hyperinfer@127.0.0.1:${port}/postgres` })
  legacy.on('error', () => {}) // only the connect's outcome matters here
  t.is(await legacy.connect().then(() => 'ok', (e) => e.code), '28P01', 'the old fixed superuser password is refused')
  await legacy.end().catch(() => {}) // never connected

  const client = await stranger()
  const user = await userWithKey(client)
  const r = await client.call(GatewayProtocol.infer, { apiKey: user.key, prompt: 'hello', maxTokens: 3 }, 30_000)
  t.is(r.usage.completionTokens, 3, 'and a request goes through end to end')
  // answered requests reach PostgreSQL in a batch just after the answer
  const recorded = await until(async () => (await app.query('SELECT count(*)::int AS n FROM request_logs WHERE status = $1', ['success'])).rows[0].n, (n) => n >= 1)
  t.ok(recorded >= 1, 'recorded as the app role')
})

test('API keys: the scope list holds what is enforced; asking for the old models scope is a BAD_REQUEST', { timeout: 60_000 }, async (t) => {
  const client = await stranger()
  const user = await userWithKey(client)
  const keys = await client.call(GatewayProtocol.listKeys, { token: user.token })
  t.alike(keys.keys.find((k) => k.id === user.keyId)?.scopes, ['inference'], 'a new key has the inference scope only')
  const err = await client.call(GatewayProtocol.createKey, { token: user.token, name: 'catalog', scopes: ['models'] } as never).catch((e) => e)
  t.is(err.code, 'BAD_REQUEST', 'a key with a scope nothing checks is refused: ' + err.message)
  t.ok(/scopes/.test(err.message), 'naming the field')
})

test('Host allow-list: web and metrics answer localhost and their bound address, and refuse a forged Host with 421', { timeout: 60_000 }, async (t) => {
  for (const [name, base] of [['web', mesh!.webUrl!], ['metrics', mesh!.metricsUrl!]] as const) {
    const url = new URL('/health', base).toString()
    const port = new URL(base).port
    const evil = await get(url, `rebind.attacker.example:${port}`)
    t.is(evil.status, 421, `${name}: a forged Host is refused with 421`)
    t.is(evil.body?.error?.code, 'HOST_NOT_ALLOWED', `${name}: with a coded error body`)
    t.is((await get(url, `localhost:${port}`)).status, 200, `${name}: localhost is answered`)
    t.is((await get(url, `127.0.0.1:${port}`)).status, 200, `${name}: 127.0.0.1 is answered`)
  }
  const v1 = await get(new URL('/v1/models', mesh!.webUrl!).toString(), 'evil.example')
  t.is(v1.status, 421, 'the OpenAI routes refuse it too, before any key is looked at')
})

test('public health and registry: strangers get counts and the catalog; worker keys and the network key need an admin', { timeout: 120_000 }, async (t) => {
  const client = await stranger()
  const workerKey = mesh!.keys.inference!
  const h = await client.call(GatewayProtocol.getServiceHealth, {})
  t.is(h.workerCount, 1, 'a stranger sees how many workers are connected')
  t.absent(h.workers, 'but not which')
  t.absent(JSON.stringify(h).includes(workerKey), 'no worker key anywhere in the answer')
  const r = await client.call(GatewayProtocol.registry, {})
  t.ok(r.models.some((m) => m.id === 'synthetic'), 'a stranger sees the catalog')
  t.absent(r.key, 'but not the network key')
  t.absent(JSON.stringify(r).includes(mesh!.registryKey), 'not anywhere in the answer')

  const user = await userWithKey(client)
  t.absent((await client.call(GatewayProtocol.getServiceHealth, { token: user.token })).workers, 'a user\'s session gets the public view')
  t.absent((await client.call(GatewayProtocol.registry, { token: user.token })).key, 'of the registry too')
  t.is(await codeOf(client.call(GatewayProtocol.registry, { token: 'not-a-session-token' })), 'UNAUTHENTICATED', 'a bad token is refused, not ignored')

  const boss = await registerAdmin(client)
  const full = await client.call(GatewayProtocol.getServiceHealth, { token: boss })
  t.ok(full.workers?.some((w) => w.publicKey === workerKey), 'an admin sees each worker by its key')
  t.is((await client.call(GatewayProtocol.registry, { token: boss })).key, mesh!.registryKey, 'and the network key')

  const web = await (await fetch(mesh!.webUrl + '/health')).json() as Record<string, unknown>
  t.absent(JSON.stringify(web).includes(mesh!.registryKey), 'the web service\'s public /health does not show the network key')

  // the CLI: counts for anyone, the detail once an admin is logged in
  const anon = await runCli(home, ['status', '--json'])
  t.ok(anon.code === 0 && anon.json?.workerCount === 1 && anon.json?.workers === undefined, 'hyperinfer status without a session: the count, no worker list')
  t.is((await runCli(home, ['login', '--email', 'boss@example.com', '--password', ADMIN_PASSWORD])).code, 0, 'the admin logs in')
  const admin = await runCli(home, ['status', '--json'])
  t.ok(admin.code === 0 && admin.json?.workers?.some((w: { publicKey: string }) => w.publicKey === workerKey), 'hyperinfer status as the admin lists the worker')
  const reg = await runCli(home, ['registry'])
  t.ok(reg.code === 0 && reg.stdout.includes(mesh!.registryKey), 'hyperinfer registry as the admin shows the network key')
})

test('connection caps: one key gets at most the per-peer cap of connections; others still get in', { timeout: 120_000 }, async (t) => {
  const bootstrap = mesh!.testnet!.bootstrap
  const gateway = Buffer.from(mesh!.gatewayKey, 'hex')
  const peer = (seed: Buffer) => {
    const keyPair = keyPairFromSeed(seed)
    const dht = createDHT({ keyPair, bootstrap, clientOnly: true })
    const rpc = new RPC({ dht, keyPair, valueEncoding: c.json })
    closers.push(async () => { await rpc.destroy({ force: true }); await dht.destroy() })
    return rpc
  }
  const models = (conn: ReturnType<RPC['connect']>) => conn.request('models', {}, { timeout: 10_000 }).then((env: { ok: boolean }) => env.ok, () => false)

  const flooder = peer(crypto.randomBytes(32))
  const held = Array.from({ length: PER_PEER }, () => flooder.connect(gateway))
  t.alike(await Promise.all(held.map(models)), held.map(() => true), `the first ${PER_PEER} connections from one key are served`)
  const over = flooder.connect(gateway)
  t.is(await models(over), false, `connection ${PER_PEER + 1} from the same key is refused`)
  over.destroy()

  const other = peer(crypto.randomBytes(32))
  t.is(await models(other.connect(gateway)), true, 'another key still connects and is served')
  const client = await stranger()
  t.ok((await client.call(GatewayProtocol.models, {})).models.length > 0, 'and so does a fresh client')

  held[0]!.destroy()
  const again = await until(async () => {
    const conn = flooder.connect(gateway)
    const ok = await models(conn)
    if (!ok) conn.destroy()
    return ok
  }, (ok) => ok, 20_000, 200)
  t.ok(again, 'once one of its connections closes, the key may open another')
})

test('bad credentials: a stranger presenting made-up API keys is cut off and refused for a while; others are not', { timeout: 120_000 }, async (t) => {
  const madeUp = () => 'hi_' + crypto.randomBytes(32).toString('base64url').slice(0, 43)
  const infer = (client: MeshClient) => codeOf(client.call(GatewayProtocol.infer, { apiKey: madeUp(), prompt: 'x'.repeat(100_000), maxTokens: 1 }, 10_000))
  const attacker = await stranger()
  const codes: string[] = []
  for (let i = 0; i < MAX_AUTH_FAILURES; i++) codes.push(await infer(attacker))
  t.alike(codes, codes.map(() => 'INVALID_API_KEY'), `the first ${MAX_AUTH_FAILURES} made-up keys are answered INVALID_API_KEY`)
  const after = await until(() => infer(attacker), (code) => code !== 'INVALID_API_KEY', 10_000, 50)
  t.ok(after === 'UNAVAILABLE' || after === 'RATE_LIMITED', `then the stranger is cut off: its connection closed and refused at the handshake, or told to wait (${after})`)
  t.ok(['UNAVAILABLE', 'RATE_LIMITED'].includes(await infer(attacker)), 'and it stays cut off while the ban lasts')

  const other = await stranger()
  t.ok((await other.call(GatewayProtocol.models, {})).models.length > 0, 'another peer is still served')
  const user = await userWithKey(other)
  t.is(await codeOf(other.call(GatewayProtocol.infer, { apiKey: user.key, prompt: 'hello', maxTokens: 2 }, 30_000)), 'ok', 'and its real key works')

  const back = await until(() => codeOf(attacker.call(GatewayProtocol.models, {}, 5_000)), (code) => code === 'ok', (BAN_SECONDS + 20) * 1000, 500)
  t.is(back, 'ok', `after ${BAN_SECONDS} s the stranger is let in again`)
})

test('hardening: stop the mesh', { timeout: 60_000 }, async () => {
  for (const close of closers.reverse()) await close().catch(() => {})
  await mesh?.stop()
  if (home) fs.rmSync(home, { recursive: true, force: true })
})
