import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { MeshError } from '../../../shared/errors.ts'
import type { ChatMessage, ImageInput, ResponseFormat, ToolChoice } from '../../../shared/protocol/chat.ts'
import type { InferResult } from '../../../shared/protocol/gateway.ts'
import { generateStream, generateWhole, type Generation, type InferBody } from './generate.ts'
import { apiKeyOf, idempotencyKeyOf, parseBody } from './request.ts'
import { responseEvents } from './responses-events.ts'
import { responsesSchema, unusedResponsesParams, type ResponsesBody, type ResponsesPart } from './responses-schema.ts'

// POST /v1/responses: the OpenAI Responses body translated onto the mesh's chat request, and the
// gateway's answer shaped as a `response` object (whole here, as events in ./responses-events.ts).
// Nothing is stored: every response says `store: false`, and a request that builds on a stored one
// (`previous_response_id`, `conversation`) is refused, naming the field.

type Part = ResponsesPart

function refuse (param: string, message: string): MeshError {
  return MeshError.BAD_REQUEST(`${param}: ${message}`, { param })
}

function imagesOf (parts: Part[], at: string): ImageInput[] {
  return parts.flatMap((p, j) => {
    if (p.type !== 'input_image') return []
    if (!p.image_url) throw refuse(`${at}.content[${j}].image_url`, 'an image must be given by URL or data: URL (no file is stored here, so file_id cannot be used)')
    return [{ url: p.image_url, ...(p.detail ? { detail: p.detail } : {}) }]
  })
}

function textOf (parts: Part[]): string {
  return parts.map((p) => p.type === 'input_text' || p.type === 'output_text' ? p.text : p.type === 'refusal' ? p.refusal : '').join('')
}

/** The conversation: instructions first, then each input item as the mesh's messages. */
export function messagesOf (body: ResponsesBody): ChatMessage[] {
  const out: ChatMessage[] = body.instructions ? [{ role: 'system', content: body.instructions }] : []
  if (typeof body.input === 'string') return [...out, { role: 'user', content: body.input }]
  body.input.forEach((item, i) => {
    const at = `input[${i}]`
    if (item.type === 'function_call') {
      const call = { id: item.call_id, name: item.name, arguments: item.arguments }
      // a turn's calls follow its text: one assistant message
      const last = out[out.length - 1]
      if (last?.role === 'assistant') last.toolCalls = [...(last.toolCalls ?? []), call]
      else out.push({ role: 'assistant', content: '', toolCalls: [call] })
      return
    }
    if (item.type === 'function_call_output') {
      const content = typeof item.output === 'string' ? item.output : textOf(item.output)
      out.push({ role: 'tool', content, toolCallId: item.call_id })
      return
    }
    const role = item.role === 'developer' ? 'system' : item.role
    if (typeof item.content === 'string') { out.push({ role, content: item.content }); return }
    const images = imagesOf(item.content, at)
    if (images.length && role !== 'user') throw refuse(`${at}.content`, 'only a user message may carry images')
    out.push({ role, content: textOf(item.content), ...(images.length ? { images } : {}) })
  })
  return out
}

function toolChoiceOf (c: ResponsesBody['tool_choice']): ToolChoice | undefined {
  if (c === null || c === undefined) return undefined
  return typeof c === 'string' ? c : { name: c.name }
}

function formatOf (f: NonNullable<ResponsesBody['text']>['format']): ResponseFormat | undefined {
  if (!f) return undefined
  if (f.type !== 'json_schema') return { type: f.type }
  return { type: 'json_schema', name: f.name, schema: f.schema, ...(f.description ? { description: f.description } : {}), ...(typeof f.strict === 'boolean' ? { strict: f.strict } : {}) }
}

const given = <T> (v: T | null | undefined): T | undefined => v ?? undefined

/** The mesh's request for this body. */
export function responsesRequest (body: ResponsesBody): InferBody {
  const req: InferBody = {
    model: body.model,
    messages: messagesOf(body),
    maxTokens: given(body.max_output_tokens),
    temperature: given(body.temperature),
    topP: given(body.top_p),
    user: given(body.user),
    tools: body.tools?.map((t) => ({
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      ...(t.parameters ? { parameters: t.parameters } : {}),
      ...(typeof t.strict === 'boolean' ? { strict: t.strict } : {})
    })),
    toolChoice: toolChoiceOf(body.tool_choice),
    parallelToolCalls: given(body.parallel_tool_calls),
    responseFormat: formatOf(body.text?.format)
  }
  for (const k of Object.keys(req) as Array<keyof InferBody>) if (req[k] === undefined) delete req[k]
  return req
}

