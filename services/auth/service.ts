import type pg from 'pg'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import { handlers, type HandlerTable } from '../../shared/mesh/peer.ts'
import { AuthEvents, AuthProtocol, type ApiKeyInfo, type KeyIdentity, type PublicUser } from '../../shared/protocol/auth.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import { MeshError } from '../../shared/errors.ts'
import { newApiKey } from '../../shared/apikey.ts'
import { DUMMY_HASH, hashPassword, verifyPassword } from './passwords.ts'
import { SessionTokens, type SessionClaims } from './sessions.ts'

const TIER_RANK: Record<string, number> = { default: 0, premium: 1 }
const MAX_ACTIVE_KEYS = 100

export interface AuthServiceOptions extends Omit<MeshServiceOptions, 'name' | 'privateOnly'> {
  pool: pg.Pool
  jwtSecret: Buffer
  sessionTtlSeconds?: number
}

interface KeyRow {
  id: string, name: string, prefix: string, scopes: string[], tier: string,
  created_at: Date, expires_at: Date | null, revoked_at: Date | null, last_used_at: Date | null
}
interface UserRow { id: string, username: string, email: string, tier: string, role: string, created_at: Date }

export class AuthService extends MeshService {
  private readonly pool: pg.Pool
  private readonly sessions: SessionTokens
  private readonly usedKeys = new Set<string>()
  private flushTimer: NodeJS.Timeout | null = null

  constructor (opts: AuthServiceOptions) {
    super({ ...opts, name: 'auth', privateOnly: true })
    this.pool = opts.pool
    this.sessions = new SessionTokens(opts.jwtSecret, opts.sessionTtlSeconds)
  }

  protected handlers (): HandlerTable {
    return handlers()
      .on(AuthProtocol.registerUser, (req) => this.registerUser(req))
      .on(AuthProtocol.loginUser, (req) => this.loginUser(req))
      .on(AuthProtocol.generateApiKey, (req) => this.generateApiKey(req))
      .on(AuthProtocol.listApiKeys, (req) => this.listApiKeys(req))
      .on(AuthProtocol.revokeApiKey, (req) => this.revokeApiKey(req))
      .on(AuthProtocol.validateApiKey, (req) => this.validateApiKey(req.keyHash))
      .on(AuthProtocol.getUserUsage, (req) => this.getUserUsage(req))
      .table
  }

  protected async onOpen (): Promise<void> {
    // last_used_at is informational: batch it instead of a write per validation
    this.flushTimer = setInterval(() => { void this.flushLastUsed() }, 5000)
    this.flushTimer.unref()
  }

