import type pg from 'pg'
import { transaction } from '../../shared/db.ts'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import { handlers, type HandlerTable } from '../../shared/mesh/peer.ts'
import { AuthEvents, AuthProtocol, type ApiKeyInfo, type Credits, type KeyIdentity, type LedgerEntry, type PublicUser } from '../../shared/protocol/auth.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import type { Credential } from '../../shared/mesh/roles.ts'
import { MeshError } from '../../shared/errors.ts'
import { newApiKey } from '../../shared/apikey.ts'
import { Passwords } from './passwords.ts'
import { SessionTokens, sessionEnded, type VerifiedSession } from './sessions.ts'
import { AuthThrottle, relayedClient as client } from './throttle.ts'
import { checkCredentials, type UserRow } from './credentials.ts'
import { roleForNewAccount } from './roles.ts'
import { AdminSetupCode } from './bootstrap.ts'
import { KeySafety } from './key-safety.ts'
import { SessionKeys } from './session-keys.ts'

const TIER_RANK: Record<string, number> = { default: 0, premium: 1 }
const MAX_ACTIVE_KEYS = 100

export interface AuthServiceOptions extends Omit<MeshServiceOptions, 'name' | 'privateOnly'> {
  pool: pg.Pool
  jwtSecret: Buffer
  sessionTtlSeconds?: number
  /** usernames (case-insensitive) that are admins: at registration here, at start in syncAdminRoles */
  adminUsers?: string[]
  /** the first admin's one-time code (none: no registration can claim the role that way) */
  setupCode?: AdminSetupCode
  /** credits every new account starts with, USD */
  signupCreditUsd?: number
}

interface KeyRow {
  id: string, name: string, prefix: string, scopes: string[], tier: string,
  created_at: Date, expires_at: Date | null, revoked_at: Date | null, last_used_at: Date | null,
  budget_nusd: string | null, models: string[] | null,
  safety_policy: string | null, suspended_at: Date | null, anomaly_at: Date | null, anomaly_score: number | null
}
const KEY_COLUMNS = 'id, name, prefix, scopes, tier, created_at, expires_at, revoked_at, last_used_at, budget_nusd, models, safety_policy, suspended_at, anomaly_at, anomaly_score'
const NUSD = 1e9
const usd = (nusd: number | string): number => Number(nusd) / NUSD

export class AuthService extends MeshService {
  private readonly pool: pg.Pool
  private readonly sessions: SessionTokens
  private readonly usedKeys = new Set<string>()
  private flushTimer: NodeJS.Timeout | null = null
  private readonly admins: Set<string>
  private readonly signupCreditNusd: number
  private readonly passwords = new Passwords()
  private readonly throttle = new AuthThrottle()
  private readonly setupCode: AdminSetupCode
  private readonly keySafety = new KeySafety({
    pool: () => this.pool, session: (t) => this.session(t), whoami: (t) => this.whoami(t), dropCached: (id) => this.broadcastRevocation(id), keyInfo: (r) => keyInfo(r as KeyRow)
  })

  private readonly sessionKeys = new SessionKeys({ pool: () => this.pool, session: (t) => this.session(t), dropCached: (id) => this.broadcastRevocation(id) })

  constructor (opts: AuthServiceOptions) {
    super({ ...opts, name: 'auth', privateOnly: true })
    this.pool = opts.pool
    this.admins = new Set((opts.adminUsers ?? []).map((u) => u.toLowerCase()))
    this.signupCreditNusd = Math.round((opts.signupCreditUsd ?? 0) * NUSD)
    this.sessions = new SessionTokens(opts.jwtSecret, opts.sessionTtlSeconds)
    this.setupCode = opts.setupCode ?? AdminSetupCode.none()
  }

