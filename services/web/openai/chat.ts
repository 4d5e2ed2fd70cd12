import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ChatMessage, ResponseFormat, TokenLogprob, ToolChoice } from '../../../shared/protocol/chat.ts'
import type { InferResult } from '../../../shared/protocol/gateway.ts'
import { chatCompletionSchema, unusedGiven, type ChatBody, type OpenAIMessage } from './chat-schema.ts'
import { generateStream, generateWhole, SseText, type EventShape, type Generation, type InferBody } from './generate.ts'
import { apiKeyOf, idempotencyKeyOf, parseBody } from './request.ts'

// POST /v1/chat/completions: the OpenAI body translated onto the mesh's chat request (messages with
// images, tool calls and tool results; tools, tool_choice, response_format, every sampling
// parameter), and the gateway's answers shaped as chat.completion or chat.completion.chunk objects.

type Parts = string | Array<{ type: string, text?: string, refusal?: string }> | null | undefined

function textOf (content: Parts): string {
  if (typeof content === 'string') return content
  return (content ?? []).map((p) => p.text ?? p.refusal ?? '').join('')
}

export function toMeshMessage (m: OpenAIMessage): ChatMessage {
  const name = typeof m.name === 'string' ? { name: m.name } : {}
  switch (m.role) {
    case 'system': case 'developer': return { role: 'system', content: textOf(m.content), ...name }
    case 'tool': return { role: 'tool', content: textOf(m.content), toolCallId: m.tool_call_id }
    case 'assistant': return {
      role: 'assistant',
      content: textOf(m.content) || (m.refusal ?? ''),
      ...name,
      ...(m.tool_calls?.length ? { toolCalls: m.tool_calls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })) } : {})
    }
    case 'user': {
      if (typeof m.content === 'string') return { role: 'user', content: m.content, ...name }
      const images = m.content.flatMap((p) => p.type === 'image_url' ? [{ url: p.image_url.url, ...(p.image_url.detail ? { detail: p.image_url.detail } : {}) }] : [])
      return { role: 'user', content: m.content.map((p) => p.type === 'text' ? p.text : '').join(''), ...name, ...(images.length ? { images } : {}) }
    }
  }
}

function toolChoiceOf (c: ChatBody['tool_choice']): ToolChoice | undefined {
  if (c === null || c === undefined) return undefined
  return typeof c === 'string' ? c : { name: c.function.name }
}

function responseFormatOf (f: ChatBody['response_format']): ResponseFormat | undefined {
  if (!f) return undefined
  if (f.type !== 'json_schema') return { type: f.type }
  const s = f.json_schema
  return { type: 'json_schema', name: s.name, schema: s.schema ?? {}, ...(s.description !== undefined ? { description: s.description } : {}), ...(typeof s.strict === 'boolean' ? { strict: s.strict } : {}) }
}

const given = <T> (v: T | null | undefined): T | undefined => v ?? undefined

/** The mesh's request for one choice of this body. */
export function chatRequest (body: ChatBody): InferBody {
  const req: InferBody = {
    model: body.model,
    messages: body.messages.map(toMeshMessage),
    maxTokens: given(body.max_completion_tokens ?? body.max_tokens),
    temperature: given(body.temperature),
    stop: body.stop === null || body.stop === undefined ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop,
    topP: given(body.top_p),
    seed: given(body.seed),
    presencePenalty: given(body.presence_penalty),
    frequencyPenalty: given(body.frequency_penalty),
    logitBias: given(body.logit_bias),
    logprobs: given(body.logprobs),
    topLogprobs: given(body.top_logprobs),
    user: given(body.user),
    tools: body.tools?.map((t) => ({
      name: t.function.name,
      ...(t.function.description !== undefined ? { description: t.function.description } : {}),
      ...(t.function.parameters ? { parameters: t.function.parameters } : {}),
      ...(typeof t.function.strict === 'boolean' ? { strict: t.function.strict } : {})
    })),
    toolChoice: toolChoiceOf(body.tool_choice),
    parallelToolCalls: given(body.parallel_tool_calls),
    responseFormat: responseFormatOf(body.response_format)
  }
  for (const k of Object.keys(req) as Array<keyof InferBody>) if (req[k] === undefined) delete req[k]
  return req
}

