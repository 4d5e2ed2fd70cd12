import { PARAM_WIRE_NAMES, type ChatMessage, type GenerationParam, type TokenLogprob, type ToolCall } from '../protocol/chat.ts'
import type { InferenceRequest } from './index.ts'

// The SDK's request in the OpenAI chat-completions body the web service takes, and the parts of its
// answer beyond text (tool calls, log probabilities, the ignored-parameters header) in the SDK's terms.

export function openAIMessage (m: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role, content: m.content }
  if (m.name) out.name = m.name
  if (m.images?.length) out.content = [{ type: 'text', text: m.content }, ...m.images.map((i) => ({ type: 'image_url', image_url: i }))]
  if (m.toolCalls?.length) {
    out.tool_calls = m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }))
    if (!m.content) out.content = null
  }
  if (m.toolCallId) out.tool_call_id = m.toolCallId
  return out
}

export function openAIBody (req: InferenceRequest, stream: boolean): Record<string, unknown> {
  const f = req.responseFormat
  const body: Record<string, unknown> = {
    model: req.model,
    messages: (req.messages ?? [{ role: 'user', content: req.prompt ?? '' }]).map(openAIMessage),
    max_tokens: req.maxTokens,
    temperature: req.temperature,
    top_p: req.topP,
    seed: req.seed,
    presence_penalty: req.presencePenalty,
    frequency_penalty: req.frequencyPenalty,
    logit_bias: req.logitBias,
    logprobs: req.logprobs,
    top_logprobs: req.topLogprobs,
    stop: req.stop,
    user: req.user,
    tools: req.tools?.map((t) => ({ type: 'function', function: t })),
    tool_choice: typeof req.toolChoice === 'object' ? { type: 'function', function: { name: req.toolChoice.name } } : req.toolChoice,
    parallel_tool_calls: req.parallelToolCalls,
    response_format: f?.type === 'json_schema' ? { type: 'json_schema', json_schema: { name: f.name, schema: f.schema, strict: f.strict, description: f.description } } : f,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {})
  }
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k]
  return body
}

export interface WireToolCall { index?: number, id?: string, function?: { name?: string, arguments?: string } }

export function toolCallsOf (calls: WireToolCall[] | null | undefined): ToolCall[] | undefined {
  if (!calls?.length) return undefined
  return calls.map((c) => ({ id: c.id ?? '', name: c.function?.name ?? '', arguments: c.function?.arguments ?? '' }))
}

export function logprobsOf (l: { content?: Array<{ token: string, logprob: number, top_logprobs?: Array<{ token: string, logprob: number }> }> | null } | null | undefined): TokenLogprob[] | undefined {
  return l?.content?.map((e) => ({ token: e.token, logprob: e.logprob, topLogprobs: (e.top_logprobs ?? []).map((a) => ({ token: a.token, logprob: a.logprob })) }))
}

const FROM_WIRE = new Map(Object.entries(PARAM_WIRE_NAMES).map(([k, v]) => [v, k as GenerationParam]))

/** The x-hyperinfer-ignored-params header in the mesh's names (an OpenAI-only name stays as it is). */
export function ignoredOf (header: string | null): string[] | undefined {
  if (!header) return undefined
  return header.split(',').map((s) => s.trim()).filter(Boolean).map((n) => FROM_WIRE.get(n) ?? n)
}
