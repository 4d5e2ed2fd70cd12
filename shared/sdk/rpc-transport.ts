import crypto from 'node:crypto'
import RPC from '@hyperswarm/rpc'
import { wireJson } from '../mesh/wire.ts'
import DHT from 'hyperdht'
import { bootstrapList } from '../config.ts'
import { MeshError } from '../errors.ts'
import { MeshClient } from '../mesh/client.ts'
import { createDHT, type Bootstrap } from '../mesh/dht.ts'
import { GatewayProtocol, type Quota } from '../protocol/gateway.ts'
import type { UsageReceipt } from '../receipt.ts'
import type { RequestOf } from '../mesh/method.ts'
import type { InferenceRequest, InferenceResult, ModelSummary, Transport } from './index.ts'
import { generationParams, type TokenLogprob } from '../protocol/chat.ts'
import { ToolCallCollector } from './tool-calls.ts'
import { runCompare } from '../compare.ts'
import { compareResult, entryOfOutcome, type CompareOptions, type CompareRequest, type CompareResult } from './compare.ts'
import { GatewayGroup, type GatewayCaller } from '../mesh/failover.ts'

// The SDK over the mesh itself: a client-only DHT node with a fresh identity, @hyperswarm/rpc on it,
// and one long-lived MeshClient to the gateway's public key. The CLI opens its gateway connection
// through the same GatewayConnection, so there is one way to reach a gateway.

export interface GatewayConnectionOptions {
  /** the gateway's 64-character hex public key */
  gateway: string
  /** DHT bootstrap nodes, as a list or as HYPERINFER_BOOTSTRAP's "host:port,host:port"; default: the public DHT */
  bootstrap?: string | Bootstrap
  /** how long a request waits for the connection before failing with UNAVAILABLE (default 10000) */
  connectTimeoutMs?: number
}

export class GatewayConnection {
  readonly key: string
  readonly client: MeshClient
  readonly connectTimeoutMs: number
  private readonly rpc: RPC
  private readonly dht: DHT
  private closed = false

  constructor (opts: GatewayConnectionOptions) {
    const key = opts.gateway.toLowerCase()
    if (!/^[0-9a-f]{64}$/.test(key)) throw MeshError.BAD_REQUEST('the gateway key must be 64 hex characters')
    let bootstrap: Bootstrap | undefined
    try {
      bootstrap = typeof opts.bootstrap === 'string' ? bootstrapList(opts.bootstrap) : opts.bootstrap
    } catch (err) {
      throw MeshError.BAD_REQUEST((err as Error).message)
    }
    this.key = key
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000
    // a fresh identity per connection: callers are strangers to the mesh, and the key says nothing about them
    const keyPair = DHT.keyPair(crypto.randomBytes(32))
    this.dht = createDHT({ keyPair, bootstrap, clientOnly: true })
    this.rpc = new RPC({ keyPair, dht: this.dht, valueEncoding: wireJson })
    this.client = new MeshClient(this.rpc, Buffer.from(key, 'hex'), { name: `gateway ${key.slice(0, 8)}…`, maxBackoff: 1000 })
  }

  /** The connected client; UNAVAILABLE naming the gateway when it cannot be reached in time. */
  async open (): Promise<MeshClient> {
    if (this.closed) throw MeshError.UNAVAILABLE('the gateway connection is closed')
    try {
      await this.client.waitOpen(this.connectTimeoutMs)
    } catch {
      throw MeshError.UNAVAILABLE(`gateway ${this.key.slice(0, 12)}… is not reachable (no answer within ${Math.round(this.connectTimeoutMs / 1000)} s); check the key and the bootstrap list`)
    }
    return this.client
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.client.close()
    // best effort: the client is closed; a failing destroy leaves nothing this connection still uses
    await this.rpc.destroy({ force: true }).catch(() => {})
    await this.dht.destroy().catch(() => {})
  }
}

export class RpcTransport implements Transport {
  readonly kind = 'rpc' as const
  private readonly conns: GatewayConnection[]
  private readonly group: GatewayGroup | null
  private readonly apiKey: string
  private readonly timeoutMs: number
  private readonly connectTimeoutMs: number
  private readonly retries: number

  /** several gateways: a request that fails before its first token goes to the next one (../mesh/failover.ts) */
  constructor (opts: Omit<GatewayConnectionOptions, 'gateway'> & { gateway: string | string[], apiKey: string, timeoutMs: number, retries?: number }) {
    const keys = Array.isArray(opts.gateway) ? opts.gateway : opts.gateway.split(',').map((k) => k.trim()).filter(Boolean)
    if (keys.length === 0) throw MeshError.BAD_REQUEST('give at least one gateway key')
    this.conns = keys.map((gateway) => new GatewayConnection({ ...opts, gateway }))
    this.group = this.conns.length > 1 ? new GatewayGroup(this.conns.map((c) => c.client)) : null
    this.apiKey = opts.apiKey
    this.timeoutMs = opts.timeoutMs
    this.connectTimeoutMs = this.conns[0]!.connectTimeoutMs
    this.retries = opts.retries ?? 3
  }

  /** The one gateway (waiting for it, with a clear error), or the group that fails over between several. */
  private async gateway (): Promise<GatewayCaller> {
    return this.group ?? await this.conns[0]!.open()
  }

