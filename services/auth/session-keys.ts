import type pg from 'pg'
import { transaction } from '../../shared/db.ts'
import { MeshError } from '../../shared/errors.ts'
import { newApiKey } from '../../shared/apikey.ts'
import type { HandlerBuilder } from '../../shared/mesh/peer.ts'
import { AuthProtocol, type SessionApiKey } from '../../shared/protocol/auth.ts'
import type { VerifiedSession } from './sessions.ts'

// API keys for a browser session. The dashboard runs inference (its compare page) on the logged-in
// session, yet every inference goes through an API key, whose limits, budget and usage rows apply.
// So the web service, and only it, asks here for a key bound to the session: named "dashboard",
// scoped to inference, of the account's tier, expiring within an hour (never after the session),
// and revoked when the session logs out (wherever it logs out). The web service keeps the key in
// memory for the session and never sends it to the browser; auth stores only its hash, like any key.

export const SESSION_KEY_NAME = 'dashboard'
export const SESSION_KEY_TTL_MS = 3600_000
/** a session's live keys beyond this many (web replicas each mint their own) are revoked, oldest first */
const MAX_KEYS_PER_SESSION = 3

export interface SessionKeysDeps {
  pool: () => pg.Pool
  session: (token: string) => Promise<VerifiedSession>
  /** tell every gateway to forget a revoked key's cached identity */
  dropCached: (keyId: string) => void
}

export class SessionKeys {
  constructor (private readonly deps: SessionKeysDeps) {}

  mount (table: HandlerBuilder): void {
    table.on(AuthProtocol.sessionApiKey, (req) => this.mint(req.token))
  }

  async mint (token: string): Promise<SessionApiKey> {
    const s = await this.deps.session(token)
    const expiresAt = new Date(Math.min(Date.now() + SESSION_KEY_TTL_MS, s.expiresAt.getTime()))
    const { key, hash, prefix } = newApiKey()
    const { id, revoked } = await transaction(this.deps.pool(), async (client) => {
      const { rows: users } = await client.query<{ tier: string, is_active: boolean }>('SELECT tier, is_active FROM users WHERE id = $1', [s.userId])
      if (!users[0]?.is_active) throw MeshError.UNAUTHENTICATED('account no longer exists or is disabled')
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO api_keys (user_id, key_hash, prefix, name, scopes, tier, expires_at, session_jti)
         VALUES ($1, $2, $3, $4, ARRAY['inference'], $5, $6, $7) RETURNING id`,
        [s.userId, hash, prefix, SESSION_KEY_NAME, users[0].tier, expiresAt, s.jti])
      const old = await client.query<{ id: string }>(
        `UPDATE api_keys SET revoked_at = now(), is_active = false
         WHERE id IN (SELECT id FROM api_keys WHERE session_jti = $1 AND revoked_at IS NULL ORDER BY created_at DESC OFFSET $2)
         RETURNING id`, [s.jti, MAX_KEYS_PER_SESSION])
      await client.query(`INSERT INTO audit_log (user_id, action, target) VALUES ($1, 'apikey.session', $2)`, [s.userId, rows[0]!.id])
      return { id: rows[0]!.id, revoked: old.rows.map((r) => r.id) }
    })
    for (const r of revoked) this.deps.dropCached(r)
    return { id, key, expiresAt: expiresAt.toISOString() }
  }

  /** A session logged out: its keys are revoked, and every gateway forgets them at once. */
  async revokeSession (jti: string): Promise<void> {
    const { rows } = await this.deps.pool().query<{ id: string }>(
      'UPDATE api_keys SET revoked_at = now(), is_active = false WHERE session_jti = $1 AND revoked_at IS NULL RETURNING id', [jti])
    for (const r of rows) this.deps.dropCached(r.id)
  }
}
