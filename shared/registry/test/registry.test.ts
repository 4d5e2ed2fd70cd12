import test, { type Assertion } from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { z } from 'zod'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import { Registry } from '../registry.ts'
import { RegistryReplica } from '../replica.ts'
import type { RegistryBase, RegistryChange } from '../base.ts'
import { replicateOverClient, replicateOverPeer } from '../mesh.ts'
import type { ModelInput } from '../schema.ts'
import { localTestnet } from '../../../test/support/testnet.ts'
import { createDHT } from '../../mesh/dht.ts'
import { MeshService } from '../../mesh/service.ts'
import { handlers, type HandlerTable, type Peer } from '../../mesh/peer.ts'
import { method } from '../../mesh/method.ts'
import { keyPairFromSeed } from '../../keys.ts'
import { createLogger } from '../../log.ts'
import { MeshError } from '../../errors.ts'

const log = createLogger('registry-test', 'silent')
const kp = () => keyPairFromSeed(crypto.randomBytes(32))
const hexKey = () => crypto.randomBytes(32).toString('hex')

function tmpDir (t: Assertion, name: string): string {
  const base = process.env.HYPERINFER_TEST_TMP ?? os.tmpdir()
  const dir = fs.mkdtempSync(path.join(base, `registry-${name}-`))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }), { order: Infinity })
  return dir
}

function model (id: string, extra: Partial<ModelInput> = {}): ModelInput {
  return {
    id,
    provider: 'ollama',
    backendModel: id,
    tasks: ['chat'],
    contextLength: 8192,
    pricePer1MInput: 0.1,
    pricePer1MOutput: 0.2,
    quality: 0.7,
    safety: 0.9,
    ...extra
  }
}

async function openRegistry (t: Assertion, opts: Partial<ConstructorParameters<typeof Registry>[0]> = {}): Promise<Registry> {
  const reg = new Registry({ storage: tmpDir(t, 'writer'), by: 'gateway-test', log, ...opts })
  await reg.open()
  t.teardown(() => reg.close())
  return reg
}

async function codeOf (p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p)
    return undefined
  } catch (err) {
    return err instanceof MeshError ? err.code : `not a MeshError: ${String(err)}`
  }
}

