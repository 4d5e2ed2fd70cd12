import test from 'brittle'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startTestMesh, gatewayClient, registerAdmin, userWithKey, until, waitFor } from './support/harness.ts'
import { createNetNs, spawnLongCli, type NetNs } from './support/netns.ts'
import { serviceKeyPair } from '../shared/keys.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import type { LocalMesh } from '../scripts/lib/localmesh.ts'

// "A worker from another machine": `hyperinfer worker` runs in its own network namespace, reaching
// the mesh only over a veth link (10.A.B.2 → 10.A.B.1). The mesh's bootstrapper listens on the
// host side of the link; the worker joins the gateway through the DHT and serves a request, and it
// is back each time that gateway is SIGKILLed and started again under the same key.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

// can this machine make namespaces at all? (root, iproute2, no EPERM): if not, say why and skip
const probe = createNetNs()
if ('ns' in probe) probe.ns.destroy()
const skipReason = 'reason' in probe ? probe.reason : null
if (skipReason) console.log(`# netns test skipped: ${skipReason}`)

async function modelIds (client: MeshClient): Promise<string[]> {
  return (await client.call(GatewayProtocol.models, {})).models.map((m) => m.id)
}

const REGISTERED = /^worker ([0-9a-f]{16})… serving (\S+) via synthetic; registered with gateway ([0-9a-f]{16})…$/m

/** `hyperinfer worker` inside the namespace, joining the mesh's first gateway over the veth link. */
function netnsWorker (t: { teardown: (fn: () => unknown, o?: { order?: number }) => void }, ns: NetNs, mesh: LocalMesh) {
  const whome = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'netns-worker-'))
  t.teardown(() => fs.rmSync(whome, { recursive: true, force: true }), { order: 11 })
  const w = spawnLongCli(ROOT, ['worker', '--backend', 'synthetic', '--models', 'netns-model', '--gateway', mesh.gatewayKey,
    '--bootstrap', mesh.bootstrapString, '--token', mesh.workerToken, '--label', 'netns'], {
    HYPERINFER_HOME: whome,
    // the worker's DHT node binds and announces the namespace's own address
    HYPERINFER_HOST: ns.nsIp
  }, { netns: ns.name })
  t.teardown(() => w.stop('SIGKILL'), { order: -1 })
  return { w, workerKey: serviceKeyPair(whome, 'worker').publicKey.toString('hex') }
}

/** A namespace for one test, removed last of all, even on failure (with what is left inside it). */
function namespaceFor (t: { teardown: (fn: () => unknown, o?: { order?: number }) => void, comment: (s: string) => void }): NetNs {
  const made = createNetNs()
  if ('reason' in made) throw new Error(`the probe could make a namespace but this one failed: ${made.reason}`)
  const ns = made.ns
  t.teardown(() => ns.destroy(), { order: 10 })
  t.comment(`namespace ${ns.name}: host ${ns.hostIp} (${ns.hostIf}) <-> worker ${ns.nsIp} (${ns.nsIf})`)
  return ns
}


