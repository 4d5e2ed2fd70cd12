import crypto from 'node:crypto'
import type pg from 'pg'
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose'
import { MeshError } from '../../shared/errors.ts'

// Session tokens are HS256 JWTs (jose) signed with the auth service's secret; only auth verifies them.
// A token must carry a subject, an id (logout revokes by it), an issue time (a demotion refuses what
// was issued before it) and an expiry: one without them is refused, whoever signed it.

export interface SessionClaims { userId: string, username: string, role: string }
/** what verify() adds: the token's id, when it was issued (ms) and when it expires */
export interface VerifiedSession extends SessionClaims { jti: string, issuedAtMs: number, expiresAt: Date }

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export class SessionTokens {
  private readonly key: Uint8Array
  private readonly ttlSeconds: number

  constructor (secret: Buffer, ttlSeconds = 24 * 3600) {
    if (secret.length < 32) throw new Error('JWT secret must be at least 32 bytes')
    this.key = new Uint8Array(secret)
    this.ttlSeconds = ttlSeconds
  }

  async issue (claims: SessionClaims): Promise<{ token: string, expiresAt: string }> {
    const now = Date.now()
    const exp = Math.floor(now / 1000) + this.ttlSeconds
    // iat has whole seconds; iat_ms says within the second, so a demotion in the very second of a
    // login still ends the sessions issued before it and keeps the ones issued after
    const token = await new SignJWT({ username: claims.username, role: claims.role, iat_ms: now })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(claims.userId)
      .setIssuer('hyperinfer-auth')
      .setIssuedAt(Math.floor(now / 1000))
      .setJti(crypto.randomUUID())
      .setExpirationTime(exp)
      .sign(this.key)
    return { token, expiresAt: new Date(exp * 1000).toISOString() }
  }

  async verify (token: string): Promise<VerifiedSession> {
    try {
      const { payload } = await jwtVerify(token, this.key, { issuer: 'hyperinfer-auth', algorithms: ['HS256'], requiredClaims: ['sub', 'jti', 'iat', 'exp'] })
      const { sub, jti, iat, exp } = payload
      if (typeof sub !== 'string' || !UUID.test(sub) || typeof jti !== 'string' || !UUID.test(jti) || iat === undefined || exp === undefined) throw MeshError.UNAUTHENTICATED()
      // iat_ms is trusted only within the second iat names (the signature covers both)
      const ms = payload.iat_ms
      const issuedAtMs = typeof ms === 'number' && Number.isInteger(ms) && ms >= iat * 1000 && ms < (iat + 1) * 1000 ? ms : iat * 1000
      return { userId: sub, username: String(payload.username ?? ''), role: String(payload.role ?? 'user'), jti, issuedAtMs, expiresAt: new Date(exp * 1000) }
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw MeshError.UNAUTHENTICATED('session expired, log in again')
      throw MeshError.UNAUTHENTICATED()
    }
  }
}

/** Why a session with a good signature is over all the same (logged out, or issued before its account's cut-off), or null. */
export async function sessionEnded (db: pg.Pool, s: VerifiedSession): Promise<string | null> {
  const { rows } = await db.query<{ revoked: boolean, cutoff: Date | null }>(
    `SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE jti = $1) AS revoked,
            (SELECT sessions_valid_after FROM users WHERE id = $2) AS cutoff`, [s.jti, s.userId])
  if (rows[0]?.revoked) return 'this session was logged out; log in again'
  // a token without iat_ms counts from the start of its second: one from the cut-off's second is ended
  if (rows[0]?.cutoff && s.issuedAtMs < rows[0].cutoff.getTime()) return 'this session ended when the account\'s role changed; log in again'
  return null
}
