import test from 'brittle'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnLongCli } from './support/netns.ts'
import { startTestMesh, gatewayClient, userWithKey, runCli, until, registerAdmin, ADMIN_PASSWORD, strangerWorker } from './support/harness.ts'
import { startFakeOpenAI } from './fakes/fake-openai.ts'
import { FAIL_MODEL } from './fakes/fake-llm.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import type { MeshClient } from '../shared/mesh/client.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

// Routing on real processes: the registry decides who gets traffic (approval), which model a
// strategy picks (its data), and every gateway sees the same registry.





test('admission: a worker that joins without the token gets nothing until approved, then traffic within 2 s; revoked, it is cut off', { timeout: 180_000 }, async (t) => {
  const { mesh, home } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' } } })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const { key } = await userWithKey(client)

  const late = await strangerWorker(mesh, 'late', 'late-model')
  const listed = await until(() => client.call(GatewayProtocol.workers, { token: boss }), (r) => r.workers.some((w) => w.key === late && w.connected))
  const entry = listed.workers.find((w) => w.key === late)!
  t.is(entry?.approval.state, 'pending', 'the stranger is recorded as pending')
  const before = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'late-model', prompt: 'hello?', maxTokens: 2 }).catch((e) => e)
  t.is(before.code, 'UNKNOWN_MODEL', 'and gets no traffic: its model is not offered')
  const notAdmin = await client.call(GatewayProtocol.registryChange, { token: (await userWithKey(client)).token, change: { op: 'approveWorker', key: late } }).catch((e) => e)
  t.is(notAdmin.code, 'FORBIDDEN', 'only an admin can approve')

  t.is((await runCli(home, ['login', '--email', 'boss@example.com', '--password', ADMIN_PASSWORD])).code, 0, 'the operator logs in from the CLI')
  const list = await runCli(home, ['workers', 'list'])
  t.ok(list.code === 0 && list.stdout.includes(late) && /pending/.test(list.stdout), 'hyperinfer workers list shows it pending')
  const badKey = await runCli(home, ['workers', 'approve', 'not-a-key'])
  t.is(badKey.code, 2, 'a malformed key is a usage error')
  const approvedAt = Date.now()
  await client.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'approveWorker', key: late } })
  const routed = await until(() => client.call(GatewayProtocol.infer, { apiKey: key, model: 'late-model', prompt: 'now?', maxTokens: 2 }, 5000).catch((e) => e), (r) => !(r instanceof Error), 5000)
  const ms = Date.now() - approvedAt
  t.is(routed.worker, late, `the approved worker serves the request (${ms} ms after approval)`)
  t.ok(ms < 2000, 'within 2 s of approval')
  t.is(routed.routing.strategy, 'explicit', 'the answer says how the model was chosen')

  await client.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'revokeWorker', key: late } })
  const cut = await until(() => client.call(GatewayProtocol.infer, { apiKey: key, model: 'late-model', prompt: 'still?', maxTokens: 2 }, 5000).catch((e) => e), (r) => r instanceof Error, 5000)
  t.is(cut.code, 'UNKNOWN_MODEL', 'revoked: its model is gone at once')
  const after = await until(() => client.call(GatewayProtocol.workers, { token: boss }), (r) => !r.workers.find((w) => w.key === late)?.connected)
  t.is(after.workers.find((w) => w.key === late)?.approval.state, 'revoked', 'the registry records the revocation')
  t.absent(after.workers.find((w) => w.key === late)?.connected, 'and the gateway dropped its connection')

  // a join token an admin made admits a worker at once; revoked, it admits no one
  const made = await runCli(home, ['workers', 'token', 'create', '--label', 'gpu-box', '--quiet'])
  const joinToken = made.stdout.trim()
  t.ok(made.code === 0 && /^hij_/.test(joinToken), 'hyperinfer workers token create prints the token once')
  const joiner = await strangerWorker(mesh, 'joiner', 'joiner-model', { HYPERINFER_WORKER_TOKEN: joinToken })
  // (no operator acts here: the worker's own registration, once its DHT connection is up, admits it)
  const served = await until(() => client.call(GatewayProtocol.infer, { apiKey: key, model: 'joiner-model', prompt: 'hi', maxTokens: 2 }, 5000).catch((e) => e), (r) => !(r instanceof Error), 20_000)
  t.is(served.worker, joiner, 'a worker presenting the join token is routed to without an approval step')
  const ws = await client.call(GatewayProtocol.workers, { token: boss })
  t.is(ws.workers.find((w) => w.key === joiner)?.approval.by, 'join-token:gpu-box', 'the registry records which token admitted it')
  const tokens = await runCli(home, ['workers', 'token', 'list', '--json'])
  const id = tokens.json.tokens[0].id as string
  t.is(tokens.json.tokens[0].uses, 1, 'the token counts its use')
  t.ok(!tokens.stdout.includes(joinToken), 'the list never shows the token itself')
  t.is((await runCli(home, ['workers', 'token', 'revoke', id])).code, 0, 'hyperinfer workers token revoke')
  const second = await strangerWorker(mesh, 'joiner2', 'joiner2-model', { HYPERINFER_WORKER_TOKEN: joinToken })
  // a proof of a revoked token is refused outright (FORBIDDEN), so the worker is neither served nor
  // waiting; it keeps retrying, so give it the time an admitted worker takes to appear, several times over
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const state = await client.call(GatewayProtocol.workers, { token: boss })
  t.absent(state.workers.find((w) => w.key === second), 'a revoked join token admits no one: the next worker is refused, not even pending')
  const refused = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'joiner2-model', prompt: 'hi', maxTokens: 2 }, 5000).catch((e) => e)
  t.is(refused.code, 'UNKNOWN_MODEL', 'and nothing is routed to it')
})

