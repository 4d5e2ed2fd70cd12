import RPC, { type Server } from '@hyperswarm/rpc'
import type DHT from 'hyperdht'
import type { KeyPair } from 'hyperdht'
import type ProtomuxRPC from 'protomux-rpc'
import { createDHT, type Bootstrap } from './dht.ts'
import { MeshClient, type MeshClientOptions } from './client.ts'
import { wireJson } from './wire.ts'
import { Peer, type HandlerTable } from './peer.ts'
import type { MethodDef } from './method.ts'
import type { Logger } from '../log.ts'
import { ServiceMetrics } from '../metrics.ts'
import { CommonProtocol } from '../protocol/common.ts'

// The base every hyperinfer process extends: a stable key pair, one DHT node, an RPC server whose
// internal methods only mesh members may call, long-lived clients to other services, and an explicit
// open/close lifecycle (close is idempotent and releases everything in reverse order).

export interface MeshServiceOptions {
  name: string
  keyPair: KeyPair
  log: Logger
  bootstrap?: Bootstrap
  host?: string
  /** hex public keys of mesh members allowed to call internal methods */
  allow?: string[]
  /** reject connections from anyone not on the allow-list (services with no public methods) */
  privateOnly?: boolean
}

export const VERSION = '0.1.0'

export abstract class MeshService {
  readonly name: string
  readonly keyPair: KeyPair
  readonly log: Logger
  protected readonly allow: Set<string>
  private readonly privateOnly: boolean
  private readonly bootstrap?: Bootstrap
  private readonly host?: string
  private dht: DHT | null = null
  private rpcInstance: RPC | null = null
  private rpcServer: Server | null = null
  private readonly clients = new Set<MeshClient>()
  readonly peers = new Set<Peer>()
  readonly metrics: ServiceMetrics
  readonly startedAt = Date.now()
  private opening: Promise<void> | null = null
  private closing: Promise<void> | null = null

  constructor (opts: MeshServiceOptions) {
    this.name = opts.name
    this.keyPair = opts.keyPair
    this.log = opts.log
    this.allow = new Set((opts.allow ?? []).map((k) => k.toLowerCase()))
    this.privateOnly = opts.privateOnly ?? false
    this.bootstrap = opts.bootstrap
    this.host = opts.host
    this.metrics = new ServiceMetrics(opts.name)
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
    return this.allow.has(remoteKey.toLowerCase())
  }

  protected authorize (remoteKey: string, _def: MethodDef<any, any, any>): boolean {
    return this.isMeshMember(remoteKey)
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
    const observe = (m: string, outcome: string, seconds: number) => this.metrics.observeRequest(m, outcome, seconds)
    const server = this.rpcInstance.createServer({
      firewall: (remotePublicKey: Buffer) => this.privateOnly && !this.isMeshMember(remotePublicKey.toString('hex'))
    })
    server.on('connection', (channel: ProtomuxRPC) => {
      const peer = new Peer(channel, { handlers: table, authorize: (k, d) => this.authorize(k, d), log: this.log, observe })
      this.peers.add(peer)
      this.log.debug({ peer: peer.remoteKey.slice(0, 16) }, 'peer connected')
      channel.on('open', () => this.log.debug({ peer: peer.remoteKey.slice(0, 16) }, 'peer channel open'))
      channel.on('close', () => { this.peers.delete(peer); this.log.debug({ peer: peer.remoteKey.slice(0, 16) }, 'peer closed') })
      this.onPeer(peer)
    })
    await server.listen(this.keyPair)
    this.rpcServer = server
    await this.onOpen()
    this.log.info({ publicKey: this.publicKey }, `${this.name} listening`)
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

  /** A long-lived client to another mesh member, closed with this service. */
  connectTo (publicKey: string | Buffer, opts: MeshClientOptions): MeshClient {
    const key = typeof publicKey === 'string' ? Buffer.from(publicKey, 'hex') : publicKey
    // handlers served on a connection we dialled have no server-side observe hook: they count themselves
    const served = opts.handlers ? { handlers: this.metrics.instrument(opts.handlers, { count: true }) } : {}
    const client = new MeshClient(this.rpc, key, { log: this.log, ...opts, ...served })
    this.clients.add(client)
    return client
  }

  close (): Promise<void> {
    if (!this.closing) this.closing = this.doClose()
    return this.closing
  }

  private async doClose (): Promise<void> {
    if (this.opening) await this.opening.catch(() => {})
    try { await this.onClose() } catch (err) { this.log.error({ err }, 'close failed') }
    for (const client of this.clients) await client.close()
    this.clients.clear()
    if (this.rpcServer) await this.rpcServer.close().catch(() => {})
    if (this.rpcInstance) await this.rpcInstance.destroy({ force: true }).catch(() => {})
    if (this.dht) await this.dht.destroy().catch(() => {})
    this.log.info(`${this.name} closed`)
  }
}

export type { Bootstrap }
