import { workerJoinProof } from '../shared/worker-proof.ts'
import test from 'brittle'
import crypto from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { bootstrapList } from '../shared/config.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import type { RequestOf } from '../shared/mesh/method.ts'
import { Peer } from '../shared/mesh/peer.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import type { LocalMesh } from '../scripts/lib/localmesh.ts'
import { startTestMesh, gatewayClient, userWithKey, runCli, until, registerAdmin, ADMIN_PASSWORD, strangerWorker } from './support/harness.ts'

// Strangers announcing workers: waiting workers never reach the append-only registry, the queue of
// them cannot be filled for good, and a registration the registry cannot record is refused.

interface Stranger { key: string, peer: Peer, close: () => void }

/** Throwaway worker identities: one DHT node, a fresh key pair per connection, raw registerWorker calls. */
async function strangers (t: { teardown: (fn: () => unknown, o?: { order?: number }) => void }, mesh: LocalMesh) {
  const dht = createDHT({ keyPair: DHT.keyPair(crypto.randomBytes(32)), bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
  const rpc = new RPC({ dht, valueEncoding: c.json })
  // teardown: a node that already went down with its connections has nothing left to release
  t.teardown(async () => {
    await rpc.destroy({ force: true }).catch(() => {})
    await dht.destroy().catch(() => {})
  }, { order: 0 })
  return async function connect (): Promise<Stranger> {
    const keyPair = DHT.keyPair(crypto.randomBytes(32))
    const client = rpc.connect(Buffer.from(mesh.gatewayKey, 'hex'), { keyPair })
    const peer = new Peer(client.rpc!, {})
    await Promise.race([once(client, 'open'), new Promise((_resolve, reject) => setTimeout(() => reject(new Error('no connection to the gateway')), 20_000))])
    return { key: keyPair.publicKey.toString('hex'), peer, close: () => client.destroy() }
  }
}

function register (s: Stranger, req: RequestOf<typeof GatewayProtocol.registerWorker>): Promise<{ approval: string } | { code: string, message: string, details?: Record<string, unknown> }> {
  return s.peer.call(GatewayProtocol.registerWorker, req, { timeout: 15_000 }).then((r) => r as { approval: string }, (e) => e)
}


test('pending workers: re-registering in a loop does not grow the registry or the log; a registration the registry cannot record is refused', { timeout: 240_000 }, async (t) => {
  // the gateway logs at info, so what it says about a stranger can be read back
  const { mesh, home } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' }, gateway: { LOG_LEVEL: 'info' } } })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const { key: apiKey } = await userWithKey(client)
  const head = async () => (await client.call(GatewayProtocol.registryHistory, { token: boss, limit: 1 })).entries[0]?.seq ?? 0
  // the mesh's own worker is recorded at start; wait until nothing more is being written
  let before = await head()
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 1000))
    const now = await head()
    if (now === before) break
    before = now
  }

  const connect = await strangers(t, mesh)
  const s = await connect()
  // ~20 KB of model names a call, one of them and the capacity different each time
  const names = Array.from({ length: 200 }, (_, i) => `model-${i}-` + 'x'.repeat(90))
  const answers = []
  for (let i = 0; i < 200; i++) {
    answers.push(await register(s, { models: names.map((id, j) => ({ id: j === 0 ? `changing-${i}` : id, backend: 'synthetic' })), capacity: 1 + i }))
  }
  const pending = answers.filter((a) => 'approval' in a && a.approval === 'pending').length
  const limited = answers.filter((a) => 'code' in a && a.code === 'RATE_LIMITED')
  t.ok(pending >= 1, `the first registrations are answered pending (${pending})`)
  t.is(pending + limited.length, 200, 'every other one is refused as RATE_LIMITED, nothing else')
  t.ok(limited.length > 0 && limited.every((a) => 'details' in a && typeof a.details?.retryAfterSeconds === 'number'), `re-registering in a loop is rate limited, with a retry time (${limited.length} refused)`)
  t.is(await head(), before, '200 re-registrations of a pending worker add nothing to the registry')

  t.is((await runCli(home, ['login', '--email', 'boss@example.com', '--password', ADMIN_PASSWORD])).code, 0, 'the operator logs in from the CLI')
  const list = await runCli(home, ['workers', 'list', '--json'])
  const listed = (list.json?.workers ?? []).find((w: { key: string }) => w.key === s.key)
  t.is(listed?.approval.state, 'pending', 'hyperinfer workers list shows the stranger as pending')
  t.ok(listed?.connected, 'and connected')
  t.is(listed?.models.length, 200, 'with what it announced last')

  const logLines = fs.readFileSync(path.join(home, 'logs', 'gateway.log'), 'utf8').split('\n').filter((l) => l.includes(s.key.slice(0, 16)))
  t.ok(logLines.length >= 1, `the gateway logged the stranger (${logLines.length} line(s))`)
  const longest = Math.max(...logLines.map((l) => l.length))
  t.ok(longest < 1000, `its log lines stay short: the longest is ${longest} characters`)

  // a worker holding the network's worker token (so it would be admitted at once), announcing
  // something the registry cannot record: refused with a code, not served, nothing written
  const bad = await connect()
  const recordBefore = await head()
  const noBackend = await register(bad, { proof: workerJoinProof(mesh.workerToken, bad.key, mesh.gatewayKey), models: [{ id: 'unrecordable-model', backend: '' }] })
  t.is('code' in noBackend && noBackend.code, 'UNRECORDABLE', 'a model with an empty backend name is UNRECORDABLE')
  t.ok('message' in noBackend && /cannot record/.test(noBackend.message), 'and says why: ' + ('message' in noBackend ? noBackend.message : ''))
  const tooMany = await register(bad, { proof: workerJoinProof(mesh.workerToken, bad.key, mesh.gatewayKey), models: Array.from({ length: 300 }, (_, i) => ({ id: `many-${i}`, backend: 'synthetic' })) })
  t.is('code' in tooMany && tooMany.code, 'UNRECORDABLE', 'more models than a registry entry holds is UNRECORDABLE')
  const badName = await register(bad, { proof: workerJoinProof(mesh.workerToken, bad.key, mesh.gatewayKey), models: [{ id: 'bad name!', backend: 'synthetic' }] })
  t.is('code' in badName && badName.code, 'BAD_REQUEST', 'a model name the registry would refuse is refused as it arrives')
  t.is(await head(), recordBefore, 'nothing was recorded')
  const served = await client.call(GatewayProtocol.infer, { apiKey, model: 'unrecordable-model', prompt: 'hi', maxTokens: 2 }).catch((e) => e)
  t.is(served.code, 'UNKNOWN_MODEL', 'the refused worker gets no traffic')
  const ws = await client.call(GatewayProtocol.workers, { token: boss })
  t.absent(ws.workers.some((w) => w.key === bad.key), 'and is not in the worker list')
  const health = await client.call(GatewayProtocol.getServiceHealth, { token: boss })
  t.absent(health.workers!.some((w) => w.publicKey === bad.key), 'nor served by the gateway')
})

