import test from 'brittle'
import crypto from 'node:crypto'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import type DHT from 'hyperdht'
import type { KeyPair } from 'hyperdht'
import { z } from 'zod'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin, type TestMesh } from './support/harness.ts'
import { bootstrapList } from '../shared/config.ts'
import { keyPairFromSeed, serviceKeyPair } from '../shared/keys.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { method, type MethodDef } from '../shared/mesh/method.ts'
import { CREDENTIAL_FIELD, type Credential, type PeerRole } from '../shared/mesh/roles.ts'
import * as authModule from '../shared/protocol/auth.ts'
import * as commonModule from '../shared/protocol/common.ts'
import * as gatewayModule from '../shared/protocol/gateway.ts'
import * as inferenceModule from '../shared/protocol/inference.ts'
import * as metricsModule from '../shared/protocol/metrics.ts'
import * as operatorsModule from '../shared/protocol/operators.ts'
import * as requestsModule from '../shared/protocol/requests.ts'
import * as safetyModule from '../shared/protocol/safety.ts'

// Who may call what, against one real mesh. The matrix is generated from the protocol modules: every
// method of every service, called by a stranger, a stranger with an API key, a session, an admin's
// session, an approved worker, a replica gateway and other members, each with a body the method's
// schema refuses. A call its rule lets in must come back BAD_REQUEST (it passed the gate and failed
// parsing, so no handler ran); any other call must be refused (FORBIDDEN, UNAUTHENTICATED,
// INVALID_API_KEY) or, at a service that takes members only, never get a connection.

const { AuthProtocol } = authModule
const { GatewayProtocol } = gatewayModule
const PROTOCOL_MODULES = { auth: authModule, common: commonModule, gateway: gatewayModule, inference: inferenceModule, metrics: metricsModule, safety: safetyModule, operators: operatorsModule, requests: requestsModule }

type Service = 'gateway' | 'auth' | 'metrics' | 'web' | 'inference'
/** which protocol objects each service's server answers */
const SERVED: Record<string, Service[]> = {
  GatewayProtocol: ['gateway'],
  AuthProtocol: ['auth'],
  SafetyProtocol: ['gateway'],
  OperatorProtocol: ['gateway'],
  RequestsProtocol: ['gateway'],
  AuthSafetyProtocol: ['auth'],
  MetricsProtocol: ['metrics'],
  InferenceProtocol: ['inference'],
  CommonProtocol: ['gateway', 'auth', 'metrics', 'web', 'inference']
}
/** protocol objects served only on a connection the server dialled, and the role it dialled */
const DIALLED: Record<string, PeerRole> = { AuthEvents: 'auth' }
/** services that take no connection from anyone off their members list */
const MEMBERS_ONLY: Service[] = ['auth', 'metrics', 'web']

function isMethodDef (v: unknown): v is MethodDef<any, any, any> {
  return !!v && typeof v === 'object' && typeof (v as MethodDef).name === 'string' && 'request' in v && 'stream' in v
}

/** Every protocol object of every protocol module: the objects whose values are all method definitions. */
function protocols (): Array<{ name: string, methods: Array<MethodDef<any, any, any>> }> {
  const out: Array<{ name: string, methods: Array<MethodDef<any, any, any>> }> = []
  for (const mod of Object.values(PROTOCOL_MODULES)) {
    for (const [name, value] of Object.entries(mod)) {
      if (!value || typeof value !== 'object' || Array.isArray(value)) continue
      const entries = Object.values(value)
      if (entries.length > 0 && entries.every(isMethodDef)) out.push({ name, methods: entries })
    }
  }
  return out
}

interface Column {
  name: string
  identity: 'stranger' | 'worker' | 'replica' | 'web' | 'metrics' | 'operator'
  /** roles this caller holds at a service (besides stranger) */
  roles: (service: Service) => PeerRole[]
  /** credentials it carries */
  holds: Credential[]
}

