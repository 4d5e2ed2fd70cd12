import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { MeshError } from '../../../shared/errors.ts'
import type { ChatMessage, ImageInput, ToolChoice } from '../../../shared/protocol/chat.ts'
import type { InferResult } from '../../../shared/protocol/gateway.ts'
import { httpStatusOf } from '../http-errors.ts'
import { generateStream, generateWhole, type Generation, type InferBody } from '../openai/generate.ts'
import { apiKeyOf, parseBody } from '../openai/request.ts'
import { messageEvents } from './messages-events.ts'
import { messagesSchema, unusedMessagesParams, type AnthropicBlock, type MessagesBody } from './messages-schema.ts'

// POST /v1/messages, the Anthropic Messages API: the body translated onto the mesh's chat request
// (tool_result blocks become tool messages, tool_use blocks an assistant's tool calls), the answer
// shaped as a `message` (whole here, as events in ./messages-events.ts), and errors in Anthropic's
// `{ type: 'error', error: { type, message } }` shape. Keys come as `x-api-key` (or Bearer); the
// `anthropic-version` header is accepted and has no effect.

function imageOf (b: Extract<AnthropicBlock, { type: 'image' }>): ImageInput {
  return { url: b.source.type === 'url' ? b.source.url : `data:${b.source.media_type};base64,${b.source.data}` }
}

const textOf = (blocks: AnthropicBlock[]): string => blocks.map((b) => b.type === 'text' ? b.text : '').join('')

/** The conversation as the mesh's messages. */
export function messagesOf (body: MessagesBody): ChatMessage[] {
  const out: ChatMessage[] = []
  const system = typeof body.system === 'string' ? body.system : textOf(body.system ?? [])
  if (system) out.push({ role: 'system', content: system })
  for (const m of body.messages) {
    if (typeof m.content === 'string') { out.push({ role: m.role, content: m.content }); continue }
    if (m.role === 'assistant') {
      const calls = m.content.flatMap((b) => b.type === 'tool_use' ? [{ id: b.id, name: b.name, arguments: JSON.stringify(b.input) }] : [])
      out.push({ role: 'assistant', content: textOf(m.content), ...(calls.length ? { toolCalls: calls } : {}) })
      continue
    }
    // a user turn: its tool results answer the previous turn's calls, then its own text and images
    for (const b of m.content) {
      if (b.type !== 'tool_result') continue
      const content = typeof b.content === 'string' ? b.content : textOf(b.content ?? [])
      out.push({ role: 'tool', content: b.is_error === true ? `Error: ${content}` : content, toolCallId: b.tool_use_id })
    }
    const images = m.content.flatMap((b) => b.type === 'image' ? [imageOf(b)] : [])
    const content = textOf(m.content)
    if (content || images.length || !m.content.some((b) => b.type === 'tool_result')) {
      out.push({ role: 'user', content, ...(images.length ? { images } : {}) })
    }
  }
  return out
}

function toolChoiceOf (c: MessagesBody['tool_choice']): ToolChoice | undefined {
  if (!c) return undefined
  return c.type === 'any' ? 'required' : c.type === 'tool' ? { name: c.name } : c.type
}

/** The mesh's request for this body. */
export function messagesRequest (body: MessagesBody): InferBody {
  const c = body.tool_choice
  const req: InferBody = {
    model: body.model,
    messages: messagesOf(body),
    maxTokens: body.max_tokens,
    stop: body.stop_sequences,
    temperature: body.temperature,
    topP: body.top_p,
    user: body.metadata?.user_id ?? undefined,
    tools: body.tools?.map((t) => ({ name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.input_schema })),
    toolChoice: toolChoiceOf(c),
    parallelToolCalls: c && c.type !== 'none' && c.disable_parallel_tool_use === true ? false : undefined
  }
  for (const k of Object.keys(req) as Array<keyof InferBody>) if (req[k] === undefined) delete req[k]
  return req
}

export const messageId = (): string => 'msg_' + crypto.randomUUID().replaceAll('-', '')

export function stopReasonOf (r: InferResult): string {
  switch (r.finishReason) {
    case 'length': return 'max_tokens'
    case 'tool_calls': return 'tool_use'
    case 'content_filter': return 'refusal'
    default: return 'end_turn'
  }
}

/** A tool call's arguments as the object Anthropic's tool_use.input is. */
export function inputOf (args: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(args || '{}')
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
  } catch (err) {
    // a backend's malformed arguments: kept whole, under a key, rather than lost
    if (!(err instanceof SyntaxError)) throw err
  }
  return { arguments: args }
}

function whole (r: InferResult) {
  const calls = r.toolCalls ?? []
  return {
    id: messageId(),
    type: 'message',
    role: 'assistant',
    model: r.model,
    content: [
      ...(r.text || !calls.length ? [{ type: 'text', text: r.text }] : []),
      ...calls.map((c) => ({ type: 'tool_use', id: c.id, name: c.name, input: inputOf(c.arguments) }))
    ],
    stop_reason: stopReasonOf(r),
    stop_sequence: null,
    usage: { input_tokens: r.usage.promptTokens, output_tokens: r.usage.completionTokens }
  }
}

/** Anthropic's error type for an HTTP status. */
export function errorTypeOf (status: number): string {
  const types: Record<number, string> = { 400: 'invalid_request_error', 401: 'authentication_error', 402: 'billing_error', 403: 'permission_error', 404: 'not_found_error', 413: 'request_too_large', 429: 'rate_limit_error', 503: 'overloaded_error', 504: 'timeout_error' }
  return types[status] ?? 'api_error'
}

/** An error in Anthropic's shape; `message` is already safe to show. */
export function anthropicErrorBody (status: number, message: string) {
  return { type: 'error', error: { type: errorTypeOf(status), message } }
}

/** A failure after a stream began, as Anthropic's `error` event. */
export function anthropicError (e: MeshError) {
  return anthropicErrorBody(httpStatusOf(e.code), e.code === 'INTERNAL' ? 'internal error' : e.reason)
}

// errors before anything was sent go to the service's error handler, which answers this route in
// Anthropic's shape (anthropicErrorBody)
export async function messages (req: FastifyRequest, reply: FastifyReply, deps: Pick<Generation, 'gateway' | 'rpcTimeoutMs'>): Promise<void> {
  const apiKey = apiKeyOf(req)
  const body = parseBody(messagesSchema, req.body)
  const g: Generation = { ...deps, apiKey, choices: [messagesRequest(body)], unused: unusedMessagesParams(body) }
  if (body.stream === true) await generateStream(req, reply, g, messageEvents(body.model), true)
  else await generateWhole(req, reply, g, (results) => whole(results[0]!))
}
