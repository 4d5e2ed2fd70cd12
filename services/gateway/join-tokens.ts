import crypto from 'node:crypto'
import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import { sha256Hex } from '../../shared/apikey.ts'
import { proofMatches, type WorkerProof } from '../../shared/worker-proof.ts'
import type { Logger } from '../../shared/log.ts'
import type { RequestOf, ResponseOf } from '../../shared/mesh/method.ts'
import type { PublicUser } from '../../shared/protocol/auth.ts'
import type { GatewayProtocol, JoinTokenInfo } from '../../shared/protocol/gateway.ts'

// Worker join tokens: an admin creates one (the token is shown once), and a worker that presents it
// proves it holds one (../../shared/worker-proof.ts) is approved at once. They are kept in PostgreSQL, hash only, so every gateway honours them.
// A token is issued to an account (the admin's own, or the one named as its owner): the workers it
// admits belong to that account, which prices what they serve and earns from it.

interface JoinTokenRow { id: string, prefix: string, label: string, created_at: Date, expires_at: Date | null, revoked_at: Date | null, uses: number, last_used_at: Date | null, owner_name: string | null }

const LIST = `SELECT t.*, u.username AS owner_name FROM worker_join_tokens t LEFT JOIN users u ON u.id = t.owner`

/** The token a worker's proof was made with. */
export interface ProvenToken { id: string, label: string, owner: string | null }

export function joinTokenInfo (r: JoinTokenRow): JoinTokenInfo {
  const expired = r.expires_at !== null && r.expires_at.getTime() <= Date.now()
  return {
    id: r.id, prefix: r.prefix, label: r.label, createdAt: r.created_at.toISOString(), expiresAt: r.expires_at?.toISOString() ?? null,
    revokedAt: r.revoked_at?.toISOString() ?? null, uses: r.uses, lastUsedAt: r.last_used_at?.toISOString() ?? null,
    status: r.revoked_at ? 'revoked' : expired ? 'expired' : 'active', owner: r.owner_name ?? null
  }
}

export class JoinTokens {
  private readonly pool: pg.Pool
  private readonly log: Logger

  constructor (pool: pg.Pool, log: Logger) {
    this.pool = pool
    this.log = log
  }

  /** An admin's create, revoke or list; the answer is the list, newest first, and a created token once. */
  async manage (req: RequestOf<typeof GatewayProtocol.joinTokens>, admin: PublicUser): Promise<ResponseOf<typeof GatewayProtocol.joinTokens>> {
    let created: (JoinTokenInfo & { token: string }) | undefined
    if (req.op === 'create') {
      const token = 'hij_' + crypto.randomBytes(32).toString('base64url')
      let owner = admin.id
      if (req.owner !== undefined) {
        const found = await this.pool.query<{ id: string }>('SELECT id FROM users WHERE lower(username) = lower($1)', [req.owner])
        if (!found.rows[0]) throw MeshError.NOT_FOUND(`no account named '${req.owner}'`)
        owner = found.rows[0].id
      }
      const { rows } = await this.pool.query<JoinTokenRow>(
        `WITH t AS (INSERT INTO worker_join_tokens (token_hash, prefix, label, created_by, expires_at, owner)
           VALUES ($1, $2, $3, $4, CASE WHEN $5::int IS NULL THEN NULL ELSE now() + make_interval(hours => $5::int) END, $6) RETURNING *)
         SELECT t.*, u.username AS owner_name FROM t LEFT JOIN users u ON u.id = t.owner`,
        [sha256Hex(token), token.slice(0, 10), req.label, admin.id, req.expiresInHours ?? null, owner])
      created = { ...joinTokenInfo(rows[0]!), token }
      this.log.info({ id: rows[0]!.id, by: 'user:' + admin.username }, 'join token created')
    } else if (req.op === 'revoke') {
      const { rowCount } = await this.pool.query('UPDATE worker_join_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1', [req.id])
      if (!rowCount) throw MeshError.NOT_FOUND('no such join token')
    }
    const { rows } = await this.pool.query<JoinTokenRow>(`${LIST} ORDER BY t.created_at DESC LIMIT 200`)
    return { tokens: rows.map(joinTokenInfo), ...(created ? { created } : {}) }
  }

  /**
   * The valid join token this proof is made with (counted as used), else null. The proof names the
   * token by its prefix; each active token with that prefix is tried.
   */
  async tokenForProof (proof: WorkerProof, workerKey: string, gatewayKey: string): Promise<ProvenToken | null> {
    const { rows } = await this.pool.query<{ id: string, token_hash: string, label: string, owner: string | null }>(
      `SELECT id, token_hash, label, owner FROM worker_join_tokens
       WHERE prefix = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) LIMIT 8`, [proof.tokenId])
    const match = rows.find((r) => proofMatches(proof, Buffer.from(r.token_hash, 'hex'), workerKey, gatewayKey))
    if (!match) return null
    await this.pool.query('UPDATE worker_join_tokens SET uses = uses + 1, last_used_at = now() WHERE id = $1', [match.id])
    return { id: match.id, label: match.label, owner: match.owner }
  }
}
