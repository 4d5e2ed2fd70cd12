import test from 'brittle'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startTestMesh, gatewayClient, userWithKey } from '../../../test/support/harness.ts'
import { fakeTokens } from '../../../test/fakes/fake-llm.ts'
import { startFakeOllama } from '../../../test/fakes/fake-ollama.ts'
import { startFakeOpenAI } from '../../../test/fakes/fake-openai.ts'
import { GatewayProtocol } from '../../../shared/protocol/gateway.ts'
import { parseWorkerStatus, type WorkerStatus } from '../status.ts'

// A worker process with all three backends, reached through the gateway like any user would: each
// backend answers through its official client, and a caller that goes away aborts the backend call.

test('worker: Ollama, OpenAI-compatible and synthetic models behind one gateway; cancel reaches the backend', { timeout: 120_000 }, async (t) => {
  const ollama = await startFakeOllama({ models: ['llama3.2', 'slow'] })
  const openai = await startFakeOpenAI({ apiKey: 'sk-worker-test', models: ['gpt-fake', 'slow-openai'] })
  t.teardown(async () => { await ollama.close(); await openai.close() }, { order: 2 })
  const { mesh } = await startTestMesh(t, {
    serviceEnv: { inference: { OLLAMA_URL: ollama.url, OPENAI_BASE_URL: openai.url + '/v1', OPENAI_API_KEY: 'sk-worker-test' } }
  })
  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)

  const { models } = await client.call(GatewayProtocol.models, {})
  t.alike(models.map((m) => `${m.id}:${m.backend}`), ['gpt-fake:openai', 'llama3.2:ollama', 'slow:ollama', 'slow-openai:openai', 'synthetic:synthetic'], 'the gateway lists every backend\'s models')

  for (const model of ['llama3.2', 'gpt-fake']) {
    const chunks: string[] = []
    const res = await client.stream(GatewayProtocol.infer, { apiKey: key, model, prompt: 'hello there', maxTokens: 5, stream: true }, { onChunk: (c) => chunks.push(c.text), idleTimeout: 10_000 })
    t.is(chunks.join(''), fakeTokens(model, 5).join(''), `${model}: the backend's tokens, streamed in order`)
    t.alike(res.usage, { promptTokens: 2, completionTokens: 5 }, `${model}: the backend's own usage`)
  }

  const ac = new AbortController()
  let n = 0
  const err = await client.stream(GatewayProtocol.infer, { apiKey: key, model: 'slow', prompt: 'never ending', stream: true }, {
    onChunk: () => { if (++n === 3) ac.abort() }, signal: ac.signal, idleTimeout: 10_000
  }).catch((e) => e)
  t.is(err.code, 'CANCELLED', 'the caller cancelled')
  for (let i = 0; i < 60 && ollama.aborted === 0; i++) await new Promise((r) => setTimeout(r, 50))
  t.is(ollama.aborted, 1, 'and Ollama saw its HTTP request aborted, two hops away')
  const health = await client.call(GatewayProtocol.getServiceHealth, {})
  t.is(health.inflight, 0, 'nothing left in flight on the gateway')
})

test('worker: tells the process that started it its state over IPC: joining, ready, registered, draining, stopped', { timeout: 120_000 }, async (t) => {
  const { mesh } = await startTestMesh(t)
  const entry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'index.ts')
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    env: {
      ...process.env, HYPERINFER_HOME: mesh.home, HYPERINFER_BOOTSTRAP: mesh.bootstrapString, HYPERINFER_GATEWAYS: mesh.gatewayKey,
      HYPERINFER_WORKER_TOKEN: mesh.workerToken, HYPERINFER_WORKER_NAME: 'ipc-worker', SYNTHETIC_MODELS: 'ipc-model', LOG_LEVEL: 'warn'
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  t.teardown(() => { child.kill('SIGKILL') }, { order: -1 })
  const seen: WorkerStatus[] = []
  let registered = () => {}
  child.on('message', (m: unknown) => {
    const s = parseWorkerStatus(m)
    if (s) seen.push(s)
    if (s?.type === 'registered') registered()
  })
  await new Promise<void>((resolve) => { registered = resolve })
  child.kill('SIGTERM')
  t.is(await closed, 0, 'SIGTERM: a clean exit')
  const of = <T extends WorkerStatus['type']> (type: T) => seen.filter((s): s is Extract<WorkerStatus, { type: T }> => s.type === type)
  t.alike(of('joining').map((s) => s.gateway), [mesh.gatewayKey], 'joining the gateway it was given')
  t.alike(of('ready').map((s) => s.models), [['ipc-model']], 'ready once, with the models it serves')
  t.is(of('ready')[0]?.publicKey.length, 64, 'and its public key')
  t.alike(of('registered').map((s) => [s.gateway, s.approval]), [[mesh.gatewayKey, 'approved']], 'registered, approved (it has the token)')
  t.alike(seen.slice(-2).map((s) => s.type), ['draining', 'stopped'], 'then draining, and stopped last')
})
