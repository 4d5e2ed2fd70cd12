import type { ToolCall, ToolCallDelta } from '../protocol/chat.ts'

/** Whole tool calls from their streamed pieces: the first piece of an index names the call, the rest add arguments. */
export class ToolCallCollector {
  readonly calls: ToolCall[] = []
  private readonly byIndex = new Map<number, ToolCall>()

  add (d: ToolCallDelta): void {
    let call = this.byIndex.get(d.index)
    if (!call) {
      call = { id: d.id ?? `call_${d.index}`, name: d.name ?? '', arguments: '' }
      this.byIndex.set(d.index, call)
      this.calls.push(call)
    }
    if (d.id && !call.id) call.id = d.id
    if (d.name && !call.name) call.name = d.name
    call.arguments += d.arguments ?? ''
  }
}
