import type pg from 'pg'
import type { Logger } from '../../shared/log.ts'
import type { Passwords } from './passwords.ts'

// Checking an email and password against the database. A missing account costs the same hash as a
// present one, so timing does not tell which emails exist. A password hash made with older scrypt
// parameters is replaced by one with today's once the password has been shown to be right.

export interface UserRow { id: string, username: string, email: string, tier: string, role: string, created_at: Date }

/** The account, or null when the email is unknown, the password wrong or the account disabled. */
export async function checkCredentials (pool: pg.Pool, passwords: Passwords, req: { email: string, password: string }, log?: Logger): Promise<UserRow | null> {
  const { rows } = await pool.query<UserRow & { password_hash: string, is_active: boolean }>(
    'SELECT id, username, email, tier, role, created_at, password_hash, is_active FROM users WHERE lower(email) = lower($1)',
    [req.email])
  const row = rows[0]
  const ok = await passwords.verify(req.password, row?.password_hash ?? passwords.dummyHash)
  if (!row || !ok || !row.is_active) return null
  if (passwords.needsRehash(row.password_hash)) {
    try {
      const fresh = await passwords.hash(req.password)
      // only if nobody changed the hash meanwhile
      await pool.query('UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = $3', [row.id, fresh, row.password_hash])
    } catch (err) {
      // the login itself is good; the next one tries again
      log?.warn({ userId: row.id, err: (err as Error).message }, 'could not rehash a password with today\'s parameters')
    }
  }
  const { password_hash: _hash, is_active: _active, ...user } = row
  return user
}
