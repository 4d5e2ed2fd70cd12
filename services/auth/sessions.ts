import crypto from 'node:crypto'
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose'
import { MeshError } from '../../shared/errors.ts'

// Session tokens are HS256 JWTs (jose) signed with the auth service's secret; only auth verifies them.

export interface SessionClaims { userId: string, username: string, role: string }
/** what verify() adds: the token's id (absent on tokens issued before ids existed) and expiry */
export interface VerifiedSession extends SessionClaims { jti: string | null, expiresAt: Date }

export class SessionTokens {
  private readonly key: Uint8Array
  private readonly ttlSeconds: number

  constructor (secret: Buffer, ttlSeconds = 24 * 3600) {
    if (secret.length < 32) throw new Error('JWT secret must be at least 32 bytes')
    this.key = new Uint8Array(secret)
    this.ttlSeconds = ttlSeconds
  }

  async issue (claims: SessionClaims): Promise<{ token: string, expiresAt: string }> {
    const exp = Math.floor(Date.now() / 1000) + this.ttlSeconds
    const token = await new SignJWT({ username: claims.username, role: claims.role })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(claims.userId)
      .setIssuer('hyperinfer-auth')
      .setIssuedAt()
      .setJti(crypto.randomUUID())
      .setExpirationTime(exp)
      .sign(this.key)
    return { token, expiresAt: new Date(exp * 1000).toISOString() }
  }

  async verify (token: string): Promise<VerifiedSession> {
    try {
      const { payload } = await jwtVerify(token, this.key, { issuer: 'hyperinfer-auth', algorithms: ['HS256'] })
      if (typeof payload.sub !== 'string') throw MeshError.UNAUTHENTICATED()
      return {
        userId: payload.sub, username: String(payload.username ?? ''), role: String(payload.role ?? 'user'),
        jti: typeof payload.jti === 'string' ? payload.jti : null, expiresAt: new Date((payload.exp ?? 0) * 1000)
      }
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw MeshError.UNAUTHENTICATED('session expired, log in again')
      throw MeshError.UNAUTHENTICATED()
    }
  }
}