  protected handlers (): HandlerTable {
    const table = handlers()
      .on(AuthProtocol.registerUser, (req, ctx) => this.throttle.register(client(ctx.remoteKey, req.source), () => this.registerUser(req)))
      .on(AuthProtocol.loginUser, (req, ctx) => this.loginUser(req, client(ctx.remoteKey, req.source)))
      .on(AuthProtocol.generateApiKey, (req) => this.generateApiKey(req))
      .on(AuthProtocol.listApiKeys, (req) => this.listApiKeys(req))
      .on(AuthProtocol.revokeApiKey, (req) => this.revokeApiKey(req))
      .on(AuthProtocol.validateApiKey, (req) => this.validateApiKey(req.keyHash))
      .on(AuthProtocol.whoami, (req) => this.whoami(req.token))
      .on(AuthProtocol.logout, (req) => this.logout(req.token))
      .on(AuthProtocol.grantCredits, (req) => this.grantCredits(req))
    this.keySafety.mount(table)
    this.sessionKeys.mount(table)
    return table.table
  }

  /** Sessions are checked before a request is parsed, and again by the method that uses them. */
  protected async verifyCredential (needs: Credential, token: string): Promise<void> {
    if (needs === 'apiKey') throw MeshError.FORBIDDEN('auth takes no API key as a credential')
    const { user } = await this.whoami(token)
    if (needs === 'admin' && user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can do this')
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
    const grant = roleForNewAccount(this.admins, this.setupCode, req)
    let passwordHash: string
    try { passwordHash = await this.passwords.hash(req.password) } catch (err) { grant.settle(false); throw err }
    let user: UserRow
    try {
      user = await transaction(this.pool, async (client) => {
        const { rows } = await client.query<UserRow>(
          `INSERT INTO users (username, email, password_hash, role, role_source) VALUES ($1, $2, $3, $4, $5)
           RETURNING id, username, email, tier, role, created_at`,
          [req.username, req.email.toLowerCase(), passwordHash, grant.role, grant.source])
        const user = rows[0]!
        await client.query('INSERT INTO credit_accounts (user_id, balance_nusd) VALUES ($1, $2)', [user.id, this.signupCreditNusd])
        if (this.signupCreditNusd > 0) {
          await client.query(`INSERT INTO credit_ledger (user_id, kind, amount_nusd, note) VALUES ($1, 'grant', $2, 'signup credit')`, [user.id, this.signupCreditNusd])
        }
        await client.query('INSERT INTO audit_log (user_id, action, target) VALUES ($1, $2, $3)', [user.id, grant.source === 'bootstrap' ? 'user.register_admin' : 'user.register', user.id])
        return user
      })
    } catch (err) {
      grant.settle(false)
      // which of username and email is taken stays unsaid: registering must not probe for accounts
      if ((err as { code?: string }).code === '23505') throw MeshError.CONFLICT('could not register with these details')
      throw err
    }
    grant.settle(true)
    this.metrics.counter('ai_platform_registrations_total').inc()
    this.log.info({ userId: user.id }, 'user registered')
    return { user: publicUser(user) }
  }

  async loginUser (req: RequestOf<typeof AuthProtocol.loginUser>, source: string | null = null) {
    const row = await this.throttle.login(req.email, source, () => checkCredentials(this.pool, this.passwords, req, this.log))
    if (!row) throw MeshError.INVALID_CREDENTIALS()
    const session = await this.sessions.issue({ userId: row.id, username: row.username, role: row.role })
    this.metrics.userActive(row.id)
    await this.audit(row.id, 'user.login', row.id)
    return { ...session, user: publicUser(row) }
  }

  private async session (token: string): Promise<VerifiedSession> {
    const s = await this.sessions.verify(token)
    const ended = await sessionEnded(this.pool, s)
    if (ended) throw MeshError.UNAUTHENTICATED(ended)
    return s
  }

  /** Log a session out everywhere: the token is refused from now until it would have expired. */
  async logout (token: string): Promise<{ loggedOut: true }> {
    const s = await this.sessions.verify(token)
    await this.pool.query('INSERT INTO revoked_sessions (jti, user_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING', [s.jti, s.userId, s.expiresAt])
    await this.sessionKeys.revokeSession(s.jti)
    await this.audit(s.userId, 'user.logout', s.userId)
    return { loggedOut: true }
  }

  async generateApiKey (req: RequestOf<typeof AuthProtocol.generateApiKey>): Promise<ApiKeyInfo & { key: string }> {
    const claims = await this.session(req.token)
    const { rows: users } = await this.pool.query<{ tier: string, is_active: boolean, active_keys: number }>(
      `SELECT u.tier, u.is_active,
              (SELECT count(*)::int FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL AND k.session_jti IS NULL
                 AND (k.expires_at IS NULL OR k.expires_at > now())) AS active_keys
       FROM users u WHERE u.id = $1`, [claims.userId])
    const user = users[0]
    if (!user || !user.is_active) throw MeshError.UNAUTHENTICATED('account no longer exists or is disabled')
    const tier = req.tier ?? user.tier
    if ((TIER_RANK[tier] ?? 0) > (TIER_RANK[user.tier] ?? 0)) throw MeshError.FORBIDDEN(`your account cannot create '${tier}' keys`)
    if (user.active_keys >= MAX_ACTIVE_KEYS) throw MeshError.FORBIDDEN(`at most ${MAX_ACTIVE_KEYS} active keys per account; revoke one first`)
    const { key, hash, prefix } = newApiKey()
    const { rows } = await this.pool.query<KeyRow>(
      `INSERT INTO api_keys (user_id, key_hash, prefix, name, scopes, tier, expires_at, budget_nusd, models, safety_policy)
       VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::int IS NULL THEN NULL ELSE now() + make_interval(days => $7::int) END, $8, $9, $10)
       RETURNING ${KEY_COLUMNS}`,
      [claims.userId, hash, prefix, req.name, req.scopes ?? ['inference'], tier, req.expiresInDays ?? null,
        req.budgetUsd === undefined ? null : Math.round(req.budgetUsd * NUSD), req.models ? [...new Set(req.models)] : null, req.safety ?? null])
    const info = keyInfo(rows[0]!)
    await this.audit(claims.userId, 'apikey.create', info.id)
    this.metrics.counter('ai_platform_api_keys_created_total').inc()
    return { ...info, key }
  }

  async listApiKeys (req: RequestOf<typeof AuthProtocol.listApiKeys>): Promise<{ keys: ApiKeyInfo[] }> {
    const claims = await this.session(req.token)
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM api_keys WHERE user_id = $1
         AND (session_jti IS NULL OR (revoked_at IS NULL AND expires_at > now())) ORDER BY created_at DESC`, [claims.userId])
    return { keys: rows.map(keyInfo) }
  }

  async revokeApiKey (req: RequestOf<typeof AuthProtocol.revokeApiKey>): Promise<ApiKeyInfo> {
    const claims = await this.session(req.token)
    // another user's key id answers exactly like a missing one: no probing for ids
    const { rows } = await this.pool.query<KeyRow>(
      `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), is_active = false
       WHERE id = $1 AND user_id = $2
       RETURNING ${KEY_COLUMNS}`,
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
      try { peer.channel.event(AuthEvents.keyRevoked.name, { keyId }) } catch (err) { this.log.debug({ err: (err as Error).message }, 'revocation not pushed to a closing peer; a gateway drops its whole key cache when its auth connection drops') }
    }
  }

  async validateApiKey (keyHash: string): Promise<KeyIdentity> {
    const { rows } = await this.pool.query<{ id: string, user_id: string, tier: string, user_tier: string, scopes: string[], expires_at: Date | null, budget_nusd: string | null, models: string[] | null, safety_policy: string | null, account_safety: string | null, suspended_at: Date | null }>(
      `SELECT k.id, k.user_id, k.tier, u.tier AS user_tier, k.scopes, k.expires_at, k.budget_nusd, k.models, k.safety_policy, u.safety_policy AS account_safety, k.suspended_at
       FROM api_keys k JOIN users u ON u.id = k.user_id
       WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AND u.is_active`,
      [keyHash])
    const row = rows[0]
    if (!row) throw MeshError.INVALID_API_KEY()
    this.usedKeys.add(row.id)
    return {
      keyId: row.id, userId: row.user_id, tier: row.tier, userTier: row.user_tier, scopes: row.scopes, expiresAt: row.expires_at?.toISOString() ?? null,
      budgetNusd: row.budget_nusd === null ? null : Number(row.budget_nusd), models: row.models,
      safety: policyOf(row.safety_policy), accountSafety: policyOf(row.account_safety), suspendedAt: row.suspended_at?.toISOString() ?? null
    }
  }

  async whoami (token: string): Promise<{ user: PublicUser }> {
    const claims = await this.session(token)
    const { rows } = await this.pool.query<UserRow & { is_active: boolean }>(
      'SELECT id, username, email, tier, role, created_at, is_active FROM users WHERE id = $1', [claims.userId])
    if (!rows[0] || !rows[0].is_active) throw MeshError.UNAUTHENTICATED('account no longer exists or is disabled')
    return { user: publicUser(rows[0]) }
  }

  /** An admin adds credits (a grant or a refund) to a user's account: a ledger row and the balance, in one transaction. */
  async grantCredits (req: RequestOf<typeof AuthProtocol.grantCredits>): Promise<Credits & { username: string, entry: LedgerEntry }> {
    const admin = await this.whoami(req.token)
    if (admin.user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can grant credits')
    const amount = Math.round(req.amountUsd * NUSD)
    return transaction(this.pool, async (client) => {
      const { rows: users } = await client.query<{ id: string, username: string }>('SELECT id, username FROM users WHERE lower(username) = lower($1)', [req.username])
      const user = users[0]
      if (!user) throw MeshError.NOT_FOUND(`no user named '${req.username}'`)
      const { rows: [account] } = await client.query<{ balance_nusd: string, held_nusd: string }>(
        `INSERT INTO credit_accounts (user_id, balance_nusd) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET balance_nusd = credit_accounts.balance_nusd + EXCLUDED.balance_nusd, updated_at = now()
         RETURNING balance_nusd, held_nusd`, [user.id, amount])
      const { rows } = await client.query<LedgerRow>(
        `INSERT INTO credit_ledger (user_id, kind, amount_nusd, actor, note) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, kind, amount_nusd, request_id, note, created_at`, [user.id, req.kind ?? 'grant', amount, admin.user.id, req.note ?? null])
      await client.query('INSERT INTO audit_log (user_id, action, target, details) VALUES ($1, $2, $3, $4)',
        [admin.user.id, 'credits.' + (req.kind ?? 'grant'), user.id, { amountUsd: req.amountUsd }])
      const balance = Number(account!.balance_nusd)
      const held = Number(account!.held_nusd)
      return { balanceUsd: usd(balance), reservedUsd: usd(held), availableUsd: usd(balance - held), username: user.username, entry: ledgerEntry(rows[0]!) }
    })
  }

  private async flushLastUsed (): Promise<void> {
    // logged-out sessions past their expiry are refused by the signature check alone
    await this.pool.query('DELETE FROM revoked_sessions WHERE expires_at < now()').catch((err) => this.log.debug({ err: (err as Error).message }, 'expired revoked sessions not pruned; the next flush tries again'))
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

interface LedgerRow { id: string, kind: 'grant' | 'debit' | 'refund', amount_nusd: string, request_id: string | null, note: string | null, created_at: Date }

function ledgerEntry (r: LedgerRow): LedgerEntry {
  return { id: Number(r.id), kind: r.kind, amountUsd: usd(r.amount_nusd), requestId: r.request_id, note: r.note, createdAt: r.created_at.toISOString() }
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
    status: row.revoked_at ? 'revoked' : expired ? 'expired' : 'active',
    budgetUsd: row.budget_nusd === null ? null : usd(row.budget_nusd),
    models: row.models,
    safety: policyOf(row.safety_policy),
    suspendedAt: row.suspended_at?.toISOString() ?? null,
    anomalyAt: row.anomaly_at?.toISOString() ?? null,
    anomalyScore: row.anomaly_score
  }
}

function policyOf (v: string | null): ApiKeyInfo['safety'] {
  return v === 'off' || v === 'flag' || v === 'redact' || v === 'block' ? v : null
}