test('failover: killing a worker mid-load loses no request that had not streamed; a failing worker trips its breaker', { timeout: 180_000 }, async (t) => {
  const openai = await startFakeOpenAI({ apiKey: 'sk-breaker', models: [FAIL_MODEL] })
  t.teardown(() => openai.close(), { order: 2 })
  const { mesh } = await startTestMesh(t, {
    workers: 3,
    serviceEnv: { auth: { ADMIN_USERS: 'boss' }, inference: { SYNTHETIC_TOKENS_PER_SEC: '100', SYNTHETIC_MODELS: `synthetic,${FAIL_MODEL}` } },
    // the third worker's backend answers every request for the shared model with HTTP 500
    instanceEnv: { 'inference-3': { SYNTHETIC: 'false', OPENAI_BASE_URL: openai.url + '/v1', OPENAI_API_KEY: 'sk-breaker', OPENAI_MODELS: FAIL_MODEL } }
  })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const { key } = await userWithKey(client)

  let done = 0
  const results: Array<string> = []
  let next = 0
  const loop = async () => {
    while (next < 60) {
      next++
      const r = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: `load ${next}`, maxTokens: 8 }, 30_000).then((x) => x.worker, (e) => 'ERR ' + e.code)
      results.push(r)
      done++
    }
  }
  const loops = Array.from({ length: 8 }, loop)
  await until(async () => done, (n) => n >= 15, 20_000)
  const victim = mesh.keys['inference-2']!
  mesh.children.get('inference-2')!.proc.kill('SIGKILL')
  await Promise.all(loops)
  t.is(results.filter((r) => r.startsWith('ERR')).length, 0, `all 60 whole-answer requests succeeded across the kill (${results.filter((r) => r === victim).length} on the victim before it died)`)
  const afterKill = results.slice(30)
  t.ok(afterKill.every((r) => r !== victim), 'nothing went to the dead worker once it was gone')

  const failing = mesh.keys['inference-3']!
  const shared = []
  for (let i = 0; i < 20; i++) shared.push(await client.call(GatewayProtocol.infer, { apiKey: key, model: FAIL_MODEL, prompt: `shared ${i}`, maxTokens: 3 }).then((r) => r, (e) => e))
  t.ok(shared.every((r) => !(r instanceof Error)), 'every request for the shared model succeeded (failed attempts were retried on the healthy worker)')
  t.ok(shared.some((r) => r.routing.attempts > 1), 'some needed a second attempt')
  const ws = await client.call(GatewayProtocol.workers, { token: boss })
  const bad = ws.workers.find((w) => w.key === failing)!
  t.is(bad.breaker, 'open', 'the failing worker\'s breaker is open')
  t.is(bad.failures, 3, 'after exactly the threshold of 3 failures: it got no more traffic')
})

