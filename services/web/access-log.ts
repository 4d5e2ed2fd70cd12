import pino from 'pino'
import type { Logger } from '../../shared/log.ts'

// The access log: one line per HTTP request, in the service log's own JSON format and on its own
// stream, but written in batches. A synchronous write per request costs more than the rest of the
// logging put together, so the lines of one turn of the event loop leave in one write.
// Only fixed fields are logged (request id, method, path without its query, status, time taken):
// never a header, a query string or a body, so the logger's secret redaction has nothing to do here.

const BATCH_BYTES = 16 * 1024

interface Writable { write (chunk: string): unknown }

export class AccessLog {
  private readonly log: Logger
  private readonly out: Writable | null
  private readonly prefix: string
  private pending = ''
  private scheduled = false

  constructor (log: Logger) {
    this.log = log
    const stream = (log as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as Writable | undefined
    this.out = typeof stream?.write === 'function' ? stream : null
    const base = JSON.stringify({ ...log.bindings(), pid: process.pid })
    this.prefix = base.length > 2 ? ',' + base.slice(1, -1) : ''
  }

  request (reqId: string, method: string, path: string, status: number, ms: number): void {
    if (!this.log.isLevelEnabled('info')) return
    if (!this.out) {
      this.log.info({ reqId, method, path, status, ms }, 'http')
      return
    }
    this.pending += `{"level":30,"time":${Date.now()}${this.prefix},"reqId":${JSON.stringify(reqId)},"method":${JSON.stringify(method)},"path":${JSON.stringify(path)},"status":${status},"ms":${ms},"msg":"http"}\n`
    if (this.pending.length >= BATCH_BYTES) this.flush()
    else if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flush)
    }
  }

  /** Write what is queued now (also at close, so no line is lost on a clean stop). */
  readonly flush = (): void => {
    this.scheduled = false
    if (!this.pending || !this.out) return
    const lines = this.pending
    this.pending = ''
    this.out.write(lines)
  }
}
