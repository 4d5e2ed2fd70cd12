import RPC, { type Server } from '@hyperswarm/rpc'
import type DHT from 'hyperdht'
import type { KeyPair } from 'hyperdht'
import type ProtomuxRPC from 'protomux-rpc'
import { LINK_TIMEOUT_MS, STRANGER_LINK_TIMEOUT_MS, createDHT, dropWhenSilent, type Bootstrap } from './dht.ts'
import { MeshClient, type MeshClientOptions } from './client.ts'
import { wireJson } from './wire.ts'
import { Peer, type HandlerTable } from './peer.ts'
import { ConnectionLimiter, connectionLimits, type ConnectionLimits } from './conn-limit.ts'
import { PeerStrikes } from './strikes.ts'
import type { MethodDef } from './method.ts'
import { credentialOf, parseMembers, rolesAllow, type Credential, type MemberKind, type PeerRole } from './roles.ts'
import { MeshError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { ServiceMetrics } from '../metrics.ts'
import { CommonProtocol } from '../protocol/common.ts'

// The base every hyperinfer process extends: a stable key pair, one DHT node, an RPC server that lets
// a caller into a method only in a role the method lists (roles.ts), long-lived clients to other
// services, and an explicit open/close lifecycle (close is idempotent and releases everything in
// reverse order).

export interface MeshServiceOptions {
  name: string
  keyPair: KeyPair
  log: Logger
  bootstrap?: Bootstrap
  host?: string
  /**
   * the mesh members: `kind=key` entries (gateway, gateway-2, auth, web, metrics, inference-3, …) or
   * bare keys (operators' tools); a member's kind is its role here
   */
  allow?: string[]
  /** reject connections from anyone not on the allow-list (services with no public methods) */
  privateOnly?: boolean
  /** caps on non-members' connections (default: conn-limit.ts) */
  connectionLimits?: ConnectionLimits
  /** when handlers' stream frames go out (peer.ts): 'relay' for a service that passes on frames it receives */
  frames?: 'turn' | 'relay'
}

export const VERSION = '0.1.0'

/** refusals that count as a strike against a stranger (strikes.ts) */
const BAD_CREDENTIALS = new Set(['INVALID_API_KEY', 'UNAUTHENTICATED'])
/** long enough for the last refusal to reach the peer before its connection closes */
const CUT_OFF_AFTER_MS = 200

export abstract class MeshService {
  readonly name: string
  readonly keyPair: KeyPair
  readonly log: Logger
  private readonly members: Map<string, MemberKind>
  private readonly privateOnly: boolean
  private readonly frames: 'turn' | 'relay'
  private readonly bootstrap?: Bootstrap
  private readonly host?: string
  private dht: DHT | null = null
  private rpcInstance: RPC | null = null
  private rpcServer: Server | null = null
  private readonly clients = new Set<MeshClient>()
  readonly peers = new Set<Peer>()
  readonly metrics: ServiceMetrics
  readonly startedAt = Date.now()
  private readonly connLimit: ConnectionLimiter
  private readonly strikes: PeerStrikes
  private opening: Promise<void> | null = null
  private closing: Promise<void> | null = null

  constructor (opts: MeshServiceOptions) {
    this.name = opts.name
    this.keyPair = opts.keyPair
    this.log = opts.log
    this.members = parseMembers(opts.allow ?? [])
    this.privateOnly = opts.privateOnly ?? false
    this.frames = opts.frames ?? 'turn'
    this.bootstrap = opts.bootstrap
    this.host = opts.host
    this.metrics = new ServiceMetrics(opts.name)
    const limits = opts.connectionLimits ?? connectionLimits({})
    this.connLimit = new ConnectionLimiter(limits, (k) => this.isMeshMember(k), opts.log)
    this.strikes = new PeerStrikes(limits.authFailures, (k) => this.isMeshMember(k), opts.log)
  }

  get publicKey (): string { return this.keyPair.publicKey.toString('hex') }
  /** the DHT node this service listens and dials on (for topic announce/lookup) */
  protected get dhtNode (): DHT {
    if (!this.dht) throw new Error(`${this.name} is not open`)
    return this.dht
  }
  get rpc (): RPC {
    if (!this.rpcInstance) throw new Error(`${this.name} is not open`)
    return this.rpcInstance
  }

  /** The methods this service answers. */
  protected abstract handlers (): HandlerTable
  /** Service-specific start-up, after the RPC server listens. */
  protected async onOpen (): Promise<void> {}
  /** Service-specific shut-down, before the RPC server closes. */
  protected async onClose (): Promise<void> {}
  /** A peer connected to our server. */
  protected onPeer (_peer: Peer): void {}

  isMeshMember (remoteKey: string): boolean {
    return this.members.has(remoteKey.toLowerCase())
  }

  /** the configured kind of a member key, or null for anyone else */
  memberKind (remoteKey: string): MemberKind | null {
    return this.members.get(remoteKey.toLowerCase()) ?? null
  }

  /** The roles a caller holds on this connection: any peer is a stranger; configured keys add their kind. */
  protected callerRoles (remoteKey: string, _peer: Peer): Set<PeerRole> {
    const roles = new Set<PeerRole>(['stranger'])
    const kind = this.memberKind(remoteKey)
    if (kind) roles.add(kind)
    return roles
  }

  /** Checks the credential a method needs (its `needs`); a service that serves such methods overrides it. */
  protected async verifyCredential (needs: Credential, _value: string): Promise<void> {
    throw MeshError.FORBIDDEN(`${this.name} accepts no ${needs} credential`)
  }

  /** The gate in front of every handler: the caller's role first, then the credential, before any parsing. */
  private async authorize (remoteKey: string, def: MethodDef<any, any, any>, raw: unknown, peer: Peer, dialled?: PeerRole): Promise<void> {
    // a channel that outlived its peer's cut-off is refused too (members are never banned)
    const banned = this.strikes.secondsLeft(remoteKey)
    if (banned > 0) throw MeshError.RATE_LIMITED(`too many failed credentials from this peer; retry in ${banned} s`, banned, { scope: 'client' })
    const roles = this.callerRoles(remoteKey, peer)
    if (dialled) roles.add(dialled)
    if (!rolesAllow(def.callers, roles)) throw MeshError.FORBIDDEN(`method '${def.name}' is open to ${def.callers?.from.join(', ') || 'nobody'} only`)
    if (def.callers.needs) await this.verifyCredential(def.callers.needs, credentialOf(def.callers.needs, raw))
  }

  open (): Promise<void> {
    if (!this.opening) this.opening = this.doOpen()
    return this.opening
  }

  private async doOpen (): Promise<void> {
    this.dht = createDHT({ keyPair: this.keyPair, bootstrap: this.bootstrap, host: this.host })
    this.rpcInstance = new RPC({ keyPair: this.keyPair, dht: this.dht, valueEncoding: wireJson })
    this.metrics.ensureFamilies()
    // handlers are tracked while they run (in-flight, oldest age); the observe hook counts and times them
    const table = this.metrics.instrument(this.handlers(), { count: false })
    table.set(CommonProtocol.serviceInfo.name, { def: CommonProtocol.serviceInfo, fn: () => this.info() })
    table.set(CommonProtocol.metricsText.name, { def: CommonProtocol.metricsText, fn: () => this.metrics.text() })
    const server = this.rpcInstance.createServer({
      firewall: (remotePublicKey: Buffer) => {
        const key = remotePublicKey.toString('hex')
        return (this.privateOnly && !this.isMeshMember(key)) || this.strikes.banned(key) || this.connLimit.refuse(key)
      }
    })
    server.on('connection', (channel: ProtomuxRPC) => {
      if (!this.connLimit.admit(channel)) return
      // members run this code and keep alive every second; a stranger's client may not
      const remote = channel.stream?.remotePublicKey?.toString('hex') ?? ''
      dropWhenSilent(channel.stream, this.isMeshMember(remote) ? LINK_TIMEOUT_MS : STRANGER_LINK_TIMEOUT_MS)
      const observe = (m: string, outcome: string, seconds: number) => {
        this.metrics.observeRequest(m, outcome, seconds)
        // the refusal is answered first: the connection closes once the reply has gone out
        if (BAD_CREDENTIALS.has(outcome) && this.strikes.strike(peer.remoteKey)) setTimeout(() => this.cutOff(peer.remoteKey), CUT_OFF_AFTER_MS).unref()
      }
      const peer: Peer = new Peer(channel, { handlers: table, authorize: (k, d, raw, p) => this.authorize(k, d, raw, p), log: this.log, observe, frames: this.frames })
      this.peers.add(peer)
      this.log.debug({ peer: peer.remoteKey.slice(0, 16) }, 'peer connected')
      channel.on('open', () => this.log.debug({ peer: peer.remoteKey.slice(0, 16) }, 'peer channel open'))
      channel.on('close', () => { this.peers.delete(peer); this.log.debug({ peer: peer.remoteKey.slice(0, 16) }, 'peer closed') })
      this.onPeer(peer)
    })
    await server.listen(this.keyPair)
    this.rpcServer = server
    this.log.debug(`${this.name} accepting connections`)
    await this.onOpen()
    this.log.info({ publicKey: this.publicKey }, `${this.name} listening`)
  }

  /**
   * Close every connection a peer holds, the encrypted stream under each channel included, so a new
   * channel needs a new handshake, which is refused while its ban lasts.
   */
  private cutOff (remoteKey: string): void {
    for (const p of this.peers) {
      if (p.remoteKey !== remoteKey) continue
      p.destroy()
      p.channel.stream?.destroy()
    }
  }

  info () {
    return {
      service: this.name,
      publicKey: this.publicKey,
      version: VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      pid: process.pid
    }
  }

  /**
   * A long-lived client to another mesh member, closed with this service. Handlers served on it see
   * the dialled peer in the role `dialled` (the service we chose to dial), besides its configured one.
   */
  connectTo (publicKey: string | Buffer, opts: MeshClientOptions & { dialled?: PeerRole }): MeshClient {
    const key = typeof publicKey === 'string' ? Buffer.from(publicKey, 'hex') : publicKey
    // handlers served on a connection we dialled have no server-side observe hook: they count themselves
    const served = opts.handlers
      ? { handlers: this.metrics.instrument(opts.handlers, { count: true }), authorize: (k: string, d: MethodDef<any, any, any>, raw: unknown, p: Peer) => this.authorize(k, d, raw, p, opts.dialled) }
      : {}
    const client = new MeshClient(this.rpc, key, { log: this.log, ...opts, ...served })
    this.clients.add(client)
    return client
  }

  close (): Promise<void> {
    if (!this.closing) this.closing = this.doClose()
    return this.closing
  }

  private async doClose (): Promise<void> {
    if (this.opening) await this.opening.catch(() => {}) // a failed open was reported to whoever awaited open(); close releases what it got to
    try { await this.onClose() } catch (err) { this.log.error({ err }, 'close failed') }
    for (const client of this.clients) await client.close()
    this.clients.clear()
    if (this.rpcServer) await this.rpcServer.close().catch((err) => this.log.debug({ err: (err as Error).message }, 'rpc server close failed; closing the rest anyway'))
    if (this.rpcInstance) await this.rpcInstance.destroy({ force: true }).catch((err) => this.log.debug({ err: (err as Error).message }, 'rpc destroy failed; closing the rest anyway'))
    if (this.dht) await this.dht.destroy().catch((err) => this.log.debug({ err: (err as Error).message }, 'dht destroy failed; the service is closed all the same'))
    this.log.info(`${this.name} closed`)
  }
}

export type { Bootstrap }
