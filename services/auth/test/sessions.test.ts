import crypto from 'node:crypto'
import test from 'brittle'
import { createTestDatabase } from '../../../test/support/db.ts'
import { SessionTokens, sessionEnded } from '../sessions.ts'

// A role change ends every session issued before it, to the millisecond: a login and a demotion in
// the same second must not leave the old session alive, nor end the one issued just after.

test('sessions: a cut-off in the same second as a login ends that session and keeps the next one', async (t) => {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  const { rows } = await db.pool.query<{ id: string }>(
    "INSERT INTO users (username, email, password_hash) VALUES ('dana', 'dana@example.com', 'x') RETURNING id")
  const userId = rows[0]!.id
  const tokens = new SessionTokens(crypto.randomBytes(32))
  // a login as early in a second as can be, so the cut-off below falls in the same second
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5))
  const before = await tokens.verify((await tokens.issue({ userId, username: 'dana', role: 'admin' })).token)
  await new Promise((resolve) => setTimeout(resolve, 20))
  await db.pool.query('UPDATE users SET sessions_valid_after = now() WHERE id = $1', [userId])
  await new Promise((resolve) => setTimeout(resolve, 20))
  const after = await tokens.verify((await tokens.issue({ userId, username: 'dana', role: 'user' })).token)
  t.is(Math.floor(before.issuedAtMs / 1000), Math.floor(after.issuedAtMs / 1000), 'both sessions were issued in the same second')
  t.ok(await sessionEnded(db.pool, before), 'the session issued before the cut-off is over')
  t.is(await sessionEnded(db.pool, after), null, 'the one issued after it is not')
})
