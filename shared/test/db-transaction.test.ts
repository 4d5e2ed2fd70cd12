import test from 'brittle'
import { transaction } from '../db.ts'
import { createTestDatabase } from '../../test/support/db.ts'

// A checked-out client whose server connection dies mid-transaction emits 'error'; unheard, that stops
// the process. transaction() must turn it into a rejected promise, leave nothing half-written, and keep
// the pool serving. The connection is killed by the server itself (pg_terminate_backend), as a database
// restart would.

test('transaction: a connection killed mid-transaction rejects the call, writes nothing and leaves the pool working', async (t) => {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  await db.pool.query('CREATE TABLE tx_probe (n int)')
  const crashed: Error[] = []
  const onUncaught = (err: Error) => { crashed.push(err) }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => { process.off('uncaughtException', onUncaught) })

  const outcome = await transaction(db.pool, async (client) => {
    await client.query('INSERT INTO tx_probe VALUES (1)')
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid])
    await client.query('INSERT INTO tx_probe VALUES (2)')
    return 'committed'
  }).then((v) => v, (err: Error) => 'rejected: ' + err.message)

  t.ok(outcome.startsWith('rejected: '), `the call is rejected (${outcome})`)
  await new Promise((resolve) => setTimeout(resolve, 100)) // a late 'error' from the dead socket would land here
  t.alike(crashed.map((e) => e.message), [], 'and nothing escapes as an uncaught error')
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM tx_probe')
  t.is(Number(rows[0]!.n), 0, 'the half-done transaction left no row')

  const again = await transaction(db.pool, async (client) => {
    await client.query('INSERT INTO tx_probe VALUES (3)')
    return 'committed'
  })
  t.is(again, 'committed', 'the pool serves the next transaction')
  t.is(Number((await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM tx_probe')).rows[0]!.n), 1, 'which is written')
})

test('transaction: an error thrown inside rolls back and is the error the caller gets', async (t) => {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  await db.pool.query('CREATE TABLE tx_probe (n int)')
  await t.exception(transaction(db.pool, async (client) => {
    await client.query('INSERT INTO tx_probe VALUES (1)')
    throw new Error('changed my mind')
  }), /changed my mind/, 'the thrown error reaches the caller')
  t.is(Number((await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM tx_probe')).rows[0]!.n), 0, 'and its insert is rolled back')
})
