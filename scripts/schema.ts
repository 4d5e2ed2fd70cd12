// `npm run schema`: regenerate migrations/schema.sql. Migrates a fresh throwaway database (on the
// server in TEST_DATABASE_URL when set, else on an embedded PostgreSQL in a temp dir) and writes its
// schema, as scripts/schema-dump.ts renders it.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startEmbeddedPostgres, type EmbeddedDatabase } from './lib/embedded-pg.ts'
import { createTestDatabase } from '../test/support/db.ts'
import { dumpSchema, SCHEMA_FILE } from './schema-dump.ts'

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-schema-'))
let embedded: EmbeddedDatabase | null = null
try {
  let admin = process.env.TEST_DATABASE_URL
  if (!admin) {
    embedded = await startEmbeddedPostgres(path.join(tmp, 'pg'), { database: 'postgres' })
    admin = embedded.url
  }
  const db = await createTestDatabase(admin)
  let text: string
  try {
    text = await dumpSchema(db.pool)
  } finally {
    await db.drop()
  }
  const before = fs.existsSync(SCHEMA_FILE) ? fs.readFileSync(SCHEMA_FILE, 'utf8') : null
  fs.writeFileSync(SCHEMA_FILE, text)
  const rel = path.relative(process.cwd(), SCHEMA_FILE)
  console.log(`schema: ${rel} ${before === text ? 'unchanged' : 'written'} (${text.split('\n').length - 1} lines)`)
} catch (err) {
  console.error(`schema: ${(err as Error).message}`)
  process.exitCode = 1
} finally {
  if (embedded) await embedded.stop()
  fs.rmSync(tmp, { recursive: true, force: true })
}