const EVERY_CREDENTIAL: Credential[] = ['apiKey', 'session', 'admin']
const COLUMNS: Column[] = [
  { name: 'stranger', identity: 'stranger', roles: () => [], holds: [] },
  { name: 'apiKey', identity: 'stranger', roles: () => [], holds: ['apiKey'] },
  { name: 'session', identity: 'stranger', roles: () => [], holds: ['session'] },
  { name: 'admin', identity: 'stranger', roles: () => [], holds: ['session', 'admin'] },
  // members carry every credential: what is tested for them is their role
  { name: 'worker', identity: 'worker', roles: (s) => s === 'gateway' ? ['inference', 'worker'] : ['inference'], holds: EVERY_CREDENTIAL },
  { name: 'replicaGateway', identity: 'replica', roles: (s) => s === 'gateway' ? ['gateway', 'replicaGateway'] : ['gateway'], holds: EVERY_CREDENTIAL },
  { name: 'member:web', identity: 'web', roles: () => ['web'], holds: EVERY_CREDENTIAL },
  { name: 'member:metrics', identity: 'metrics', roles: () => ['metrics'], holds: EVERY_CREDENTIAL },
  { name: 'operator', identity: 'operator', roles: () => ['operator'], holds: EVERY_CREDENTIAL }
]

function expectAllowed (def: MethodDef<any, any, any>, col: Column, service: Service): boolean {
  const roles = new Set<PeerRole>(['stranger', ...col.roles(service)])
  if (!def.callers.from.some((r) => roles.has(r))) return false
  return !def.callers.needs || col.holds.includes(def.callers.needs)
}

/** One key pair on the test DHT, with one long-lived connection per service it calls. */
class Identity {
  readonly keyPair: KeyPair
  private readonly dht: DHT
  private readonly rpc: RPC
  private readonly clients = new Map<string, MeshClient>()

  constructor (keyPair: KeyPair, bootstrap: string) {
    this.keyPair = keyPair
    this.dht = createDHT({ keyPair, bootstrap: bootstrapList(bootstrap), clientOnly: true })
    this.rpc = new RPC({ keyPair, dht: this.dht, valueEncoding: c.json })
  }

  get key (): string { return this.keyPair.publicKey.toString('hex') }

  /** The connected client, or null when the service would not take the connection. */
  async to (serviceKey: string, timeout = 15_000): Promise<MeshClient | null> {
    let client = this.clients.get(serviceKey)
    if (!client) {
      client = new MeshClient(this.rpc, Buffer.from(serviceKey, 'hex'), { name: serviceKey.slice(0, 8), maxBackoff: 500 })
      this.clients.set(serviceKey, client)
    }
    return client.waitOpen(timeout).then(() => client, () => null)
  }

  async close (): Promise<void> {
    for (const client of this.clients.values()) await client.close()
    await this.rpc.destroy({ force: true }).catch(() => {})
    await this.dht.destroy().catch(() => {})
  }
}

interface Fixture {
  tm: TestMesh
  ids: Record<Column['identity'], Identity>
  user: { token: string, key: string }
  admin: string
}

const cleanups: Array<() => unknown> = []
let shared: Promise<Fixture> | null = null

function fixture (): Promise<Fixture> {
  shared ??= setup()
  return shared
}

async function setup (): Promise<Fixture> {
  const kp = () => keyPairFromSeed(crypto.randomBytes(32))
  const pairs = { stranger: kp(), worker: kp(), replica: kp(), web: kp(), metrics: kp(), operator: kp() }
  const hex = (p: KeyPair) => p.publicKey.toString('hex')
  const collector = { teardown: (fn: () => unknown) => { cleanups.push(fn) } }
  const tm = await startTestMesh(collector, {
    // configured members: a worker, a second gateway, a second web and metrics, and a bare key (an operator's tool)
    extraAllow: [`inference-9=${hex(pairs.worker)}`, `gateway-9=${hex(pairs.replica)}`, `web-9=${hex(pairs.web)}`, `metrics-9=${hex(pairs.metrics)}`, hex(pairs.operator)],
    // the matrix presents a wrong credential to every method from the same stranger on purpose: the
    // cut-off for repeated failures (tested in hardening.test.ts) would end the run part-way
    env: { HYPERINFER_MAX_AUTH_FAILURES_PER_MINUTE: '100000' },
    serviceEnv: { auth: { ADMIN_USERS: 'boss' } }
  })
  const ids = Object.fromEntries(Object.entries(pairs).map(([n, p]) => [n, new Identity(p, tm.mesh.bootstrapString)])) as Fixture['ids']
  cleanups.push(async () => { for (const id of Object.values(ids)) await id.close() })
  const { client } = await gatewayClient(collector, tm.mesh)
  const user = await userWithKey(client)
  const admin = await registerAdmin(client)
  // the worker identity registers on its connection, which makes it an approved worker there
  const asWorker = (await ids.worker.to(tm.mesh.gatewayKey))!
  const reg = await asWorker.call(GatewayProtocol.registerWorker, { models: [] })
  if (reg.approval !== 'approved') throw new Error('the configured worker was not approved')
  return { tm, ids, user, admin }
}

