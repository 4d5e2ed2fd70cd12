import crypto from 'node:crypto'
import { MeshError } from '../../shared/errors.ts'
import type { TokenLogprob, ToolCall } from '../../shared/protocol/chat.ts'
import type { TokenChunk } from '../../shared/protocol/inference.ts'
import { checkLogprobs, checkToolCall, logprobBytes } from './frames.ts'

// One request's answer on its way from a worker to the caller. The gateway holds the request to
// `ceiling` completion tokens whatever the backend does: the first token past it stops the worker,
// so the hold taken at admission is a true bound on the charge. Each frame (a token of text, or a
// piece of a tool call) counts as one token, so bytes are bounded too: a frame over MAX_FRAME_BYTES
// breaks the protocol and ends the worker's attempt, and the answer is cut (as at the ceiling) before
// its text and tool-call arguments pass `maxBytes`. Log probabilities have their own, larger bound,
// past which they are dropped. A streaming caller gets each frame as it comes; otherwise text, tool
// calls and log probabilities are collected, and start over if another worker takes the request.
// Every frame's text is hashed as it arrives, before any guard, for the worker's receipt (receipts.ts).

/** a frame is one token; one this large is no token at all */
export const MAX_FRAME_BYTES = 64 * 1024
/** an answer's bytes per token of its ceiling, on average: far above any tokenizer's */
export const MAX_BYTES_PER_TOKEN = 32
/** log-probability bytes per token of the ceiling: 20 alternatives of a long token each */
const MAX_LOGPROB_BYTES_PER_TOKEN = 2048

/** The most bytes an answer of `ceiling` tokens may carry. */
export function maxAnswerBytes (ceiling: number): number {
  return Math.max(1024, ceiling * MAX_BYTES_PER_TOKEN)
}

export interface TokenStreamOptions {
  ceiling: number
  /** where frames go as they come; null: collect them into `text`, `toolCalls`, `logprobs` */
  forward: ((chunk: TokenChunk) => void) | null
  /** stop the worker: the ceiling is reached */
  stop: () => void
  /** the attempt's first token, `ms` after the attempt started */
  onFirstToken: (ms: number) => void
  /** output moderation (safety/output-moderation.ts): what of each token may pass, and where to end */
  guard?: {
    pass (text: string): { text: string, stop: boolean }
    flush (): Promise<{ text: string, stop: boolean }> | { text: string, stop: boolean }
    reset (): void
    /** where text the guard releases later goes, and how it ends the answer then */
    attach? (sink: { release (text: string): void, cut (): void }): void
  } | null
}

const EMPTY_SHA256 = crypto.hash('sha256', '', 'hex')

export class TokenStream {
  delivered = 0
  /** UTF-8 bytes of the text and tool-call pieces delivered */
  bytes = 0
  truncated = false
  /** the guard ended the answer (finish reason content_filter) */
  filtered = false
  text = ''
  /** the text frames as delivered, for the response cache to replay */
  chunks: string[] = []
  toolCalls: ToolCall[] = []
  logprobs: TokenLogprob[] = []
  /** tool calls begun (streamed or collected) */
  calls = 0
  firstTokenAt: number | null = null
  private attemptStarted = 0
  /** SHA-256 of this attempt's text, begun with its first frame */
  private received: crypto.Hash | null = null
  private logprobBytes = 0
  /** the id and name each tool call index got from its first piece */
  private readonly callHeads = new Map<number, { id: string, name: string }>()
  private readonly maxBytes: number
  private readonly opts: TokenStreamOptions

  constructor (opts: TokenStreamOptions) {
    this.opts = opts
    this.maxBytes = maxAnswerBytes(opts.ceiling)
    opts.guard?.attach?.({ release: (text) => { if (!this.filtered) this.deliver(text) }, cut: () => this.filter() })
  }

  /** A worker takes the request; an answer not streamed to the caller yet starts over. */
  restart (): void {
    this.attemptStarted = Date.now()
    this.received = null
    if (this.opts.forward) return
    this.text = ''; this.chunks = []; this.delivered = 0; this.bytes = 0; this.firstTokenAt = null
    this.toolCalls = []; this.logprobs = []; this.logprobBytes = 0; this.calls = 0; this.callHeads.clear()
    this.opts.guard?.reset()
  }