test('pending workers: throwaway keys cannot fill the queue for good; join tokens always get in; admins clear and reject', { timeout: 300_000 }, async (t) => {
  const { mesh, home } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' } } })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const { key: apiKey } = await userWithKey(client)
  t.is((await runCli(home, ['login', '--email', 'boss@example.com', '--password', ADMIN_PASSWORD])).code, 0, 'the operator logs in from the CLI')
  const connect = await strangers(t, mesh)

  const throwaway: Stranger[] = []
  for (let batch = 0; batch < 10; batch++) {
    const ten = await Promise.all(Array.from({ length: 10 }, () => connect()))
    const answers = await Promise.all(ten.map((s) => register(s, { models: [{ id: 'junk', backend: 'synthetic' }] })))
    t.ok(answers.every((a) => 'approval' in a && a.approval === 'pending'), `throwaway keys ${batch * 10 + 1}–${batch * 10 + 10} are pending`)
    throwaway.push(...ten)
  }
  const extra = await connect()
  const full = await register(extra, { models: [{ id: 'junk', backend: 'synthetic' }] })
  t.is('code' in full && full.code, 'RATE_LIMITED', 'the 101st live stranger is told the queue is full')
  extra.close()

  // an operator's worker with a join token gets in while the queue is full
  const made = await client.call(GatewayProtocol.joinTokens, { token: boss, op: 'create', label: 'gpu-box' })
  const tokened = await strangerWorker(mesh, 'tokened', 'tokened-model', { HYPERINFER_WORKER_TOKEN: made.created!.token })
  const routed = await until(() => client.call(GatewayProtocol.infer, { apiKey, model: 'tokened-model', prompt: 'hi', maxTokens: 2 }, 5000).catch((e) => e), (r) => !(r instanceof Error), 20_000)
  t.is(routed.worker, tokened, 'a worker with a join token is admitted and served while 100 strangers wait')

  // the throwaway connections go away: their places are free again for a real operator's worker
  for (const s of throwaway) s.close()
  await until(() => client.call(GatewayProtocol.workers, { token: boss }), (r) => r.workers.filter((w) => w.approval.state === 'pending' && w.connected).length === 0)
  const patient = await strangerWorker(mesh, 'patient', 'patient-model')
  const waiting = await until(() => runCli(home, ['workers', 'list', '--json']), (r) => !!(r.json?.workers ?? []).find((w: { key: string, connected: boolean }) => w.key === patient && w.connected))
  t.is(waiting.json.workers.find((w: { key: string }) => w.key === patient)?.approval.state, 'pending', 'a worker without a token is accepted as pending once the strangers are gone')

  // admins clear the queue: the waiting entries and their connections go
  const more = await Promise.all(Array.from({ length: 3 }, () => connect()))
  for (const s of more) t.is(((await register(s, { models: [{ id: 'junk', backend: 'synthetic' }] })) as { approval: string }).approval, 'pending', 'another stranger waits')
  const cleared = await runCli(home, ['workers', 'clear-pending'])
  t.ok(cleared.code === 0 && /cleared \d+ pending worker/.test(cleared.stdout), 'hyperinfer workers clear-pending: ' + cleared.stdout.trim())
  const after = await client.call(GatewayProtocol.workers, { token: boss })
  t.absent(after.workers.some((w) => more.some((s) => s.key === w.key)), 'the cleared strangers are no longer listed')
  await until(async () => more.every((s) => s.peer.isClosed), (v) => v, 10_000)
  t.ok(more.every((s) => s.peer.isClosed), 'and the gateway closed their connections')

  // the real worker reconnects and waits again; rejecting it keeps it out
  await until(() => client.call(GatewayProtocol.workers, { token: boss }), (r) => !!r.workers.find((w) => w.key === patient && w.connected), 20_000)
  const rejected = await runCli(home, ['workers', 'reject', patient])
  t.is(rejected.code, 0, 'hyperinfer workers reject <key>: ' + rejected.stdout.trim() + rejected.stderr.trim())
  await new Promise((r) => setTimeout(r, 2000))
  const gone = await client.call(GatewayProtocol.workers, { token: boss })
  t.absent(gone.workers.some((w) => w.key === patient), 'a rejected worker is not listed, even after it reconnects')
  const again = await runCli(home, ['workers', 'reject', patient])
  t.ok(again.code !== 0 && /NOT_FOUND/.test(again.stderr), 'rejecting a worker that is not waiting is NOT_FOUND')
})
