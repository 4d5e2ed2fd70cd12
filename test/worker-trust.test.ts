import { MEMBER_KINDS, type PeerRole } from '../shared/mesh/roles.ts'
import test from 'brittle'
import crypto from 'node:crypto'
import { startTestMesh, gatewayClient, userWithKey, runCli, until, registerAdmin, ADMIN_PASSWORD } from './support/harness.ts'
import { bootstrapList } from '../shared/config.ts'
import { keyPairFromSeed } from '../shared/keys.ts'
import { createLogger } from '../shared/log.ts'
import { announceOn, networkTopic } from '../shared/mesh/discovery.ts'
import { handlers, type HandlerTable, type Peer } from '../shared/mesh/peer.ts'
import { MeshService } from '../shared/mesh/service.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { InferenceProtocol } from '../shared/protocol/inference.ts'
import { workerJoinProof, type WorkerProof } from '../shared/worker-proof.ts'
import type { LocalMesh } from '../scripts/lib/localmesh.ts'

// Who a worker trusts and how it proves its token: anyone may announce on the network's topic, so a
// worker that knows only the network key serves (and registers with) a gateway only once the
// registry's writer vouches for it; a token is proven with a MAC bound to both keys, never sent.

/**
 * A stranger on the same DHT that announces itself on the network's topic as if it were a gateway.
 * It answers every gateway method, records each request it gets, and asks every peer that dials it
 * to run a prompt.
 */
class RoguePeer extends MeshService {
  readonly received: Array<{ method: string, from: string, body: unknown }> = []
  readonly promptAttempts: Array<{ from: string, code: string }> = []
  readonly closedFrom = new Set<string>()
  private stopAnnounce: (() => Promise<void>) | null = null

  protected handlers (): HandlerTable {
    const table = handlers().table
    for (const def of Object.values(GatewayProtocol)) {
      table.set(def.name, {
        def,
        fn: (req, ctx) => {
          this.received.push({ method: def.name, from: ctx.remoteKey, body: req })
          return { accepted: true, gateway: this.publicKey, approval: 'approved', ok: true }
        }
      })
    }
    return table
  }

  /** a rogue answers anyone, in every role, and asks for nothing */
  protected callerRoles (): Set<PeerRole> { return new Set<PeerRole>(['stranger', 'worker', 'replicaGateway', ...MEMBER_KINDS]) }

  protected async verifyCredential (): Promise<void> {}

  protected onPeer (peer: Peer): void {
    peer.channel.on('close', () => this.closedFrom.add(peer.remoteKey))
    const ask = () => peer.stream(InferenceProtocol.processPrompt, { requestId: 'rogue-1', model: 'trust-model', messages: [{ role: 'user', content: 'secret prompt' }], maxTokens: 3 }, { onChunk: () => {}, idleTimeout: 10_000 })
      .then(() => 'SERVED', (err: { code?: string }) => err.code ?? 'UNKNOWN')
      .then((code) => this.promptAttempts.push({ from: peer.remoteKey, code }))
    if (peer.channel.opened) void ask()
    else peer.channel.once('open', () => { void ask() })
  }

  announce (network: string): void {
    this.stopAnnounce = announceOn(this.dhtNode, networkTopic(network), this.keyPair)
  }

  protected async onClose (): Promise<void> { await this.stopAnnounce?.() }
}

/** An in-process client with its own key that only registers as a worker: to present chosen proofs. */
class ProbeWorker extends MeshService {
  protected handlers (): HandlerTable { return handlers().table }

  /** registerWorker at `gateway` with `proof`: the approval, or the error code */
  async register (gateway: string, proof?: WorkerProof): Promise<string> {
    const client = this.connectTo(gateway, { name: 'gateway' })
    try {
      const r = await client.call(GatewayProtocol.registerWorker, { ...(proof ? { proof } : {}), models: [] }, 15_000)
      return r.approval
    } catch (err) {
      return (err as { code?: string }).code ?? 'UNKNOWN'
    } finally {
      await client.close()
    }
  }
}

