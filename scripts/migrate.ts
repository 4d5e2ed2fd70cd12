// `npm run migrate`: apply migrations/NNN_*.sql to DATABASE_URL (forward only, checksummed, locked).
import { createPool, migrate } from '../shared/db.ts'
import { safeUrl } from '../shared/log.ts'

const url = process.env.DATABASE_URL
if (!url) {
  console.error('migrate: set DATABASE_URL (npm start migrates its embedded database by itself)')
  process.exit(2)
}
const pool = createPool(url, 1)
try {
  const res = await migrate(pool)
  console.log(`migrate: ${safeUrl(url)}: ${res.applied.length} applied (${res.applied.join(', ') || 'none'}), ${res.skipped.length} already applied`)
} catch (err) {
  console.error(`migrate: ${(err as Error).message}`)
  process.exitCode = 1
} finally {
  await pool.end()
}
