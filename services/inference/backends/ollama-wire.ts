import type { ChatRequest as OllamaChat, Logprob, Message } from 'ollama'
import { MeshError } from '../../../shared/errors.ts'
import type { ChatMessage, TokenLogprob } from '../../../shared/protocol/chat.ts'
import type { ChatRequest } from './types.ts'

// The mesh's chat request in Ollama's /api/chat shape. Ollama takes tools natively, images as base64,
// a JSON Schema (or 'json') as `format`, and the sampling parameters as `options`. It has no
// tool_choice, logit_bias, end-user id or participant names (table.ts declares them not honoured):
// tool_choice 'none' leaves the tools out; the rest is not sent.

/** A data: URL's base64 payload; Ollama takes no image URLs, and a worker fetching a caller's URLs would reach its own network. */
function imageData (url: string): string {
  const m = /^data:image\/[A-Za-z0-9.+-]+;base64,(.*)$/s.exec(url)
  if (!m) throw MeshError.BAD_REQUEST('ollama takes images as data:image/…;base64 URLs only')
  return m[1]!
}

function message (m: ChatMessage, callNames: Map<string, string>): Message {
  const out: Message = { role: m.role, content: m.content }
  if (m.images?.length) out.images = m.images.map((i) => imageData(i.url))
  if (m.toolCalls?.length) out.tool_calls = m.toolCalls.map((c) => ({ function: { name: c.name, arguments: parseArguments(c.arguments) } }))
  // Ollama matches a result to its call by the function's name
  if (m.role === 'tool') { const name = callNames.get(m.toolCallId!); if (name) out.tool_name = name }
  return out
}

function parseArguments (text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text)
    return v && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {}
  } catch {
    // a model's earlier call with broken JSON: sent as no arguments rather than failing the turn
    return {}
  }
}

export function toOllamaChat (req: ChatRequest): OllamaChat & { stream: true } {
  const callNames = new Map<string, string>()
  for (const m of req.messages) for (const c of m.toolCalls ?? []) callNames.set(c.id, c.name)
  const options: Record<string, unknown> = {}
  if (req.maxTokens !== undefined) options.num_predict = req.maxTokens
  if (req.temperature !== undefined) options.temperature = req.temperature
  if (req.topP !== undefined) options.top_p = req.topP
  if (req.seed !== undefined) options.seed = req.seed
  if (req.presencePenalty !== undefined) options.presence_penalty = req.presencePenalty
  if (req.frequencyPenalty !== undefined) options.frequency_penalty = req.frequencyPenalty
  if (req.stop !== undefined) options.stop = req.stop
  const out: OllamaChat & { stream: true } = { model: req.model, messages: req.messages.map((m) => message(m, callNames)), stream: true, options }
  if (req.tools?.length && req.toolChoice !== 'none') {
    out.tools = req.tools.map((t) => ({ type: 'function', function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: (t.parameters ?? { type: 'object', properties: {} }) as never } }))
  }
  const f = req.responseFormat
  if (f?.type === 'json_object') out.format = 'json'
  else if (f?.type === 'json_schema') out.format = f.schema
  if (req.logprobs) out.logprobs = true
  if (req.topLogprobs !== undefined) out.top_logprobs = req.topLogprobs
  return out
}

export function fromOllamaLogprobs (l: Logprob[] | undefined): TokenLogprob[] | undefined {
  if (!l?.length) return undefined
  return l.map((x) => ({ token: x.token, logprob: x.logprob, topLogprobs: (x.top_logprobs ?? []).map((t) => ({ token: t.token, logprob: t.logprob })) }))
}
