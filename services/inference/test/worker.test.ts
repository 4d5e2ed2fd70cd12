import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey } from '../../../test/support/harness.ts'
import { fakeTokens } from '../../../test/fakes/fake-llm.ts'
import { startFakeOllama } from '../../../test/fakes/fake-ollama.ts'
import { startFakeOpenAI } from '../../../test/fakes/fake-openai.ts'
import { GatewayProtocol } from '../../../shared/protocol/gateway.ts'

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
