import test from 'brittle'
import { Ajv } from 'ajv'
import type { GenerationRequest } from '../../../shared/protocol/chat.ts'
import { FAKE_TOOL_ARGUMENTS } from '../../../test/fakes/fake-llm.ts'
import { startFakeOllama } from '../../../test/fakes/fake-ollama.ts'
import { FAKE_OPENAI_KEY, startFakeOpenAI } from '../../../test/fakes/fake-openai.ts'
import { OllamaBackend } from '../backends/ollama.ts'
import { OpenAIBackend } from '../backends/openai.ts'
import { SyntheticBackend, syntheticEmbedding } from '../backends/synthetic.ts'
import { ignoredParams } from '../backends/table.ts'
import type { Backend, ChatChunk } from '../backends/types.ts'

// The chat request's every field, through each adapter: a recording fake shows what reached Ollama
// and an OpenAI-compatible server on the wire; tool calls and log probabilities come back as the
// mesh's chunks; the synthetic backend's tool arguments and JSON validate against the schemas given.

const never = () => new AbortController().signal
const PNG = 'data:image/png;base64,iVBORw0KGgo='
const weather = { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'], additionalProperties: false }

/** A request that gives every field. */
const full: GenerationRequest = {
  messages: [
    { role: 'system', content: 'be brief', name: 'house' },
    { role: 'user', content: 'weather in Paris?', name: 'alice', images: [{ url: PNG, detail: 'low' }] },
    { role: 'assistant', content: '', toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris","days":2}' }] },
    { role: 'tool', content: '{"temp":21}', toolCallId: 'call_1' },
    { role: 'user', content: 'and tomorrow?' }
  ],
  maxTokens: 5, temperature: 0.3, stop: ['zzz'], topP: 0.9, seed: 42, presencePenalty: 0.5, frequencyPenalty: -0.5,
  logitBias: { 50256: -100 }, logprobs: true, topLogprobs: 2, user: 'end-user-7',
  tools: [{ name: 'get_weather', description: 'the weather', parameters: weather, strict: true }],
  toolChoice: { name: 'get_weather' }, parallelToolCalls: false,
  responseFormat: { type: 'json_schema', name: 'answer', schema: { type: 'object', properties: { a: { type: 'string' } } }, strict: true }
}

async function collect (it: AsyncIterable<ChatChunk>) {
  const out: ChatChunk[] = []
  for await (const c of it) out.push(c)
  return out
}

const calls = (chunks: ChatChunk[]) => {
  const byIndex = new Map<number, { id?: string, name?: string, arguments: string }>()
  for (const c of chunks) {
    if (c.type !== 'tool_call') continue
    const cur = byIndex.get(c.index) ?? { arguments: '' }
    if (c.id) cur.id = c.id
    if (c.name) cur.name = c.name
    cur.arguments += c.arguments ?? ''
    byIndex.set(c.index, cur)
  }
  return [...byIndex.values()]
}
const finish = (chunks: ChatChunk[]) => { const u = chunks.find((c) => c.type === 'usage'); return u?.type === 'usage' ? u.finishReason : undefined }

test('openai-compatible: every parameter, tool, tool result, image and format reaches the server as OpenAI defines it', async (t) => {
  const server = await startFakeOpenAI()
  t.teardown(() => server.close())
  const backend = new OpenAIBackend({ baseURL: server.baseURL, apiKey: FAKE_OPENAI_KEY })
  const chunks = await collect(backend.chat({ model: 'gpt-fake', ...full }, never()))
  const b = server.bodies.at(-1)
  t.is(b.max_tokens, 5); t.is(b.temperature, 0.3); t.alike(b.stop, ['zzz']); t.is(b.top_p, 0.9); t.is(b.seed, 42)
  t.is(b.presence_penalty, 0.5); t.is(b.frequency_penalty, -0.5); t.alike(b.logit_bias, { 50256: -100 })
  t.is(b.logprobs, true); t.is(b.top_logprobs, 2); t.is(b.user, 'end-user-7'); t.is(b.parallel_tool_calls, false)
  t.alike(b.tools, [{ type: 'function', function: { name: 'get_weather', description: 'the weather', parameters: weather, strict: true } }])
  t.alike(b.tool_choice, { type: 'function', function: { name: 'get_weather' } })
  t.alike(b.response_format, { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object', properties: { a: { type: 'string' } } }, strict: true } })
  t.alike(b.messages[0], { role: 'system', content: 'be brief', name: 'house' }, 'message names')
  t.alike(b.messages[1].content, [{ type: 'text', text: 'weather in Paris?' }, { type: 'image_url', image_url: { url: PNG, detail: 'low' } }], 'images as image_url parts')
  t.alike(b.messages[2], { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","days":2}' } }] }, 'the assistant\'s tool calls')
  t.alike(b.messages[3], { role: 'tool', content: '{"temp":21}', tool_call_id: 'call_1' }, 'the tool result')
  t.alike(calls(chunks), [{ id: 'call_fake_1', name: 'get_weather', arguments: FAKE_TOOL_ARGUMENTS }], 'the streamed call, whole')
  t.is(finish(chunks), 'tool_calls')

  const plain = await collect(backend.chat({ model: 'gpt-fake', messages: [{ role: 'user', content: 'hi' }], maxTokens: 2, logprobs: true, topLogprobs: 1 }, never()))
  const tokens = plain.filter((c) => c.type === 'token')
  t.alike(tokens[0]?.type === 'token' && tokens[0].logprobs, [{ token: 'Hello', logprob: -0.25, topLogprobs: [{ token: 'Hello#0', logprob: -1 }] }], 'log probabilities come back per token')
  const bare = server.bodies.at(-1)
  for (const k of ['top_p', 'seed', 'tools', 'tool_choice', 'response_format', 'user', 'logit_bias']) t.absent(k in bare, `${k} not sent when not given`)
})

test('ollama: native tools, tool results by name, base64 images, format and options reach the server', async (t) => {
  const server = await startFakeOllama()
  t.teardown(() => server.close())
  const backend = new OllamaBackend({ url: server.url })
  const chunks = await collect(backend.chat({ model: 'tiny', ...full, toolChoice: 'auto' }, never()))
  const b = server.bodies.at(-1)
  t.alike(b.options, { num_predict: 5, temperature: 0.3, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: -0.5, stop: ['zzz'] })
  t.alike(b.format, { type: 'object', properties: { a: { type: 'string' } } }, 'json_schema as format')
  t.is(b.logprobs, true); t.is(b.top_logprobs, 2)
  t.alike(b.tools, [{ type: 'function', function: { name: 'get_weather', description: 'the weather', parameters: weather } }])
  t.alike(b.messages[1].images, ['iVBORw0KGgo='], 'images as base64')
  t.alike(b.messages[2].tool_calls, [{ function: { name: 'get_weather', arguments: { city: 'Paris', days: 2 } } }], 'the assistant\'s calls, arguments as an object')
  t.is(b.messages[3].tool_name, 'get_weather', 'a tool result names its function')
  const [call] = calls(chunks)
  t.is(call?.name, 'get_weather'); t.is(call?.arguments, FAKE_TOOL_ARGUMENTS); t.ok(call?.id?.startsWith('call_'), 'an id is made for the call')
  t.is(finish(chunks), 'tool_calls')

  await collect(backend.chat({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], responseFormat: { type: 'json_object' }, tools: full.tools, toolChoice: 'none' }, never()))
  t.is(server.bodies.at(-1).format, 'json', 'json_object as format "json"')
  t.absent(server.bodies.at(-1).tools, 'tool_choice none: no tools sent')
  const url = await collect(backend.chat({ model: 'tiny', messages: [{ role: 'user', content: 'x', images: [{ url: 'https://example.com/a.png' }] }] }, never())).catch((e) => e)
  t.is(url.code, 'BAD_REQUEST', 'an image URL (not data:) is refused: ' + url.message)
  t.alike(ignoredParams('ollama', full), ['logitBias', 'user', 'toolChoice', 'messageName'], 'what Ollama cannot honour is declared')
  t.alike(ignoredParams('openai', full), [], 'an OpenAI-compatible server honours them all')
})

test('synthetic: tool calls and structured output valid against their schemas, deterministic; dimensions and token ids', async (t) => {
  const ajv = new Ajv({ strict: false })
  const backend: Backend = new SyntheticBackend()
  const tools = [
    { name: 'get_weather', parameters: weather },
    { name: 'search', parameters: { type: 'object', properties: { q: { type: 'string', minLength: 3 }, tags: { type: 'array', items: { enum: ['a', 'b'] }, minItems: 1 }, when: { type: 'string', format: 'date-time' }, $ref_test: { $ref: '#/$defs/Point' } }, required: ['q', 'tags'], $defs: { Point: { type: 'object', properties: { x: { type: 'number' }, y: { anyOf: [{ type: 'null' }, { type: 'number', exclusiveMinimum: 0 }] } }, required: ['x', 'y'] } } } }
  ]
  const ask = (content: string, extra: Partial<GenerationRequest> = {}) => collect(backend.chat({ model: 'synthetic', messages: [{ role: 'user', content }], tools, ...extra }, never()))
  const both = await ask('get_weather and search please')
  const made = calls(both)
  t.alike(made.map((c) => c.name), ['get_weather', 'search'], 'the tools the message names, in parallel')
  t.ok(made.every((c) => ajv.validate(tools.find((x) => x.name === c.name)!.parameters, JSON.parse(c.arguments))), 'arguments valid against each schema: ' + made.map((c) => c.arguments).join(' '))
  t.is(finish(both), 'tool_calls')
  t.alike(calls(await ask('get_weather and search please')), made, 'the same request, the same calls')
  t.is(calls(await ask('get_weather and search', { parallelToolCalls: false })).length, 1, 'parallel_tool_calls false: one call')
  t.alike(calls(await ask('hello', { toolChoice: { name: 'search' } })).map((c) => c.name), ['search'], 'a named tool_choice')
  t.is(calls(await ask('hello', { toolChoice: 'none' })).length, 0, 'tool_choice none: text')
  const after = await collect(backend.chat({ model: 'synthetic', tools, messages: [{ role: 'user', content: 'get_weather' }, { role: 'assistant', content: '', toolCalls: [{ id: 'c1', name: 'get_weather', arguments: '{}' }] }, { role: 'tool', content: '21C', toolCallId: 'c1' }] }, never()))
  t.is(calls(after).length, 0, 'after a tool result, an answer in text')
  t.is(finish(after), 'stop')

  const schema = { type: 'object', properties: { title: { type: 'string' }, score: { type: 'number', minimum: 0, maximum: 1 }, items: { type: 'array', items: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false } } }, required: ['title', 'score', 'items'], additionalProperties: false }
  const json = await collect(backend.chat({ model: 'synthetic', messages: [{ role: 'user', content: 'rate it' }], responseFormat: { type: 'json_schema', name: 'r', schema, strict: true } }, never()))
  const text = json.map((c) => c.type === 'token' ? c.text : '').join('')
  t.ok(ajv.validate(schema, JSON.parse(text)), 'json_schema: valid JSON for the schema: ' + text)
  const obj = await collect(backend.chat({ model: 'synthetic', messages: [{ role: 'user', content: 'x' }], responseFormat: { type: 'json_object' } }, never()))
  t.is(typeof JSON.parse(obj.map((c) => c.type === 'token' ? c.text : '').join('')), 'object', 'json_object: a JSON object')
  const lp = await collect(backend.chat({ model: 'synthetic', messages: [{ role: 'user', content: 'x' }], maxTokens: 2, logprobs: true, topLogprobs: 3 }, never()))
  t.ok(lp.filter((c) => c.type === 'token').every((c) => c.type === 'token' && c.logprobs?.[0]?.logprob === 0), 'log probabilities: 0, each token certain')

  const e = await backend.embed!({ model: 'synthetic', input: ['alpha', [1, 2, 3]], dimensions: 256 }, never())
  t.is(e.embeddings[0]!.length, 256, 'dimensions honoured')
  t.ok(Math.abs(Math.hypot(...e.embeddings[1]!) - 1) < 1e-9, 'unit length')
  t.alike(e.embeddings[1], syntheticEmbedding([1, 2, 3], 256), 'token ids embed deterministically')
  t.is(e.promptTokens, 4, 'a token-id input counts its ids')
  t.alike(ignoredParams('synthetic', { messages: [], temperature: 1, seed: 3, responseFormat: { type: 'json_object' } }), ['temperature'], 'synthetic declares temperature ignored')
})
