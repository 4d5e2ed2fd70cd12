// The Host names an HTTP server answers to. A page on another site can point its own DNS name at
// 127.0.0.1 (DNS rebinding) and so reach a server bound to loopback from the victim's browser; the
// browser then still sends that site's name as Host. Answering only to names we know stops it.

const LOOPBACK = ['localhost', '127.0.0.1', '[::1]']
const ANY_ADDRESS = new Set(['0.0.0.0', '[::]', ''])

/**
 * The allowed Host names (without port, lower case): loopback names, the host the server is bound
 * to (unless it is a wildcard address), and `ALLOWED_HOSTS` (comma-separated; `*` allows any).
 */
export function allowedHosts (boundHost: string | undefined, env: NodeJS.ProcessEnv = process.env): Set<string> {
  const out = new Set(LOOPBACK)
  const bound = bracketed((boundHost ?? '').trim().toLowerCase())
  if (!ANY_ADDRESS.has(bound)) out.add(bound)
  for (const h of (env.ALLOWED_HOSTS ?? '').split(',')) {
    const name = bracketed(h.trim().toLowerCase())
    if (name) out.add(name)
  }
  return out
}

/** Whether a request's Host header names one of `allowed` (any port). */
export function hostAllowed (hostHeader: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (allowed.has('*')) return true
  if (!hostHeader) return false
  const host = hostHeader.trim().toLowerCase()
  // "[::1]:3000" keeps its brackets; "example.com:3000" loses its port
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '')
  return allowed.has(name)
}

/** What a refused Host is told. */
export function hostRefusal (hostHeader: string | undefined): string {
  const shown = (hostHeader ?? '').replace(/[^\x21-\x7e]/g, '?').slice(0, 100)
  return `this server does not answer to the host name '${shown}'; add it to ALLOWED_HOSTS to allow it`
}

function bracketed (host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}