function meshPeer<T extends MeshService> (t: { teardown: (fn: () => unknown, o?: { order?: number }) => void }, mesh: LocalMesh, Kind: new (o: ConstructorParameters<typeof ProbeWorker>[0]) => T, name: string): Promise<T> {
  const svc = new Kind({ name, keyPair: keyPairFromSeed(crypto.randomBytes(32)), log: createLogger(name, 'silent'), bootstrap: bootstrapList(mesh.bootstrapString), host: '127.0.0.1' })
  t.teardown(() => svc.close(), { order: 0 })
  return svc.open().then(() => svc)
}

test('worker trust: a peer announcing on the network topic gets no registration, no token and no prompt served; the vouched gateway does until it is removed', { timeout: 240_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' } } })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const reg = await client.call(GatewayProtocol.registry, { token: boss })
  t.ok((reg.gateways ?? []).some((g) => g.key === mesh.gatewayKey), 'the registry vouches for the gateway that writes it')

  const rogue = await meshPeer(t, mesh, RoguePeer, 'rogue')
  rogue.announce(mesh.registryKey)
  // a worker that knows only the network key and the worker token; it is no mesh member
  const child = await mesh.spawn('net-worker', {
    HYPERINFER_HOME: mesh.home, HYPERINFER_BOOTSTRAP: mesh.bootstrapString, HYPERINFER_MESH_ALLOW: '', HYPERINFER_WORKER_NAME: 'net-worker',
    HYPERINFER_GATEWAYS: '', HYPERINFER_NETWORK: mesh.registryKey, HYPERINFER_WORKER_TOKEN: mesh.workerToken, SYNTHETIC_MODELS: 'trust-model'
  }, 'inference')
  const worker = /inference ready ([0-9a-f]{64})/.exec(child.readyLine)![1]!

  const served = await until(() => client.call(GatewayProtocol.models, {}), (r) => r.models.some((m) => m.id === 'trust-model'), 60_000)
  t.ok(served.models.some((m) => m.id === 'trust-model'), 'the real gateway admitted the worker by its token proof and routes to it')
  const { key } = await userWithKey(client)
  const r = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'trust-model', prompt: 'hello', maxTokens: 2 })
  t.is(r.usage.completionTokens, 2, 'and the worker serves its requests')

  // the worker dials the rogue too (it is on the topic); wait until the rogue tried its prompt and
  // the worker gave up on it
  await until(async () => rogue.promptAttempts.some((a) => a.from === worker) && rogue.closedFrom.has(worker), (x) => x, 60_000)
  const attempts = rogue.promptAttempts.filter((a) => a.from === worker)
  t.ok(attempts.length > 0, 'the worker did dial the rogue peer')
  t.ok(attempts.every((a) => a.code === 'FORBIDDEN'), `the worker refused the rogue's prompt: ${attempts.map((a) => a.code).join(',')}`)
  t.ok(rogue.closedFrom.has(worker), 'and left it')
  const fromWorker = rogue.received.filter((m) => m.from === worker)
  t.alike(fromWorker.map((m) => m.method), [], 'the rogue received no call at all from the worker: no registration, no heartbeat')
  t.absent(JSON.stringify(rogue.received).includes(mesh.workerToken), 'the worker token never reached the rogue')

  // the registry stops vouching for the gateway: the worker leaves it
  await client.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'removeGateway', key: mesh.gatewayKey } })
  const gone = await until(() => client.call(GatewayProtocol.models, {}), (m) => !m.models.some((x) => x.id === 'trust-model'), 60_000)
  t.absent(gone.models.some((m) => m.id === 'trust-model'), 'a gateway removed from the registry loses the worker that found it by the network key')
})

