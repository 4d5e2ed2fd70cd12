import type { TokenChunk } from '../../shared/protocol/inference.ts'

// One request's tokens on their way from a worker to the caller. The gateway holds the request to
// `ceiling` completion tokens whatever the backend does: the first token past it stops the worker,
// so the hold taken at admission is a true bound on the charge. A streaming caller gets each token
// as it comes; otherwise the text is collected, and starts over if another worker takes the request.

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
  truncated = false
  text = ''
  firstTokenAt: number | null = null
  private attemptStarted = 0
  private readonly opts: TokenStreamOptions

  constructor (opts: TokenStreamOptions) {
    this.opts = opts
  }

  /** A worker takes the request; an answer not streamed to the caller yet starts over. */
  restart (): void {
    this.attemptStarted = Date.now()
    if (!this.opts.forward) { this.text = ''; this.delivered = 0; this.firstTokenAt = null }
  }

  push (chunk: TokenChunk): void {
    if (this.truncated || typeof chunk?.text !== 'string') return // a malformed frame is not a token
    // a backend that runs past the ceiling (or ignores maxTokens) is stopped there
    if (this.delivered >= this.opts.ceiling) { this.truncated = true; this.opts.stop(); return }
    if (this.firstTokenAt === null) {
      this.firstTokenAt = Date.now()
      this.opts.onFirstToken(this.firstTokenAt - this.attemptStarted)
    }
    this.delivered++
    if (this.opts.forward) this.opts.forward({ text: chunk.text })
    else this.text += chunk.text
  }

  /** Once a token reached a streaming caller, another worker would repeat it: fail instead of retrying. */
  mayRetry (): boolean {
    return !this.opts.forward || this.firstTokenAt === null
  }
}