/** Resolves with the ms it took until a change naming `key` arrives, and the change. */
function nextChange (reg: RegistryBase, key: string, timeoutMs = 5000): Promise<RegistryChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no change for ${key} within ${timeoutMs} ms`)) }, timeoutMs)
    const off = reg.watch((ch) => {
      if (!ch.keys.includes(key)) return
      clearTimeout(timer)
      off()
      resolve(ch)
    })
  })
}

test('registry: writer CRUD; invalid writes are BAD_REQUEST and change nothing', async (t) => {
  const reg = await openRegistry(t)
  t.ok(reg.writable)
  t.is(reg.key.length, 64)

  const m = await reg.putModel(model('llama3', { tasks: ['chat', 'code'] }))
  t.is(m.updatedBy, 'gateway-test', 'default actor recorded')
  t.is(m.measured, null)
  t.alike(await reg.getModel('llama3'), m)

  const updated = await reg.setModel('llama3', { pricePer1MOutput: 0.5, quality: 0.8 }, 'alice')
  t.is(updated.pricePer1MOutput, 0.5)
  t.is(updated.backendModel, 'llama3', 'fields not in the patch kept')
  t.is(updated.updatedBy, 'alice')

  await reg.putModel(model('nomic-embed', { tasks: ['embed'], provider: 'openai' }))
  t.alike((await reg.listModels()).map((x) => x.id), ['llama3', 'nomic-embed'])
  t.alike((await reg.listModels({ task: 'code' })).map((x) => x.id), ['llama3'])

  const version = reg.version
  const historyLength = (await reg.history()).length
  const before = await reg.listModels()
  const bad: Array<[string, Promise<unknown>]> = [
    ['missing fields', reg.putModel({ id: 'x' } as ModelInput)],
    ['quality above 1', reg.putModel(model('x', { quality: 1.5 }))],
    ['negative price', reg.putModel(model('x', { pricePer1MInput: -1 }))],
    ['no tasks', reg.putModel(model('x', { tasks: [] }))],
    ['bad id', reg.putModel(model('../etc'))],
    ['unknown field', reg.putModel({ ...model('x'), extra: 1 } as ModelInput)],
    ['patch with bad type', reg.setModel('llama3', { contextLength: 'big' } as any)],
    ['patch changing id', reg.setModel('llama3', { id: 'other' } as any)],
    ['bad worker key', reg.putWorker({ key: 'abc' })],
    ['bad actor', reg.approveWorker(hexKey(), '')]
  ]
  for (const [what, p] of bad) t.is(await codeOf(p), 'BAD_REQUEST', `${what}: BAD_REQUEST`)
  t.is(await codeOf(reg.setModel('nope', { quality: 0.1 })), 'NOT_FOUND')
  t.is(await codeOf(reg.removeModel('nope')), 'NOT_FOUND')
  t.is(await codeOf(reg.approveWorker(hexKey(), 'admin')), 'NOT_FOUND')
  t.is(await codeOf(reg.revokeWorker(hexKey(), 'admin')), 'NOT_FOUND')
  t.is(await codeOf(() => reg.recordMeasurement('llama3', { ttftMs: -1, latencyMs: 1, ok: true })), 'BAD_REQUEST')
  t.is(reg.version, version, 'no failed write appended anything')
  t.is((await reg.history()).length, historyLength)
  t.alike(await reg.listModels(), before)

  // workers: new ones start pending; only approve/revoke change approval
  const wk = hexKey().toUpperCase()
  const w = await reg.putWorker({ key: wk, models: ['llama3', 'llama3'], region: 'eu', capacity: 4 })
  t.is(w.key, wk.toLowerCase(), 'key normalised to lower-case hex')
  t.alike(w.models, ['llama3'], 'duplicate models dropped')
  t.is(w.approval.state, 'pending')
  t.is((await reg.approveWorker(wk, 'admin')).approval.state, 'approved')
  const again = await reg.putWorker({ key: wk, models: ['llama3', 'nomic-embed'], label: 'box-1' })
  t.is(again.approval.state, 'approved', 're-registering keeps the approval')
  t.is(again.approval.by, 'admin')
  t.alike((await reg.getWorker(wk.toLowerCase()))?.models, ['llama3', 'nomic-embed'])
  const other = hexKey()
  await reg.putWorker({ key: other, models: ['llama3'] })
  t.is((await reg.listWorkers()).length, 2)
  t.alike((await reg.listWorkers({ state: 'approved' })).map((x) => x.key), [wk.toLowerCase()])
  t.is((await reg.listWorkers({ model: 'nomic-embed' })).length, 1)
  const revoked = await reg.revokeWorker(wk, 'admin')
  t.is(revoked.approval.state, 'revoked')
  await reg.removeWorker(other)
  t.is(await reg.getWorker(other), null)

  await reg.removeModel('nomic-embed')
  t.is(await reg.getModel('nomic-embed'), null)
  t.alike((await reg.listModels()).map((x) => x.id), ['llama3'])
})

test('registry: the same storage gives the same key and data after close and reopen', async (t) => {
  const dir = tmpDir(t, 'restart')
  const a = new Registry({ storage: dir, log })
  await a.open()
  const key = a.key
  const dkey = a.discoveryKey
  await a.putModel(model('m1'))
  await a.close()
  await a.close() // idempotent

  const b = new Registry({ storage: dir, log })
  await b.open()
  t.teardown(() => b.close())
  t.is(b.key, key, 'same registry key')
  t.is(b.discoveryKey, dkey)
  t.ok(b.writable, 'still the writer')
  t.is((await b.getModel('m1'))?.id, 'm1', 'data survived')
  await b.putModel(model('m2'))
  t.is((await b.listModels()).length, 2)

  const fresh = await openRegistry(t)
  t.not(fresh.key, key, 'another directory is another registry')
})

test('registry: history lists puts and deletes in order; change events name the keys', async (t) => {
  const reg = await openRegistry(t)
  const changes: RegistryChange[] = []
  reg.watch((ch) => changes.push(ch))
  const wk = hexKey()
  await reg.putModel(model('a'))
  await reg.putModel(model('b'))
  await reg.putWorker({ key: wk, models: ['a'] })
  await reg.setModel('a', { quality: 0.1 })
  await reg.removeModel('b')
  await reg.approveWorker(wk, 'admin')
  await reg.waitForVersion()

  const h = await reg.history()
  t.alike(h.map((e) => [e.type, e.key]), [
    ['put', 'models/a'], ['put', 'models/b'], ['put', `workers/${wk}`], ['put', 'models/a'], ['del', 'models/b'], ['put', `workers/${wk}`]
  ])
  t.ok(h.every((e, i) => i === 0 || e.seq > h[i - 1].seq), 'seq increases')
  t.is(h[4].value, null, 'a delete carries no value')
  t.is((h[3].value as any).quality, 0.1)
  t.alike((await reg.history({ reverse: true, limit: 2 })).map((e) => e.type), ['put', 'del'], 'newest first')
  t.alike((await reg.history({ gt: h[3].seq })).map((e) => e.key), ['models/b', `workers/${wk}`])

  const seen = changes.flatMap((ch) => ch.entries.map((e) => `${e.type} ${e.key}`))
  t.alike(seen, h.map((e) => `${e.type} ${e.key}`), 'every local write produced a change event, in order')
})

test('registry: recordMeasurement aggregates in memory and writes at most once per interval', async (t) => {
  const interval = 300
  const storage = tmpDir(t, 'measure')
  const reg = await openRegistry(t, { measureIntervalMs: interval, storage })
  await reg.putModel(model('fast'))
  await reg.waitForVersion() // the putModel's own change event is not a measurement write
  const writes: number[] = []
  reg.watch((ch) => { for (const e of ch.entries) if (e.key === 'models/fast') writes.push(Date.now()) })

  const started = Date.now()
  let n = 0
  while (Date.now() - started < 1000) {
    for (let i = 0; i < 50; i++) {
      n++
      reg.recordMeasurement('fast', { ttftMs: 20 + (n % 3), latencyMs: 100 + (n % 5), ok: n % 10 !== 0 })
    }
    await new Promise((r) => setTimeout(r, 10))
  }
  const elapsed = Date.now() - started
  reg.recordMeasurement('not-in-registry', { ttftMs: 1, latencyMs: 1, ok: true }) // dropped, never throws
  await new Promise((r) => setTimeout(r, interval + 100))
  t.comment(`${n} samples in ${elapsed} ms → ${writes.length} writes (interval ${interval} ms)`)
  t.ok(n > 1000, 'the hot path took many samples')
  t.ok(writes.length >= 2, 'measurements were written')
  t.ok(writes.length <= Math.ceil((elapsed + interval + 100) / interval) + 1, `at most one write per interval (${writes.length})`)
  for (let i = 1; i < writes.length; i++) t.ok(writes[i] - writes[i - 1] >= interval - 20, `writes ${writes[i] - writes[i - 1]} ms apart`)

  const m = await reg.getModel('fast')
  t.ok(m?.measured, 'measured written')
  t.ok(m!.measured!.p50LatencyMs >= 100 && m!.measured!.p50LatencyMs <= 104)
  t.ok(m!.measured!.ttftMs >= 20 && m!.measured!.ttftMs <= 22)
  t.ok(Math.abs(m!.measured!.errorRate - 0.1) < 0.02, `error rate ${m!.measured!.errorRate}`)
  t.is(m!.measured!.samples, 500, 'window bounded')
  t.is(m!.updatedBy, 'gateway-test', 'measurement writes leave the spec author alone')
  t.is(await reg.getModel('not-in-registry'), null)

  // a putModel keeps the measured figures
  const replaced = await reg.putModel(model('fast', { quality: 0.2 }))
  t.alike(replaced.measured, m!.measured)

  // close writes what is pending once: the second sample is still waiting for its interval
  await reg.putModel(model('slow'))
  reg.recordMeasurement('slow', { ttftMs: 50, latencyMs: 500, ok: true })
  await new Promise((r) => setTimeout(r, 50))
  t.is((await reg.getModel('slow'))?.measured?.samples, 1, 'the first sample is written at once')
  reg.recordMeasurement('slow', { ttftMs: 70, latencyMs: 700, ok: false })
  await reg.close()
  const reopened = new Registry({ storage, log })
  await reopened.open()
  const slow = (await reopened.getModel('slow'))?.measured
  await reopened.close()
  t.is(slow?.samples, 2, 'close wrote the pending sample')
  t.is(slow?.errorRate, 0.5)
})

test('registry: a replica over a HyperDHT connection follows the writer within 1 s, next to an RPC channel', async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  t.teardown(() => testnet.destroy(), { order: 100 })
  const writer = await openRegistry(t)
  await writer.putModel(model('before-connect'))

  // the gateway side: an @hyperswarm/rpc server that replicates over every connection it gets
  const serverKp = kp()
  const serverDht = createDHT({ keyPair: serverKp, bootstrap })
  const serverRpc = new RPC({ keyPair: serverKp, dht: serverDht, valueEncoding: c.json })
  const server = serverRpc.createServer()
  server.respond('ping', {}, (req: { n: number }) => ({ pong: req.n }))
  server.on('connection', (channel) => writer.replicate(channel.stream))
  await server.listen(serverKp)
  t.teardown(async () => { await serverRpc.destroy({ force: true }); await serverDht.destroy() }, { order: 50 })

  // the replica side: a client by public key; the same stream carries RPC and replication
  const clientDht = createDHT({ keyPair: kp(), bootstrap, clientOnly: true })
  const clientRpc = new RPC({ dht: clientDht, valueEncoding: c.json })
  t.teardown(async () => { await clientRpc.destroy({ force: true }); await clientDht.destroy() }, { order: 50 })
  const replica = new RegistryReplica({ key: writer.key, log })
  await replica.open()
  t.teardown(() => replica.close(), { order: 10 })
  t.is(replica.key, writer.key)
  t.is(replica.discoveryKey, writer.discoveryKey)
  t.absent(replica.writable)

  const initial = nextChange(replica, 'models/before-connect', 10_000)
  const client = clientRpc.connect(serverKp.publicKey)
  replica.replicate(client.rpc!.stream)
  replica.replicate(client.rpc!.stream) // a second call for the same stream is a no-op
  t.is((await client.request('ping', { n: 1 })).pong, 1, 'RPC works on the connection')
  await initial
  t.is((await replica.getModel('before-connect'))?.id, 'before-connect', 'replica caught up with what existed before')
  t.ok(replica.peerCount >= 1)

  // a change on the writer reaches the replica's change event and reads, while RPC keeps flowing
  const latencies: number[] = []
  for (let i = 0; i < 5; i++) {
    const id = `live-${i}`
    const seen = nextChange(replica, `models/${id}`)
    const started = process.hrtime.bigint()
    const pings = Promise.all([client.request('ping', { n: i }), client.request('ping', { n: i + 100 })])
    await writer.putModel(model(id, { quality: i / 10 }))
    const change = await seen
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    latencies.push(ms)
    t.is(change.truncated, false)
    t.is((await replica.getModel(id))?.quality, i / 10, 'a read right after the change event sees the value')
    t.alike((await pings).map((p) => p.pong), [i, i + 100], 'RPC calls answered during replication')
  }
  await writer.setModel('live-0', { safety: 0.42 })
  await replica.waitForVersion(writer.version, 1000)
  t.is((await replica.getModel('live-0'))?.safety, 0.42, 'setModel reached the replica')
  await writer.removeModel('live-1')
  await replica.waitForVersion(writer.version, 1000)
  t.is(await replica.getModel('live-1'), null, 'a delete reached the replica')
  const max = Math.max(...latencies)
  t.comment(`replica change latency ms: ${latencies.map((x) => x.toFixed(1)).join(', ')} (max ${max.toFixed(1)})`)
  console.log(`# replica saw writer changes after ${latencies.map((x) => x.toFixed(1)).join(', ')} ms`)
  t.ok(max < 1000, `every change seen within 1 s (max ${max.toFixed(1)} ms)`)

  // history matches the writer's, and the replica cannot be written: it has no write methods and
  // its core is not writable
  t.alike((await replica.history()).map((e) => [e.seq, e.type, e.key]), (await writer.history()).map((e) => [e.seq, e.type, e.key]))
  t.alike((await replica.listModels()).map((m) => m.id), (await writer.listModels()).map((m) => m.id))
  for (const write of ['putModel', 'setModel', 'removeModel', 'putWorker', 'approveWorker', 'revokeWorker', 'removeWorker', 'recordMeasurement']) {
    t.absent(write in replica, `a replica has no ${write}`)
  }
  t.is(replica.writable, false, 'the replica\'s core is read-only')
  t.is(await codeOf(() => new RegistryReplica({ key: 'zz' })), 'BAD_REQUEST', 'a malformed registry key')

  // closing either registry leaves the connection (and its RPC channel) to its owner
  await replica.close()
  t.is((await client.request('ping', { n: 42 })).pong, 42, 'RPC still works after the replica closed')
  await writer.close()
  t.is((await client.request('ping', { n: 43 })).pong, 43, 'and after the writer closed')
  t.absent(client.closed)
})