export const itemId = (prefix: 'msg' | 'fc'): string => `${prefix}_${crypto.randomUUID().replaceAll('-', '')}`

export function messageItem (id: string, text: string, status: 'in_progress' | 'completed' = 'completed') {
  return { id, type: 'message', status, role: 'assistant', content: status === 'completed' ? [outputTextPart(text)] : [] }
}

export function outputTextPart (text: string) {
  return { type: 'output_text', text, annotations: [], logprobs: [] }
}

export function functionCallItem (id: string, call: { id: string, name: string, arguments: string }, status: 'in_progress' | 'completed' = 'completed') {
  return { id, type: 'function_call', status, call_id: call.id, name: call.name, arguments: call.arguments }
}

/** The response object's fields that do not depend on the answer, and the answer's status and usage. */
export function responseShell (body: ResponsesBody) {
  const id = 'resp_' + crypto.randomUUID().replaceAll('-', '')
  const createdAt = Math.floor(Date.now() / 1000)
  return (state: { model?: string, output: unknown[], result: InferResult | null, error?: { code: string, message: string } }) => {
    const r = state.result
    const incomplete = r?.finishReason === 'length' ? 'max_output_tokens' : r?.finishReason === 'content_filter' ? 'content_filter' : null
    return {
      id,
      object: 'response',
      created_at: createdAt,
      status: state.error ? 'failed' : !r ? 'in_progress' : incomplete ? 'incomplete' : 'completed',
      ...(r && !incomplete && !state.error ? { completed_at: Math.floor(Date.now() / 1000) } : {}),
      error: state.error ?? null,
      incomplete_details: incomplete ? { reason: incomplete } : null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: state.model ?? r?.model ?? body.model,
      output: state.output,
      parallel_tool_calls: body.parallel_tool_calls ?? true,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      // nothing is kept: a stored response could not be fetched or built on
      store: false,
      temperature: body.temperature ?? 1,
      text: { format: body.text?.format ?? { type: 'text' } },
      tool_choice: body.tool_choice ?? 'auto',
      tools: (body.tools ?? []).map((t) => ({ type: 'function', name: t.name, description: t.description ?? null, parameters: t.parameters ?? null, strict: t.strict ?? true })),
      top_p: body.top_p ?? 1,
      truncation: 'disabled',
      usage: r ? usageOf(r) : null,
      user: body.user ?? null,
      metadata: body.metadata ?? {}
    }
  }
}

export function usageOf (r: InferResult) {
  const { promptTokens: input, completionTokens: output } = r.usage
  return { input_tokens: input, input_tokens_details: { cached_tokens: 0 }, output_tokens: output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + output }
}

/** The whole answer's output items: its text as a message, then each tool call. */
function outputOf (r: InferResult): unknown[] {
  const out: unknown[] = r.text || !r.toolCalls?.length ? [messageItem(itemId('msg'), r.text)] : []
  for (const c of r.toolCalls ?? []) out.push(functionCallItem(itemId('fc'), c))
  return out
}

export async function responses (req: FastifyRequest, reply: FastifyReply, deps: Pick<Generation, 'gateway' | 'rpcTimeoutMs'>): Promise<void> {
  const apiKey = apiKeyOf(req)
  const body = parseBody(responsesSchema, req.body)
  const stored = 'is not supported: responses are not stored here (they say store: false); send the whole conversation in input'
  if (body.previous_response_id) throw refuse('previous_response_id', stored)
  if (body.conversation !== undefined && body.conversation !== null) throw refuse('conversation', stored)
  if (body.background === true) throw refuse('background', 'is not supported: responses are not stored, so they cannot run in the background')
  const g: Generation = { ...deps, apiKey, choices: [responsesRequest(body)], unused: unusedResponsesParams(body) , idempotencyKey: idempotencyKeyOf(req) }
  const shell = responseShell(body)
  try {
    if (body.stream === true) await generateStream(req, reply, g, responseEvents(shell), true)
    else await generateWhole(req, reply, g, (results) => shell({ output: outputOf(results[0]!), result: results[0]! }))
  } catch (err) {
    // the gateway names the chat request's field; here the conversation is `input`
    if (err instanceof MeshError && err.details?.param === 'messages') throw new MeshError(err.code, err.reason, { ...err.details, param: 'input' })
    throw err
  }
}
