import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type pg from 'pg'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin } from './support/harness.ts'
import { createTestDatabase } from './support/db.ts'
import { createPool } from '../shared/db.ts'
import { limitsExact } from '../scripts/lib/invariants.ts'
import { Recorder } from '../services/gateway/recorder.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'

// The settlement log on real processes: a request is answered once its end is on the gateway's disk,
// and PostgreSQL gets it later. Here PostgreSQL gets nothing before the gateway is SIGKILLed (it is
// told to batch for ten minutes), so what the database shows after the restart came from the log:
// every answered request recorded, charged and rolled up exactly once. Then the same log is put
// back, as if the process had died after recording it but before deleting it, and replayed again:
// nothing changes.

const NANO_PER_TOKEN = 1000

async function state (pool: pg.Pool, ids: string[]) {
  const { rows: [r] } = await pool.query(`
    SELECT (SELECT count(*)::int FROM request_logs WHERE id = ANY($1::uuid[])) AS logged,
           (SELECT count(*)::int FROM request_logs WHERE id = ANY($1::uuid[]) AND status = 'success' AND tokens_out = 7) AS ok,
           (SELECT count(*)::int FROM credit_ledger WHERE kind = 'debit') AS debits,
           (SELECT coalesce(-sum(amount_nusd), 0)::bigint FROM credit_ledger WHERE kind = 'debit') AS charged,
           (SELECT coalesce(sum(balance_nusd), 0)::bigint FROM credit_accounts) AS balance,
           (SELECT coalesce(sum(held_nusd), 0)::bigint FROM credit_accounts) AS credit_held,
           (SELECT coalesce(sum(held), 0)::bigint FROM quota_counters) AS counter_held,
           (SELECT coalesce(sum(request_count), 0)::int FROM usage_stats) AS rolled_up,
           (SELECT count(*)::int FROM accounting_leases WHERE amount > 0) AS leases`, [ids])
  return { ...r, charged: Number(r.charged), balance: Number(r.balance), credit_held: Number(r.credit_held), counter_held: Number(r.counter_held) }
}

test('durability: answers SIGKILLed before PostgreSQL had them are replayed from the log exactly once, and a second replay changes nothing', { timeout: 240_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, {
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { MODEL_PRICES: JSON.stringify({ synthetic: { input: 0, output: 1 } }), SETTLEMENT_RECORD_DELAY_MS: '600000' }
    }
  })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })

  const ids: string[] = []
  for (let round = 0; round < 2; round++) {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: `durable ${round}.${i}`, maxTokens: 7 }, 30_000)))
    for (const a of answers) ids.push(a.id)
  }
  t.is(ids.length, 40, '40 requests answered')
  const before = await state(db.pool, ids)
  t.is(before.logged, 0, 'none of them is in PostgreSQL yet: only the gateway\'s settlement log has them')

  const logDir = path.join(mesh.home, 'accounting', 'gateway')
  const segments = fs.readdirSync(logDir).filter((n) => n.endsWith('.log'))
  t.ok(segments.length > 0, 'the log is in the gateway\'s state dir: ' + segments.join(', '))
  const copy = new Map(segments.map((n) => [n, fs.readFileSync(path.join(logDir, n))]))

  mesh.children.get('gateway')!.proc.kill('SIGKILL')
  await mesh.restartChild('gateway')
  await mesh.waitUsable(1)
  const after = await state(db.pool, ids)
  const charge = 40 * 7 * NANO_PER_TOKEN
  t.is(after.logged, 40, 'after the restart every answered request is in request_logs')
  t.is(after.ok, 40, 'each a success with its 7 tokens')
  t.alike([after.debits, after.charged], [40, charge], 'one debit each, together exactly the 280 tokens used')
  t.is(after.balance, 1e9 - charge, 'the balance went down by exactly that')
  t.is(after.rolled_up, 40, 'usage_stats counts 40 requests')
  t.alike([after.credit_held, after.counter_held, after.leases], [0, 0, 0], 'the dead process\'s leases and holds are all released')
  t.alike(fs.readdirSync(logDir).filter((n) => copy.has(n)), [], 'and its recorded segments deleted')

  // the same log again: a process that died after recording it but before deleting it
  mesh.children.get('gateway')!.proc.kill('SIGKILL')
  await mesh.stopChild('gateway')
  for (const [n, bytes] of copy) fs.writeFileSync(path.join(logDir, n), bytes)
  await mesh.restartChild('gateway')
  await mesh.waitUsable(1)
  const again = await state(db.pool, ids)
  t.alike(again, after, 'replaying it a second time records nothing twice: no double charge, no double count')
  const limits = await limitsExact(db.pool)
  t.ok(limits.ok, 'every limit counts exactly the 40 requests: ' + limits.detail)

  const { client: fresh } = await gatewayClient(t, mesh)
  const credits = await fresh.call(GatewayProtocol.credits, { token: user.token, limit: 100 })
  t.is(credits.ledger.filter((e) => e.kind === 'debit').length, 40, 'the user sees the 40 debits')
  const next = await fresh.call(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: 'after the replays', maxTokens: 3 })
  t.is(next.usage.completionTokens, 3, 'and the restarted gateway serves again')
})

