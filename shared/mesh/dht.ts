import DHT, { type KeyPair } from 'hyperdht'

export type Bootstrap = Array<{ host: string, port: number }>

function isLoopback (host: string): boolean {
  return host === 'localhost' || host.startsWith('127.') || host === '::1'
}

/**
 * A DHT node for one process. With a loopback bootstrap (a local `npm start` or a test testnet) the
 * node binds and announces 127.0.0.1; otherwise it uses the given host or hyperdht's default.
 *
 * `clientOnly` (the CLI, SDK, benchmarks): on loopback, say we are not firewalled. A fresh node calls
 * itself firewalled until its NAT check ends, and the server's holepunch path then drops about half
 * of such loopback connections. Servers must not say so: a server that does is not found again
 * after it restarts under the same key (measured), so services rely on MeshClient's retry instead.
 */
export function createDHT (opts: { keyPair: KeyPair, bootstrap?: Bootstrap, host?: string, clientOnly?: boolean }): DHT {
  const loopback = !!opts.bootstrap && opts.bootstrap.length > 0 && opts.bootstrap.every((b) => isLoopback(b.host))
  const host = opts.host ?? (loopback ? '127.0.0.1' : undefined)
  return new DHT({ keyPair: opts.keyPair, bootstrap: opts.bootstrap, ...(host ? { host } : {}), ...(loopback && opts.clientOnly ? { firewalled: false } : {}) })
}
