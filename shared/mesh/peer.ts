import type ProtomuxRPC from 'protomux-rpc'
import { MeshError, toWireError, type WireError } from '../errors.ts'
import { parseRequest, type MethodDef } from './method.ts'
import type { Logger } from '../log.ts'
import { tracer, type Span } from '../tracing/index.ts'
import { Cancellation, type CancelSignal } from './cancel.ts'

export type { CancelSignal } from './cancel.ts'

// One encrypted RPC channel seen from our side. The same channel can both serve our handlers and
// carry our calls to the remote, which is how a worker that dialled a gateway gets work from it.
//
// Wire conventions (all values are JSON via compact-encoding's json):
//   response            { ok: true, value } | { ok: false, error: { code, message, details? } }
//   stream frames       event '_chunk'  { id, batch: [frame, …] }  (before the response, same channel: ordered)
//   stream cancellation event '_cancel' { id }         (caller → server)
//   a streaming request carries its stream id in `_sid`
//   any request may carry a W3C traceparent in `_tp` (shared/tracing): its handler then runs in a span

export interface HandlerContext<Chunk = unknown> {
  /** hex public key of the remote peer (the caller) */
  readonly remoteKey: string
  readonly peer: Peer
  /** aborted when the caller cancels the stream or the channel closes (abortSignalOf() for an AbortSignal) */
  readonly signal: CancelSignal
  /** send one stream frame to the caller (stream methods only) */
  emit (chunk: Chunk): void
  /** the span of this call when tracing is on and the caller sent a traceparent */
  readonly span: Span | undefined
}

export type Handler<Req = any, Res = any, Chunk = any> = (req: Req, ctx: HandlerContext<Chunk>) => Promise<Res> | Res

export type Authorize = (remoteKey: string, def: MethodDef<any, any, any>, raw: unknown, peer: Peer) => Promise<void> | void

export interface HandlerEntry { def: MethodDef<any, any, any>, fn: Handler }
export type HandlerTable = Map<string, HandlerEntry>

export function handlers (): HandlerBuilder { return new HandlerBuilder() }

export class HandlerBuilder {
  readonly table: HandlerTable = new Map()
  on<Req, Res, Chunk> (def: MethodDef<Req, Res, Chunk>, fn: Handler<Req, Res, Chunk>): this {
    this.table.set(def.name, { def, fn })
    return this
  }
}

export interface PeerOptions {
  handlers?: HandlerTable
  /**
   * refuses a call its method's rule does not let in (throws FORBIDDEN, UNAUTHENTICATED, …); runs
   * before the body is parsed. Without it every call is refused.
   */
  authorize?: Authorize
  log?: Logger
  /** called once per served request with its outcome ('ok' or an error code) */
  observe?: (method: string, outcome: string, seconds: number) => void
  /**
   * when a handler's stream frames go out: 'turn' (the default) gathers what is emitted in one turn of
   * the event loop into one message; 'relay' sends what one job emitted as soon as it returns, for a
   * peer that relays frames which already arrive gathered (the gateway): they then go out before
   * whatever else the turn holds, such as the request's settlement
   */
  frames?: 'turn' | 'relay'
}

interface Envelope { ok: boolean, value?: unknown, error?: WireError }

interface OpenStream { onChunk: (data: any) => void, touch: () => void }

export interface CallOptions {
  timeout: number
  /** W3C traceparent of the caller's span: the remote handler's span becomes its child */
  traceparent?: string
}
export interface StreamOptions<Chunk> {
  /** W3C traceparent of the caller's span: the remote handler's span becomes its child */
  traceparent?: string
  onChunk: (chunk: Chunk) => void
  /** aborting cancels the remote call */
  signal?: CancelSignal
  /** fail with TIMEOUT when no frame or response arrives for this long */
  idleTimeout: number
}

let nextStreamId = 1

export class Peer {
  readonly channel: ProtomuxRPC
  readonly remoteKey: string
  private readonly opts: PeerOptions
  private readonly inflight = new Map<number, Cancellation>() // server side, by stream id
  private readonly running = new Set<Cancellation>() // every handler in progress
  private readonly streams = new Map<number, OpenStream>() // caller side
  private closed = false