test('netns: a worker in its own network namespace joins the gateway over the DHT and serves a request', { timeout: 240_000, skip: !!skipReason }, async (t) => {
  const ns = namespaceFor(t)

  // the mesh's bootstrapper binds all interfaces and is advertised at the host's end of the link
  const { mesh } = await startTestMesh(t, { publicHost: ns.hostIp, serviceEnv: { auth: { ADMIN_USERS: 'boss' } } })
  t.ok(mesh.bootstrapString.startsWith(`${ns.hostIp}:`), `bootstrap ${mesh.bootstrapString}`)
  const { client } = await gatewayClient(t, mesh)

  const { w, workerKey } = netnsWorker(t, ns, mesh)
  const line = await w.waitFor(REGISTERED, 90_000)
  t.comment(line[0])
  t.is(line[1], workerKey.slice(0, 16), 'the worker printed its key')
  t.is(line[3], mesh.gatewayKey.slice(0, 16), 'and the gateway it registered with')

  const pids = ns.pids()
  t.ok(pids.includes(w.proc.pid!), `the worker CLI (pid ${w.proc.pid}) runs inside ${ns.name}: ip netns pids = ${pids.join(' ')}`)
  t.ok(pids.length >= 2, 'and so does the worker process it started')

  const listedIn = await waitFor('netns-model listed by the gateway', async () => (await modelIds(client)).includes('netns-model'), 20_000)
  t.pass(`the gateway lists netns-model (${listedIn} ms after the registered line)`)
  // each worker's key is shown to an admin's session
  const health = await client.call(GatewayProtocol.getServiceHealth, { token: await registerAdmin(client) })
  const entry = health.workers?.find((x) => x.publicKey === workerKey)
  t.alike(entry?.models, ['netns-model'], 'the gateway knows the namespaced worker by its key')

  const user = await userWithKey(client)
  const r = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'netns-model', prompt: 'hello from the other side', maxTokens: 6 }, 30_000)
  t.is(r.worker, workerKey, 'InferResult.worker is the namespaced worker')
  t.is(r.model, 'netns-model')
  t.is(r.usage.completionTokens, 6, `the answer came back over the veth link: ${JSON.stringify(r.text)}`)

  const stopAt = Date.now()
  const exit = await w.stop('SIGINT')
  t.is(exit.code, 0, `SIGINT: the worker exits 0 (${Date.now() - stopAt} ms)`)
  const goneIn = await waitFor('netns-model gone from the gateway', async () => !(await modelIds(client)).includes('netns-model'), 5000)
  t.pass(`netns-model left the gateway ${goneIn} ms after the worker exited`)
  t.is(ns.pids().length, 0, 'nothing is left running in the namespace')
})

test('netns: the namespaced worker is back, serving, each time its gateway is SIGKILLed and started again under the same key', { timeout: 420_000, skip: !!skipReason }, async (t) => {
  const ns = namespaceFor(t)
  const { mesh } = await startTestMesh(t, { publicHost: ns.hostIp })
  const { client } = await gatewayClient(t, mesh)
  const { w, workerKey } = netnsWorker(t, ns, mesh)
  await w.waitFor(REGISTERED, 90_000)
  const user = await userWithKey(client)

  // the worker's own words: the CLI says so each time it registers again
  const reRegistrations = () => w.stderr().split(`reconnected to gateway ${mesh.gatewayKey.slice(0, 16)}`).length - 1
  const ROUNDS = 6
  // a worker is back within seconds of its gateway; the bound is only there to fail a worker that is not
  const BACK_WITHIN_MS = 15_000
  for (let round = 1; round <= ROUNDS; round++) {
    const before = reRegistrations()
    const gateway = mesh.children.get('gateway')!.proc
    const gone = new Promise((resolve) => gateway.once('exit', resolve))
    gateway.kill('SIGKILL')
    await gone
    await mesh.restartChild('gateway')
    const restarted = Date.now()
    const registered = await until(async () => reRegistrations(), (n) => n > before, BACK_WITHIN_MS, 100)
    if (registered === before) { t.fail(`round ${round}: the namespaced worker did not register again within ${BACK_WITHIN_MS / 1000} s of the gateway's restart`); break }
    const backIn = Date.now() - restarted
    // and the gateway routes to it: a request answered by that worker, over the veth link
    const r = await until(() => client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'netns-model', prompt: `round ${round}`, maxTokens: 4 }, 10_000).catch((err: Error) => err), (v) => !(v instanceof Error), 30_000)
    if (r instanceof Error) { t.fail(`round ${round}: no answer from netns-model: ${r.message}`); break }
    t.is(r.worker, workerKey, `round ${round}: the namespaced worker answered again (registered again ${backIn} ms after the gateway was ready)`)
    t.is(r.usage.completionTokens, 4, `round ${round}: a whole answer`)
  }
})
