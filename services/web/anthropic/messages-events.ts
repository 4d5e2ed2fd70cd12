import type { InferResult } from '../../../shared/protocol/gateway.ts'
import type { TokenChunk } from '../../../shared/protocol/inference.ts'
import type { EventShape } from '../openai/generate.ts'
import { anthropicError, messageId, stopReasonOf } from './messages.ts'

// The Anthropic Messages event stream for one answer: message_start, then per content block (the
// text, each tool call) content_block_start, its deltas (text_delta, or input_json_delta with the
// arguments' JSON in pieces) and content_block_stop; at last message_delta with the stop_reason and
// usage, and message_stop. Each event names itself in the SSE `event:` line; a failure after the
// start is an `error` event.

export function messageEvents (model: string): EventShape {
  let blocks = 0
  let open: { kind: 'text' } | { kind: 'call', index: number } | null = null

  const stop = (): unknown[] => {
    if (!open) return []
    open = null
    return [{ type: 'content_block_stop', index: blocks - 1 }]
  }

  const onText = (text: string): unknown[] => {
    const out: unknown[] = []
    if (open?.kind !== 'text') {
      out.push(...stop(), { type: 'content_block_start', index: blocks++, content_block: { type: 'text', text: '' } })
      open = { kind: 'text' }
    }
    if (text) out.push({ type: 'content_block_delta', index: blocks - 1, delta: { type: 'text_delta', text } })
    return out
  }

  const onCall = (d: NonNullable<TokenChunk['toolCall']>): unknown[] => {
    const out: unknown[] = []
    if (open?.kind !== 'call' || open.index !== d.index) {
      out.push(...stop(), { type: 'content_block_start', index: blocks++, content_block: { type: 'tool_use', id: d.id ?? `toolu_${blocks}`, name: d.name ?? '', input: {} } })
      open = { kind: 'call', index: d.index }
    }
    if (d.arguments) out.push({ type: 'content_block_delta', index: blocks - 1, delta: { type: 'input_json_delta', partial_json: d.arguments } })
    return out
  }

  return {
    begin: () => ({
      type: 'message_start',
      // the prompt's size is known once the gateway has counted it: message_delta carries it
      message: { id: messageId(), type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } }
    }),
    frame: (_index, c) => [...(c.text ? onText(c.text) : []), ...(c.toolCall ? onCall(c.toolCall) : [])],
    finish: () => {
      // an empty answer is still one (empty) text block
      return [...(blocks === 0 ? onText('') : []), ...stop()]
    },
    usage: (results: InferResult[]) => {
      const r = results[0]!
      return [
        { type: 'message_delta', delta: { stop_reason: stopReasonOf(r), stop_sequence: null }, usage: { input_tokens: r.usage.promptTokens, output_tokens: r.usage.completionTokens } },
        { type: 'message_stop' }
      ]
    },
    encode: (event) => `event: ${(event as { type: string }).type}\ndata: ${JSON.stringify(event)}\n\n`,
    done: '',
    error: anthropicError
  }
}