  constructor (channel: ProtomuxRPC, opts: PeerOptions = {}) {
    this.channel = channel
    this.opts = opts
    this.remoteKey = channel.stream?.remotePublicKey?.toString('hex') ?? ''
    channel.respond('_chunk', (msg: { id: number, batch: unknown[] }) => {
      const s = msg && this.streams.get(msg.id)
      if (!s || !Array.isArray(msg.batch)) return eventOnly('_chunk')
      // a peer's malformed frame must not become an uncaught exception in this process
      try {
        for (const data of msg.batch) s.onChunk(data)
      } catch (err) {
        this.opts.log?.warn({ err: (err as Error).message, peer: this.remoteKey.slice(0, 16) }, 'dropped a stream frame the handler could not take')
      }
      return eventOnly('_chunk')
    })
    channel.respond('_cancel', (msg: { id: number }) => {
      const ac = msg && this.inflight.get(msg.id)
      if (ac) ac.abort(MeshError.CANCELLED('cancelled by caller'))
      return eventOnly('_cancel')
    })
    for (const [name, entry] of opts.handlers ?? []) {
      channel.respond(name, (req: unknown) => this.serve(entry, req))
    }
    channel.on('close', () => this.onClose())
  }

  get isClosed (): boolean { return this.closed || this.channel.closed }

  private remoteKeyNow (): string {
    // the stream's remote key is known once the handshake finished; read it late
    return this.remoteKey || (this.channel.stream?.remotePublicKey?.toString('hex') ?? '')
  }

  private async serve (entry: HandlerEntry, raw: unknown): Promise<Envelope> {
    const { def, fn } = entry
    const remoteKey = this.remoteKeyNow()
    const ac = new Cancellation()
    const started = process.hrtime.bigint()
    let outcome = 'ok'
    let sid = 0
    let span: Span | undefined
    let pending: unknown[] = []
    let scheduled = false
    const relay = this.opts.frames === 'relay'
    const flush = () => {
      scheduled = false
      if (pending.length === 0) return
      const batch = pending
      pending = []
      if (!ac.aborted && !this.channel.closed) this.channel.event('_chunk', { id: sid, batch })
    }
    try {
      // a traced call's span starts before the gate, so a refusal shows in the trace with its code
      if (raw && typeof raw === 'object' && '_tp' in raw) {
        const { _tp, ...rest } = raw as Record<string, unknown>
        raw = rest
        span = tracer()?.start(def.name, typeof _tp === 'string' ? _tp : null, { kind: 'server', attributes: { 'rpc.system': 'hyperswarm', 'rpc.method': def.name, 'hyperinfer.peer': remoteKey.slice(0, 16) } })
      }
      if (!this.opts.authorize) throw MeshError.FORBIDDEN(`method '${def.name}' is not served to anyone on this connection`)
      const gateStarted = span ? Date.now() : 0
      await this.opts.authorize(remoteKey, def, raw, this)
      span?.record('authorize', gateStarted)
      if (def.stream && raw && typeof raw === 'object' && '_sid' in raw) {
        const { _sid, ...rest } = raw as Record<string, unknown>
        // only a positive integer: Number() itself throws on an object whose valueOf is not a function
        if (!Number.isSafeInteger(_sid) || (_sid as number) < 1) throw MeshError.BAD_REQUEST('_sid must be a positive integer')
        sid = _sid as number
        raw = rest
      }
      const request = parseRequest(def, raw ?? {})
      if (sid) this.inflight.set(sid, ac)
      this.running.add(ac)
      // frames emitted in one event-loop turn (one job, when relaying) travel as one message: a burst
      // of tokens costs one frame instead of one each, and a slow stream still sends every token as it comes
      const emit = (data: unknown) => {
        if (!sid || ac.aborted || this.channel.closed) return
        pending.push(data)
        if (!scheduled) { scheduled = true; if (relay) queueMicrotask(flush); else setImmediate(flush) }
      }
      const value = await fn(request, { remoteKey, peer: this, signal: ac, emit, span })
      flush() // every frame goes out before the response, on the same ordered channel
      return { ok: true, value: value ?? null }
    } catch (err) {
      if (!(err instanceof MeshError)) this.opts.log?.error({ err, method: def.name }, 'handler failed')
      flush() // tokens produced before a failure still reach the caller, ahead of the error
      const wire = toWireError(err)
      outcome = wire.code
      return { ok: false, error: wire }
    } finally {
      span?.end(outcome === 'ok' ? undefined : outcome)
      this.opts.observe?.(def.name, outcome, Number(process.hrtime.bigint() - started) / 1e9)
      this.running.delete(ac)
      if (sid) this.inflight.delete(sid)
    }
  }

