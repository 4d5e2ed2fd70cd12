import test from 'brittle'
import OpenAI from 'openai'
import { zodResponseFormat } from 'openai/helpers/zod'
import { z } from 'zod'
import { Ajv } from 'ajv'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin } from './support/harness.ts'
import { syntheticEmbedding, syntheticText } from '../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { AIInferenceClient } from '../shared/sdk/index.ts'

// The official `openai` package against a real mesh, as users run it: tools with a tool-result round
// trip (whole and streamed), structured output with `.parse()` and a zod schema, 600 embeddings, n
// choices, log probabilities, and the edge's keys, errors, CORS and ignored-parameter header. Then
// the same tools over RPC, through the SDK.

const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false },
    strict: true
  }
}

test('clients: the openai package with tools, .parse(), 600 embeddings; keys, CORS, errors; tools over RPC', { timeout: 300_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' }, web: { CORS_ORIGINS: 'https://app.example.com' } } })
  const { client: rpc } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(rpc)
  const { key } = await userWithKey(rpc)
  const openai = new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: key, maxRetries: 0 })
  const ajv = new Ajv({ strict: false })
  const ask: OpenAI.Chat.Completions.ChatCompletionMessageParam = { role: 'user', content: 'What is the weather in Paris?' }

  // a tool call, then its result, then the answer
  const first = await openai.chat.completions.create({ model: 'synthetic', messages: [ask], tools: [weatherTool] })
  const call = first.choices[0]!.message.tool_calls?.[0]
  t.is(first.choices[0]!.finish_reason, 'tool_calls')
  t.is(call?.type === 'function' && call.function.name, 'get_weather')
  const args = call?.type === 'function' ? JSON.parse(call.function.arguments) : null
  t.ok(ajv.validate(weatherTool.function.parameters!, args), 'arguments valid against the tool schema: ' + JSON.stringify(args))
  t.is(first.choices[0]!.message.content, null, 'a turn that only calls tools has no content')
  const second = await openai.chat.completions.create({
    model: 'synthetic', tools: [weatherTool], max_tokens: 6,
    messages: [ask, first.choices[0]!.message, { role: 'tool', tool_call_id: call!.id, content: '{"temp": 21}' }]
  })
  t.is(second.choices[0]!.finish_reason, 'length')
  t.is(second.choices[0]!.message.content, syntheticText([{ role: 'user', content: 'What is the weather in Paris?' }], 6), 'the tool result is answered in text')

  // streamed: tool-call deltas the SDK's own stream helper assembles
  const runner = openai.chat.completions.stream({ model: 'synthetic', messages: [ask], tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } }, stream_options: { include_usage: true } })
  let deltas = 0
  runner.on('chunk', (c) => { if (c.choices[0]?.delta?.tool_calls) deltas++ })
  const streamed = await runner.finalChatCompletion()
  const sc = streamed.choices[0]!.message.tool_calls?.[0]
  t.ok(deltas > 1, `the call arrived in ${deltas} deltas`)
  t.is(sc?.type === 'function' && sc.function.arguments, call?.type === 'function' && call.function.arguments, 'and adds up to the same call')
  t.is(streamed.choices[0]!.finish_reason, 'tool_calls')
  t.ok((streamed.usage?.completion_tokens ?? 0) > 0, 'with usage')

  // structured output: .parse() with a zod schema
  const Recipe = z.object({ title: z.string(), minutes: z.number().int().min(1).max(240), steps: z.array(z.object({ text: z.string(), optional: z.boolean() })), cuisine: z.enum(['french', 'thai']).nullable() })
  const parsed = await openai.chat.completions.parse({ model: 'synthetic', messages: [{ role: 'user', content: 'a quick recipe' }], response_format: zodResponseFormat(Recipe, 'recipe') })
  t.ok(Recipe.safeParse(parsed.choices[0]!.message.parsed).success, 'parsed by the SDK against the zod schema: ' + parsed.choices[0]!.message.content)
  const jsonMode = await openai.chat.completions.create({ model: 'synthetic', messages: [{ role: 'user', content: 'json please' }], response_format: { type: 'json_object' } })
  t.is(typeof JSON.parse(jsonMode.choices[0]!.message.content!), 'object', 'json_object mode')

  // n choices, log probabilities, parameters the backend ignores
  const raw = await openai.chat.completions.create({ model: 'synthetic', messages: [{ role: 'user', content: 'hi' }], n: 3, max_tokens: 3, logprobs: true, top_logprobs: 2, temperature: 0.5, top_p: 0.5, seed: 7 }).withResponse()
  t.is(raw.data.choices.length, 3, 'n: 3 choices')
  t.alike(raw.data.choices.map((c) => c.index), [0, 1, 2])
  t.is(raw.data.usage?.completion_tokens, 9, 'billed per choice: 3 × 3 tokens')
  t.is(raw.data.choices[0]!.logprobs?.content?.length, 3, 'a log probability per token')
  t.is(raw.response.headers.get('x-hyperinfer-ignored-params'), 'temperature, top_p', 'the synthetic backend names what it ignores')

  // completions with a prompt array; empty content
  const multi = await openai.completions.create({ model: 'synthetic', prompt: ['one', 'two'], max_tokens: 2 })
  t.alike(multi.choices.map((c) => c.text), [syntheticText([{ role: 'user', content: 'one' }], 2), syntheticText([{ role: 'user', content: 'two' }], 2)], 'one choice per prompt')
  const empty = await openai.chat.completions.create({ model: 'synthetic', messages: [{ role: 'system', content: '' }, { role: 'user', content: '' }], max_tokens: 2 })
  t.is(empty.choices[0]!.message.content?.split(' ').length, 2, 'empty content is a valid prompt')

  // embeddings: 600 inputs, token ids, dimensions
  const docs = Array.from({ length: 600 }, (_, i) => `document number ${i}`)
  const emb = await openai.embeddings.create({ model: 'synthetic', input: docs })
  t.is(emb.data.length, 600, '600 vectors')
  t.ok(emb.data.every((d, i) => d.index === i && Math.abs(d.embedding[0]! - syntheticEmbedding(docs[i]!)[0]!) < 1e-6), 'each its own input\'s, in order')
  t.ok(emb.usage.prompt_tokens >= 600)
  const ids = await openai.embeddings.create({ model: 'synthetic', input: [[1, 2, 3], [4, 5]], dimensions: 16, encoding_format: 'float' })
  t.alike(ids.data.map((d) => d.embedding.length), [16, 16], 'token-id inputs, with dimensions')

  // keys: placeholders, short and long ones are all 401; x-api-key works
  for (const bad of ['EMPTY', 'sk-test12', 'x'.repeat(300)]) {
    const e = await new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: bad, maxRetries: 0 }).chat.completions.create({ model: 'synthetic', messages: [ask] }).catch((err) => err)
    t.ok(e instanceof OpenAI.AuthenticationError, `key of ${bad.length} characters → AuthenticationError`)
    t.is(e.code, 'invalid_api_key', 'with OpenAI\'s code for it')
    t.absent(/infer|request:/.test(e.message), 'the message names no internal method: ' + e.message)
  }
  const viaHeader = await fetch(mesh.webUrl + '/v1/chat/completions', { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'synthetic', messages: [ask], max_tokens: 1 }) })
  t.is(viaHeader.status, 200, 'x-api-key is accepted')

  // validation names the field and what was wrong
  const badRole = await openai.chat.completions.create({ model: 'synthetic', messages: [{ role: 'wizard', content: 'x' } as never] }).catch((e) => e)
  t.is(badRole.status, 400); t.is(badRole.param, 'messages[0].role'); t.ok(/role must be/.test(badRole.message), badRole.message)
  const badTool = await openai.chat.completions.create({ model: 'synthetic', messages: [ask], tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'nope' } } }).catch((e) => e)
  t.is(badTool.status, 400); t.ok(/toolChoice|nope/.test(badTool.message), badTool.message)
  const badPart = await openai.chat.completions.create({ model: 'synthetic', messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: '', format: 'wav' } }] }] }).catch((e) => e)
  t.is(badPart.status, 400); t.ok(/messages\[0\]\.content/.test(badPart.param), `${badPart.param}: ${badPart.message}`)

  // images: a 400 naming the capability, until the registry tags the model 'vision'
  const image: OpenAI.Chat.Completions.ChatCompletionMessageParam = { role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }
  const noVision = await openai.chat.completions.create({ model: 'synthetic', messages: [image] }).catch((e) => e)
  t.is(noVision.status, 400); t.ok(/vision/.test(noVision.message), noVision.message)
  await rpc.call(GatewayProtocol.registryChange, { token: boss, change: { op: 'setModel', id: 'synthetic', patch: { tasks: ['chat', 'vision'] } } })
  const seen = await openai.chat.completions.create({ model: 'synthetic', messages: [image], max_tokens: 2 })
  t.is(seen.choices[0]!.message.content, syntheticText([{ role: 'user', content: 'what is this?' }], 2), 'a vision model takes the image')

  // CORS: the listed origin gets a preflight and headers; others and the dashboard do not
  const pre = await fetch(mesh.webUrl + '/v1/chat/completions', { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } })
  t.is(pre.status, 204); t.is(pre.headers.get('access-control-allow-origin'), 'https://app.example.com')
  const other = await fetch(mesh.webUrl + '/v1/chat/completions', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
  t.absent(other.headers.get('access-control-allow-origin'), 'an origin not listed gets no allow header')
  const dash = await fetch(mesh.webUrl + '/api/auth/login', { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } })
  t.absent(dash.headers.get('access-control-allow-origin'), '/api stays same-origin')

  // tools over RPC, through the SDK
  const sdk = new AIInferenceClient({ apiKey: key, gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString })
  t.teardown(() => sdk.close())
  const tools = [{ name: 'get_weather', parameters: weatherTool.function.parameters! }]
  const whole = await sdk.inference({ model: 'synthetic', prompt: 'weather?', tools })
  t.is(whole.finishReason, 'tool_calls'); t.is(whole.toolCalls?.[0]?.name, 'get_weather')
  t.ok(ajv.validate(tools[0]!.parameters, JSON.parse(whole.toolCalls![0]!.arguments)), 'RPC: valid arguments')
  const s = sdk.stream({ model: 'synthetic', prompt: 'weather?', tools, temperature: 0.2 })
  for await (const _ of s) { /* tool calls come whole in the result */ }
  const r = await s.result
  t.alike(r.toolCalls, whole.toolCalls, 'streamed over RPC: the same call'); t.alike(r.ignored, ['temperature'], 'and the ignored parameters')
  const http = new AIInferenceClient({ apiKey: key, baseUrl: mesh.webUrl! })
  const overHttp = await http.inference({ model: 'synthetic', prompt: 'weather?', tools, temperature: 0.2 })
  t.alike(overHttp.toolCalls, whole.toolCalls, 'the SDK over HTTP: the same call'); t.alike(overHttp.ignored, ['temperature'])
  const hs = http.stream({ model: 'synthetic', prompt: 'weather?', tools })
  for await (const _ of hs) { /* tool calls come whole in the result */ }
  t.alike((await hs.result).toolCalls, whole.toolCalls, 'and streamed over HTTP')
})
