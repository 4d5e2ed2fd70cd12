import test from 'brittle'
import type pg from 'pg'
import { Idempotency } from '../idempotency.ts'
import { Cancellation } from '../../../shared/mesh/cancel.ts'
import { MeshError } from '../../../shared/errors.ts'
import { createTestDatabase } from '../../../test/support/db.ts'

// Idempotency keys claimed in PostgreSQL in batches (group commit): requests that arrive together
// are claimed in one statement, and each claim still means what one claim meant: one run per key
// across gateways, a running key elsewhere refused as in progress, a finished answer replayed from
// the database, a changed body refused, a key whose gateway stopped renewing it taken over.

const GATEWAY_A = 'a'.repeat(64)
const GATEWAY_B = 'b'.repeat(64)

/** the pool, counting the statements that claim keys sent through it */
function counting (pool: pg.Pool): { pool: pg.Pool, claims: () => number } {
  let n = 0
  const proxy = new Proxy(pool, {
    get (target, prop, receiver) {
      if (prop === 'query') {
        return (q: unknown, ...rest: unknown[]) => {
          const text = typeof q === 'string' ? q : (q as { text?: string } | null)?.text ?? ''
          if (text.includes('hi_idem_claim')) n++
          return (target.query as (...a: unknown[]) => unknown)(q, ...rest)
        }
      }
      return Reflect.get(target, prop, receiver)
    }
  })
  return { pool: proxy, claims: () => n }
}

const caller = () => ({ signal: new Cancellation(), emit: () => {} })

test('idempotency claims: a burst is claimed in a few statements, and each key still runs once across gateways', async (t) => {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  const { pool, claims } = counting(db.pool)
  const a = new Idempotency({ pool, gateway: GATEWAY_A, staleMs: 60_000 })
  const b = new Idempotency({ pool: db.pool, gateway: GATEWAY_B, staleMs: 60_000 })

  // 200 requests with their own keys, arriving at once
  let runs = 0
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) =>
    a.run('scope-1', 'key-' + i, 'hash-' + i, caller(), async () => { runs++; return { answer: i } })))
  t.is(runs, 200, 'each request ran once')
  t.alike(answers[7], { answer: 7 }, 'and got its own answer')
  t.ok(claims() <= 10, `their keys were claimed in ${claims()} statements, not one each`)
  await a.close()
  const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM idempotency_keys WHERE gateway = $1 AND state = 'done' AND response IS NOT NULL`, [GATEWAY_A])
  t.is(rows[0]!.n, 200, 'every answer reached PostgreSQL')

  // another gateway: a finished key is answered from the database, without running again
  let again = 0
  const replay = await b.run('scope-1', 'key-7', 'hash-7', caller(), async () => { again++; return { answer: 'again' } })
  t.alike(replay, { answer: 7 }, 'a retry on another gateway gets the first answer')
  t.is(again, 0, 'and does not run')
  await t.exception(b.run('scope-1', 'key-8', 'other body', caller(), async () => ({})), /IDEMPOTENCY_KEY_MISMATCH|different request/, 'a changed body is refused')

  // a key running on A is in progress for B; once A's row goes stale, B takes it over
  let release!: () => void
  const held = new Promise<void>((resolve) => { release = resolve })
  const running = a.run('scope-1', 'slow', 'h', caller(), async () => { await held; return { answer: 'slow' } })
  await new Promise((resolve) => setTimeout(resolve, 50))
  const refused = await b.run('scope-1', 'slow', 'h', caller(), async () => ({ answer: 'twice' })).then(() => null, (err: MeshError) => err)
  t.is(refused?.code, 'IDEMPOTENCY_IN_PROGRESS', 'a key running on one gateway is in progress on another')
  const impatient = new Idempotency({ pool: db.pool, gateway: GATEWAY_B, staleMs: 1 })
  await new Promise((resolve) => setTimeout(resolve, 20))
  const taken = await impatient.run('scope-1', 'slow', 'h', caller(), async () => ({ answer: 'taken over' }))
  t.alike(taken, { answer: 'taken over' }, 'a running key not renewed in time is taken over')
  release()
  t.alike(await running, { answer: 'slow' }, 'the first attempt still answers its own caller')

  // keys of one batch that meet different rows: none, finished elsewhere, running elsewhere, another body
  let hold!: () => void
  const busy = a.run('scope-1', 'busy', 'h', caller(), async () => { await new Promise<void>((resolve) => { hold = resolve }); return 'busy' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  const c = counting(db.pool)
  const fresh = new Idempotency({ pool: c.pool, gateway: GATEWAY_B, staleMs: 60_000 })
  const mixed = await Promise.all([
    fresh.run('scope-2', 'fresh', 'h', caller(), async () => 'fresh ran'),
    fresh.run('scope-1', 'key-9', 'hash-9', caller(), async () => 'ran again'),
    fresh.run('scope-1', 'busy', 'h', caller(), async () => 'ran again'),
    fresh.run('scope-1', 'key-10', 'not hash-10', caller(), async () => 'ran again')
  ].map((p) => p.then((v) => v, (err: MeshError) => err.code)))
  t.alike(mixed, ['fresh ran', { answer: 9 }, 'IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_KEY_MISMATCH'], 'each key of one batch gets its own outcome')
  t.is(c.claims(), 1, 'in one statement')
  hold()
  await busy
  await Promise.all([a.close(), b.close(), impatient.close(), fresh.close()])
})
