import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import type { Logger } from './log.ts'
import { PACKAGE_ROOT } from './package.ts'

export type Pool = pg.Pool
export const MIGRATIONS_DIR = path.join(PACKAGE_ROOT, 'migrations')

export function createPool (connectionString: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, idleTimeoutMillis: 30_000 })
  // an idle client losing its server must not crash the process; the next query reconnects
  pool.on('error', () => {})
  return pool
}

/**
 * A client checked out of the pool for `fn`, given back afterwards. A checked-out client whose
 * connection is lost emits 'error', which unheard stops the process: it is heard here, the query under
 * way fails with it, and a broken client (lost, or marked so by `fn`) is destroyed rather than pooled.
 */
export async function withClient<T> (pool: pg.Pool, fn: (client: pg.PoolClient, markBroken: (err: Error) => void) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  const lost = (err: Error) => { broken ??= err }
  client.on('error', lost)
  try {
    return await fn(client, lost)
  } finally {
    // a destroyed client may still report its end: it keeps the listener
    if (!broken) client.off('error', lost)
    client.release(broken)
  }
}

/**
 * `fn` inside BEGIN … COMMIT on one client. Any error rolls it back and is rethrown (the first error,
 * not the rollback's); a connection that cannot even roll back is destroyed, not returned to the pool.
 */
export function transaction<T> (pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client, markBroken) => {
    await client.query('BEGIN')
    try {
      const out = await fn(client)
      await client.query('COMMIT')
      return out
    } catch (err) {
      await client.query('ROLLBACK').catch(markBroken)
      throw err
    }
  })
}

export interface MigrationResult { applied: string[], skipped: string[] }

/**
 * Forward-only migrations: every migrations/NNN_name.sql runs once, in order, in its own transaction,
 * under an advisory lock (so concurrent starters serialise). A file whose content changed after it was
 * applied is an error, never a silent re-run.
 */
export async function migrate (pool: pg.Pool, dir = MIGRATIONS_DIR, log?: Logger): Promise<MigrationResult> {
  const files = fs.readdirSync(dir).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort()
  const result: MigrationResult = { applied: [], skipped: [] }
  await withClient(pool, async (client, markBroken) => {
    try {
      await client.query('SELECT pg_advisory_lock(727274)')
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        name text PRIMARY KEY, checksum char(64) NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
      const { rows } = await client.query<{ name: string, checksum: string }>('SELECT name, checksum FROM schema_migrations')
      const done = new Map(rows.map((r) => [r.name, r.checksum]))
      for (const file of files) {
        const sql = fs.readFileSync(path.join(dir, file), 'utf8')
        const checksum = crypto.hash('sha256', sql, 'hex')
        const prior = done.get(file)
        if (prior !== undefined) {
          if (prior !== checksum) throw new Error(`migration ${file} was changed after it was applied (checksum mismatch)`)
          result.skipped.push(file)
          continue
        }
        await client.query('BEGIN')
        try {
          await client.query(sql)
          await client.query('INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)', [file, checksum])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK').catch(markBroken)
          throw new Error(`migration ${file} failed: ${(err as Error).message}`)
        }
        result.applied.push(file)
        log?.info({ migration: file }, 'migration applied')
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock(727274)').catch((err) => log?.debug({ err: (err as Error).message }, 'migration lock not released; the server drops it when this connection ends'))
    }
  })
  return result
}