test('worker trust: token proofs are bound to both keys; rotation retires the old token; a revoked worker stays out', { timeout: 240_000 }, async (t) => {
  const { mesh, home } = await startTestMesh(t, { gateways: 2, serviceEnv: { auth: { ADMIN_USERS: 'boss' } } })
  const [a, b] = mesh.gatewayKeys as [string, string]
  const { client } = await gatewayClient(t, mesh, a)
  const bClient = (await gatewayClient(t, mesh, b)).client
  const boss = await registerAdmin(client)
  t.alike(((await bClient.call(GatewayProtocol.registry, { token: boss })).gateways ?? []).map((g) => g.key).sort(), [a, b].sort(), 'the writer vouches for itself and its replica gateway')
  const token = mesh.workerToken

  const w = await meshPeer(t, mesh, ProbeWorker, 'w')
  const x = await meshPeer(t, mesh, ProbeWorker, 'x')
  const w2 = await meshPeer(t, mesh, ProbeWorker, 'w2')
  const recorded = workerJoinProof(token, w.publicKey, a)
  t.is(await w.register(a, recorded), 'approved', 'a worker that proves the network token is admitted')
  t.is(await x.register(a, recorded), 'FORBIDDEN', 'the same proof from another worker key is refused')
  t.is(await x.register(b, recorded), 'FORBIDDEN', 'and at another gateway')
  const forA = workerJoinProof(token, w2.publicKey, a)
  t.is(await w2.register(b, forA), 'FORBIDDEN', 'a proof made for gateway A is refused at gateway B, even from its own worker')
  t.is(await w2.register(a, forA), 'approved', 'and accepted at A')

  // a stranger worker process admitted with the token before the rotation
  const child = await mesh.spawn('kept', {
    HYPERINFER_HOME: mesh.home, HYPERINFER_BOOTSTRAP: mesh.bootstrapString, HYPERINFER_MESH_ALLOW: '', HYPERINFER_WORKER_NAME: 'kept',
    HYPERINFER_GATEWAYS: a, HYPERINFER_WORKER_TOKEN: token, SYNTHETIC_MODELS: 'kept-model'
  }, 'inference')
  t.ok(child.readyLine.includes('kept-model'), 'a worker process admitted by the token before the rotation')
  await until(() => client.call(GatewayProtocol.models, {}), (r) => r.models.some((m) => m.id === 'kept-model'), 30_000)

  t.is((await runCli(home, ['login', '--email', 'boss@example.com', '--password', ADMIN_PASSWORD])).code, 0, 'the admin logs in')
  const rotated = await runCli(home, ['worker-token', 'rotate', '--quiet'])
  t.is(rotated.code, 0, 'hyperinfer worker-token rotate: ' + rotated.stderr.trim())
  const fresh = rotated.stdout.trim()
  t.ok(fresh.length > 20 && fresh !== token, 'prints a new token')
  t.is((await runCli(home, ['worker-token'])).stdout.trim(), fresh, 'and `hyperinfer worker-token` on the mesh machine prints the new one from then on')
  const y = await meshPeer(t, mesh, ProbeWorker, 'y')
  t.is(await y.register(a, workerJoinProof(token, y.publicKey, a)), 'FORBIDDEN', 'the old token admits no new worker')
  t.is(await y.register(a, workerJoinProof(fresh, y.publicKey, a)), 'approved', 'the new one does')
  t.is(await w.register(a, recorded), 'approved', 'a worker approved with the old token stays approved')
  const { key } = await userWithKey(client)
  const served = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'kept-model', prompt: 'still there?', maxTokens: 2 })
  t.is(served.usage.completionTokens, 2, 'and a worker admitted before the rotation keeps serving')

  // revoked is final: no token undoes it
  await client.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'revokeWorker', key: w.publicKey } })
  t.is(await w.register(a, workerJoinProof(fresh, w.publicKey, a)), 'FORBIDDEN', 'a revoked worker with the valid network token is refused')
  const join = await client.call(GatewayProtocol.joinTokens, { token: boss, op: 'create', label: 'after-revoke' })
  t.is(await w.register(a, workerJoinProof(join.created!.token, w.publicKey, a)), 'FORBIDDEN', 'and with a valid join token')
  const atB = await until(() => w.register(b, workerJoinProof(fresh, w.publicKey, b)), (code) => code === 'FORBIDDEN', 20_000)
  t.is(atB, 'FORBIDDEN', 'and at the other gateway')
  const listed = await client.call(GatewayProtocol.workers, { token: boss })
  t.is(listed.workers.find((e) => e.key === w.publicKey)?.approval.state, 'revoked', 'it is still revoked in the registry')
  const j2 = await meshPeer(t, mesh, ProbeWorker, 'j2')
  t.is(await j2.register(a, workerJoinProof(join.created!.token, j2.publicKey, a)), 'approved', 'the join token itself is valid')
})
