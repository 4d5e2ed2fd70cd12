import crypto from 'node:crypto'
import pg from 'pg'
import { createPool, migrate } from '../../shared/db.ts'

// Each test gets its own freshly migrated database on the real PostgreSQL that `npm test` provides
// (an embedded one, or the server in TEST_DATABASE_URL). Nothing is mocked.

export function adminUrl (): string {
  const url = process.env.HYPERINFER_TEST_PG ?? process.env.TEST_DATABASE_URL
  if (!url) throw new Error('no test database: run tests through `npm test` (it starts PostgreSQL), or set TEST_DATABASE_URL')
  return url
}

export interface TestDatabase { url: string, pool: pg.Pool, drop: () => Promise<void> }

/** A fresh, migrated database on the server at `admin` (by default the test server). */
export async function createTestDatabase (admin = adminUrl()): Promise<TestDatabase> {
  const name = 'hi_test_' + crypto.randomBytes(6).toString('hex')
  const client = new pg.Client({ connectionString: admin })
  await client.connect()
  await client.query(`CREATE DATABASE ${name}`)
  await client.end()
  const u = new URL(admin)
  u.pathname = '/' + name
  const url = u.toString()
  const pool = createPool(url, 5)
  await migrate(pool)
  return {
    url,
    pool,
    drop: async () => {
      await pool.end().catch(() => {})
      const c = new pg.Client({ connectionString: admin })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {})
      await c.end()
    }
  }
}
