import test from 'brittle'
import { Ajv } from 'ajv'
import { startTestMesh, gatewayClient, userWithKey } from './support/harness.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'

// The Anthropic Messages API (POST /v1/messages) against a real mesh, over plain HTTP as Anthropic
// documents its wire: x-api-key and anthropic-version headers, text with a system prompt, a tool_use
// and tool_result round trip, the streamed events (text_delta and input_json_delta), and errors in
// Anthropic's shape.

const weather = {
  name: 'get_weather',
  description: 'current weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false }
}

interface SseEvent { event: string, data: Record<string, any> }

function parseSse (body: string): SseEvent[] {
  return body.split('\n\n').filter((b) => b.trim()).map((block) => {
    const event = /^event: (.*)$/m.exec(block)?.[1] ?? ''
    const data = /^data: (.*)$/m.exec(block)?.[1] ?? 'null'
    return { event, data: JSON.parse(data) }
  })
}

test('clients: /v1/messages speaks the Anthropic Messages API', { timeout: 300_000 }, async (t) => {
  const { mesh } = await startTestMesh(t)
  const { client: rpc } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(rpc)
  const post = (body: unknown, apiKey = key) => fetch(mesh.webUrl + '/v1/messages', {
    method: 'POST',
    headers: { 'x-api-key': apiKey, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  const question = 'What is the weather in Paris?'

  // text, with a system prompt
  const res = await post({ model: 'synthetic', max_tokens: 5, system: 'be brief', messages: [{ role: 'user', content: 'hello there' }] })
  t.is(res.status, 200)
  const msg = await res.json() as Record<string, any>
  t.is(msg.type, 'message')
  t.is(msg.role, 'assistant')
  t.ok(/^msg_/.test(msg.id))
  t.alike(msg.content, [{ type: 'text', text: syntheticText([{ role: 'user', content: 'hello there' }], 5) }], 'one text block')
  t.is(msg.stop_reason, 'max_tokens')
  t.is(msg.stop_sequence, null)
  t.is(msg.usage.output_tokens, 5)
  t.ok(msg.usage.input_tokens > 0, 'with usage')

  // a tool_use, its tool_result, then text
  const ajv = new Ajv({ strict: false })
  const first = await (await post({ model: 'synthetic', max_tokens: 200, tools: [weather], messages: [{ role: 'user', content: question }] })).json() as Record<string, any>
  t.is(first.stop_reason, 'tool_use')
  const use = first.content.find((b: { type: string }) => b.type === 'tool_use')
  t.is(use?.name, 'get_weather', 'the model uses the tool')
  t.ok(ajv.validate(weather.input_schema, use?.input), 'with input valid against its schema: ' + JSON.stringify(use?.input))
  const second = await (await post({
    model: 'synthetic', max_tokens: 6, tools: [weather],
    messages: [
      { role: 'user', content: [{ type: 'text', text: question }] },
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '{"temp": 21}' }] }
    ]
  })).json() as Record<string, any>
  t.alike(second.content, [{ type: 'text', text: syntheticText([{ role: 'user', content: question }], 6) }], 'the tool result is answered in text')
  t.is(second.stop_reason, 'max_tokens')

  // streamed text
  const streamed = await post({ model: 'synthetic', max_tokens: 8, stream: true, messages: [{ role: 'user', content: 'stream me some words' }] })
  t.is(streamed.headers.get('content-type')?.split(';')[0], 'text/event-stream')
  const events = parseSse(await streamed.text())
  t.ok(events.every((e) => e.event === e.data.type), 'each event names its type in the event: line')
  const kinds = events.map((e) => e.event).filter((x, i, all) => x !== all[i - 1])
  t.alike(kinds, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'], 'the events, in order')
  t.is(events[0]!.data.message.role, 'assistant')
  t.alike(events[1]!.data.content_block, { type: 'text', text: '' })
  const text = events.filter((e) => e.event === 'content_block_delta').map((e) => { t.is(e.data.delta.type, 'text_delta'); return e.data.delta.text }).join('')
  t.is(text, syntheticText([{ role: 'user', content: 'stream me some words' }], 8), 'the text_deltas add up to the answer')
  const delta = events.find((e) => e.event === 'message_delta')!.data
  t.is(delta.delta.stop_reason, 'max_tokens')
  t.is(delta.usage.output_tokens, 8, 'message_delta carries the usage')

  // streamed tool use: input_json_delta pieces add up to the same input
  const toolStream = parseSse(await (await post({ model: 'synthetic', max_tokens: 200, stream: true, tools: [weather], tool_choice: { type: 'tool', name: 'get_weather' }, messages: [{ role: 'user', content: question }] })).text())
  const start = toolStream.find((e) => e.event === 'content_block_start')!.data
  t.is(start.content_block.type, 'tool_use')
  t.is(start.content_block.name, 'get_weather')
  t.alike(start.content_block.input, {})
  const json = toolStream.filter((e) => e.event === 'content_block_delta').map((e) => { t.is(e.data.delta.type, 'input_json_delta'); return e.data.delta.partial_json }).join('')
  t.ok(toolStream.filter((e) => e.event === 'content_block_delta').length > 1, 'the input arrives in several pieces')
  t.alike(JSON.parse(json), use.input, 'and adds up to the same input')
  t.is(toolStream.find((e) => e.event === 'message_delta')!.data.delta.stop_reason, 'tool_use')
  t.is(toolStream.at(-1)!.event, 'message_stop')

  // errors, in Anthropic's shape
  const bad = await post({ model: 'synthetic', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }, 'sk-not-a-key')
  t.is(bad.status, 401)
  const badBody = await bad.json() as Record<string, any>
  t.is(badBody.type, 'error')
  t.is(badBody.error.type, 'authentication_error', 'an invalid key is an authentication_error: ' + badBody.error.message)
  const missing = await post({ model: 'synthetic', messages: [{ role: 'user', content: 'hi' }] })
  t.is(missing.status, 400)
  const missingBody = await missing.json() as Record<string, any>
  t.is(missingBody.error.type, 'invalid_request_error')
  t.ok(/^max_tokens: /.test(missingBody.error.message), 'names the missing field: ' + missingBody.error.message)
  const thinking = await post({ model: 'synthetic', max_tokens: 5, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'hi' }] })
  t.is(thinking.status, 400)
  t.ok(/thinking/.test((await thinking.json() as any).error.message), 'extended thinking is refused by name')
  const malformed = await fetch(mesh.webUrl + '/v1/messages', { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: '{' })
  t.is(malformed.status, 400)
  t.is((await malformed.json() as any).error.type, 'invalid_request_error', 'a body that is not JSON too')
  const unknown = await post({ model: 'no-such-model', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })
  t.is(unknown.status, 404)
  t.is((await unknown.json() as any).error.type, 'not_found_error')
})
