import test from 'brittle'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startTestMesh, runCli, gatewayClient, registerAdmin, userWithKey, waitFor } from './support/harness.ts'
import { startFakeOpenAI } from './fakes/fake-openai.ts'
import { spawnLongCli } from './support/netns.ts'
import { serviceKeyPair } from '../shared/keys.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import type { MeshClient } from '../shared/mesh/client.ts'

// `hyperinfer worker` on loopback: an OpenAI-compatible backend whose key comes from an env var and
// is never shown, routing through the gateway, flag errors, Ctrl-C draining, and a stable identity.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const SECRET = 'sk-worker-cli-test-3f9a1c7e5b2d4a6c8e0f'

async function modelIds (client: MeshClient): Promise<string[]> {
  return (await client.call(GatewayProtocol.models, {})).models.map((m) => m.id)
}


test('worker CLI: bad flags are usage errors (exit 2) with one clear line', { timeout: 60_000 }, async (t) => {
  const home = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'wcli-'))
  t.teardown(() => fs.rmSync(home, { recursive: true, force: true }))
  const gw = ['--gateway', 'ab'.repeat(32), '--bootstrap', '127.0.0.1:1']
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['unknown backend', ['worker', '--backend', 'nope', ...gw], {}, /--backend 'nope' is not a backend: use one of ollama, openai, synthetic/],
    ['no backend', ['worker', ...gw], {}, /--backend is required/],
    ['openai without --base-url', ['worker', '--backend', 'openai', '--models', 'm1', ...gw], {}, /--backend openai needs --base-url/],
    ['--api-key-env naming an unset variable', ['worker', '--backend', 'openai', '--base-url', 'http://127.0.0.1:9/v1', '--api-key-env', 'WORKER_CLI_UNSET_KEY', ...gw], {}, /the environment variable WORKER_CLI_UNSET_KEY is not set/],
    ['a bad base URL', ['worker', '--backend', 'ollama', '--base-url', 'not a url', ...gw], {}, /--base-url 'not a url' is not a URL/],
    ['a bad gateway key', ['worker', '--backend', 'synthetic', '--gateway', 'xyz', '--bootstrap', '127.0.0.1:1'], {}, /not a 64-hex-character public key/],
    ['a service name', ['worker', '--backend', 'synthetic', '--name', 'gateway', ...gw], {}, /mesh service's identity/],
    ['a bad capacity', ['worker', '--backend', 'synthetic', '--capacity', '0', ...gw], {}, /--capacity must be/],
    ['an unknown flag', ['worker', '--backend', 'synthetic', '--api-key', 'sk-x', ...gw], {}, /Unknown option '--api-key'/]
  ]
  for (const [what, args, env, re] of cases) {
    const r = await runCli(home, args, { env })
    t.is(r.code, 2, `${what}: exit code 2`)
    t.ok(re.test(r.stderr), `${what}: ${r.stderr.trim().split('\n')[0]}`)
  }
  const help = await runCli(home, ['worker', '--help'])
  t.is(help.code, 0)
  t.ok(help.stdout.includes('--api-key-env VAR'), 'worker --help lists its options')
})

