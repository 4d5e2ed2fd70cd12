import crypto from 'node:crypto'
import type pg from 'pg'
import { transaction } from '../../shared/db.ts'
import { sha256Hex } from '../../shared/apikey.ts'
import type { Logger } from '../../shared/log.ts'
import type { PublicUser } from '../../shared/protocol/auth.ts'
import { NETWORK_TOKEN_ID, proofMatches, type WorkerProof } from '../../shared/worker-proof.ts'
import type { JoinTokens, ProvenToken } from './join-tokens.ts'

// Checks a worker's token proof: the network's worker token (PostgreSQL, SHA-256 only, one active
// at a time, so every gateway honours the same one and a rotation reaches them all) or a join token.
// HYPERINFER_WORKER_TOKEN only seeds the table the first time any gateway starts.

/** how long a gateway reuses the active network token's hash before asking the database again */
const CACHE_MS = 5000

export type ProofVerdict =
  /** `joined`: the join token it was made with (its owner's account gets the worker) */
  | { ok: true, by: string, joined?: ProvenToken }
  /** `mismatch`: no valid token makes this proof; `unchecked`: the database could not be asked */
  | { ok: false, reason: 'mismatch' | 'unchecked' }

export interface WorkerTokensOptions {
  pool: pg.Pool
  joinTokens: Pick<JoinTokens, 'tokenForProof'>
  log: Logger
  /** this gateway's public key: proofs are made for it */
  gateway: string
  /** the configured network worker token: stored if the network has none yet */
  seed?: string
}

export class WorkerTokens {
  private readonly opts: WorkerTokensOptions
  private cached: { at: number, digests: Promise<Buffer[]> } | null = null
  /** the last answer the database gave, used while it cannot be asked */
  private lastKnown: Buffer[] | null = null

  constructor (opts: WorkerTokensOptions) {
    this.opts = opts
  }

  /** Store the configured token as the network's, unless the network already has one. */
  async seed (): Promise<void> {
    if (!this.opts.seed) return
    // the partial unique index keeps one active token when several gateways start at once
    await this.opts.pool.query(
      `INSERT INTO network_worker_tokens (token_hash, source) SELECT $1, 'config'
       WHERE NOT EXISTS (SELECT 1 FROM network_worker_tokens) ON CONFLICT DO NOTHING`, [sha256Hex(this.opts.seed)])
  }

  async verify (proof: WorkerProof, workerKey: string): Promise<ProofVerdict> {
    try {
      if (proof.tokenId === NETWORK_TOKEN_ID) {
        const digests = await this.activeDigests()
        return digests.some((d) => proofMatches(proof, d, workerKey, this.opts.gateway)) ? { ok: true, by: 'worker-token' } : { ok: false, reason: 'mismatch' }
      }
      const joined = await this.opts.joinTokens.tokenForProof(proof, workerKey, this.opts.gateway)
      return joined === null ? { ok: false, reason: 'mismatch' } : { ok: true, by: `join-token:${joined.label}`.slice(0, 128), joined }
    } catch (err) {
      // a database outage is not the worker's fault: it is treated as if it had shown no token
      this.opts.log.debug({ err: (err as Error).message }, 'worker token not checked')
      return { ok: false, reason: 'unchecked' }
    }
  }

  /** A new network worker token (returned once); the old one admits no new worker from now on. */
  async rotate (admin: PublicUser): Promise<{ token: string, createdAt: string }> {
    const token = 'hin_' + crypto.randomBytes(32).toString('base64url')
    const createdAt = await transaction(this.opts.pool, async (client) => {
      await client.query('UPDATE network_worker_tokens SET retired_at = now() WHERE retired_at IS NULL')
      const { rows } = await client.query<{ created_at: Date }>(
        `INSERT INTO network_worker_tokens (token_hash, source, created_by) VALUES ($1, 'rotated', $2) RETURNING created_at`, [sha256Hex(token), admin.id])
      return rows[0]!.created_at
    })
    this.cached = null
    this.opts.log.info({ by: 'user:' + admin.username }, 'network worker token rotated')
    return { token, createdAt: createdAt.toISOString() }
  }

  /** The active token's SHA-256, cached for a few seconds: registerWorker is open to strangers. */
  private activeDigests (): Promise<Buffer[]> {
    const now = Date.now()
    if (!this.cached || now - this.cached.at > CACHE_MS) {
      const digests = this.opts.pool.query<{ token_hash: string }>('SELECT token_hash FROM network_worker_tokens WHERE retired_at IS NULL')
        .then(({ rows }) => {
          this.lastKnown = rows.map((r) => Buffer.from(r.token_hash, 'hex'))
          return this.lastKnown
        }, (err: unknown) => {
          this.cached = null
          if (this.lastKnown) return this.lastKnown
          throw err
        })
      this.cached = { at: now, digests }
    }
    return this.cached.digests
  }
}
