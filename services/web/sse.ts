import type { ServerResponse } from 'node:http'

// Server-sent events on a plain Node response. The head goes out with the first event, never
// before, so whoever decides to stream can still answer with an ordinary HTTP error until then.
// Events written in one turn of the event loop leave as one chunk: a burst of tokens that arrived
// in one RPC frame costs one socket write, not one each (and the end of an answer that arrived with
// its last tokens goes out in that same write), while a slow stream still sends each token as it comes.

export class EventStream {
  private readonly res: ServerResponse
  private readonly head: Record<string, string>
  private pending = ''
  private scheduled = false
  private opened = false

  constructor (res: ServerResponse, head: Record<string, string>) {
    this.res = res
    this.head = head
  }

  get started (): boolean { return this.opened }

  /** Open the stream (writes the head with the first flush); a no-op once open. */
  open (): void {
    if (this.opened) return
    this.opened = true
    this.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', ...this.head })
  }

  /** Queue one event whose data is `json` (already encoded); it leaves at the end of this turn. */
  send (json: string): void {
    this.write(`data: ${json}\n\n`)
  }

  /** Queue raw SSE text (one or more whole events, e.g. with `event:` lines); it leaves at the end of this turn. */
  write (text: string): void {
    this.open()
    this.pending += text
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flush)
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false
    if (!this.pending) return
    const out = this.pending
    this.pending = ''
    if (!this.res.writableEnded) this.res.write(out)
  }

  /** Write whatever is queued plus `last` (raw SSE text, may be empty) and end the response. */
  end (last = ''): void {
    this.open()
    const out = this.pending + last
    this.pending = ''
    if (this.res.writableEnded) return
    if (out) this.res.end(out)
    else this.res.end()
  }
}