export function openAILogprobs (l: TokenLogprob[] | undefined) {
  if (!l) return null
  const bytes = (t: string) => [...Buffer.from(t)]
  return {
    content: l.map((e) => ({ token: e.token, logprob: e.logprob, bytes: bytes(e.token), top_logprobs: (e.topLogprobs ?? []).map((a) => ({ token: a.token, logprob: a.logprob, bytes: bytes(a.token) })) })),
    refusal: null
  }
}

export function usageOf (results: InferResult[]) {
  // each choice ran (and was billed) as its own request: the usage is their sum
  const prompt = results.reduce((n, r) => n + r.usage.promptTokens, 0)
  const completion = results.reduce((n, r) => n + r.usage.completionTokens, 0)
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

function finishOf (r: InferResult): string {
  return r.finishReason === 'cancelled' ? 'stop' : r.finishReason
}

export function chatShape (model: string) {
  const id = 'chatcmpl-' + crypto.randomUUID()
  const created = Math.floor(Date.now() / 1000)
  const chunk = (choices: unknown[], extra: object = {}) => ({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices, ...extra })
  // a frame of text alone, the bulk of a stream, as the same JSON chunk() would give, built around the text
  const head = `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"system_fingerprint":null,"choices":[{"index":`
  const textFrame = (index: number, text: string) => new SseText(`${head}${index},"delta":{"content":${JSON.stringify(text)}},"logprobs":null,"finish_reason":null}]}\n\n`)
  const whole = (results: InferResult[]) => ({
    id, object: 'chat.completion', created, model: results[0]!.model, system_fingerprint: null,
    choices: results.map((r, index) => ({
      index,
      message: {
        role: 'assistant',
        // an answer that only called tools has no content
        content: r.toolCalls?.length && !r.text ? null : r.text,
        refusal: null,
        ...(r.toolCalls?.length ? { tool_calls: r.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })) } : {})
      },
      logprobs: openAILogprobs(r.logprobs),
      finish_reason: finishOf(r)
    })),
    usage: usageOf(results)
  })
  const events: EventShape = {
    frame: (index, c, first) => {
      if (!first && c.text && !c.toolCall && !c.logprobs) return textFrame(index, c.text)
      const delta: Record<string, unknown> = first ? { role: 'assistant', content: c.toolCall && !c.text ? null : c.text } : c.text ? { content: c.text } : {}
      if (c.toolCall) {
        const t = c.toolCall
        delta.tool_calls = [{ index: t.index, ...(t.id ? { id: t.id, type: 'function' } : {}), function: { ...(t.name ? { name: t.name } : {}), arguments: t.arguments ?? '' } }]
      }
      return chunk([{ index, delta, logprobs: openAILogprobs(c.logprobs), finish_reason: null }])
    },
    finish: (index, r) => chunk([{ index, delta: {}, logprobs: null, finish_reason: finishOf(r) }]),
    usage: (results) => chunk([], { usage: usageOf(results) })
  }
  return { whole, events }
}

export async function chatCompletions (req: FastifyRequest, reply: FastifyReply, deps: Pick<Generation, 'gateway' | 'rpcTimeoutMs'>): Promise<void> {
  const apiKey = apiKeyOf(req)
  const body = parseBody(chatCompletionSchema, req.body)
  const one = chatRequest(body)
  const g: Generation = { ...deps, apiKey, choices: Array.from({ length: body.n ?? 1 }, () => one), unused: unusedGiven(body) , idempotencyKey: idempotencyKeyOf(req) }
  const shape = chatShape(body.model)
  if (body.stream === true) await generateStream(req, reply, g, shape.events, body.stream_options?.include_usage === true)
  else await generateWhole(req, reply, g, shape.whole)
}