test('a worker\'s identity cannot write the registry or validate API keys; a forwarded change is recorded as its real author', { timeout: 240_000 }, async (t) => {
  const { tm, ids, user, admin } = await fixture()
  const { mesh } = tm
  // the mesh's own worker, by its own key: a member, but no gateway
  const workerKeys = new Identity(serviceKeyPair(mesh.home, 'inference'), mesh.bootstrapString)
  t.teardown(() => workerKeys.close())
  const toGateway = (await workerKeys.to(mesh.gatewayKey))!
  const stranger = crypto.randomBytes(32).toString('hex')
  // the shape an old replica sent: the change and a name for its author
  const forwardAsAnyone = method<{ change: unknown, by: string }, { result: unknown }>('registryForward', GatewayProtocol.registryForward.callers, z.any())
  const attempts = [
    { change: { op: 'putWorker', input: { key: stranger, models: ['synthetic'] } }, by: 'user:admin' },
    { change: { op: 'approveWorker', key: stranger }, by: 'user:admin' },
    { change: { op: 'setModel', id: 'synthetic', patch: { pricePer1MInput: 0, pricePer1MOutput: 0 } }, by: 'user:admin' },
    { change: { op: 'putModel', input: { id: 'planted', provider: 'openai', backendModel: 'x', tasks: ['chat'], contextLength: 4096, pricePer1MInput: 0, pricePer1MOutput: 0, quality: 1, safety: 1 } }, by: 'user:admin' }
  ]
  for (const body of attempts) {
    const err = await toGateway.call(forwardAsAnyone, body).catch((e) => e)
    t.is(err?.code, 'FORBIDDEN', `the worker's key is refused registryForward ${(body.change as { op: string }).op}`)
  }
  const asAdmin = (await gatewayClient(t, mesh)).client
  const workers = await asAdmin.call(GatewayProtocol.workers, { token: admin })
  t.absent(workers.workers.some((w) => w.key === stranger), 'the stranger is not in the registry')
  const registry = await asAdmin.call(GatewayProtocol.registry, {})
  t.absent(registry.models.some((m) => m.id === 'planted'), 'no model was planted')

  const toAuth = await workerKeys.to(mesh.keys.auth!)
  const validate = await toAuth!.call(AuthProtocol.validateApiKey, { keyHash: crypto.createHash('sha256').update(user.key).digest('hex') }).catch((e) => e)
  t.is(validate?.code, 'FORBIDDEN', 'the worker\'s key is refused auth.validateApiKey')

  // a configured replica gateway: its own changes are recorded as itself; an admin's need the admin's session, checked by the writer
  const replica = (await ids.replica.to(mesh.gatewayKey))!
  const joining = crypto.randomBytes(32).toString('hex')
  await replica.call(GatewayProtocol.registryForward, { change: { op: 'putWorker', input: { key: joining, models: [], label: '', region: '', capacity: 1 } } })
  await replica.call(GatewayProtocol.registryForward, { change: { op: 'approveWorker', key: joining } })
  const joined = (await asAdmin.call(GatewayProtocol.workers, { token: admin })).workers.find((w) => w.key === joining)
  t.alike(joined?.approval.by, 'gateway:' + ids.replica.key.slice(0, 16), 'a worker approved by a replica is recorded as that replica')
  const priced = { op: 'setModel' as const, id: 'synthetic', patch: { pricePer1MOutput: 0.25 } }
  t.is((await replica.call(GatewayProtocol.registryForward, { change: priced }).catch((e) => e))?.code, 'FORBIDDEN', 'a price change without an admin\'s session is refused')
  t.is((await replica.call(GatewayProtocol.registryForward, { change: priced, token: user.token }).catch((e) => e))?.code, 'FORBIDDEN', 'and with a user\'s session')
  await replica.call(GatewayProtocol.registryForward, { change: priced, token: admin })
  const history = await asAdmin.call(GatewayProtocol.registryHistory, { token: admin, limit: 5 })
  const last = history.entries.find((e) => e.key === 'models/synthetic')
  t.is((last?.value as { updatedBy?: string } | null)?.updatedBy, 'user:boss', 'with the admin\'s session it is recorded as the admin the writer checked')
})

