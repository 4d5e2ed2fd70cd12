import { EventEmitter, once } from 'node:events'
import type RPC from '@hyperswarm/rpc'
import type { Client } from '@hyperswarm/rpc'
import { MeshError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { MethodDef } from './method.ts'
import { Peer, type Authorize, type HandlerTable, type StreamOptions } from './peer.ts'
import { rolesAllow } from './roles.ts'
import { LINK_TIMEOUT_MS, dropWhenSilent } from './dht.ts'

// A long-lived connection to one peer by public key: reconnects with capped exponential backoff and
// jitter, and every call carries a timeout. Built on rpc.connect(); never the pooled rpc.request(),
// whose linger timer can destroy a call that runs longer than the linger.
// An attempt begun while the peer was away (its stale DHT record still found) can hang until its
// timeout even once the peer is back: while one is under way, another starts every max(backoff, 1 s),
// and the first to open is the connection (the others are dropped).

export interface MeshClientOptions {
  name: string
  log?: Logger
  /** handlers this side serves on the same channel (e.g. a worker serving its gateway) */
  handlers?: HandlerTable
  /** who may call those handlers; without it, only methods open to any peer are served */
  authorize?: Authorize
  /** run on every (re)connect before the client counts as connected; a throw drops the connection */
  onOpen?: (peer: Peer) => Promise<void> | void
  minBackoff?: number
  /** the longest wait between attempts (default 2 s): a peer that restarts is found soon after it is back */
  maxBackoff?: number
  /** an attempt whose RPC channel has not opened by then is dropped and retried (half-open links) */
  attemptTimeout?: number
  /** while an attempt is under way, another starts after max(backoff, this) ms (default 1 s) */
  hedgeAfter?: number
  defaultTimeout?: number
}

export class MeshClient extends EventEmitter {
  readonly publicKey: Buffer
  readonly name: string
  private readonly rpc: RPC
  private readonly opts: MeshClientOptions
  /** the connection: open, or opened and being set up (onOpen) */
  private client: Client | null = null
  /** attempts under way, none of them open yet */
  private readonly pending = new Set<Client>()
  private peer: Peer | null = null
  private ready = false
  private closing = false
  private backoff: number
  private retryTimer: NodeJS.Timeout | null = null
  private attempts = 0

  constructor (rpc: RPC, publicKey: Buffer, opts: MeshClientOptions) {
    super()
    this.setMaxListeners(0)
    this.rpc = rpc
    this.publicKey = publicKey
    this.name = opts.name
    this.opts = opts
    this.backoff = opts.minBackoff ?? 100
    this.connect()
  }

  get connected (): boolean { return this.ready && this.peer !== null && !this.peer.isClosed }
  get connectAttempts (): number { return this.attempts }

  private connect (): void {
    if (this.closing || this.client) return
    const attempt = ++this.attempts
    const attemptStarted = Date.now()
    const client = this.rpc.connect(this.publicKey)
    this.pending.add(client)
    // why an attempt failed (no such peer yet, holepunch aborted, …): for the debug log only
    ;(client.stream as unknown as EventEmitter | null)?.on('error', (err: Error & { code?: string }) => {
      if (!this.ready) this.opts.log?.debug({ peer: this.name, attempt, ms: Date.now() - attemptStarted, code: err.code, err: err.message }, 'connection attempt failed')
    })
    const channel = client.rpc
    if (!channel) throw new Error('rpc channel missing')
    const peer = new Peer(channel, { handlers: this.opts.handlers, authorize: this.opts.authorize ?? strangersOnly, log: this.opts.log })
    const attemptTimer = setTimeout(() => {
      if (!this.pending.has(client)) return
      this.opts.log?.debug({ peer: this.name, attempt }, 'connection attempt timed out')
      client.destroy()
    }, this.opts.attemptTimeout ?? 3000)
    const hedge = setTimeout(() => { if (this.pending.has(client)) this.connect() }, Math.max(this.backoff, this.opts.hedgeAfter ?? 1000))
    client.on('open', async () => {
      clearTimeout(attemptTimer)
      clearTimeout(hedge)
      if (!this.pending.delete(client)) return
      for (const other of this.pending) other.destroy()
      this.pending.clear()
      this.client = client
      this.peer = peer
      // a peer that died without a word (SIGKILL, a cut link) is given up on after a few silent
      // seconds; not before the link is up, where attemptTimeout rules
      dropWhenSilent(client.stream, LINK_TIMEOUT_MS)
      try {
        if (this.opts.onOpen) await this.opts.onOpen(peer)
        if (this.client !== client) return
        this.ready = true
        this.backoff = this.opts.minBackoff ?? 100
        this.opts.log?.info({ peer: this.name, ms: Date.now() - attemptStarted, attempts: this.attempts }, 'connected')
        this.emit('open', peer)
      } catch (err) {
        this.opts.log?.warn({ peer: this.name, code: (err as MeshError).code }, 'connection setup failed')
        client.destroy()
      }
    })
    client.on('close', () => {
      clearTimeout(attemptTimer)
      clearTimeout(hedge)
      if (this.pending.delete(client)) {
        // a failed attempt: the next one after the backoff, unless another is still under way
        if (this.pending.size === 0 && !this.client) this.scheduleReconnect()
        return
      }
      if (this.client !== client) return
      const wasReady = this.ready
      this.ready = false
      this.peer = null
      this.client = null
      if (wasReady) this.opts.log?.warn({ peer: this.name }, 'disconnected')
      this.emit('close')
      this.scheduleReconnect()
    })
  }

  private scheduleReconnect (): void {
    if (this.closing || this.retryTimer) return
    const delay = Math.round(this.backoff * (0.5 + Math.random() / 2))
    this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoff ?? 2000)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.connect()
    }, delay)
  }

  /** Wait until connected, or fail with UNAVAILABLE after `timeout` ms. */
  async waitOpen (timeout: number): Promise<Peer> {
    if (this.connected && this.peer) return this.peer
    if (this.closing) throw MeshError.UNAVAILABLE(`${this.name}: client closed`)
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(), timeout)
    try {
      const [peer] = await once(this, 'open', { signal: ac.signal }) as [Peer]
      return peer
    } catch {
      throw MeshError.UNAVAILABLE(`${this.name} is not reachable (no connection within ${timeout} ms)`)
    } finally {
      clearTimeout(timer)
    }
  }

  /** `traceparent`: the caller's span (shared/tracing), so the remote handler's span is its child */
  async call<Req, Res> (def: MethodDef<Req, Res, any>, req: Req, timeout = this.opts.defaultTimeout ?? 10_000, traceparent?: string): Promise<Res> {
    const started = Date.now()
    const peer = await this.waitOpen(timeout)
    return peer.call(def, req, { timeout: Math.max(1, timeout - (Date.now() - started)), traceparent })
  }

  async stream<Req, Res, Chunk> (def: MethodDef<Req, Res, Chunk>, req: Req, opts: StreamOptions<Chunk> & { connectTimeout?: number }): Promise<Res> {
    const peer = await this.waitOpen(opts.connectTimeout ?? opts.idleTimeout)
    return peer.stream(def, req, opts)
  }

  async close (): Promise<void> {
    if (this.closing) return
    this.closing = true
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = null
    const client = this.client
    this.client = null
    this.peer = null
    this.ready = false
    if (client) client.destroy()
    for (const attempt of this.pending) attempt.destroy()
    this.pending.clear()
  }
}

const STRANGER = new Set(['stranger'] as const)

function strangersOnly (_remoteKey: string, def: MethodDef<any, any, any>): void {
  if (!rolesAllow(def.callers, STRANGER) || def.callers.needs) throw MeshError.FORBIDDEN(`method '${def.name}' is not served on this connection`)
}
