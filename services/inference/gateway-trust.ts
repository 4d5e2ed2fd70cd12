import { setTimeout as sleep } from 'node:timers/promises'
import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { HandlerTable, Peer } from '../../shared/mesh/peer.ts'
import { RegistryReplica, gatewayEntryKey, replicateOverPeer, type RegistryChange } from '../../shared/registry/index.ts'

// Which gateways a worker serves. Anyone can announce on the network's topic, so a key found there
// proves nothing: a gateway counts only if the registry's writer vouches for it (`gateways/<key>`
// in the signed registry). The worker replicates the registry read-only over the very connection
// it dialled — the data is signed by the writer, so the dialled peer cannot forge it — and checks
// the entry before it sends a registration or serves a call. Keys the operator gave (`--gateway`)
// are trusted as given. A gateway the registry stops vouching for is dropped.

export interface GatewayTrustOptions {
  /** the network key (the registry's key); without it only `explicit` gateways are served */
  network?: string
  /** gateway keys the operator gave */
  explicit: string[]
  log: Logger
  /** how long a dialled gateway may take to show up as vouched for (default 10 000 ms) */
  vouchTimeoutMs?: number
}

export class GatewayTrust {
  private readonly opts: GatewayTrustOptions
  private readonly explicit: Set<string>
  private readonly vouched = new Set<string>()
  private readonly dropListeners = new Set<(key: string) => void>()
  private registry: RegistryReplica | null = null
  private stopWatch: (() => void) | null = null

  constructor (opts: GatewayTrustOptions) {
    this.opts = opts
    this.explicit = new Set(opts.explicit.map((k) => k.toLowerCase()))
  }

  async open (): Promise<void> {
    if (!this.opts.network) return
    this.registry = new RegistryReplica({ key: this.opts.network, log: this.opts.log, readTimeoutMs: 5000 })
    await this.registry.open()
    this.stopWatch = this.registry.watch((change) => { void this.recheck(change) })
  }

  async close (): Promise<void> {
    this.stopWatch?.()
    await this.registry?.close()
  }

  /** May this peer have a registration, and call this worker's handlers? */
  trusts (key: string): boolean {
    const k = key.toLowerCase()
    return this.explicit.has(k) || this.vouched.has(k)
  }

  /** Called with a gateway's key when the registry stops vouching for it. */
  onDropped (fn: (key: string) => void): void { this.dropListeners.add(fn) }

  /**
   * Resolves once `key` (the peer we dialled) is a gateway we may serve; FORBIDDEN if the registry,
   * replicated over this same connection, does not vouch for it within the timeout.
   */
  async check (key: string, peer: Peer): Promise<void> {
    const k = key.toLowerCase()
    if (this.explicit.has(k)) return
    const registry = this.registry
    if (!registry || !registry.opened) throw MeshError.FORBIDDEN('not a gateway this worker was given')
    replicateOverPeer(registry, peer)
    const deadline = Date.now() + (this.opts.vouchTimeoutMs ?? 10_000)
    while (Date.now() < deadline && !peer.isClosed) {
      if (await this.listed(k) === true) {
        this.vouched.add(k)
        return
      }
      await sleep(200)
    }
    throw MeshError.FORBIDDEN(`gateway ${k.slice(0, 16)}… is not vouched for in the network's registry`)
  }

  /** Forget a gateway that is no longer joined (it is checked again if dialled again). */
  forget (key: string): void { this.vouched.delete(key.toLowerCase()) }

  /** null: the registry could not be read just now (a block still on its way) */
  private async listed (key: string): Promise<boolean | null> {
    try {
      return (await this.registry!.getGateway(key)) !== null
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'registry read failed')
      return null
    }
  }

  private async recheck (change: RegistryChange): Promise<void> {
    for (const key of [...this.vouched]) {
      if (!change.truncated && !change.keys.includes(gatewayEntryKey(key))) continue
      // a failed read proves nothing either way: the next change checks again
      if (await this.listed(key) !== false) continue
      this.vouched.delete(key)
      this.opts.log.warn({ gateway: key.slice(0, 16) }, 'the registry no longer vouches for this gateway: leaving it')
      for (const fn of this.dropListeners) fn(key)
    }
  }
}

/**
 * The handlers served on a dialled connection, each refusing (FORBIDDEN) a caller that `allows`
 * does not accept — checked on every call, so a gateway dropped later is refused from then on.
 */
export function guardHandlers (table: HandlerTable, allows: (remoteKey: string) => boolean): HandlerTable {
  const out: HandlerTable = new Map()
  for (const [name, entry] of table) {
    out.set(name, {
      def: entry.def,
      fn: (req, ctx) => {
        if (!allows(ctx.remoteKey)) throw MeshError.FORBIDDEN('this worker serves only gateways the network vouches for')
        return entry.fn(req, ctx)
      }
    })
  }
  return out
}