test('worker CLI: an OpenAI-compatible worker joins over loopback, its key never shows, Ctrl-C drains, restart keeps its key', { timeout: 180_000 }, async (t) => {
  const fake = await startFakeOpenAI({ models: ['m1', 'm2', 'slow'], apiKey: SECRET })
  t.teardown(() => fake.close(), { order: 2 })
  const { mesh } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' } } })
  const { client } = await gatewayClient(t, mesh)
  const user = await userWithKey(client)

  // the worker's own machine: its own state dir; gateway, bootstrap and token given as flags
  const whome = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'worker-'))
  t.teardown(() => fs.rmSync(whome, { recursive: true, force: true }), { order: 3 })
  const args = ['worker', '--backend', 'openai', '--base-url', fake.baseURL, '--api-key-env', 'FAKE_KEY', '--models', 'm1,slow',
    '--gateway', mesh.gatewayKey, '--bootstrap', mesh.bootstrapString, '--token', mesh.workerToken, '--label', 'cli-test']
  // LOG_LEVEL=debug: every worker log line reaches the CLI's stderr, so "never shown" covers the logs
  const w = spawnLongCli(ROOT, args, { HYPERINFER_HOME: whome, FAKE_KEY: SECRET, LOG_LEVEL: 'debug' })
  t.teardown(() => w.stop('SIGKILL'), { order: -1 })
  const line = await w.waitFor(/^worker ([0-9a-f]{16})… serving (\S+) via openai; registered with gateway ([0-9a-f]{16})…$/m, 60_000)
  t.comment(line[0])
  const workerKey = serviceKeyPair(whome, 'worker').publicKey.toString('hex')
  t.is(line[1], workerKey.slice(0, 16), 'the line names the worker by its key, kept in the state dir under --name')
  t.is(line[2], 'm1,slow', '--models: only those models are served (the server also has m2)')
  t.is(line[3], mesh.gatewayKey.slice(0, 16), 'and the gateway it registered with')

  await waitFor('m1 listed by the gateway', async () => (await modelIds(client)).includes('m1'), 10_000)
  const listed = await client.call(GatewayProtocol.models, {})
  const m1 = listed.models.find((m) => m.id === 'm1')
  t.is(m1?.backend, 'openai', 'the gateway lists m1 from the openai backend')
  t.absent(listed.models.some((m) => m.id === 'm2'), 'm2 is not served: --models filters')
  // each worker's key is shown to an admin's session
  const health = await client.call(GatewayProtocol.getServiceHealth, { token: await registerAdmin(client) })
  t.ok(!!health.workers?.some((x) => x.publicKey === workerKey), 'the gateway lists the worker by its public key')

  const r = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'm1', prompt: 'hello over the mesh', maxTokens: 8 }, 30_000)
  t.is(r.worker, workerKey, 'an m1 request went to the CLI worker')
  t.ok(r.text.length > 0, `and the fake OpenAI server answered: ${JSON.stringify(r.text)}`)

  // Ctrl-C while a slow stream runs (40 tokens, 50 ms apart: 2 s): it finishes, nothing new is taken, exit 0
  let streamEnd = 0
  let firstToken!: () => void
  const streaming = new Promise<void>((resolve) => { firstToken = resolve })
  const inflight = client.stream(GatewayProtocol.infer, { apiKey: user.key, model: 'slow', prompt: 'take your time', maxTokens: 40, stream: true }, { onChunk: () => firstToken(), idleTimeout: 30_000 })
    .then((x) => x, (e) => e as Error).finally(() => { streamEnd = Date.now(); firstToken() })
  // the signal comes once the worker is streaming, not after a guess at how long that takes
  await streaming
  const stopAt = Date.now()
  const stopping = w.stop('SIGINT')
  await new Promise((res) => setTimeout(res, 200))
  const late = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'm1', prompt: 'too late', maxTokens: 4 }, 10_000)
    .then((x) => x.worker, (e) => (e as { code: string }).code)
  t.not(late, workerKey, `a request made while draining is not served by the draining worker (${late})`)
  const exit = await stopping
  const exitAt = Date.now()
  t.is(exit.code, 0, `SIGINT: the worker CLI exits 0 (${exitAt - stopAt} ms after the signal)`)
  const drained = await inflight
  t.ok(!(drained instanceof Error) && drained.usage.completionTokens === 40, 'the in-flight stream finished: ' + (drained instanceof Error ? drained.message : `${drained.usage.completionTokens} tokens, ${drained.finishReason}`))
  if (!(drained instanceof Error)) t.is(drained.worker, workerKey)
  t.ok(streamEnd > stopAt + 500 && streamEnd <= exitAt + 50, `the stream ended ${streamEnd - stopAt} ms after the signal, before the worker exited`)
  const goneIn = await waitFor('m1 gone from the gateway', async () => !(await modelIds(client)).includes('m1'), 5000)
  t.pass(`m1 left the gateway ${goneIn} ms after the worker exited`)
  t.ok(w.stderr().includes('finishes the ones in flight'), 'Ctrl-C says it drains')

  const all = w.stdout() + w.stderr()
  t.absent(all.includes(SECRET), `the backend API key appears nowhere in the worker's stdout/stderr/logs (${all.length} characters checked)`)
  t.absent(all.includes(mesh.workerToken), 'nor does the worker token')
  t.ok(w.stderr().includes('"level":20') || w.stderr().includes('"level":30'), 'the worker logs did reach stderr (so the check above covers them)')

  // restart with the same --name: the same public key, registered again
  const again = spawnLongCli(ROOT, args, { HYPERINFER_HOME: whome, FAKE_KEY: SECRET })
  t.teardown(() => again.stop('SIGKILL'), { order: -1 })
  const line2 = await again.waitFor(/^worker ([0-9a-f]{16})… serving/m, 60_000)
  t.is(line2[1], workerKey.slice(0, 16), 'a restart keeps the same public key')
  await waitFor('m1 back', async () => (await modelIds(client)).includes('m1'), 10_000)
  t.is((await again.stop('SIGTERM')).code, 0, 'SIGTERM also stops it cleanly')
})

test('worker CLI: on the mesh machine, gateway, bootstrap and token come from the mesh file; a wrong backend key is never echoed', { timeout: 180_000 }, async (t) => {
  const fake = await startFakeOpenAI({ models: ['m9'], apiKey: SECRET })
  t.teardown(() => fake.close(), { order: 2 })
  const { mesh, home } = await startTestMesh(t)
  const { client } = await gatewayClient(t, mesh)
  const user = await userWithKey(client)

  // wrong key: the fake server echoes it in its 401 message, as some servers do
  const wrong = 'sk-wrong-key-echoed-by-server-77aa99'
  const w = spawnLongCli(ROOT, ['worker', '--backend', 'openai', '--base-url', fake.baseURL, '--api-key-env', 'MY_KEY', '--models', 'm9', '--name', 'w2'],
    { HYPERINFER_HOME: home, MY_KEY: wrong, LOG_LEVEL: 'debug' })
  t.teardown(() => w.stop('SIGKILL'), { order: -1 })
  const line = await w.waitFor(/^worker ([0-9a-f]{16})… serving (\S+) via openai; registered with gateway ([0-9a-f]{16})…$/m, 60_000)
  t.is(line[3], mesh.gatewayKey.slice(0, 16), 'no --gateway/--bootstrap/--token: the mesh file and the local worker token were used')
  t.is(line[1], serviceKeyPair(home, 'w2').publicKey.toString('hex').slice(0, 16), '--name w2 keeps its own key')
  const failed = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'm9', prompt: 'hi', maxTokens: 4 }, 30_000).then(() => null, (e) => e as { code: string, message: string })
  t.is(failed?.code, 'BACKEND_ERROR', `the backend refused the key: ${failed?.message}`)
  t.absent(JSON.stringify(failed).includes(wrong), 'the gateway error does not carry the key')
  t.is((await w.stop('SIGINT')).code, 0)
  const all = w.stdout() + w.stderr()
  t.absent(all.includes(wrong), 'the echoed key appears nowhere in the worker\'s output or logs')
})
