import type { FinishReason } from '../../shared/protocol/chat.ts'
import type { TokenChunk, Usage } from '../../shared/protocol/inference.ts'
import type { ChatChunk } from './backends/types.ts'
import { StopFilter } from './stop.ts'

// One backend answer turned into the frames a worker sends, the same for every backend: stop
// sequences are cut out of the text (./stop.ts); tool-call pieces pass as their own frames, only the
// first call's when the request asked for no parallel calls; each token keeps its log probabilities.

export interface GenerationOutcome {
  /** the backend's own counts; null when it gave none or the worker cut the answer short */
  usage: Usage | null
  /** frames of text or tool calls the backend produced */
  completionTokens: number
  finishReason: Exclude<FinishReason, 'cancelled'>
}

export async function relayGeneration (chunks: AsyncIterable<ChatChunk>, opts: {
  stop?: string[]
  parallelToolCalls?: boolean
  emit: (frame: TokenChunk) => void
  /** a stop sequence ended the answer: the backend request may go */
  cut: () => void
}): Promise<GenerationOutcome> {
  const stop = new StopFilter(opts.stop)
  let usage: Usage | null = null
  let completionTokens = 0
  let finishReason: GenerationOutcome['finishReason'] = 'stop'
  let calls = 0
  let firstCall: number | null = null
  const text = (t: string, logprobs?: TokenChunk['logprobs']) => {
    if (t || logprobs?.length) opts.emit({ text: t, ...(logprobs?.length ? { logprobs } : {}) })
  }
  for await (const chunk of chunks) {
    if (chunk.type === 'token') {
      completionTokens++
      text(stop.push(chunk.text), chunk.logprobs)
      if (stop.stopped) {
        finishReason = 'stop'
        usage = null // the backend's count would include what it generated past the stop
        opts.cut()
        break
      }
    } else if (chunk.type === 'tool_call') {
      completionTokens++
      firstCall ??= chunk.index
      if (opts.parallelToolCalls === false && chunk.index !== firstCall) continue
      if (chunk.id !== undefined || chunk.name !== undefined) calls++
      const { type: _, ...call } = chunk
      opts.emit({ text: '', toolCall: call })
    } else {
      usage = chunk.usage
      if (chunk.finishReason) finishReason = chunk.finishReason
    }
  }
  text(stop.flush())
  // a backend that called tools and said 'stop' (some compatible servers do) still ended on tool calls
  if (calls > 0 && finishReason === 'stop') finishReason = 'tool_calls'
  return { usage, completionTokens, finishReason }
}