  private request (req: InferenceRequest, stream: boolean): RequestOf<typeof GatewayProtocol.infer> {
    // named fields only: the gateway's schema is strict, and a caller's extra keys are not its business
    // every request carries its own id: a retry after a lost connection is the same request
    const out: Record<string, unknown> = { apiKey: this.apiKey, stream, requestId: req.requestId ?? crypto.randomUUID() }
    for (const k of ['prompt', 'messages', 'model', 'cache', ...Object.keys(generationParams)]) {
      const v = (req as Record<string, unknown>)[k]
      if (v !== undefined) out[k] = v
    }
    return out as RequestOf<typeof GatewayProtocol.infer>
  }

  async inference (req: InferenceRequest, signal?: AbortSignal): Promise<InferenceResult> {
    const wire = this.request(req, false)
    // infer is a stream method; with stream:false no frames come and the result carries the text,
    // so the idle timeout bounds the whole request
    const res = await this.retrying(signal, async () => (await this.gateway()).stream(GatewayProtocol.infer, wire, {
      onChunk () {}, signal, idleTimeout: this.timeoutMs, connectTimeout: this.connectTimeoutMs
    }))
    return { ...res, requestId: res.id }
  }

  async stream (req: InferenceRequest, onDelta: (text: string) => void, signal: AbortSignal): Promise<InferenceResult> {
    const wire = this.request(req, true)
    let text = ''
    const calls = new ToolCallCollector()
    const logprobs: TokenLogprob[] = []
    let ignored: string[] | undefined
    // a retry is answered from the first frame again: the frames already taken are skipped
    let taken = 0
    const res = await this.retrying(signal, async () => {
      let index = 0
      return (await this.gateway()).stream(GatewayProtocol.infer, wire, {
        onChunk (chunk) {
          if (index++ < taken) return
          taken++
          if (chunk.ignored) ignored = chunk.ignored
          if (chunk.toolCall) calls.add(chunk.toolCall)
          if (chunk.logprobs) logprobs.push(...chunk.logprobs)
          if (!chunk.text) return
          text += chunk.text
          onDelta(chunk.text)
        },
        signal,
        idleTimeout: this.timeoutMs,
        connectTimeout: this.connectTimeoutMs
      })
    })
    // a streamed result's text is empty on the wire: the frames were the text and the tool calls
    return { ...res, requestId: res.id, text, ...(calls.calls.length ? { toolCalls: calls.calls } : {}), ...(req.logprobs ? { logprobs } : {}), ...(ignored ? { ignored } : {}) }
  }

  async compare (req: CompareRequest, opts: CompareOptions): Promise<CompareResult> {
    // the key first, so a bad one fails the comparison once rather than once per model
    await this.quota()
    const ac = new AbortController()
    const cancel = () => ac.abort()
    if (opts.signal?.aborted) cancel()
    else opts.signal?.addEventListener('abort', cancel, { once: true })
    try {
      const { models, ...one } = req
      const outcomes = await runCompare(models, (model, _i, onText) => this.stream({ ...one, model }, onText, ac.signal), {
        onDelta: opts.onDelta,
        onOutcome: opts.onResult ? (o) => opts.onResult!(entryOfOutcome(o)) : undefined
      })
      if (ac.signal.aborted) throw MeshError.CANCELLED()
      return compareResult(outcomes.map(entryOfOutcome))
    } finally {
      opts.signal?.removeEventListener('abort', cancel)
    }
  }

  /**
   * Run a request again, with the same requestId, when the connection to the gateway was lost under
   * it: the gateway answers a retry from the first attempt (still running, or done), charged once.
   * A retry that reaches another gateway while the first attempt still runs (or its gateway died and
   * has not yet let go of it) is told IDEMPOTENCY_IN_PROGRESS; it asks again after the wait the
   * gateway names, until the request's time is up.
   */
  private async retrying<T> (signal: AbortSignal | undefined, run: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + Math.max(this.timeoutMs, 15_000)
    for (let lost = 0; ;) {
      try {
        return await run()
      } catch (err) {
        if (!(err instanceof MeshError) || signal?.aborted) throw err
        let wait: number
        if (err.details?.connectionLost === true && lost < this.retries) wait = Math.min(2000, 100 * 2 ** lost++)
        else if (err.code === 'IDEMPOTENCY_IN_PROGRESS' && Date.now() < deadline) wait = Math.min(2000, Math.max(200, Number(err.details?.retryAfterSeconds ?? 1) * 1000))
        else throw err
        await new Promise((resolve) => setTimeout(resolve, wait))
      }
    }
  }

  async models (): Promise<ModelSummary[]> {
    const gw = await this.gateway()
    return (await gw.call(GatewayProtocol.models, {}, this.timeoutMs)).models
  }

  async quota (): Promise<Quota> {
    const gw = await this.gateway()
    return gw.call(GatewayProtocol.getUserQuota, { apiKey: this.apiKey }, this.timeoutMs)
  }

  async receipt (id: string): Promise<UsageReceipt> {
    const gw = await this.gateway()
    return gw.call(GatewayProtocol.receipt, { apiKey: this.apiKey, id }, this.timeoutMs)
  }

  async close (): Promise<void> { await Promise.all(this.conns.map((c) => c.close())) }
}
