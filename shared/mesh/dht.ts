import DHT, { type KeyPair } from 'hyperdht'

export type Bootstrap = Array<{ host: string, port: number }>

// A peer that dies without closing its connections (SIGKILL, a cut link) sends no FIN over UDP: the
// other end learns of it only from silence. Every connection made here sends a keep-alive after a
// second without traffic, so a link between two of these processes that is silent for LINK_TIMEOUT_MS
// is dead and is destroyed (MeshClient and MeshService set it). A stranger may run another client
// that keeps alive at hyperdht's default of 5 s, so its link is given longer.
export const KEEPALIVE_MS = 1000
export const LINK_TIMEOUT_MS = 5000
export const STRANGER_LINK_TIMEOUT_MS = 15_000

/** A secret stream's timeout: destroyed when nothing arrives for `ms` (set before or after it opened). */
export function dropWhenSilent (stream: unknown, ms: number): void {
  const s = stream as { setTimeout?: (ms: number) => void } | null | undefined
  if (typeof s?.setTimeout === 'function') s.setTimeout(ms)
}

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
  return new DHT({
    keyPair: opts.keyPair, bootstrap: opts.bootstrap, connectionKeepAlive: KEEPALIVE_MS,
    ...(host ? { host } : {}), ...(loopback && opts.clientOnly ? { firewalled: false } : {})
  })
}
