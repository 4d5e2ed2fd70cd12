// Narrow type shims for the Holepunch packages, typed only as far as hyperinfer uses them.

declare module 'hyperdht' {
  import { EventEmitter } from 'node:events'
  export interface KeyPair { publicKey: Buffer, secretKey: Buffer }
  export interface DHTOptions {
    bootstrap?: Array<string | { host: string, port: number }>
    host?: string
    port?: number
    keyPair?: KeyPair
    ephemeral?: boolean
    firewalled?: boolean
    /** ms without traffic after which a connection sends a keep-alive (default 5000) */
    connectionKeepAlive?: number | false
  }
  export default class DHT extends EventEmitter {
    constructor (opts?: DHTOptions)
    static keyPair (seed?: Buffer): KeyPair
    static bootstrapper (port: number, host: string, opts?: DHTOptions): DHT
    readonly destroyed: boolean
    defaultKeyPair: KeyPair
    ready (): Promise<void>
    fullyBootstrapped (): Promise<void>
    address (): { host: string, port: number }
    destroy (opts?: { force?: boolean }): Promise<void>
    /** records expire on the DHT: announce again every few minutes */
    announce (target: Buffer, keyPair: KeyPair): Query<LookupReply>
    unannounce (target: Buffer, keyPair: KeyPair): Promise<void>
    lookup (target: Buffer): Query<LookupReply>
  }
  export interface LookupReply { peers: Array<{ publicKey: Buffer, relayAddresses?: unknown[] }> }
  export interface Query<T> extends AsyncIterable<T> { finished (): Promise<void>, destroy (): void }
}

declare module 'hyperdht/testnet.js' {
  import DHT, { DHTOptions } from 'hyperdht'
  export interface Testnet {
    nodes: DHT[]
    bootstrap: Array<{ host: string, port: number }>
    createNode (opts?: DHTOptions): DHT
    destroy (): Promise<void>
  }
  export default function createTestnet (size?: number, opts?: { host?: string, port?: number, teardown?: (fn: () => Promise<void>, opts?: unknown) => void }): Promise<Testnet>
}

declare module 'protomux-rpc' {
  import { EventEmitter } from 'node:events'
  export interface Encoding { encode (v: unknown): Buffer }
  export interface RequestOptions { timeout?: number, valueEncoding?: unknown, requestEncoding?: unknown, responseEncoding?: unknown }
  export default class ProtomuxRPC extends EventEmitter {
    readonly closed: boolean
    readonly opened: boolean
    readonly stream: { remotePublicKey: Buffer, destroy (err?: Error): void }
    respond (method: string, options: RequestOptions, handler: (value: any) => unknown): this
    respond (method: string, handler: (value: any) => unknown): this
    request (method: string, value: unknown, options?: RequestOptions): Promise<any>
    event (method: string, value: unknown, options?: RequestOptions): void
    cork (): void
    uncork (): void
    end (): Promise<void>
    destroy (err?: Error): void
  }
}

declare module '@hyperswarm/rpc' {
  import { EventEmitter } from 'node:events'
  import DHT, { KeyPair } from 'hyperdht'
  import ProtomuxRPC, { RequestOptions } from 'protomux-rpc'

  export class Client extends EventEmitter {
    readonly closed: boolean
    readonly rpc: ProtomuxRPC | null
    readonly stream: { remotePublicKey: Buffer } | null
    request (method: string, value: unknown, options?: RequestOptions): Promise<any>
    event (method: string, value: unknown, options?: RequestOptions): void
    end (): Promise<void>
    destroy (err?: Error): void
  }

  export class Server extends EventEmitter {
    readonly publicKey: Buffer
    readonly connections: Set<ProtomuxRPC>
    listen (keyPair?: KeyPair): Promise<void>
    close (): Promise<void>
    respond (method: string, options: RequestOptions, handler: (value: any, rpc: ProtomuxRPC) => unknown): this
  }

  export default class RPC {
    constructor (opts: { keyPair?: KeyPair, dht?: DHT, valueEncoding?: unknown, bootstrap?: unknown })
    readonly dht: DHT
    createServer (opts?: { firewall?: (remotePublicKey: Buffer, payload: unknown) => boolean }): Server
    connect (publicKey: Buffer, opts?: { keyPair?: KeyPair }): Client
    destroy (opts?: { force?: boolean }): Promise<void>
  }
}

