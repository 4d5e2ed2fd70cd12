import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey } from './support/harness.ts'
import { startFakeOllama } from './fakes/fake-ollama.ts'
import { startFakeOpenAI } from './fakes/fake-openai.ts'
import { SLOW_MODEL } from './fakes/fake-llm.ts'
import { syntheticEmbedding, syntheticText } from '../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'

// POST /v1/ai/request: a task and preferences in, the routed model and why out. The
// router picks what the gateway's own data says: measured time to first token and backend cost.

async function post (base: string, key: string, body: unknown) {
  const res = await fetch(base + '/v1/ai/request', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() as any }
}

test('ai request: routed by preferences, answers with the model, usage and the reason', { timeout: 120_000 }, async (t) => {
  const ollama = await startFakeOllama({ models: [SLOW_MODEL] })
  const openai = await startFakeOpenAI({ apiKey: 'sk-route', models: ['gpt-remote'] })
  t.teardown(async () => { await ollama.close(); await openai.close() }, { order: 2 })
  const { mesh } = await startTestMesh(t, { serviceEnv: { inference: { OLLAMA_URL: ollama.url, OPENAI_BASE_URL: openai.url + '/v1', OPENAI_API_KEY: 'sk-route' } } })
  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)
  const base = mesh.webUrl!

  // give the gateway something to measure: the slow model takes >= 50 ms to its first token
  await client.call(GatewayProtocol.infer, { apiKey: key, model: SLOW_MODEL, prompt: 'warm', maxTokens: 2 })
  await client.call(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: 'warm', maxTokens: 2 })
  await client.call(GatewayProtocol.infer, { apiKey: key, model: 'gpt-remote', prompt: 'warm', maxTokens: 2 })

  const cheap = await post(base, key, { task: 'chat', input: 'hello', preferences: { cost: 1 }, max_tokens: 4 })
  t.is(cheap.status, 200)
  t.is(cheap.json.model, 'synthetic', 'cost first: a local model, and of the two the measured-faster one')
  const ranked = cheap.json.routing.ranked as Array<{ id: string, score: number }>
  t.is(ranked[ranked.length - 1]!.id, 'gpt-remote', 'the paid API ranks last on cost')
  t.is(cheap.json.routing.strategy, 'hybrid')
  t.ok(cheap.json.routing.reason.includes('score'), 'the reason names the score: ' + cheap.json.routing.reason)
  t.is(cheap.json.usage.cost, 0, 'a local model costs nothing')
  t.is(cheap.json.usage.tokens, cheap.json.usage.promptTokens + cheap.json.usage.completionTokens)

  const fast = await post(base, key, { task: 'chat', input: 'hello', preferences: { speed: 1 }, max_tokens: 4 })
  const order = (fast.json.routing.ranked as Array<{ id: string }>).map((r) => r.id)
  t.ok(order.indexOf('synthetic') < order.indexOf(SLOW_MODEL), `speed first: the measured-fast model ranks above the slow one (${order.join(' > ')})`)
  t.not(fast.json.model, SLOW_MODEL)

  const rpc = await client.call(GatewayProtocol.aiRequest, { apiKey: key, task: 'chat', input: 'hi', preferences: { cost: 1 }, maxTokens: 3 })
  t.is(rpc.model, 'synthetic', 'two free models tie on cost: the measured-faster one wins')
  t.is(rpc.response, syntheticText([{ role: 'user', content: 'hi' }], 3), 'and its answer comes back')
  const paid = await client.call(GatewayProtocol.aiRequest, { apiKey: key, task: 'chat', input: 'hi', preferences: { quality: 1 }, maxTokens: 3 })
  t.is(paid.usage.cost, 0, 'a model without a price in the registry is not charged')

  const emb = await post(base, key, { task: 'embed', input: 'route me', preferences: { cost: 1 } })
  t.is(emb.status, 200)
  t.ok(Array.isArray(emb.json.response) && emb.json.response.length === 1, 'an embedding task returns vectors')
  t.is(emb.json.model, 'synthetic')
  t.alike(emb.json.response[0].map((x: number) => Math.round(x * 1e4)), syntheticEmbedding('route me').map((x) => Math.round(x * 1e4)))

  const bad = await post(base, key, { task: 'chat', input: 'x', preferences: { speed: 7 } })
  t.is(bad.status, 400, 'preferences are weights in [0, 1]')
  const noKey = await post(base, 'hi_' + 'z'.repeat(43), { task: 'chat', input: 'x' })
  t.is(noKey.status, 401)
})
