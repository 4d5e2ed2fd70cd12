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
  }
}

declare module 'hyperdht/testnet' {
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
  }
  export default crypto
}

declare module 'compact-encoding' {
  const c: {
    json: unknown
    raw: unknown
    encode (enc: unknown, value: unknown): Buffer
    decode (enc: unknown, buf: Buffer): any
  }
  export default c
}
