import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { createPool } from '../shared/db.ts'
import { adminUrl, createTestDatabase } from './support/db.ts'
import { dumpSchema, SCHEMA_COMMAND, SCHEMA_FILE } from '../scripts/schema-dump.ts'

// migrations/schema.sql is a generated snapshot of what the migrations build: it must match a freshly
// migrated database, must never be picked up as a migration, and must itself load as valid SQL.

const REL = path.relative(path.resolve(import.meta.dirname, '..'), SCHEMA_FILE)

test('migrations/schema.sql matches a freshly migrated database', async (t) => {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  const { rows } = await db.pool.query<{ name: string }>('SELECT name FROM schema_migrations')
  t.absent(rows.some((r) => r.name === path.basename(SCHEMA_FILE)), 'the snapshot is not applied as a migration')

  const actual = await dumpSchema(db.pool)
  const expected = fs.existsSync(SCHEMA_FILE) ? fs.readFileSync(SCHEMA_FILE, 'utf8') : ''
  sameText(t, actual, expected, `${REL} is up to date`,
    `${REL} is out of date with the migrations: run \`${SCHEMA_COMMAND}\` and commit the result`)
})

test('migrations/schema.sql loads into an empty database and rebuilds the same schema', async (t) => {
  const expected = fs.readFileSync(SCHEMA_FILE, 'utf8')
  const pool = await emptyDatabase(t)
  await pool.query(expected)
  // The loaded copy records no migrations, so the header's list differs. And PostgreSQL deparses a
  // CHECK it parsed from its own output with the casts moved (varchar arrays), so checks are compared
  // by name only.
  const comparable = (text: string) => text.replace(/^-- Migrations: .*$/m, '').replace(/^(\s+CONSTRAINT \S+ CHECK ).*$/gm, '$1...')
  sameText(t, comparable(await dumpSchema(pool)), comparable(expected), `${REL} is valid SQL that rebuilds the same schema`,
    `${REL} does not rebuild the schema it shows: the dump in scripts/schema-dump.ts renders something wrongly`)
})

function sameText (t: { pass: (m: string) => void, fail: (m: string) => void, comment: (m: string) => void }, actual: string, expected: string, ok: string, notOk: string): void {
  if (actual === expected) return t.pass(ok)
  for (const line of diffHint(expected, actual)) t.comment(line)
  t.fail(notOk)
}

async function emptyDatabase (t: { teardown: (fn: () => unknown) => void }): Promise<pg.Pool> {
  const admin = adminUrl()
  const name = 'hi_test_' + crypto.randomBytes(6).toString('hex')
  const adminQuery = async (sql: string) => {
    const c = new pg.Client({ connectionString: admin })
    await c.connect()
    try { await c.query(sql) } finally { await c.end() }
  }
  await adminQuery(`CREATE DATABASE ${name}`)
  const u = new URL(admin)
  u.pathname = '/' + name
  const pool = createPool(u.toString(), 1)
  t.teardown(async () => {
    await pool.end()
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  })
  return pool
}

/** The changed lines between two texts (first to last difference, with context), as `-`/`+` lines. */
function diffHint (expected: string, actual: string, context = 3, limit = 60): string[] {
  const a = expected.split('\n')
  const b = actual.split('\n')
  let head = 0
  while (head < a.length && head < b.length && a[head] === b[head]) head++
  let tail = 0
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++
  const from = Math.max(0, head - context)
  const out = [`${REL} (-) vs dump of the database (+), from line ${head + 1}:`]
  out.push(...a.slice(from, head).map((l) => '  ' + l))
  out.push(...a.slice(head, a.length - tail).map((l) => '- ' + l))
  out.push(...b.slice(head, b.length - tail).map((l) => '+ ' + l))
  out.push(...a.slice(a.length - tail, a.length - tail + context).map((l) => '  ' + l))
  return out.length > limit ? [...out.slice(0, limit), `... (${out.length - limit} more lines)`] : out
}
