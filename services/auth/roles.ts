import type pg from 'pg'
import { transaction } from '../../shared/db.ts'
import type { Logger } from '../../shared/log.ts'
import type { AdminSetupCode } from './bootstrap.ts'

// Who is an admin. ADMIN_USERS is the operator's list, applied at every auth start: a listed account
// becomes an admin (source 'config'); an admin made by the list and no longer on it becomes a user
// again, its sessions are refused from that moment and the worker join tokens it made are revoked.
// An admin made with the one-time setup code (source 'bootstrap') is not the list's to take away.

export type RoleSource = 'config' | 'bootstrap'

export interface RoleSync { promoted: string[], demoted: string[], joinTokensRevoked: number }

export async function syncAdminRoles (pool: pg.Pool, adminUsers: readonly string[], log?: Logger): Promise<RoleSync> {
  const names = [...new Set(adminUsers.map((u) => u.toLowerCase()))]
  const out = await transaction(pool, async (client) => {
    const promoted = await client.query<{ id: string, username: string }>(
      `UPDATE users SET role = 'admin', role_source = 'config'
       WHERE lower(username) = ANY($1::text[]) AND role <> 'admin' RETURNING id, username`, [names])
    const demoted = await client.query<{ id: string, username: string }>(
      `UPDATE users SET role = 'user', role_source = NULL, sessions_valid_after = now()
       WHERE role = 'admin' AND role_source = 'config' AND NOT (lower(username) = ANY($1::text[])) RETURNING id, username`, [names])
    const ids = demoted.rows.map((r) => r.id)
    const tokens = await client.query(
      'UPDATE worker_join_tokens SET revoked_at = now() WHERE created_by = ANY($1::uuid[]) AND revoked_at IS NULL', [ids])
    const audit = [...promoted.rows.map((r) => [r.id, 'user.promote']), ...demoted.rows.map((r) => [r.id, 'user.demote'])]
    for (const [id, action] of audit) {
      await client.query(`INSERT INTO audit_log (user_id, action, target, details) VALUES ($1::uuid, $2, $1::text, '{"by":"ADMIN_USERS"}')`, [id, action])
    }
    return { promoted: promoted.rows.map((r) => r.username), demoted: demoted.rows.map((r) => r.username), joinTokensRevoked: tokens.rowCount ?? 0 }
  })
  if (out.promoted.length + out.demoted.length > 0) log?.info(out, 'admin roles synced with ADMIN_USERS')
  return out
}

/** A new account's role and where it comes from; `settle` reports whether the account was created. */
export interface RoleGrant { role: 'admin' | 'user', source: RoleSource | null, settle: (created: boolean) => void }

/**
 * The role for an account being registered: admin by the setup code (claimed here, FORBIDDEN if
 * wrong or taken) or by ADMIN_USERS, else user.
 */
export function roleForNewAccount (adminUsers: ReadonlySet<string>, setupCode: AdminSetupCode, req: { username: string, setupCode?: string }): RoleGrant {
  if (req.setupCode !== undefined) return { role: 'admin', source: 'bootstrap', settle: setupCode.claim(req.setupCode) }
  const listed = adminUsers.has(req.username.toLowerCase())
  return { role: listed ? 'admin' : 'user', source: listed ? 'config' : null, settle: () => {} }
}