declare module 'hypercore-crypto' {
  const crypto: {
    keyPair (seed?: Buffer): { publicKey: Buffer, secretKey: Buffer }
    randomBytes (n: number): Buffer
    discoveryKey (key: Buffer): Buffer
    hash (data: Buffer | Buffer[]): Buffer
    /** an Ed25519 detached signature (64 bytes) */
    sign (message: Buffer, secretKey: Buffer): Buffer
    verify (message: Buffer, signature: Buffer, publicKey: Buffer): boolean
  }
  export default crypto
}

declare module 'compact-encoding' {
  export interface State { start: number, end: number, buffer: Buffer | null }
  export interface Encoding<T> { preencode (state: State, v: T): void, encode (state: State, v: T): void, decode (state: State): T }
  const c: {
    json: unknown
    raw: unknown
    string: Encoding<string>
    uint: Encoding<number>
    buffer: Encoding<Buffer | null>
    fixed32: Encoding<Buffer>
    fixed64: Encoding<Buffer>
    state (): State
    encode (enc: unknown, value: unknown): Buffer
    decode (enc: unknown, buf: Buffer): any
  }
  export default c
}

// --- hypercore / corestore / hyperbee: as far as shared/registry uses them ---

declare module 'hypercore' {
  import { EventEmitter } from 'node:events'
  export interface HypercoreGetOptions { wait?: boolean, timeout?: number }
  export interface HypercoreDownload { ready (): Promise<void>, done (): Promise<void>, destroy (): void }
  export default class Hypercore extends EventEmitter {
    readonly key: Buffer | null
    readonly discoveryKey: Buffer | null
    readonly length: number
    readonly fork: number
    readonly writable: boolean
    readonly readable: boolean
    readonly opened: boolean
    readonly closed: boolean
    readonly peers: unknown[]
    ready (): Promise<void>
    close (): Promise<void>
    update (opts?: { wait?: boolean, force?: boolean }): Promise<boolean>
    /** `{ start: 0, end: -1 }` keeps downloading every block as it is appended */
    download (range?: { start?: number, end?: number, linear?: boolean }): HypercoreDownload
    has (start: number, end?: number): Promise<boolean>
  }
}

declare module 'corestore' {
  import { EventEmitter } from 'node:events'
  import Hypercore from 'hypercore'
  /** A Hyperswarm/HyperDHT NoiseSecretStream (e.g. ProtomuxRPC's `.stream`), or a stream corestore made. */
  export interface ReplicationStream {
    readonly remotePublicKey?: Buffer | null
    destroy (err?: Error): void
  }
  export default class Corestore extends EventEmitter {
    constructor (storage: string, opts?: { readOnly?: boolean })
    readonly opened: boolean
    readonly closed: boolean
    ready (): Promise<void>
    close (): Promise<void>
    /** `name`: a writable core whose key is derived from the store's primary key; `key`: someone else's core */
    get (opts: { name: string } | { key: Buffer | string, writable?: boolean }): Hypercore
    /** attach replication of every open core to a stream; the stream is not destroyed on store close */
    replicate (stream: ReplicationStream): ReplicationStream
    replicate (isInitiator: boolean): ReplicationStream & NodeJS.ReadWriteStream
  }
}

declare module 'hyperbee' {
  import Hypercore from 'hypercore'
  export interface BeeEntry<V> { seq: number, key: string, value: V }
  export interface BeeHistoryEntry<V> extends BeeEntry<V> { type: 'put' | 'del' }
  export interface BeeRange { gt?: string, gte?: string, lt?: string, lte?: string, limit?: number, reverse?: boolean }
  export interface BeeReadOptions { wait?: boolean, timeout?: number, update?: boolean }
  export interface BeeHistoryOptions extends BeeReadOptions { gt?: number, gte?: number, lt?: number, lte?: number, limit?: number, reverse?: boolean, live?: boolean }
  export default class Hyperbee<V = unknown> {
    constructor (core: Hypercore, opts?: { keyEncoding?: 'utf-8' | 'binary' | 'json', valueEncoding?: 'json' | 'utf-8' | 'binary' })
    readonly core: Hypercore
    readonly version: number
    readonly key: Buffer
    readonly discoveryKey: Buffer
    readonly writable: boolean
    readonly readable: boolean
    ready (): Promise<void>
    close (): Promise<void>
    put (key: string, value: V): Promise<void>
    del (key: string): Promise<void>
    get (key: string, opts?: BeeReadOptions): Promise<BeeEntry<V> | null>
    createReadStream (range?: BeeRange, opts?: BeeReadOptions): AsyncIterable<BeeEntry<V>>
    createHistoryStream (opts?: BeeHistoryOptions): AsyncIterable<BeeHistoryEntry<V>>
  }
}