  async call<Req, Res> (def: MethodDef<Req, Res, any>, req: Req, opts: CallOptions): Promise<Res> {
    if (this.isClosed) throw MeshError.UNAVAILABLE('connection closed')
    let env: Envelope
    try {
      env = await this.channel.request(def.name, opts.traceparent ? { ...(req as object), _tp: opts.traceparent } : req, { timeout: opts.timeout })
    } catch (err) {
      throw translateTransportError(err, def.name, opts.timeout)
    }
    return unwrap(env) as Res
  }

  async stream<Req, Res, Chunk> (def: MethodDef<Req, Res, Chunk>, req: Req, opts: StreamOptions<Chunk>): Promise<Res> {
    if (this.isClosed) throw new MeshError('UNAVAILABLE', CONNECTION_CLOSED, { connectionLost: true })
    if (opts.signal?.aborted) throw MeshError.CANCELLED()
    const id = nextStreamId++
    let timer: NodeJS.Timeout | null = null
    let fail: (err: Error) => void = () => {}
    const failed = new Promise<never>((_resolve, reject) => { fail = reject })
    failed.catch(() => {}) // raced against the request below; this only keeps a failure nobody awaits yet from being unhandled
    // every frame re-arms the one idle timer (refresh() costs far less than a new timer per token)
    const touch = () => {
      if (timer) { timer.refresh(); return }
      timer = setTimeout(() => {
        this.cancelRemote(id)
        fail(MeshError.TIMEOUT(`${def.name}: no data for ${opts.idleTimeout} ms`))
      }, opts.idleTimeout)
    }
    const onAbort = () => {
      this.cancelRemote(id)
      fail(MeshError.CANCELLED())
    }
    this.streams.set(id, { onChunk: (d) => { touch(); opts.onChunk(d as Chunk) }, touch })
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    touch()
    try {
      const request = this.channel.request(def.name, opts.traceparent ? { ...(req as object), _sid: id, _tp: opts.traceparent } : { ...(req as object), _sid: id }).then(
        (env: Envelope) => unwrap(env) as Res,
        (err: unknown) => { throw translateTransportError(err, def.name, opts.idleTimeout) }
      )
      request.catch(() => {}) // settled later than the race when cancelled; handled there
      return await Promise.race([request, failed])
    } finally {
      if (timer) clearTimeout(timer)
      this.streams.delete(id)
      opts.signal?.removeEventListener('abort', onAbort)
    }
  }

  private cancelRemote (id: number): void {
    if (this.channel.closed) return
    try { this.channel.event('_cancel', { id }) } catch {} // best effort: a channel closing under us ends the remote stream anyway
  }

  private onClose (): void {
    this.closed = true
    for (const ac of this.running) ac.abort(MeshError.CANCELLED(CONNECTION_CLOSED))
    this.running.clear()
    this.inflight.clear()
  }

  destroy (): void {
    this.channel.destroy()
  }
}

/**
 * what an event's handler returns: sent only when a peer asks an event name as a request. Built once
 * per name, since every stream frame received runs the handler (a new error each time captures a stack).
 */
const EVENT_ONLY = new Map<string, Envelope>()
function eventOnly (name: string): Envelope {
  let env = EVENT_ONLY.get(name)
  if (!env) EVENT_ONLY.set(name, env = { ok: false, error: MeshError.BAD_REQUEST(`'${name}' is an event, not a method`).toWire() })
  return env
}

function unwrap (env: Envelope): unknown {
  if (!env || typeof env !== 'object') throw MeshError.INTERNAL('malformed response from peer')
  if (env.ok) return env.value
  throw MeshError.fromWire(env.error ?? { code: 'INTERNAL', message: 'malformed error from peer' })
}

/** the reason a handler's signal aborts with when the caller's connection closed (not an explicit cancel) */
export const CONNECTION_CLOSED = 'connection closed'

/** protomux-rpc's own failures (timeouts, closed channels, unknown methods) as coded errors. */
export function translateTransportError (err: unknown, methodName: string, timeout: number): MeshError {
  if (err instanceof MeshError) return err
  const code = (err as { code?: string })?.code
  switch (code) {
    case 'TIMEOUT_EXCEEDED': return MeshError.TIMEOUT(`${methodName} timed out after ${timeout} ms`)
    case 'CHANNEL_CLOSED':
    case 'CHANNEL_DESTROYED': return new MeshError('UNAVAILABLE', `connection closed during ${methodName}`, { connectionLost: true })
    case 'UNKNOWN_METHOD': return new MeshError('UNKNOWN_METHOD', `remote does not serve '${methodName}'`)
    case 'DECODE_ERROR': return MeshError.BAD_REQUEST(`remote could not decode ${methodName} request`)
    default: return MeshError.UNAVAILABLE(`${methodName} failed: transport error`)
  }
}
