import crypto from 'node:crypto'
import type { ChatMessage, GenerationRequest, ToolDefinition } from '../../../shared/protocol/chat.ts'
import { exampleFor } from './synthetic-json.ts'

// What the synthetic backend answers, decided from the request alone (same request, same answer):
//   - tool calls, when the request has tools and its tool_choice allows them: a named choice calls
//     that function; otherwise the functions the last user message names (all of them, or the first
//     when parallel_tool_calls is false), else the first tool. Under 'auto', a conversation whose last
//     message is a tool result is answered with text instead, so a tool round trip ends. Arguments
//     are valid against each function's parameters schema.
//   - JSON, for response_format json_schema (valid against the schema) or json_object;
//   - text otherwise: words derived from the last user message.

const WORDS = ('the mesh routes every request to a worker that streams tokens back over encrypted ' +
  'peer connections while gateways count usage and keys stay hashed so nodes join from anywhere ' +
  'behind any network and models answer quickly with latency measured per token in order').split(' ')

export type SyntheticPlan =
  | { kind: 'text', tokens: string[] }
  | { kind: 'json', tokens: string[] }
  | { kind: 'tools', calls: Array<{ id: string, name: string, arguments: string }> }

function lastUser (messages: ChatMessage[]): ChatMessage | undefined {
  return [...messages].reverse().find((m) => m.role === 'user') ?? messages[messages.length - 1]
}

/** The text tokens for these messages: a word each, space-led after the first. */
export function syntheticTokens (messages: ChatMessage[], count: number): string[] {
  let seed = crypto.createHash('sha256').update(lastUser(messages)?.content ?? '').digest()
  const out: string[] = []
  let i = 0
  while (out.length < count) {
    if (i + 2 > seed.length) { seed = crypto.createHash('sha256').update(seed).digest(); i = 0 }
    const word = WORDS[seed.readUInt16BE(i) % WORDS.length]!
    i += 2
    out.push(out.length === 0 ? word : ' ' + word)
  }
  return out
}

/** The functions the synthetic model calls for this request; none: it answers in text or JSON. */
export function syntheticToolChoice (req: GenerationRequest): ToolDefinition[] {
  const tools = req.tools ?? []
  const choice = req.toolChoice ?? 'auto'
  if (tools.length === 0 || choice === 'none') return []
  if (typeof choice === 'object') return tools.filter((t) => t.name === choice.name).slice(0, 1)
  if (choice === 'auto' && req.messages[req.messages.length - 1]?.role === 'tool') return []
  const said = (lastUser(req.messages)?.content ?? '').toLowerCase()
  const named = tools.filter((t) => said.includes(t.name.toLowerCase()))
  const picked = named.length > 0 ? named : [tools[0]!]
  return req.parallelToolCalls === false ? picked.slice(0, 1) : picked
}

/** Split text into pieces of about `size` characters, as a model streams it. */
export function pieces (text: string, size = 8): string[] {
  const out: string[] = []
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size))
  return out
}

export function syntheticPlan (req: GenerationRequest, count: number): SyntheticPlan {
  const seed = lastUser(req.messages)?.content ?? ''
  const calls = syntheticToolChoice(req)
  if (calls.length > 0) {
    return {
      kind: 'tools',
      calls: calls.map((t, i) => ({
        id: 'call_' + crypto.hash('sha256', `${seed}\0${t.name}\0${i}`, 'hex').slice(0, 24),
        name: t.name,
        arguments: JSON.stringify(exampleFor(t.parameters ?? { type: 'object', properties: {} }, `${seed}\0${t.name}`))
      }))
    }
  }
  const format = req.responseFormat
  if (format?.type === 'json_schema') return { kind: 'json', tokens: pieces(JSON.stringify(exampleFor(format.schema, seed))) }
  if (format?.type === 'json_object') return { kind: 'json', tokens: pieces(JSON.stringify({ answer: syntheticTokens(req.messages, Math.min(count, 16)).join('') })) }
  return { kind: 'text', tokens: syntheticTokens(req.messages, count) }
}