test('strategies: each picks what the registry\'s data says', { timeout: 180_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' }, inference: { SYNTHETIC_MODELS: 'cheap,smart,safe-coder' } } })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 10 })

  const set = (id: string, patch: Record<string, unknown>) => client.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'setModel', id, patch } })
  await set('cheap', { pricePer1MInput: 0.1, pricePer1MOutput: 0.2, quality: 0.3, safety: 0.6, tasks: ['chat'] })
  await set('smart', { pricePer1MInput: 5, pricePer1MOutput: 15, quality: 0.95, safety: 0.7, tasks: ['chat'] })
  await set('safe-coder', { pricePer1MInput: 1, pricePer1MOutput: 2, quality: 0.7, safety: 0.95, tasks: ['chat', 'code'] })

  const table: Array<[string, Record<string, unknown>, string]> = [
    ['cost', { strategy: 'cost' }, 'cheap'],
    ['quality', { strategy: 'quality' }, 'smart'],
    ['task code', { task: 'code' }, 'safe-coder'],
    ['quality with min safety 0.9', { strategy: 'quality', minSafety: 0.9 }, 'safe-coder'],
    ['cost among code models', { strategy: 'cost', task: 'code' }, 'safe-coder'],
    ['hybrid, cost-only weights', { strategy: 'hybrid', weights: { cost: 1, latency: 0, quality: 0 } }, 'cheap'],
    ['hybrid, quality-heavy weights', { strategy: 'hybrid', weights: { cost: 0.1, latency: 0, quality: 1 } }, 'smart']
  ]
  for (const [label, route, expected] of table) {
    const r = await client.call(GatewayProtocol.infer, { apiKey: user.key, route: route as any, prompt: 'pick one', maxTokens: 3 })
    t.is(r.model, expected, `${label} → ${expected} (${r.routing.reason})`)
  }
  const none = await client.call(GatewayProtocol.infer, { apiKey: user.key, route: { minSafety: 0.99 }, prompt: 'x', maxTokens: 3 }).catch((e) => e)
  t.is(none.code, 'NO_WORKER', 'no model safe enough: NO_WORKER, said clearly: ' + none.message)
  const priced = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'smart', prompt: 'what does it cost', maxTokens: 3 })
  t.ok(priced.costUsd > 0, `registry prices are billed: $${priced.costUsd}`)
})

