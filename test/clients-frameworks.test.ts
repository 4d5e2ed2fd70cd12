import test from 'brittle'
import { createOpenAI } from '@ai-sdk/openai'
import { generateObject, streamText, stepCountIs, tool as aiTool } from 'ai'
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai'
import { tool as lcTool } from '@langchain/core/tools'
import { HumanMessage, ToolMessage, type AIMessage } from '@langchain/core/messages'
import { z } from 'zod'
import { startTestMesh, gatewayClient, userWithKey } from './support/harness.ts'
import { syntheticEmbedding } from '../services/inference/backends/synthetic.ts'

// The frameworks users build on, against a real mesh, unchanged: the Vercel AI SDK (chat-completions
// provider: generateObject, streamText with a tool over two steps) and LangChain JS (bindTools with a
// tool-result round trip, withStructuredOutput, OpenAIEmbeddings over 600 documents).

test('clients: the Vercel AI SDK and LangChain JS, structured output, tools and embeddings', { timeout: 300_000 }, async (t) => {
  const { mesh } = await startTestMesh(t)
  const { client: rpc } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(rpc)
  const baseURL = mesh.webUrl + '/v1'
  const Weather = z.object({ city: z.string(), unit: z.enum(['c', 'f']) })

  // Vercel AI SDK
  const provider = createOpenAI({ baseURL, apiKey: key })
  const Person = z.object({ name: z.string(), age: z.number().int().min(0).max(120), tags: z.array(z.string()) })
  const obj = await generateObject({ model: provider.chat('synthetic'), schema: Person, prompt: 'invent a person' })
  t.ok(Person.safeParse(obj.object).success, 'generateObject: an object valid for the schema: ' + JSON.stringify(obj.object))

  const calls: unknown[] = []
  const run = streamText({
    model: provider.chat('synthetic'),
    prompt: 'What is the weather in Paris?',
    tools: { weather: aiTool({ description: 'weather for a city', inputSchema: Weather, execute: async (input) => { calls.push(input); return { temp: 21 } } }) },
    stopWhen: stepCountIs(2),
    maxOutputTokens: 8
  })
  let text = ''
  for await (const part of run.textStream) text += part
  const steps = await run.steps
  t.is(calls.length, 1, 'streamText: the tool ran once')
  t.ok(Weather.safeParse(calls[0]).success, 'with input valid for its schema: ' + JSON.stringify(calls[0]))
  t.is(steps.length, 2, 'then a second step answered the tool result')
  t.is(steps[0]!.finishReason, 'tool-calls')
  t.ok(text.split(' ').length >= 2, 'in text: ' + text)

  // LangChain JS
  const chat = new ChatOpenAI({ model: 'synthetic', apiKey: key, configuration: { baseURL }, maxRetries: 0, maxTokens: 6 })
  const weather = lcTool(async (input) => JSON.stringify({ city: input.city, temp: 21 }), { name: 'get_weather', description: 'weather for a city', schema: Weather })
  const withTools = chat.bindTools([weather])
  const question = new HumanMessage('What is the weather in Paris?')
  const first = await withTools.invoke([question]) as AIMessage
  const call = first.tool_calls?.[0]
  t.is(call?.name, 'get_weather', 'bindTools: the model calls the tool')
  t.ok(Weather.safeParse(call?.args).success, 'with parsed args: ' + JSON.stringify(call?.args))
  const result = await weather.invoke(call!)
  const answer = await withTools.invoke([question, first, result instanceof ToolMessage ? result : new ToolMessage({ content: String(result), tool_call_id: call!.id! })])
  t.ok(typeof answer.content === 'string' && answer.content.length > 0, 'and answers the tool result in text: ' + String(answer.content))
  t.is(answer.tool_calls?.length ?? 0, 0)

  const Review = z.object({ rating: z.number().int().min(1).max(5), summary: z.string() })
  const structured = await new ChatOpenAI({ model: 'synthetic', apiKey: key, configuration: { baseURL }, maxRetries: 0 }).withStructuredOutput(Review).invoke('review this film')
  t.ok(Review.safeParse(structured).success, 'withStructuredOutput: ' + JSON.stringify(structured))

  const docs = Array.from({ length: 600 }, (_, i) => `chunk ${i} of a long document`)
  const embedder = new OpenAIEmbeddings({ model: 'synthetic', apiKey: key, configuration: { baseURL }, maxRetries: 0 })
  const vectors = await embedder.embedDocuments(docs)
  t.is(vectors.length, 600, 'OpenAIEmbeddings: 600 documents')
  t.ok(vectors.every((v, i) => Math.abs(v[3]! - syntheticEmbedding(docs[i]!)[3]!) < 1e-6), 'each its own vector, in order')
})