test('authorization matrix: every method of every service, by every kind of caller', { timeout: 240_000 }, async (t) => {
  t.teardown(async () => { for (const fn of cleanups.reverse()) await fn() })
  const { tm, ids, user, admin } = await fixture()
  const keys: Record<Service, string> = {
    gateway: tm.mesh.gatewayKey, auth: tm.mesh.keys.auth!, metrics: tm.mesh.keys.metrics!, web: tm.mesh.keys.web!, inference: tm.mesh.keys.inference!
  }
  const all = protocols()
  t.ok(all.length >= 6, `${all.length} protocol objects found`)
  for (const p of all) {
    t.ok(p.name in SERVED || p.name in DIALLED, `${p.name} is served somewhere (add it to SERVED or DIALLED)`)
    for (const def of p.methods) t.ok(def.callers && def.callers.from.length > 0, `${p.name}.${def.name} has a rule`)
  }
  for (const [name, role] of Object.entries(DIALLED)) {
    const p = all.find((x) => x.name === name)
    t.ok(p && p.methods.every((d) => d.callers.from.length === 1 && d.callers.from[0] === role && !d.callers.needs), `${name} is answered only to the ${role} it dialled`)
  }

  const credential = (needs: Credential): string => needs === 'apiKey' ? user.key : needs === 'admin' ? admin : user.token
  const cells: Array<{ service: Service, method: string, column: string, expected: 'allowed' | 'refused', got: string }> = []
  await Promise.all(COLUMNS.map(async (col) => {
    for (const service of Object.keys(keys) as Service[]) {
      const methods = all.filter((p) => SERVED[p.name]?.includes(service)).flatMap((p) => p.methods)
      const client = await ids[col.identity].to(keys[service], MEMBERS_ONLY.includes(service) && col.identity === 'stranger' ? 4000 : 15_000)
      for (const def of methods) {
        const body: Record<string, unknown> = { __authzProbe: true }
        const needs = def.callers.needs
        if (needs && (col.holds.includes(needs) || (needs === 'admin' && col.holds.includes('session')))) {
          body[CREDENTIAL_FIELD[needs]] = credential(col.holds.includes(needs) ? needs : 'session')
        }
        const got = client
          ? await client.call(def, body, 10_000).then(() => 'ok', (e: { code?: string }) => e.code ?? 'ERROR')
          : 'NO_CONNECTION'
        cells.push({ service, method: def.name, column: col.name, expected: expectAllowed(def, col, service) ? 'allowed' : 'refused', got })
      }
    }
  }))

  const REFUSED = ['FORBIDDEN', 'UNAUTHENTICATED', 'INVALID_API_KEY', 'NO_CONNECTION']
  const wrong = cells.filter((c) => c.expected === 'allowed' ? c.got !== 'BAD_REQUEST' : !REFUSED.includes(c.got))
  const allowed = cells.filter((c) => c.expected === 'allowed').length
  t.comment(`${cells.length} calls: ${allowed} let in (each answered BAD_REQUEST by the schema), ${cells.length - allowed} refused`)
  t.alike(wrong.map((c) => `${c.service}.${c.method} by ${c.column}: expected ${c.expected}, got ${c.got}`), [], 'every call is let in or refused as its rule says')
  t.ok(cells.some((c) => c.method === 'registryForward' && c.column === 'worker' && REFUSED.includes(c.got)), 'a worker is refused registryForward')
  t.ok(cells.some((c) => c.method === 'workerHeartbeat' && c.column === 'worker' && c.got === 'BAD_REQUEST'), 'a worker reaches workerHeartbeat')
})
