import { MeshError } from '../errors.ts'
import type { MeshClient } from './client.ts'
import type { MethodDef } from './method.ts'
import type { StreamOptions } from './peer.ts'

// Several gateways as one: a call goes to the first gateway that is connected and not draining, and
// one that fails before it answered anything (not reachable, shutting down, its connection lost, no
// worker, none serving the model yet after a restart, or the database out of reach with no allowance
// left on that gateway, where another may still hold some) goes on to the next. A stream that has delivered a frame is never sent
// again: its failure is the caller's to see. A gateway that said it is shutting down is passed over
// for a while, so the requests after it go straight to the others.

/** What the routes and the SDK use of a gateway connection. */
export interface GatewayCaller {
  call: MeshClient['call']
  stream: MeshClient['stream']
  readonly connected: boolean
}

/** Failures that happened before the gateway took the request on, or with nothing delivered yet. */
const FAIL_OVER = new Set<string>(['UNAVAILABLE', 'SHUTTING_DOWN', 'NO_WORKER', 'UNKNOWN_MODEL', 'DATABASE_UNAVAILABLE'])
const DRAINING_MS = 15_000

export function failsOver (err: unknown): boolean {
  return err instanceof MeshError && FAIL_OVER.has(err.code)
}

export class GatewayGroup implements GatewayCaller {
  readonly clients: readonly MeshClient[]
  private readonly drainingUntil = new Map<MeshClient, number>()

  constructor (clients: MeshClient[]) {
    if (clients.length === 0) throw new Error('a gateway group needs at least one gateway')
    this.clients = clients
  }

  get connected (): boolean { return this.clients.some((c) => c.connected) }

  /** Every gateway, the ones to try first first: connected and not draining, in configured order. */
  order (): MeshClient[] {
    const now = Date.now()
    const rank = (c: MeshClient) => (c.connected ? 0 : 2) + ((this.drainingUntil.get(c) ?? 0) > now ? 1 : 0)
    return [...this.clients].sort((a, b) => rank(a) - rank(b))
  }

  private note (c: MeshClient, err: unknown): void {
    if (err instanceof MeshError && err.code === 'SHUTTING_DOWN') this.drainingUntil.set(c, Date.now() + DRAINING_MS)
  }

  /**
   * The gateways to try, in turn: each in order once, then the best one again with its full wait (a
   * gateway that was not connected at the first pass, or that has just come back, gets its chance).
   */
  private attempts (): MeshClient[] {
    const order = this.order()
    return order.length > 1 ? [...order, order[0]!] : order
  }

  async call<Req, Res> (def: MethodDef<Req, Res, any>, req: Req, timeout?: number, traceparent?: string): Promise<Res> {
    const tries = this.attempts()
    for (let i = 0; ; i++) {
      const c = i === tries.length - 1 && i > 0 ? this.order()[0]! : tries[i]!
      const last = i === tries.length - 1
      try {
        // a gateway that is down is not waited for while another one may be up
        return await c.call(def, req, !last && !c.connected ? Math.min(timeout ?? 10_000, 1000) : timeout, traceparent)
      } catch (err) {
        this.note(c, err)
        if (last || !failsOver(err)) throw err
      }
    }
  }

  async stream<Req, Res, Chunk> (def: MethodDef<Req, Res, Chunk>, req: Req, opts: StreamOptions<Chunk> & { connectTimeout?: number }): Promise<Res> {
    const tries = this.attempts()
    let delivered = false
    const onChunk = (chunk: Chunk) => { delivered = true; opts.onChunk(chunk) }
    for (let i = 0; ; i++) {
      const c = i === tries.length - 1 && i > 0 ? this.order()[0]! : tries[i]!
      const last = i === tries.length - 1
      try {
        const connectTimeout = !last && !c.connected ? Math.min(opts.connectTimeout ?? opts.idleTimeout, 1000) : opts.connectTimeout
        return await c.stream(def, req, { ...opts, onChunk, ...(connectTimeout !== undefined ? { connectTimeout } : {}) })
      } catch (err) {
        this.note(c, err)
        if (last || delivered || opts.signal?.aborted || !failsOver(err)) throw err
      }
    }
  }
}
