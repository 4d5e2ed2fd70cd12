import test from 'brittle'
import OpenAI from 'openai'
import { zodTextFormat } from 'openai/helpers/zod'
import { createOpenAI } from '@ai-sdk/openai'
import { generateObject, generateText, streamText, stepCountIs, tool as aiTool } from 'ai'
import { z } from 'zod'
import { Ajv } from 'ajv'
import { startTestMesh, gatewayClient, userWithKey } from './support/harness.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'

// The OpenAI Responses API against a real mesh, with the clients that use it: the official `openai`
// package (responses.create with text, a function_call_output round trip, text.format via
// responses.parse and a zod schema; responses.stream's events and final response) and the Vercel AI
// SDK's default provider (openai('model') speaks /v1/responses) with generateText, generateObject and
// streamText.

const weatherTool: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false },
  strict: true
}

test('clients: /v1/responses with the openai package and the AI SDK default provider', { timeout: 300_000 }, async (t) => {
  const { mesh } = await startTestMesh(t)
  const { client: rpc } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(rpc)
  const openai = new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: key, maxRetries: 0 })
  const ajv = new Ajv({ strict: false })
  const question = 'What is the weather in Paris?'

  // text, with instructions and a token budget; store (true by default at OpenAI) is answered, not kept
  const text = await openai.responses.create({ model: 'synthetic', instructions: 'be brief', input: 'hello there', max_output_tokens: 5 })
  t.is(text.object, 'response')
  t.is(text.output_text, syntheticText([{ role: 'user', content: 'hello there' }], 5), 'the answer as output_text')
  t.is(text.status, 'incomplete', 'the token budget ran out')
  t.is(text.incomplete_details?.reason, 'max_output_tokens')
  t.is(text.usage?.output_tokens, 5)
  t.ok((text.usage?.input_tokens ?? 0) > 0 && text.usage?.total_tokens === text.usage!.input_tokens + 5, 'with usage')
  t.is((text as unknown as { store: boolean }).store, false, 'nothing is stored')
  const stored = await openai.responses.create({ model: 'synthetic', input: 'hi', store: true, max_output_tokens: 2 })
  t.is((stored as unknown as { store: boolean }).store, false, 'store: true is answered, and the response says it was not stored')
  const chained = await openai.responses.create({ model: 'synthetic', input: 'hi', previous_response_id: text.id }).catch((e) => e)
  t.is(chained.status, 400)
  t.is(chained.param, 'previous_response_id', 'previous_response_id is refused by name')
  t.ok(/previous_response_id/.test(chained.message), chained.message)
  const hosted = await openai.responses.create({ model: 'synthetic', input: 'hi', tools: [{ type: 'web_search' }] }).catch((e) => e)
  t.is(hosted.status, 400)
  t.is(hosted.param, 'tools[0].type')
  t.ok(/tools\[0\]/.test(hosted.message) && /function/.test(hosted.message), 'a hosted tool is refused, naming the field: ' + hosted.message)

  const image = await openai.responses.create({ model: 'synthetic', input: [{ role: 'user', content: [{ type: 'input_text', text: 'what is this?' }, { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'auto' }] }] }).catch((e) => e)
  t.is(image.status, 400)
  t.is(image.param, 'input', 'an image reaches the gateway, which refuses it for a model not tagged vision')
  t.ok(/vision/.test(image.message), image.message)

  // a function call, its output as an input item, then the answer in text
  const first = await openai.responses.create({ model: 'synthetic', input: question, tools: [weatherTool] })
  const call = first.output.find((o) => o.type === 'function_call')
  t.ok(call && call.type === 'function_call' && call.name === 'get_weather', 'the model calls the function')
  const args = call?.type === 'function_call' ? JSON.parse(call.arguments) : null
  t.ok(ajv.validate(weatherTool.parameters!, args), 'with arguments valid against its schema: ' + JSON.stringify(args))
  t.is(first.output_text, '', 'a turn that only calls tools has no text')
  const second = await openai.responses.create({
    model: 'synthetic', tools: [weatherTool], max_output_tokens: 6,
    input: [{ role: 'user', content: [{ type: 'input_text', text: question }] }, ...first.output as OpenAI.Responses.ResponseInputItem[], { type: 'function_call_output', call_id: call!.type === 'function_call' ? call!.call_id : '', output: '{"temp": 21}' }]
  })
  t.is(second.output_text, syntheticText([{ role: 'user', content: question }], 6), 'the function output is answered in text')
  t.is(second.output.some((o) => o.type === 'function_call'), false)

  // structured output: text.format from a zod schema, parsed by the SDK
  const Recipe = z.object({ title: z.string(), minutes: z.number().int().min(1).max(240), steps: z.array(z.object({ text: z.string(), optional: z.boolean() })) })
  const parsed = await openai.responses.parse({ model: 'synthetic', input: 'a quick recipe', text: { format: zodTextFormat(Recipe, 'recipe') } })
  t.ok(Recipe.safeParse(parsed.output_parsed).success, 'responses.parse: output_parsed valid for the zod schema: ' + parsed.output_text)
  const jsonMode = await openai.responses.create({ model: 'synthetic', input: 'json please', text: { format: { type: 'json_object' } } })
  t.is(typeof JSON.parse(jsonMode.output_text), 'object', 'json_object format')

  // streamed: the event sequence and the SDK's final response
  const stream = openai.responses.stream({ model: 'synthetic', input: 'stream me some words', max_output_tokens: 8 })
  const types: string[] = []
  let deltas = ''
  const seqs: number[] = []
  for await (const e of stream) {
    types.push(e.type)
    seqs.push(e.sequence_number)
    if (e.type === 'response.output_text.delta') deltas += e.delta
  }
  const final = await stream.finalResponse()
  const expected = syntheticText([{ role: 'user', content: 'stream me some words' }], 8)
  t.is(deltas, expected, 'the deltas add up to the answer')
  t.is(final.output_text, expected, 'and so does the final response')
  t.is(final.usage?.output_tokens, 8, 'with usage')
  t.alike(seqs, seqs.map((_, i) => i), 'sequence numbers count up from 0')
  const distinct = types.filter((x, i) => x !== types[i - 1])
  t.alike(distinct, ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added', 'response.output_text.delta',
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete'], 'the events, in order')

  const toolStream = openai.responses.stream({ model: 'synthetic', input: question, tools: [weatherTool], tool_choice: { type: 'function', name: 'get_weather' } })
  const toolTypes: string[] = []
  for await (const e of toolStream) toolTypes.push(e.type)
  const toolFinal = await toolStream.finalResponse()
  const streamedCall = toolFinal.output.find((o) => o.type === 'function_call')
  t.ok(toolTypes.filter((x) => x === 'response.function_call_arguments.delta').length > 1, 'the arguments arrive in several deltas')
  t.ok(toolTypes.includes('response.function_call_arguments.done') && toolTypes.at(-1) === 'response.completed', 'then .done, and response.completed')
  t.is(streamedCall?.type === 'function_call' && streamedCall.arguments, call?.type === 'function_call' && call.arguments, 'the same call as unstreamed')

  // the Vercel AI SDK's default provider speaks /v1/responses
  const provider = createOpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: key })
  const gen = await generateText({ model: provider('synthetic'), prompt: 'hello there', maxOutputTokens: 5 })
  t.is(gen.text, syntheticText([{ role: 'user', content: 'hello there' }], 5), 'generateText')
  t.is(gen.usage.outputTokens, 5)
  const Person = z.object({ name: z.string(), age: z.number().int().min(0).max(120), tags: z.array(z.string()) })
  const obj = await generateObject({ model: provider('synthetic'), schema: Person, prompt: 'invent a person' })
  t.ok(Person.safeParse(obj.object).success, 'generateObject (text.format json_schema): ' + JSON.stringify(obj.object))
  const Weather = z.object({ city: z.string(), unit: z.enum(['c', 'f']) })
  const calls: unknown[] = []
  const run = streamText({
    model: provider('synthetic'),
    prompt: question,
    tools: { weather: aiTool({ description: 'weather for a city', inputSchema: Weather, execute: async (input) => { calls.push(input); return { temp: 21 } } }) },
    stopWhen: stepCountIs(2),
    maxOutputTokens: 8
  })
  let streamed = ''
  for await (const part of run.textStream) streamed += part
  const steps = await run.steps
  t.is(calls.length, 1, 'streamText: the tool ran once')
  t.ok(Weather.safeParse(calls[0]).success, 'with input valid for its schema: ' + JSON.stringify(calls[0]))
  t.is(steps.length, 2, 'then a second step answered the tool result')
  t.is(steps[0]!.finishReason, 'tool-calls')
  t.is(streamed, syntheticText([{ role: 'user', content: question }], 8), 'in text')
})