// the integration path for the gateway: MeshService.onPeer on the writer, MeshClient on a replica

const Ping = method<{ n: number }, { pong: number }>('registryTestPing', { from: ['stranger'] }, z.object({ n: z.number() }).strict())

class WriterService extends MeshService {
  constructor (opts: ConstructorParameters<typeof MeshService>[0], readonly registry: Registry) { super(opts) }
  protected handlers (): HandlerTable { return handlers().on(Ping, (req) => ({ pong: req.n })).table }
  protected onPeer (peer: Peer): void {
    // only mesh members get the registry
    if (this.isMeshMember(peer.remoteKey)) replicateOverPeer(this.registry, peer)
  }
}

class ReaderService extends MeshService {
  protected handlers (): HandlerTable { return new Map() }
}

test('registry: replication over MeshService/MeshClient connections, reconnects included', async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  t.teardown(() => testnet.destroy(), { order: 100 })
  const registry = await openRegistry(t)
  const readerKp = kp()
  const writerSvc = new WriterService({ name: 'gw', keyPair: kp(), log, bootstrap, allow: [readerKp.publicKey.toString('hex')] }, registry)
  await writerSvc.open()
  t.teardown(() => writerSvc.close(), { order: 20 })
  const reader = new ReaderService({ name: 'web', keyPair: readerKp, log, bootstrap })
  await reader.open()
  t.teardown(() => reader.close(), { order: 20 })

  const replicaDir = tmpDir(t, 'replica')
  const replica = new RegistryReplica({ key: registry.key, storage: replicaDir, log })
  await replica.open()
  t.teardown(() => replica.close(), { order: 10 })
  const client = reader.connectTo(writerSvc.publicKey, { name: 'gw', maxBackoff: 300 })
  const stop = replicateOverClient(replica, client)
  t.teardown(stop)

  const first = nextChange(replica, 'models/m1', 10_000)
  await registry.putModel(model('m1'))
  await first
  t.is((await client.call(Ping, { n: 7 })).pong, 7, 'RPC still answers on the shared connection')

  const started = Date.now()
  const seen = nextChange(replica, 'models/m2')
  const [ping] = await Promise.all([client.call(Ping, { n: 8 }), registry.putModel(model('m2'))])
  await seen
  t.is(ping.pong, 8)
  t.comment(`mesh replica latency ${Date.now() - started} ms`)
  t.ok(Date.now() - started < 1000)

  // drop the connection: MeshClient reconnects and replication resumes on the new stream
  for (const peer of writerSvc.peers) peer.destroy()
  await new Promise((r) => setTimeout(r, 50))
  await registry.putModel(model('m3'))
  await client.waitOpen(10_000)
  await replica.waitForVersion(registry.version, 10_000)
  t.is((await replica.getModel('m3'))?.id, 'm3', 'a write made while disconnected arrives after the reconnect')
  t.is((await client.call(Ping, { n: 9 })).pong, 9)

  // a stranger (not a mesh member) connects fine but is not given the registry
  const stranger = new ReaderService({ name: 'stranger', keyPair: kp(), log, bootstrap })
  await stranger.open()
  t.teardown(() => stranger.close(), { order: 20 })
  const strangerReplica = new RegistryReplica({ key: registry.key, log, readTimeoutMs: 500 })
  await strangerReplica.open()
  t.teardown(() => strangerReplica.close(), { order: 10 })
  const sc = stranger.connectTo(writerSvc.publicKey, { name: 'gw' })
  replicateOverClient(strangerReplica, sc)
  t.is((await sc.call(Ping, { n: 1 })).pong, 1)
  await new Promise((r) => setTimeout(r, 500))
  t.is(strangerReplica.version, 1, 'nothing replicated to a non-member')
  t.is(strangerReplica.peerCount, 0)
  t.alike(await strangerReplica.listModels(), [])

  // a replica with a storage dir serves what it has after a restart, before any connection
  await replica.close()
  const offline = new RegistryReplica({ key: registry.key, storage: replicaDir, log, readTimeoutMs: 500 })
  await offline.open()
  t.teardown(() => offline.close(), { order: 10 })
  const readStarted = Date.now()
  t.alike((await offline.listModels()).map((m) => m.id), ['m1', 'm2', 'm3'], 'replicated data persisted')
  t.ok(Date.now() - readStarted < 200, 'local reads do not wait for the network')
  t.is(offline.version, registry.version)
})