  protected async onClose (): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer)
    await this.flushLastUsed()
  }

  async registerUser (req: RequestOf<typeof AuthProtocol.registerUser>): Promise<{ user: PublicUser }> {
    const passwordHash = await hashPassword(req.password)
    try {
      const { rows } = await this.pool.query<UserRow>(
        `INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3)
         RETURNING id, username, email, tier, role, created_at`,
        [req.username, req.email.toLowerCase(), passwordHash])
      const user = rows[0]!
      await this.audit(user.id, 'user.register', user.id)
      this.log.info({ userId: user.id }, 'user registered')
      return { user: publicUser(user) }
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        const field = String((err as { constraint?: string }).constraint).includes('email') ? 'email' : 'username'
        throw MeshError.CONFLICT(`that ${field} is already registered`, { field })
      }
      throw err
    }
  }

  async loginUser (req: RequestOf<typeof AuthProtocol.loginUser>) {
    const { rows } = await this.pool.query<UserRow & { password_hash: string, is_active: boolean }>(
      'SELECT id, username, email, tier, role, created_at, password_hash, is_active FROM users WHERE lower(email) = lower($1)',
      [req.email])
    const row = rows[0]
    const ok = await verifyPassword(req.password, row?.password_hash ?? DUMMY_HASH)
    if (!row || !ok || !row.is_active) throw MeshError.INVALID_CREDENTIALS()
    const session = await this.sessions.issue({ userId: row.id, username: row.username, role: row.role })
    await this.audit(row.id, 'user.login', row.id)
    return { ...session, user: publicUser(row) }
  }

  private async session (token: string): Promise<SessionClaims> {
    return this.sessions.verify(token)
  }

  async generateApiKey (req: RequestOf<typeof AuthProtocol.generateApiKey>): Promise<ApiKeyInfo & { key: string }> {
    const claims = await this.session(req.token)
    const { rows: users } = await this.pool.query<{ tier: string, is_active: boolean, active_keys: number }>(
      `SELECT u.tier, u.is_active,
              (SELECT count(*)::int FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL) AS active_keys
       FROM users u WHERE u.id = $1`, [claims.userId])
    const user = users[0]
    if (!user || !user.is_active) throw MeshError.UNAUTHENTICATED('account no longer exists or is disabled')
    const tier = req.tier ?? user.tier
    if ((TIER_RANK[tier] ?? 0) > (TIER_RANK[user.tier] ?? 0)) throw MeshError.FORBIDDEN(`your account cannot create '${tier}' keys`)
    if (user.active_keys >= MAX_ACTIVE_KEYS) throw MeshError.FORBIDDEN(`at most ${MAX_ACTIVE_KEYS} active keys per account; revoke one first`)
    const { key, hash, prefix } = newApiKey()
    const { rows } = await this.pool.query<KeyRow>(
      `INSERT INTO api_keys (user_id, key_hash, prefix, name, scopes, tier, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::int IS NULL THEN NULL ELSE now() + make_interval(days => $7::int) END)
       RETURNING id, name, prefix, scopes, tier, created_at, expires_at, revoked_at, last_used_at`,
      [claims.userId, hash, prefix, req.name, req.scopes ?? ['inference', 'models'], tier, req.expiresInDays ?? null])
    const info = keyInfo(rows[0]!)
    await this.audit(claims.userId, 'apikey.create', info.id)
    return { ...info, key }
  }

  async listApiKeys (req: RequestOf<typeof AuthProtocol.listApiKeys>): Promise<{ keys: ApiKeyInfo[] }> {
    const claims = await this.session(req.token)
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT id, name, prefix, scopes, tier, created_at, expires_at, revoked_at, last_used_at
       FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC`, [claims.userId])
    return { keys: rows.map(keyInfo) }
  }

  async revokeApiKey (req: RequestOf<typeof AuthProtocol.revokeApiKey>): Promise<ApiKeyInfo> {
    const claims = await this.session(req.token)
    // another user's key id answers exactly like a missing one: no probing for ids
    const { rows } = await this.pool.query<KeyRow>(
      `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), is_active = false
       WHERE id = $1 AND user_id = $2
       RETURNING id, name, prefix, scopes, tier, created_at, expires_at, revoked_at, last_used_at`,
      [req.id, claims.userId])
    if (rows.length === 0) throw MeshError.NOT_FOUND('no such API key')
    this.broadcastRevocation(req.id)
    await this.audit(claims.userId, 'apikey.revoke', req.id)
    return keyInfo(rows[0]!)
  }

  /** Tell every connected gateway at once; they drop the key from their caches. */
  private broadcastRevocation (keyId: string): void {
    for (const peer of this.peers) {
      if (peer.isClosed) continue
      try { peer.channel.event(AuthEvents.keyRevoked.name, { keyId }) } catch {}
    }
  }

  async validateApiKey (keyHash: string): Promise<KeyIdentity> {
    const { rows } = await this.pool.query<{ id: string, user_id: string, tier: string, scopes: string[], expires_at: Date | null }>(
      `SELECT k.id, k.user_id, k.tier, k.scopes, k.expires_at FROM api_keys k JOIN users u ON u.id = k.user_id
       WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AND u.is_active`,
      [keyHash])
    const row = rows[0]
    if (!row) throw MeshError.INVALID_API_KEY()
    this.usedKeys.add(row.id)
    return { keyId: row.id, userId: row.user_id, tier: row.tier, scopes: row.scopes, expiresAt: row.expires_at?.toISOString() ?? null }
  }

  async getUserUsage (req: RequestOf<typeof AuthProtocol.getUserUsage>) {
    const claims = await this.session(req.token)
    const days = req.days ?? 30
    const { rows } = await this.pool.query<{ date: string, requests: number, tokens_in: string, tokens_out: string, errors: number }>(
      `SELECT to_char(date, 'YYYY-MM-DD') AS date, sum(request_count)::int AS requests, sum(tokens_in)::text AS tokens_in,
              sum(tokens_out)::text AS tokens_out, sum(error_count)::int AS errors
       FROM usage_stats WHERE user_id = $1 AND date > current_date - $2::int
       GROUP BY date ORDER BY date`, [claims.userId, days])
    const daily = rows.map((r) => ({ date: r.date, requests: r.requests, tokensIn: Number(r.tokens_in), tokensOut: Number(r.tokens_out), errors: r.errors }))
    const totals = daily.reduce((a, d) => ({ requests: a.requests + d.requests, tokensIn: a.tokensIn + d.tokensIn, tokensOut: a.tokensOut + d.tokensOut, errors: a.errors + d.errors }),
      { requests: 0, tokensIn: 0, tokensOut: 0, errors: 0 })
    return { userId: claims.userId, daily, totals }
  }

  private async flushLastUsed (): Promise<void> {
    if (this.usedKeys.size === 0) return
    const ids = [...this.usedKeys]
    this.usedKeys.clear()
    await this.pool.query('UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])', [ids]).catch((err) => {
      this.log.warn({ err: (err as Error).message }, 'last_used_at update failed')
    })
  }

  private async audit (userId: string | null, action: string, target: string | null): Promise<void> {
    await this.pool.query('INSERT INTO audit_log (user_id, action, target) VALUES ($1, $2, $3)', [userId, action, target])
  }
}

function publicUser (row: UserRow): PublicUser {
  return { id: row.id, username: row.username, email: row.email, tier: row.tier, role: row.role, createdAt: row.created_at.toISOString() }
}

function keyInfo (row: KeyRow): ApiKeyInfo {
  const expired = row.expires_at !== null && row.expires_at.getTime() <= Date.now()
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    tier: row.tier,
    createdAt: row.created_at.toISOString(),
    expiresAt: row.expires_at?.toISOString() ?? null,
    revokedAt: row.revoked_at?.toISOString() ?? null,
    lastUsedAt: row.last_used_at?.toISOString() ?? null,
    status: row.revoked_at ? 'revoked' : expired ? 'expired' : 'active'
  }
}
