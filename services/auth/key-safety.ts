import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import type { HandlerBuilder } from '../../shared/mesh/peer.ts'
import type { ApiKeyInfo, PublicUser } from '../../shared/protocol/auth.ts'
import { AuthSafetyProtocol, type AccountSafety } from '../../shared/protocol/safety.ts'
import type { SessionClaims } from './sessions.ts'

// What auth keeps for the safety layer: each key's and each account's policy, and a key's
// suspension pending review. Every change tells the gateways to drop the key from their caches, so
// the next request is checked under the new policy (or refused while suspended) at once.

export interface KeySafetyDeps {
  pool: () => pg.Pool
  session: (token: string) => Promise<SessionClaims>
  whoami: (token: string) => Promise<{ user: PublicUser }>
  /** tell every gateway to forget the key's cached identity */
  dropCached: (keyId: string) => void
  keyInfo: (row: unknown) => ApiKeyInfo
}

const KEY_COLUMNS = 'id, name, prefix, scopes, tier, created_at, expires_at, revoked_at, last_used_at, budget_nusd, models, safety_policy, suspended_at, anomaly_at, anomaly_score'

export class KeySafety {
  private readonly deps: KeySafetyDeps

  constructor (deps: KeySafetyDeps) {
    this.deps = deps
  }

  mount (table: HandlerBuilder): void {
    table
      .on(AuthSafetyProtocol.setApiKeySafety, (req) => this.setKeySafety(req))
      .on(AuthSafetyProtocol.accountSafetyPolicy, (req) => this.accountSafety(req))
      .on(AuthSafetyProtocol.resumeApiKey, (req) => this.resume(req))
      .on(AuthSafetyProtocol.reportKeyAnomaly, (req) => this.reportAnomaly(req))
  }

  async setKeySafety (req: RequestOf<typeof AuthSafetyProtocol.setApiKeySafety>): Promise<ApiKeyInfo> {
    const claims = await this.deps.session(req.token)
    // another user's key id answers exactly like a missing one
    const { rows } = await this.deps.pool().query(
      `UPDATE api_keys SET safety_policy = $3 WHERE id = $1 AND user_id = $2 RETURNING ${KEY_COLUMNS}`, [req.id, claims.userId, req.safety])
    if (rows.length === 0) throw MeshError.NOT_FOUND('no such API key')
    await this.audit(claims.userId, 'apikey.safety', req.id, { safety: req.safety })
    this.deps.dropCached(req.id)
    return this.deps.keyInfo(rows[0])
  }

  async accountSafety (req: RequestOf<typeof AuthSafetyProtocol.accountSafetyPolicy>): Promise<AccountSafety> {
    const claims = await this.deps.session(req.token)
    const pool = this.deps.pool()
    if (req.safety === undefined) {
      const { rows } = await pool.query<{ safety_policy: AccountSafety['safety'] }>('SELECT safety_policy FROM users WHERE id = $1', [claims.userId])
      return { safety: rows[0]?.safety_policy ?? null }
    }
    await pool.query('UPDATE users SET safety_policy = $2 WHERE id = $1', [claims.userId, req.safety])
    await this.audit(claims.userId, 'account.safety', claims.userId, { safety: req.safety })
    const { rows } = await pool.query<{ id: string }>('SELECT id FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL', [claims.userId])
    for (const r of rows) this.deps.dropCached(r.id)
    return { safety: req.safety }
  }

  async resume (req: RequestOf<typeof AuthSafetyProtocol.resumeApiKey>): Promise<ApiKeyInfo> {
    const { user } = await this.deps.whoami(req.token)
    if (user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can resume a suspended key')
    const { rows } = await this.deps.pool().query(`UPDATE api_keys SET suspended_at = NULL WHERE id = $1 RETURNING ${KEY_COLUMNS}`, [req.id])
    if (rows.length === 0) throw MeshError.NOT_FOUND('no such API key')
    await this.audit(user.id, 'apikey.resume', req.id, {})
    this.deps.dropCached(req.id)
    return this.deps.keyInfo(rows[0])
  }

  async reportAnomaly (req: RequestOf<typeof AuthSafetyProtocol.reportKeyAnomaly>): Promise<{ suspended: boolean }> {
    const { rows } = await this.deps.pool().query<{ user_id: string, suspended: boolean }>(
      `UPDATE api_keys SET anomaly_at = now(), anomaly_score = $2, suspended_at = CASE WHEN $3 THEN coalesce(suspended_at, now()) ELSE suspended_at END
       WHERE id = $1 RETURNING user_id, suspended_at IS NOT NULL AS suspended`, [req.keyId, req.score, req.suspend])
    const row = rows[0]
    if (!row) throw MeshError.NOT_FOUND('no such API key')
    await this.audit(row.user_id, req.suspend ? 'apikey.anomaly_suspended' : 'apikey.anomaly', req.keyId, { score: req.score, signals: req.signals })
    if (req.suspend) this.deps.dropCached(req.keyId)
    return { suspended: row.suspended }
  }

  private async audit (userId: string | null, action: string, target: string, details: Record<string, unknown>): Promise<void> {
    await this.deps.pool().query('INSERT INTO audit_log (user_id, action, target, details) VALUES ($1, $2, $3, $4)', [userId, action, target, details])
  }
}