test('several gateways: a second one replicates the registry, sees changes within 1 s, forwards its own, serves the same users', { timeout: 180_000 }, async (t) => {
  const { mesh, home } = await startTestMesh(t, { gateways: 2, serviceEnv: { auth: { ADMIN_USERS: 'boss' } } })
  const [k1, k2] = mesh.gatewayKeys as [string, string]
  const a = (await gatewayClient(t, mesh, k1)).client
  const b = (await gatewayClient(t, mesh, k2)).client
  const boss = await registerAdmin(a)
  const ra = await a.call(GatewayProtocol.registry, { token: boss })
  const rb = await b.call(GatewayProtocol.registry, { token: boss })
  t.ok(ra.key && rb.key === ra.key, 'both gateways hold the same registry')
  t.alike([ra.writable, rb.writable], [true, false], 'the first writes it, the second replicates it')

  const started = Date.now()
  await a.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'setModel', id: 'synthetic', patch: { pricePer1MOutput: 0.42 } } })
  const seen = await until(() => b.call(GatewayProtocol.registry, {}), (r) => r.models.find((m) => m.id === 'synthetic')?.price?.output === 0.42, 5000, 10)
  const ms = Date.now() - started
  t.is(seen.models.find((m) => m.id === 'synthetic')?.price?.output, 0.42, `the second gateway sees the change (${ms} ms)`)
  t.ok(ms < 1000, 'within 1 s')

  // the web service follows the registry too, over its own connection to the gateway
  const webHealth = async () => (await (await fetch(mesh.webUrl + '/health')).json()) as { registry: { version: number, peers: number } | null }
  const web = await until(webHealth, (h) => !!h.registry && h.registry.peers > 0, 15_000)
  t.ok(web.registry!.peers > 0, 'the web service holds a replica of the registry')
  const webBefore = web.registry!.version
  await b.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'putModel', input: { id: 'added-via-b', provider: 'openai', backendModel: 'x', tasks: ['chat'], contextLength: 4096, pricePer1MInput: 1, pricePer1MOutput: 2, quality: 0.8, safety: 0.8 } } })
  const webAfter = await until(webHealth, (h) => (h.registry?.version ?? 0) > webBefore, 5000)
  t.ok((webAfter.registry?.version ?? 0) > webBefore, `and sees the change (version ${webBefore} → ${webAfter.registry?.version})`)
  const onA = await a.call(GatewayProtocol.registry, {})
  t.ok(onA.models.some((m) => m.id === 'added-via-b'), 'a change made through the replica gateway is written by the first')

  // the same user, the same key, either gateway; the CLI can be given either
  const user = await userWithKey(a)
  const name = (await a.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await b.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 }) // synthetic has a price now
  const viaB = await b.call(GatewayProtocol.infer, { apiKey: user.key, prompt: 'hello from b', maxTokens: 3 })
  t.is(viaB.usage.completionTokens, 3, 'a key made on one gateway works on the other')
  const cli = await runCli(home, ['--gateway', k2, 'models', '--all'])
  t.ok(cli.code === 0 && /added-via-b/.test(cli.stdout), 'hyperinfer --gateway <second> models --all lists the registry')
  t.is((await runCli(home, ['--gateway', k2, 'login', '--email', 'boss@example.com', '--password', ADMIN_PASSWORD])).code, 0, 'the admin logs in through the second gateway')
  const history = await runCli(home, ['--gateway', k2, 'registry', 'history'])
  t.ok(history.code === 0 && /models\/added-via-b/.test(history.stdout) && /user:boss/.test(history.stdout), 'registry history shows the changes and who made them')

  // the admin CLI edits the registry through either gateway
  const bad = await runCli(home, ['--gateway', k2, 'models', 'set', 'synthetic', '--quality', '7'])
  t.is(bad.code, 2, 'a quality outside 0..1 is a usage error: ' + bad.stderr.trim())
  const add = await runCli(home, ['--gateway', k2, 'models', 'add', 'coder-x', '--provider', 'openai', '--tasks', 'chat,code', '--price-in', '0.5', '--price-out', '1.5', '--quality', '0.8'])
  t.is(add.code, 0, 'models add: ' + add.stdout.trim())
  const set = await runCli(home, ['--gateway', k2, 'models', 'set', 'coder-x', '--safety', '0.9'])
  t.is(set.code, 0, 'models set: ' + set.stdout.trim())
  const entry = (await until(() => a.call(GatewayProtocol.registry, {}), (r) => r.models.find((m) => m.id === 'coder-x')?.safety === 0.9)).models.find((m) => m.id === 'coder-x')
  t.alike([entry?.tasks, entry?.price, entry?.quality, entry?.safety], [['chat', 'code'], { input: 0.5, output: 1.5 }, 0.8, 0.9], 'the first gateway holds what the CLI wrote through the second')
  const rm = await runCli(home, ['--gateway', k2, 'models', 'remove', 'added-via-b'])
  t.is(rm.code, 0, 'models remove')
  const missing = await runCli(home, ['--gateway', k2, 'models', 'remove', 'added-via-b'])
  t.ok(missing.code === 1 && /NOT_FOUND/.test(missing.stderr), 'removing it again is NOT_FOUND: ' + missing.stderr.trim())
})