  /** Take one frame; returns the error that ends the attempt if the frame breaks the protocol. */
  push (chunk: TokenChunk): MeshError | null {
    if (typeof chunk?.text !== 'string') return null // a malformed frame is not a token
    if (this.truncated) { if (chunk.text.length <= MAX_FRAME_BYTES) this.hash(chunk.text); return null }
    const call = chunk.toolCall === undefined ? null : checkToolCall(chunk.toolCall)
    if (typeof call === 'string') return MeshError.BACKEND_ERROR(`the worker sent ${call}`)
    // UTF-8 takes at least a byte per UTF-16 unit: a long string is refused before it is measured
    const chars = chunk.text.length + (call ? (call.arguments?.length ?? 0) + (call.id?.length ?? 0) + (call.name?.length ?? 0) : 0)
    const size = chars > MAX_FRAME_BYTES ? Infinity : Buffer.byteLength(chunk.text) + (call ? Buffer.byteLength(call.arguments ?? '') + (call.id?.length ?? 0) + (call.name?.length ?? 0) : 0)
    if (size > MAX_FRAME_BYTES) return MeshError.BACKEND_ERROR(`the worker sent a frame over ${MAX_FRAME_BYTES} bytes`)
    this.hash(chunk.text)
    // a backend that runs past the ceiling (or ignores maxTokens) is stopped there
    if (this.delivered >= this.opts.ceiling || this.bytes + size > this.maxBytes) { this.truncated = true; this.opts.stop(); return null }
    let toolCall: TokenChunk['toolCall']
    if (call) {
      const head = this.callHeads.get(call.index)
      if (!head) {
        // a call begins with its name; its id is made here when the backend gave none
        if (!call.name) return MeshError.BACKEND_ERROR('the worker sent a tool call without its function name')
        const fresh = { id: call.id ?? 'call_' + crypto.randomBytes(12).toString('hex'), name: call.name }
        this.callHeads.set(call.index, fresh)
        this.calls++
        toolCall = { index: call.index, id: fresh.id, name: fresh.name, arguments: call.arguments ?? '' }
      } else {
        toolCall = { index: call.index, arguments: call.arguments ?? '' }
      }
    }
    let logprobs = checkLogprobs(chunk.logprobs)
    if (logprobs) {
      const b = logprobBytes(logprobs)
      if (this.logprobBytes + b > this.opts.ceiling * MAX_LOGPROB_BYTES_PER_TOKEN) logprobs = undefined
      else this.logprobBytes += b
    }
    if (this.firstTokenAt === null) {
      this.firstTokenAt = Date.now()
      this.opts.onFirstToken(this.firstTokenAt - this.attemptStarted)
    }
    this.delivered++
    this.bytes += size
    const passed = this.opts.guard ? this.opts.guard.pass(chunk.text) : { text: chunk.text, stop: false }
    this.deliver(passed.text, toolCall, logprobs)
    if (passed.stop) this.filter()
    return null
  }

  /** The worker's answer is complete: what the guard still holds goes out (or ends the answer). */
  async end (): Promise<void> {
    if (!this.opts.guard || this.filtered) return
    const held = await this.opts.guard.flush()
    if (this.filtered) return
    this.deliver(held.text)
    if (held.stop) this.filter()
  }

  private deliver (text: string, toolCall?: TokenChunk['toolCall'], logprobs?: TokenChunk['logprobs']): void {
    // the guard may hold text back: a frame left with nothing in it is not sent
    if (this.opts.guard && !text && !toolCall && !logprobs) return
    this.chunks.push(text)
    if (this.opts.forward) {
      this.opts.forward({ text, ...(toolCall ? { toolCall } : {}), ...(logprobs ? { logprobs } : {}) })
      return
    }
    this.text += text
    if (logprobs) this.logprobs.push(...logprobs)
    if (toolCall) {
      const head = this.callHeads.get(toolCall.index)!
      let whole = this.toolCalls.find((c) => c.id === head.id)
      if (!whole) { whole = { id: head.id, name: head.name, arguments: '' }; this.toolCalls.push(whole) }
      whole.arguments += toolCall.arguments ?? ''
    }
  }

  /** the guard ended the answer: the worker stops, and the finish reason is content_filter */
  private filter (): void {
    if (this.filtered) return
    this.filtered = true
    this.truncated = true
    this.opts.stop()
  }

  /** SHA-256 (hex) of the text this attempt's worker sent so far */
  receivedSha256 (): string {
    return this.received ? this.received.copy().digest('hex') : EMPTY_SHA256
  }

  private hash (text: string): void {
    (this.received ??= crypto.createHash('sha256')).update(text)
  }

  /** Once a frame reached a streaming caller, another worker would repeat it: fail instead of retrying. */
  mayRetry (): boolean {
    return !this.opts.forward || this.firstTokenAt === null
  }
}
