import { MeshError } from '../../shared/errors.ts'
import type { TokenChunk } from '../../shared/protocol/inference.ts'

// One request's tokens on their way from a worker to the caller. The gateway holds the request to
// `ceiling` completion tokens whatever the backend does: the first token past it stops the worker,
// so the hold taken at admission is a true bound on the charge. Each frame counts as one token, so
// bytes are bounded too: a frame over MAX_FRAME_BYTES breaks the protocol and ends the worker's
// attempt, and the answer is cut (as at the ceiling) before it passes `maxBytes`. A streaming caller
// gets each token as it comes; otherwise the text is collected, and starts over if another worker
// takes the request.

/** a frame is one token; one this large is no token at all */
export const MAX_FRAME_BYTES = 64 * 1024
/** an answer's bytes per token of its ceiling, on average: far above any tokenizer's */
export const MAX_BYTES_PER_TOKEN = 32

/** The most bytes an answer of `ceiling` tokens may carry. */
export function maxAnswerBytes (ceiling: number): number {
  return Math.max(1024, ceiling * MAX_BYTES_PER_TOKEN)
}

export interface TokenStreamOptions {
  ceiling: number
  /** where tokens go as they come; null: collect them into `text` */
  forward: ((chunk: TokenChunk) => void) | null
  /** stop the worker: the ceiling is reached */
  stop: () => void
  /** the attempt's first token, `ms` after the attempt started */
  onFirstToken: (ms: number) => void
}

export class TokenStream {
  delivered = 0
  /** UTF-8 bytes of the tokens delivered */
  bytes = 0
  truncated = false
  text = ''
  /** the frames as delivered, for the response cache to replay */
  chunks: string[] = []
  firstTokenAt: number | null = null
  private attemptStarted = 0
  private readonly maxBytes: number
  private readonly opts: TokenStreamOptions

  constructor (opts: TokenStreamOptions) {
    this.opts = opts
    this.maxBytes = maxAnswerBytes(opts.ceiling)
  }

  /** A worker takes the request; an answer not streamed to the caller yet starts over. */
  restart (): void {
    this.attemptStarted = Date.now()
    if (!this.opts.forward) { this.text = ''; this.chunks = []; this.delivered = 0; this.bytes = 0; this.firstTokenAt = null }
  }

  /** Take one frame; returns the error that ends the attempt if the frame breaks the protocol. */
  push (chunk: TokenChunk): MeshError | null {
    if (this.truncated || typeof chunk?.text !== 'string') return null // a malformed frame is not a token
    // UTF-8 takes at least a byte per UTF-16 unit: a long string is refused before it is measured
    const size = chunk.text.length > MAX_FRAME_BYTES ? Infinity : Buffer.byteLength(chunk.text)
    if (size > MAX_FRAME_BYTES) return MeshError.BACKEND_ERROR(`the worker sent a frame over ${MAX_FRAME_BYTES} bytes`)
    // a backend that runs past the ceiling (or ignores maxTokens) is stopped there
    if (this.delivered >= this.opts.ceiling || this.bytes + size > this.maxBytes) { this.truncated = true; this.opts.stop(); return null }
    if (this.firstTokenAt === null) {
      this.firstTokenAt = Date.now()
      this.opts.onFirstToken(this.firstTokenAt - this.attemptStarted)
    }
    this.delivered++
    this.bytes += size
    this.chunks.push(chunk.text)
    if (this.opts.forward) this.opts.forward({ text: chunk.text })
    else this.text += chunk.text
    return null
  }

  /** Once a token reached a streaming caller, another worker would repeat it: fail instead of retrying. */
  mayRetry (): boolean {
    return !this.opts.forward || this.firstTokenAt === null
  }
}
