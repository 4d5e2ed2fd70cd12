import type OpenAI from 'openai'
import type { ChatMessage, TokenLogprob } from '../../../shared/protocol/chat.ts'
import type { ChatRequest } from './types.ts'

// The mesh's chat request in OpenAI's wire shape, and OpenAI's log probabilities in the mesh's: every
// field goes through, since OpenAI and compatible servers define them all.

type Params = OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming

function message (m: ChatMessage): OpenAI.Chat.Completions.ChatCompletionMessageParam {
  const name = m.name !== undefined ? { name: m.name } : {}
  switch (m.role) {
    case 'system': return { role: 'system', content: m.content, ...name }
    case 'tool': return { role: 'tool', content: m.content, tool_call_id: m.toolCallId! }
    case 'assistant': return {
      role: 'assistant',
      // an assistant turn that only called tools has no content
      content: m.toolCalls?.length && !m.content ? null : m.content,
      ...name,
      ...(m.toolCalls?.length ? { tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } })) } : {})
    }
    case 'user': return {
      role: 'user',
      content: m.images?.length
        ? [{ type: 'text' as const, text: m.content }, ...m.images.map((i) => ({ type: 'image_url' as const, image_url: { url: i.url, ...(i.detail ? { detail: i.detail } : {}) } }))]
        : m.content,
      ...name
    }
  }
}

/** Only what the request gives: a server that rejects a parameter it does not know never sees one the caller did not send. */
export function toOpenAIParams (req: ChatRequest): Params {
  const p: Params = { model: req.model, messages: req.messages.map(message), stream: true, stream_options: { include_usage: true } }
  if (req.maxTokens !== undefined) p.max_tokens = req.maxTokens
  if (req.temperature !== undefined) p.temperature = req.temperature
  if (req.topP !== undefined) p.top_p = req.topP
  if (req.seed !== undefined) p.seed = req.seed
  if (req.presencePenalty !== undefined) p.presence_penalty = req.presencePenalty
  if (req.frequencyPenalty !== undefined) p.frequency_penalty = req.frequencyPenalty
  if (req.logitBias !== undefined) p.logit_bias = req.logitBias
  if (req.logprobs !== undefined) p.logprobs = req.logprobs
  if (req.topLogprobs !== undefined) p.top_logprobs = req.topLogprobs
  if (req.user !== undefined) p.user = req.user
  if (req.stop !== undefined) p.stop = req.stop
  if (req.tools?.length) {
    p.tools = req.tools.map((t) => ({
      type: 'function' as const,
      function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), ...(t.parameters ? { parameters: t.parameters } : {}), ...(t.strict !== undefined ? { strict: t.strict } : {}) }
    }))
    // OpenAI refuses parallel_tool_calls without tools
    if (req.parallelToolCalls !== undefined) p.parallel_tool_calls = req.parallelToolCalls
  }
  if (req.toolChoice !== undefined) p.tool_choice = typeof req.toolChoice === 'string' ? req.toolChoice : { type: 'function', function: { name: req.toolChoice.name } }
  const f = req.responseFormat
  if (f?.type === 'json_object' || f?.type === 'text') p.response_format = { type: f.type }
  else if (f?.type === 'json_schema') {
    p.response_format = { type: 'json_schema', json_schema: { name: f.name, schema: f.schema, ...(f.strict !== undefined ? { strict: f.strict } : {}), ...(f.description !== undefined ? { description: f.description } : {}) } }
  }
  return p
}

/** A streamed chunk's log probabilities, in the mesh's shape. */
export function fromOpenAILogprobs (content: OpenAI.Chat.Completions.ChatCompletionTokenLogprob[] | null | undefined): TokenLogprob[] | undefined {
  if (!content?.length) return undefined
  return content.map((c) => ({ token: c.token, logprob: c.logprob, topLogprobs: (c.top_logprobs ?? []).map((t) => ({ token: t.token, logprob: t.logprob })) }))
}