test('recorder: a finished request carrying a value PostgreSQL refuses is recorded as failed, one request and no tokens on its limits', { timeout: 60_000 }, async (t) => {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  const gw = 'a'.repeat(64)
  const [req, tok] = ['req:k:' + crypto.randomUUID() + ':h1', 'tok:u:' + crypto.randomUUID() + ':h1']
  // the gateway's lease holds the request's worst case: 1 request, 50 tokens
  await db.pool.query(`INSERT INTO quota_counters (name, cap, held) VALUES ($1, 100, 1), ($2, 1000, 50)`, [req, tok])
  await db.pool.query(`INSERT INTO accounting_leases (gateway, name, amount) VALUES ($1, $2, 1), ($1, $3, 50)`, [gw, req, tok])
  const recorder = new Recorder(db.pool, gw, { delayMs: 0 })
  const id = crypto.randomUUID()
  const now = new Date().toISOString()
  recorder.push({
    t: 's', id, user: crypto.randomUUID(), key: crypto.randomUUID(), model: 'synthetic', kind: 'chat', hash: 'h', trace: null, at: now,
    status: 'success', worker: null, tin: 3_000_000_000, tout: 40, cost: 0, ttft: 5, dur: 10, code: null, msg: null, fin: now, crel: 0,
    c: [[req, 1, 1], [tok, 50, 50]]
  })
  await recorder.flush()
  recorder.close()
  const { rows: [row] } = await db.pool.query(`SELECT status, error_code, tokens_in + tokens_out AS tokens FROM request_logs WHERE id = $1`, [id])
  t.alike(row, { status: 'failed', error_code: 'UNRECORDABLE', tokens: 0 }, 'the request is in the log as failed, with no tokens')
  const { rows } = await db.pool.query(`SELECT name, used::int, held::int FROM quota_counters ORDER BY name`)
  t.alike(rows, [{ name: req, used: 1, held: 0 }, { name: tok, used: 0, held: 0 }], 'its limits count what the log says: one request, no tokens; nothing held')
})

test('recorder: while the database is out of reach, flushOrFail refuses at once and flush keeps waiting; both settle once it is back', { timeout: 60_000 }, async (t) => {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  const gw = 'b'.repeat(64)
  // a pool whose server is gone: the same database behind a port nobody listens on, until it is swapped back
  const deadUrl = new URL(db.url)
  deadUrl.port = '1'
  const dead = createPool(deadUrl.toString(), 2)
  t.teardown(() => dead.end().catch(() => {}))
  const live = db.pool
  let current = dead
  const pool = new Proxy(live, { get: (_t, p) => { const v = Reflect.get(current, p); return typeof v === 'function' ? v.bind(current) : v } })
  const recorder = new Recorder(pool, gw, { delayMs: 0 })
  t.teardown(() => recorder.close())
  const id = crypto.randomUUID()
  const now = new Date().toISOString()
  recorder.push({
    t: 's', id, user: crypto.randomUUID(), key: crypto.randomUUID(), model: 'synthetic', kind: 'chat', hash: 'h', trace: null, at: now,
    status: 'success', worker: null, tin: 3, tout: 4, cost: 0, ttft: 5, dur: 10, code: null, msg: null, fin: now, crel: 0, c: []
  })
  let flushed = false
  const waiting = recorder.flush().then(() => { flushed = true })
  const first = await recorder.flushOrFail().then(() => 'flushed', (err: Error) => 'refused: ' + err.message)
  t.ok(first.startsWith('refused'), `flushOrFail is refused by the failed write (${first})`)
  const second = await recorder.flushOrFail().then(() => 'flushed', () => 'refused')
  t.is(second, 'refused', 'and the next one while writes keep failing, without waiting for a retry')
  t.is(flushed, false, 'flush still waits: the record is not in the database')
  current = live
  await waiting
  t.ok(flushed, 'once the database is back, flush settles')
  t.is((await db.pool.query('SELECT count(*)::int AS n FROM request_logs WHERE id = $1', [id])).rows[0].n, 1, 'with the request recorded once')
  t.is(await recorder.flushOrFail().then(() => 'flushed', () => 'refused'), 'flushed', 'and flushOrFail resolves again')
})
