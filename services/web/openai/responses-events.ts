import type { MeshError } from '../../../shared/errors.ts'
import type { InferResult } from '../../../shared/protocol/gateway.ts'
import type { TokenChunk } from '../../../shared/protocol/inference.ts'
import type { EventShape } from './generate.ts'
import { functionCallItem, itemId, messageItem, outputTextPart, type responseShell } from './responses.ts'

// The Responses event stream for one answer, as OpenAI sends it: response.created and
// response.in_progress, then per output item (the text as a message, each tool call as a
// function_call) output_item.added, its deltas (output_text.delta with content_part.added/.done
// around them, or function_call_arguments.delta), its .done events and output_item.done; at last
// response.completed (or response.incomplete when the token budget ran out) with usage. Each event
// names itself in the SSE `event:` line and carries a sequence_number; no [DONE] follows.

interface TextItem { kind: 'text', id: string, index: number, text: string, open: boolean }
interface CallItem { kind: 'call', id: string, index: number, callId: string, name: string, arguments: string, open: boolean }
type Item = TextItem | CallItem

export function responseEvents (shell: ReturnType<typeof responseShell>): EventShape {
  let seq = 0
  const items: Item[] = []
  let text: TextItem | null = null
  const calls = new Map<number, CallItem>()
  let model: string | undefined

  const done = (item: Item) => item.kind === 'text'
    ? messageItem(item.id, item.text)
    : functionCallItem(item.id, { id: item.callId, name: item.name, arguments: item.arguments })
  const output = () => items.map(done)

  /** the events that close an open item */
  const close = (item: Item): unknown[] => {
    if (!item.open) return []
    item.open = false
    const base = { item_id: item.id, output_index: item.index }
    const inner = item.kind === 'text'
      ? [
          { type: 'response.output_text.done', ...base, content_index: 0, text: item.text, logprobs: [] },
          { type: 'response.content_part.done', ...base, content_index: 0, part: outputTextPart(item.text) }
        ]
      : [{ type: 'response.function_call_arguments.done', ...base, name: item.name, arguments: item.arguments }]
    return [...inner, { type: 'response.output_item.done', output_index: item.index, item: done(item) }]
  }
  const closeOthers = (keep: Item | null): unknown[] => items.filter((i) => i !== keep).flatMap(close)

  const onText = (delta: string): unknown[] => {
    const out: unknown[] = []
    if (!text) {
      out.push(...closeOthers(null))
      text = { kind: 'text', id: itemId('msg'), index: items.length, text: '', open: true }
      items.push(text)
      out.push(
        { type: 'response.output_item.added', output_index: text.index, item: messageItem(text.id, '', 'in_progress') },
        { type: 'response.content_part.added', item_id: text.id, output_index: text.index, content_index: 0, part: outputTextPart('') }
      )
    }
    text.text += delta
    out.push({ type: 'response.output_text.delta', item_id: text.id, output_index: text.index, content_index: 0, delta, logprobs: [] })
    return out
  }

  const onCall = (d: NonNullable<TokenChunk['toolCall']>): unknown[] => {
    const out: unknown[] = []
    let call = calls.get(d.index)
    if (!call) {
      out.push(...closeOthers(null))
      call = { kind: 'call', id: itemId('fc'), index: items.length, callId: d.id ?? `call_${items.length}`, name: d.name ?? '', arguments: '', open: true }
      calls.set(d.index, call)
      items.push(call)
      out.push({ type: 'response.output_item.added', output_index: call.index, item: functionCallItem(call.id, { id: call.callId, name: call.name, arguments: '' }, 'in_progress') })
    }
    if (d.arguments) {
      call.arguments += d.arguments
      out.push({ type: 'response.function_call_arguments.delta', item_id: call.id, output_index: call.index, delta: d.arguments })
    }
    return out
  }

  return {
    begin: () => {
      const r = shell({ output: [], result: null })
      return [{ type: 'response.created', response: r }, { type: 'response.in_progress', response: r }]
    },
    frame: (_index, c) => [...(c.text ? onText(c.text) : []), ...(c.toolCall ? onCall(c.toolCall) : [])],
    finish: (_index, r) => {
      model = r.model
      // an answer with neither text nor calls is still one (empty) message
      return [...(items.length ? [] : onText('')), ...items.flatMap(close)]
    },
    usage: (results: InferResult[]) => {
      const r = results[0]!
      const response = shell({ model, output: output(), result: r })
      return { type: response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', response }
    },
    encode: (event) => {
      const e = { ...(event as { type: string }), sequence_number: seq++ }
      return `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`
    },
    done: '',
    error: (err: MeshError) => [
      { type: 'error', code: err.code, message: err.reason, param: null },
      { type: 'response.failed', response: shell({ output: output(), result: null, error: { code: err.code, message: err.reason } }) }
    ]
  }
}
