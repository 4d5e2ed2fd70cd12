import test from 'brittle'
import OpenAI from 'openai'
import { startTestMesh, gatewayClient, userWithKey, alive } from './support/harness.ts'
import { startFakeOllama } from './fakes/fake-ollama.ts'
import { FAIL_MODEL, SLOW_MODEL } from './fakes/fake-llm.ts'
import { syntheticEmbedding, syntheticText } from '../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'

// Code written for OpenAI works unchanged: the official `openai` package, pointed at our base URL
// with one of our API keys, against a real mesh.

test('openai compat: chat, streaming with usage, completions, models, stop, and every error as the SDK sees it', { timeout: 180_000 }, async (t) => {
  const ollama = await startFakeOllama({ models: [SLOW_MODEL, FAIL_MODEL] })
  t.teardown(() => ollama.close(), { order: 2 })
  const { mesh } = await startTestMesh(t, { serviceEnv: { gateway: { DEFAULT_RATE_LIMIT: '30' }, inference: { OLLAMA_URL: ollama.url } } })
  const { client: rpc } = await gatewayClient(t, mesh)
  const { key, token } = await userWithKey(rpc)
  const openai = new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: key, maxRetries: 0 })
  const messages = [{ role: 'system' as const, content: 'be brief' }, { role: 'user' as const, content: 'Explain quantum computing' }]
  const expected = (n: number) => syntheticText(messages, n)

  const chat = await openai.chat.completions.create({ model: 'synthetic', messages, max_tokens: 7 })
  t.is(chat.object, 'chat.completion')
  t.ok(chat.id.startsWith('chatcmpl-'))
  t.is(chat.choices[0]!.message.content, expected(7), 'the answer is the worker\'s text')
  t.is(chat.choices[0]!.finish_reason, 'length')
  t.is(chat.usage?.completion_tokens, 7)
  t.is(chat.usage?.total_tokens, (chat.usage?.prompt_tokens ?? 0) + 7)

  const stream = await openai.chat.completions.create({ model: 'synthetic', messages, max_tokens: 9, stream: true, stream_options: { include_usage: true } })
  let streamed = ''
  let deltas = 0
  let usage: OpenAI.CompletionUsage | null | undefined = null
  let finish: string | null = null
  for await (const chunk of stream) {
    const c = chunk.choices[0]
    if (c?.delta?.content) { streamed += c.delta.content; deltas++ }
    if (c?.finish_reason) finish = c.finish_reason
    if (chunk.usage) usage = chunk.usage
  }
  t.is(streamed, expected(9), 'streamed deltas add up to the same text')
  t.ok(deltas >= 1)
  t.is(finish, 'length')
  t.is(usage?.completion_tokens, 9, 'stream_options.include_usage: the last chunk carries the usage')

  const withStop = await openai.chat.completions.create({ model: 'synthetic', messages, max_tokens: 20, stop: [expected(20).split(' ')[4]!] })
  const full = expected(20)
  const stopWord = full.split(' ')[4]!
  t.is(withStop.choices[0]!.message.content, full.slice(0, full.indexOf(stopWord)), 'stop: the text ends right before the stop sequence')
  t.is(withStop.choices[0]!.finish_reason, 'stop')

  const completion = await openai.completions.create({ model: 'synthetic', prompt: 'Explain quantum computing', max_tokens: 5 })
  t.is(completion.object, 'text_completion')
  t.is(completion.choices[0]!.text, syntheticText([{ role: 'user', content: 'Explain quantum computing' }], 5), '/v1/completions')

  const emb = await openai.embeddings.create({ model: 'synthetic', input: ['peer to peer', 'mesh'] })
  t.is(emb.data.length, 2, '/v1/embeddings: one vector per input')
  t.is(emb.data[0]!.embedding.length, 64)
  t.alike(emb.data[0]!.embedding.map((x) => Math.round(x * 1e4)), syntheticEmbedding('peer to peer').map((x) => Math.round(x * 1e4)), 'the worker\'s vector, decoded by the SDK from base64')
  const floats = await fetch(mesh.webUrl + '/v1/embeddings', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'synthetic', input: 'mesh', encoding_format: 'float' }) }).then((r) => r.json()) as any
  t.alike(floats.data[0].embedding.map((x: number) => Math.round(x * 1e4)), syntheticEmbedding('mesh').map((x) => Math.round(x * 1e4)), 'and as plain floats')
  t.is(floats.usage.prompt_tokens, 1)
  const viaOllama = await openai.embeddings.create({ model: SLOW_MODEL, input: 'x' })
  t.is(viaOllama.data[0]!.embedding.length, 8, 'embeddings from the Ollama backend too')
  const noModel = await openai.embeddings.create({ model: 'nope', input: 'x' }).catch((e) => e)
  t.is(noModel.status, 404, 'unknown embedding model → 404')

  const models = await openai.models.list()
  t.alike(models.data.map((m) => m.id).sort(), [FAIL_MODEL, 'slow', 'synthetic'].sort(), '/v1/models lists what the workers serve')
  const one = await openai.models.retrieve('synthetic')
  t.is(one.owned_by, 'synthetic')

  // errors, as the SDK's own classes
  const bad = new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: 'hi_' + 'x'.repeat(43), maxRetries: 0 })
  const e401 = await bad.chat.completions.create({ model: 'synthetic', messages }).catch((e) => e)
  t.ok(e401 instanceof OpenAI.AuthenticationError, 'unknown key → AuthenticationError')
  t.is(e401.status, 401)
  t.is(e401.code, 'invalid_api_key')
  const e404 = await openai.chat.completions.create({ model: 'gpt-17', messages }).catch((e) => e)
  t.ok(e404 instanceof OpenAI.NotFoundError, 'unknown model → NotFoundError')
  t.is(e404.status, 404)
  const e400 = await openai.chat.completions.create({ model: 'synthetic', messages, temperature: 7 }).catch((e) => e)
  t.ok(e400 instanceof OpenAI.BadRequestError, 'invalid parameter → BadRequestError')
  t.is(e400.param, 'temperature', 'naming the parameter')
  const e400b = await openai.chat.completions.create({ model: 'synthetic', messages: [] }).catch((e) => e)
  t.is(e400b.status, 400, 'empty messages → 400')

  const scoped = await rpc.call(GatewayProtocol.createKey, { token, name: 'other model only', models: ['other-model'] })
  const e403 = await new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: scoped.key, maxRetries: 0 }).chat.completions.create({ model: 'synthetic', messages }).catch((e) => e)
  t.ok(e403 instanceof OpenAI.PermissionDeniedError, 'a key not allowed the model → PermissionDeniedError')
  t.is(e403.status, 403)
  const e502 = await openai.chat.completions.create({ model: FAIL_MODEL, messages }).catch((e) => e)
  t.ok(e502 instanceof OpenAI.InternalServerError && e502.status === 502, 'the backend failing → 502')
  t.is(e502.code, 'BACKEND_ERROR')

  // a client that goes away cancels the backend request, two hops away
  const ac = new AbortController()
  const slow = await openai.chat.completions.create({ model: SLOW_MODEL, messages, stream: true }, { signal: ac.signal })
  let seen = 0
  // (the SDK ends an aborted stream quietly or with APIUserAbortError, depending on timing)
  const aborted = await (async () => { for await (const c of slow) { if (c.choices[0]?.delta?.content && ++seen === 3) ac.abort() } })().then(() => null, (e) => e)
  t.ok(aborted === null || aborted instanceof OpenAI.APIUserAbortError, 'the client stopped reading')
  t.is(seen, 3, 'no token arrived after the abort')
  for (let i = 0; i < 60 && ollama.aborted === 0; i++) await new Promise((r) => setTimeout(r, 50))
  t.is(ollama.aborted, 1, 'and the backend saw its request cancelled')
  // the same for a whole (not streamed) answer: the client leaving while it is generated stops it
  const wholeAc = new AbortController()
  const asked = ollama.requests
  const whole = openai.chat.completions.create({ model: SLOW_MODEL, messages }, { signal: wholeAc.signal }).then(() => null, (e) => e)
  for (let i = 0; i < 100 && ollama.requests === asked; i++) await new Promise((r) => setTimeout(r, 20))
  wholeAc.abort()
  t.ok(await whole instanceof OpenAI.APIUserAbortError, 'a whole answer the client stopped waiting for')
  for (let i = 0; i < 60 && ollama.aborted === 1; i++) await new Promise((r) => setTimeout(r, 50))
  t.is(ollama.aborted, 2, 'and the backend saw that request cancelled too')

  // the limit: 30 per hour for this tier; this key has made some calls that counted
  let limited: any = null
  for (let i = 0; i < 40 && !limited; i++) {
    limited = await openai.completions.create({ model: 'synthetic', prompt: 'x', max_tokens: 1 }).then(() => null, (e) => e)
  }
  t.ok(limited instanceof OpenAI.RateLimitError, 'over the limit → RateLimitError')
  t.is(limited.status, 429)
  t.ok(Number(limited.headers?.get?.('retry-after') ?? limited.headers?.['retry-after']) > 0, 'with a retry-after header')
  const quota = await rpc.call(GatewayProtocol.getUserQuota, { apiKey: key })
  t.is(quota.used, 30, 'exactly the limit was admitted')

  // raw HTTP abuse: malformed JSON and huge bodies are 4xx; the edge stays up
  const raw = await fetch(mesh.webUrl + '/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"model": "synthetic", "messages": [' })
  t.is(raw.status, 400)
  const huge = await fetch(mesh.webUrl + '/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: 'x'.repeat(2_000_000) }] }) })
  t.is(huge.status, 413)
  const noAuth = await fetch(mesh.webUrl + '/v1/models')
  t.is(noAuth.status, 401)
  t.alike(alive(mesh), ['auth', 'gateway', 'inference', 'metrics', 'web'], 'every process still up')

  // the gateway going away is a 503 from the edge, not a hang or a crash
  await mesh.stopChild('gateway')
  const e503 = await new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: key, maxRetries: 0, timeout: 30_000 }).chat.completions.create({ model: 'synthetic', messages }).catch((e) => e)
  t.ok(e503 instanceof OpenAI.InternalServerError && e503.status === 503, 'gateway unreachable → 503')
  t.is(e503.code, 'UNAVAILABLE')
})