test('drain: a worker stopped with SIGTERM finishes its streams, and new requests go elsewhere', { timeout: 180_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { workers: 2, serviceEnv: { inference: { SYNTHETIC_TOKENS_PER_SEC: '50' } } })
  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)
  const leaving = mesh.keys['inference-2']!
  const streams = Array.from({ length: 10 }, (_, i) => {
    let tokens = 0
    return client.stream(GatewayProtocol.infer, { apiKey: key, prompt: `long ${i}`, maxTokens: 40, stream: true }, { idleTimeout: 30_000, onChunk: () => { tokens++ } })
      .then((r) => ({ worker: r.worker, tokens, ok: true }), (e) => ({ worker: '', tokens, ok: false, code: e.code }))
  })
  await new Promise((r) => setTimeout(r, 300)) // every stream is under way
  const stopping = mesh.stopChild('inference-2', 'SIGTERM')
  const results = await Promise.all(streams)
  await stopping
  const onLeaving = results.filter((r) => r.worker === leaving)
  t.ok(onLeaving.length > 0, `${onLeaving.length} of the streams were on the worker that left`)
  t.ok(results.every((r) => r.ok && r.tokens === 40), 'every stream finished with all 40 tokens')
  const after = await Promise.all(Array.from({ length: 6 }, (_, i) => client.call(GatewayProtocol.infer, { apiKey: key, prompt: `after ${i}`, maxTokens: 2 })))
  t.ok(after.every((r) => r.worker === mesh.keys.inference), 'new requests go to the worker that stayed')
})

test('network key: a worker that knows only the network key finds and joins every gateway', { timeout: 180_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { gateways: 2 })
  const [k1, k2] = mesh.gatewayKeys as [string, string]
  const a = (await gatewayClient(t, mesh, k1)).client
  const b = (await gatewayClient(t, mesh, k2)).client
  // the operator hands the network key out; the gateway gives it to no stranger
  t.absent((await a.call(GatewayProtocol.registry, {})).key, 'a stranger is not told the network key')
  const network = mesh.registryKey

  const whome = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'netkey-'))
  t.teardown(() => fs.rmSync(whome, { recursive: true, force: true }), { order: 3 })
  const w = spawnLongCli(ROOT, ['worker', '--backend', 'synthetic', '--models', 'net-model', '--network', network, '--bootstrap', mesh.bootstrapString, '--token', mesh.workerToken],
    { HYPERINFER_HOME: whome })
  t.teardown(() => w.stop('SIGKILL'), { order: -1 })
  const line = await w.waitFor(/registered with gateway ([0-9a-f]{16})…/m, 60_000)
  t.ok([k1, k2].some((k) => k.startsWith(line[1]!)), 'registered with a gateway it found on the topic: ' + line[0])
  const served = async (c: MeshClient) => (await c.call(GatewayProtocol.models, {})).models.some((m) => m.id === 'net-model')
  t.ok(await until(() => served(a), (x) => x, 20_000), 'the first gateway routes to it')
  t.ok(await until(() => served(b), (x) => x, 20_000), 'and so does the second')
  const { key } = await userWithKey(a)
  const viaB = await b.call(GatewayProtocol.infer, { apiKey: key, model: 'net-model', prompt: 'found you', maxTokens: 2 })
  t.is(viaB.usage.completionTokens, 2, 'a request through the second gateway reaches it')
  const exit = await w.stop('SIGINT')
  t.is(exit.code, 0, 'Ctrl-C: the worker exits cleanly')
})
