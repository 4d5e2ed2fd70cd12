import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { MeshError } from '../../../shared/errors.ts'
import type { MeshClient } from '../../../shared/mesh/client.ts'
import { AuthProtocol } from '../../../shared/protocol/auth.ts'

// Browser sessions. The session JWT that auth issues lives only in an HttpOnly, SameSite=Strict
// cookie: page scripts never see it, and the web service turns the cookie back into the token it
// passes to auth and the gateway. Every state-changing dashboard request must also carry the
// `x-hyperinfer-csrf` header (a cross-site page cannot add a custom header without a CORS preflight,
// which this server never grants) and, when the browser says where it comes from, come from this
// very origin.

export const SESSION_COOKIE = 'hyperinfer_session'
export const CSRF_HEADER = 'x-hyperinfer-csrf'

export interface SessionUser { id: string, username: string, role: string }

/** The raw session token from the request's cookie, or null. */
export function sessionToken (req: FastifyRequest): string | null {
  const header = req.headers.cookie
  if (!header) return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() !== SESSION_COOKIE) continue
    const value = part.slice(eq + 1).trim()
    // a JWT is three base64url parts; anything else is not ours
    return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(value) && value.length <= 4096 ? value : null
  }
  return null
}

function secure (req: FastifyRequest): boolean {
  return req.protocol === 'https'
}

export function setSessionCookie (req: FastifyRequest, reply: FastifyReply, token: string, expiresAt: string): void {
  const maxAge = Math.max(0, Math.floor((Date.parse(expiresAt) - Date.now()) / 1000))
  reply.header('set-cookie', `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure(req) ? '; Secure' : ''}`)
}

export function clearSessionCookie (req: FastifyRequest, reply: FastifyReply): void {
  reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure(req) ? '; Secure' : ''}`)
}

/**
 * Refuse a state-changing request that may come from another site: it must carry the CSRF header,
 * its Origin (when sent) must be this server's, and Sec-Fetch-Site (when sent) must say same-origin.
 */
export function checkCsrf (req: FastifyRequest): void {
  if (req.headers[CSRF_HEADER] !== '1') throw new MeshError('CSRF_REJECTED', `state-changing requests need the ${CSRF_HEADER}: 1 header`)
  const site = req.headers['sec-fetch-site']
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') throw new MeshError('CSRF_REJECTED', 'cross-site request refused')
  const origin = req.headers.origin
  if (origin !== undefined) {
    const own = `${req.protocol}://${req.headers.host ?? ''}`
    if (origin !== own) throw new MeshError('CSRF_REJECTED', 'cross-origin request refused')
  }
}

function digest (token: string): string {
  return crypto.hash('sha256', token, 'hex')
}

/** When a token auth has already verified expires, ms: how long to remember it as logged out. */
function expiryOf (token: string): number {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { exp?: unknown }
    if (typeof payload.exp === 'number') return payload.exp * 1000
  } catch {} // a payload we cannot read: remember the logout for a day, the default session lifetime
  return Date.now() + 24 * 3600_000
}

/**
 * Verifies session tokens with auth (the only holder of the signing secret). Logging out is global:
 * auth records the session as ended, so the JWT is refused everywhere (auth, the gateway's proxies,
 * the CLI). This server also remembers the tokens logged out here until they expire, a fast path
 * that spares auth a round trip for a replayed cookie and still holds if auth could not be told.
 */
export class Sessions {
  private readonly loggedOut = new Map<string, number>()
  private readonly auth: () => MeshClient

  constructor (auth: () => MeshClient) {
    this.auth = auth
  }

  /** The verified user behind the request's cookie; UNAUTHENTICATED when there is none. */
  async user (req: FastifyRequest): Promise<SessionUser & { token: string }> {
    const token = sessionToken(req)
    if (!token) throw MeshError.UNAUTHENTICATED('not logged in')
    if (this.loggedOut.has(digest(token))) throw MeshError.UNAUTHENTICATED('logged out; log in again')
    // auth checks the token's signature, expiry and logout, and reads the user (and role) fresh from the database
    const { user } = await this.auth().call(AuthProtocol.whoami, { token })
    return { id: user.id, username: user.username, role: user.role, token }
  }

  /**
   * End the request's session everywhere. 'everywhere': auth refuses the token from now on; 'here':
   * auth could not be told (it did not answer), so only this server refuses it until it expires;
   * 'none': there was no live session to end.
   */
  async logout (req: FastifyRequest): Promise<'everywhere' | 'here' | 'none'> {
    const token = sessionToken(req)
    if (!token || this.loggedOut.has(digest(token))) return 'none'
    let outcome: 'everywhere' | 'here' = 'everywhere'
    try {
      await this.auth().call(AuthProtocol.logout, { token })
    } catch (err) {
      // a token auth refuses (bad signature, expired, already logged out) is no session at all
      if (err instanceof MeshError && (err.code === 'UNAUTHENTICATED' || err.code === 'BAD_REQUEST')) return 'none'
      outcome = 'here'
    }
    const now = Date.now()
    if (this.loggedOut.size >= 10_000) {
      for (const [k, until] of this.loggedOut) if (until <= now) this.loggedOut.delete(k)
      // still full (only unverified tokens could do this while auth is down): forget the oldest
      if (this.loggedOut.size >= 10_000) this.loggedOut.delete(this.loggedOut.keys().next().value!)
    }
    this.loggedOut.set(digest(token), Math.min(expiryOf(token), now + 30 * 86_400_000))
    return outcome
  }
}
