import test from 'brittle'
import fs from 'node:fs'
import path from 'node:path'
import { startTestMesh, gatewayClient, userWithKey, alive, runCli, until, registerAdmin } from './support/harness.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { MeshError } from '../shared/errors.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import { ledgerConsistent, limitsExact, rollupsMatch } from '../scripts/lib/invariants.ts'

// Accounting on real processes and a real Postgres: every token billed once, no budget overrun, limits
// exact across gateways, nothing acknowledged lost to SIGKILL, stuck rows failed by the sweeper, and
// the daily rollups equal to the request log after all of it.

const PRICE_OUT = 1 // USD per 1M completion tokens: 1,000 nano-USD a token
const NANO_PER_TOKEN = 1000
const BIG = '100000000'
const generous = JSON.stringify({ default: { userRequestsPerHour: 100000, tokensPerHour: 100000000, tokensPerDay: 100000000 } })

function pricedMesh (extra: { gateway?: Record<string, string>, inference?: Record<string, string> } = {}, more: Record<string, unknown> = {}) {
  return {
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { MODEL_PRICES: JSON.stringify({ synthetic: { input: 0, output: PRICE_OUT } }), DEFAULT_RATE_LIMIT: BIG, TIER_LIMITS: generous, ...extra.gateway },
      ...(extra.inference ? { inference: extra.inference } : {})
    },
    ...more
  }
}


test('credits: 1,000 concurrent requests against a balance that covers 100 → exactly 100 succeed, the ledger never goes negative', { timeout: 240_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, pricedMesh())
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username

  // a request holds its worst case: 10 completion tokens at $1/1M = $0.00001; the balance covers 100
  const granted = await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 0.001, note: 'test grant' })
  t.is(granted.balanceUsd, 0.001, 'the grant shows in the balance')
  const notAdmin = await client.call(GatewayProtocol.grantCredits, { token: user.token, username: name, amountUsd: 5 }).catch((e) => e)
  t.is(notAdmin.code, 'FORBIDDEN', 'a user cannot grant credits to themselves')

  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) =>
    client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: `count ${i}`, maxTokens: 10 }, 120_000).then((r) => r, (e: MeshError) => e)))
  const ok = results.filter((r) => !(r instanceof MeshError)) as Array<{ usage: { completionTokens: number }, costUsd: number }>
  const refused = results.filter((r) => r instanceof MeshError) as MeshError[]
  t.is(ok.length, 100, 'exactly the 100 covered requests succeed')
  t.ok(refused.every((e) => e.code === 'INSUFFICIENT_CREDITS'), 'every other one is refused up front with INSUFFICIENT_CREDITS')
  t.ok(/credits/.test(refused[0]?.message ?? ''), 'and the refusal says why: ' + refused[0]?.message)
  t.ok(ok.every((r) => r.usage.completionTokens === 10 && Math.abs(r.costUsd - 0.00001) < 1e-12), 'each success was charged its 10 tokens ($0.00001)')

  const credits = await client.call(GatewayProtocol.credits, { token: user.token, limit: 1000 })
  t.is(credits.balanceUsd, 0, 'the balance is spent to the last nano-dollar')
  t.is(credits.reservedUsd, 0, 'nothing is still held')
  t.is(credits.ledger.filter((e) => e.kind === 'debit').length, 100, 'one debit per successful request')
  t.is(credits.ledger.filter((e) => e.kind === 'grant').length, 1, 'and the one grant')
  const consistent = await ledgerConsistent(db.pool)
  t.ok(consistent.neverNegative, 'the running balance of the ledger never goes below zero')
  t.ok(consistent.balancesMatch, 'every balance equals the sum of its ledger')

  const { rows } = await db.pool.query(`SELECT status, count(*)::int AS n, sum(cost_nusd)::bigint AS cost FROM request_logs GROUP BY status`)
  t.alike(rows.map((r) => [r.status, r.n, Number(r.cost)]), [['success', 100, 100 * 10 * NANO_PER_TOKEN]], '100 success rows, none left processing, costs summing to the grant')
  const rollups = await rollupsMatch(db.pool)
  t.ok(rollups.ok, 'usage_stats equals the sum of request_logs: ' + rollups.detail)

  const usage = await client.call(GatewayProtocol.usage, { token: user.token })
  t.is(usage.totals.requests, 100, 'the usage report counts the 100 requests')
  t.ok(Math.abs(usage.totals.costUsd - 0.001) < 1e-12, 'and their cost')
  t.is(usage.byModel[0]?.model, 'synthetic', 'broken down by model')
  t.alike(alive(mesh).filter((n) => n === 'gateway'), ['gateway'], 'the gateway is still up')
})

test('limits: two gateways share one key\'s hourly limit and admit exactly the limit in total', { timeout: 240_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, { gateways: 2, serviceEnv: { gateway: { DEFAULT_RATE_LIMIT: '50', TIER_LIMITS: generous } } })
  const [k1, k2] = mesh.gatewayKeys
  t.ok(k1 && k2 && k1 !== k2, 'two gateways with their own keys')
  const a = (await gatewayClient(t, mesh, k1)).client
  const b = (await gatewayClient(t, mesh, k2)).client
  const { key } = await userWithKey(a)
  const fire = (c: MeshClient, n: number) => Array.from({ length: n }, (_, i) =>
    c.call(GatewayProtocol.infer, { apiKey: key, prompt: `shared ${i}`, maxTokens: 2 }, 60_000).then(() => 'ok', (e: MeshError) => e.code))
  // both gateways take part: ten each first, then 50 more at each at once
  const warm = await Promise.all([...fire(a, 10), ...fire(b, 10)])
  t.ok(warm.every((r) => r === 'ok'), 'the first 20 (10 per gateway) are admitted')
  const results = [...warm, ...await Promise.all([...fire(a, 50), ...fire(b, 50)])]
  t.is(results.filter((r) => r === 'ok').length, 50, '50 admitted across both gateways')
  t.is(results.filter((r) => r === 'RATE_LIMITED').length, 70, 'the other 70 refused with RATE_LIMITED')
  const qa = await a.call(GatewayProtocol.getUserQuota, { apiKey: key })
  const qb = await b.call(GatewayProtocol.getUserQuota, { apiKey: key })
  t.alike([qa.used, qa.remaining, qb.used, qb.remaining], [50, 0, 50, 0], 'both gateways report the same quota')
  t.ok(qa.limits.some((l) => l.unit === 'tokens'), 'the quota lists the token limits too: ' + qa.limits.map((l) => l.description).join(', '))
  const { rows } = await db.pool.query(`SELECT gateway, count(*)::int AS n FROM request_logs GROUP BY gateway ORDER BY gateway`)
  t.is(rows.reduce((n, r) => n + r.n, 0), 50, 'the 50 are logged once each: ' + rows.map((r) => `${r.gateway.slice(0, 8)}… ${r.n}`).join(', '))
  t.ok(rows.length === 2 && rows.every((r) => r.n >= 10 && [k1, k2].includes(r.gateway)), 'by both gateways')
})

test('keys: a key budget and a model allow-list are enforced; token quotas refuse what could overrun them', { timeout: 240_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, pricedMesh({
    gateway: { TIER_LIMITS: JSON.stringify({ default: { userRequestsPerHour: 100000, tokensPerHour: 100000000, tokensPerDay: 2000 } }) },
    inference: { SYNTHETIC_MODELS: 'synthetic,other' }
  }))
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })

  // budget $0.00003 = three requests of 10 tokens
  const scoped = await client.call(GatewayProtocol.createKey, { token: user.token, name: 'scoped', budgetUsd: 0.00003, models: ['synthetic'] })
  t.alike([scoped.budgetUsd, scoped.models], [0.00003, ['synthetic']], 'the key carries its budget and models')
  const other = await client.call(GatewayProtocol.infer, { apiKey: scoped.key, model: 'other', prompt: 'hi', maxTokens: 10 }).catch((e) => e)
  t.is(other.code, 'FORBIDDEN', 'a model outside the key\'s list is FORBIDDEN')
  const codes = []
  for (let i = 0; i < 4; i++) {
    codes.push(await client.call(GatewayProtocol.infer, { apiKey: scoped.key, model: 'synthetic', prompt: `b ${i}`, maxTokens: 10 }).then(() => 'ok', (e) => e.code))
  }
  t.alike(codes, ['ok', 'ok', 'ok', 'BUDGET_EXCEEDED'], 'three requests fit the budget, the fourth is BUDGET_EXCEEDED')
  const plain = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'other', prompt: 'still fine', maxTokens: 10 })
  t.ok(plain.text.length > 0, 'the account\'s other key is not limited by that budget')

  // 2,000 tokens a day: a request that could use 4,000 is refused before it runs; a small one is not
  const big = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'other', prompt: 'big', maxTokens: 4000 }).catch((e) => e)
  t.is(big.code, 'QUOTA_EXCEEDED', 'a request whose worst case overruns the daily tokens is QUOTA_EXCEEDED')
  t.ok(/tokens per day/.test(big.message), 'naming the limit: ' + big.message)
  const q = await client.call(GatewayProtocol.getUserQuota, { apiKey: scoped.key })
  const budget = q.limits.find((l) => l.unit === 'usd')
  t.ok(budget && Math.abs(budget.used - 0.00003) < 1e-12 && budget.remaining === 0, 'the quota shows the key budget used up')
})

test('billing: a stream cancelled after k tokens is billed k', { timeout: 240_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, pricedMesh({ inference: { SYNTHETIC_TOKENS_PER_SEC: '40' } }))
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })

  const k = 6
  const ac = new AbortController()
  let received = 0
  const err = await client.stream(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: 'a long answer please', maxTokens: 200, stream: true }, {
    signal: ac.signal,
    idleTimeout: 30_000,
    onChunk: () => { if (++received === k) ac.abort() }
  }).catch((e) => e)
  t.is(err.code, 'CANCELLED', 'the caller sees its own cancel')
  const row = await until(async () => (await db.pool.query(`SELECT status, tokens_in, tokens_out, cost_nusd, error_code FROM request_logs`)).rows[0],
    (r) => r && r.status !== 'processing')
  t.is(row.status, 'cancelled', 'the request is logged as cancelled')
  t.ok(row.tokens_out >= k && row.tokens_out <= k + 2, `billed for the ${k} tokens delivered (log says ${row.tokens_out}; at most the one or two already in flight more)`)
  t.is(Number(row.cost_nusd), row.tokens_out * NANO_PER_TOKEN, 'the charge is exactly those tokens at the model price')
  t.ok(row.tokens_in > 0, 'and the prompt is counted')
  const credits = await client.call(GatewayProtocol.credits, { token: user.token })
  t.is(credits.reservedUsd, 0, 'the 200-token hold is released')
  t.ok(Math.abs(credits.balanceUsd - (1 - row.tokens_out * NANO_PER_TOKEN / 1e9)) < 1e-12, 'the balance went down by exactly the charge')
})

test('durability: a gateway killed with SIGKILL mid-load loses no acknowledged request; the sweeper fails the ones it held', { timeout: 240_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, pricedMesh({
    gateway: { STUCK_REQUEST_MS: '2000', SWEEP_INTERVAL_MS: '250' },
    inference: { SYNTHETIC_TOKENS_PER_SEC: '200' }
  }))
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })

  const acked: string[] = []
  let stop = false
  const loops = Array.from({ length: 16 }, async (_, i) => {
    for (let n = 0; !stop; n++) {
      try {
        const r = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: `load ${i}.${n}`, maxTokens: 10 }, 10_000)
        acked.push(r.id)
      } catch { return }
    }
  })
  await until(async () => acked.length, (n) => n >= 60, 30_000)
  mesh.children.get('gateway')!.proc.kill('SIGKILL')
  stop = true
  await Promise.all(loops)
  t.ok(acked.length >= 60, `${acked.length} requests were answered before the kill`)

  await mesh.restartChild('gateway')
  await mesh.waitUsable(1)
  const { rows: logged } = await db.pool.query(`SELECT id, status, tokens_out FROM request_logs WHERE id = ANY($1::uuid[])`, [acked])
  t.is(logged.length, acked.length, 'every answered request is in request_logs')
  t.ok(logged.every((r) => r.status === 'success' && r.tokens_out === 10), 'each as a success with its tokens')

  const stuck = await until(async () => (await db.pool.query(`SELECT count(*)::int AS n FROM request_logs WHERE status = 'processing'`)).rows[0].n, (n) => n === 0, 20_000)
  t.is(stuck, 0, 'no row is left in processing')
  // how many were in flight at the kill depends on timing (an answer the gateway ended but could not
  // send is a success): each request nobody was answered for is either that, or failed as STUCK
  const { rows: unanswered } = await db.pool.query(`SELECT status, error_code FROM request_logs WHERE NOT (id = ANY($1::uuid[]))`, [acked])
  const swept = unanswered.filter((r) => r.error_code === 'STUCK').length
  t.ok(unanswered.every((r) => r.status === 'success' || (r.status === 'failed' && r.error_code === 'STUCK')),
    `the ${unanswered.length} requests in flight at the kill were answered unseen or failed as STUCK (${swept} swept)`)
  const { rows: holds } = await db.pool.query(`SELECT (SELECT coalesce(sum(held), 0) FROM quota_counters)::bigint AS counters, (SELECT coalesce(sum(held_nusd), 0) FROM credit_accounts)::bigint AS credits`)
  t.alike([Number(holds[0].counters), Number(holds[0].credits)], [0, 0], 'every hold was released')
  const consistent = await ledgerConsistent(db.pool)
  t.ok(consistent.balancesMatch && consistent.neverNegative, 'the ledger agrees with the balance')
  const rollups = await rollupsMatch(db.pool)
  t.ok(rollups.ok, 'usage_stats equals the sum of request_logs: ' + rollups.detail)
  // the requests cut by the kill are in the log as failed, and count against the request limits like any failed request
  const limits = await limitsExact(db.pool)
  t.ok(limits.ok, 'every limit is exact: ' + limits.detail)

  const { client: again } = await gatewayClient(t, mesh)
  const after = await again.call(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: 'after the restart', maxTokens: 3 })
  t.is(after.usage.completionTokens, 3, 'the restarted gateway serves the same key')
})

test('cli: credits, an admin grant, a key with a budget, quota and usage since a date', { timeout: 240_000 }, async (t) => {
  const { mesh, home } = await startTestMesh(t, pricedMesh())
  const bossHome = home + '-boss'
  fs.mkdirSync(bossHome, { recursive: true })
  fs.copyFileSync(path.join(home, 'mesh.json'), path.join(bossHome, 'mesh.json'))
  t.teardown(() => fs.rmSync(bossHome, { recursive: true, force: true }))
  t.ok(mesh.gatewayKey, 'mesh up')

  t.is((await runCli(home, ['register', '--username', 'carol', '--email', 'carol@example.com', '--password', 'carol password'])).code, 0, 'carol registers')
  t.is((await runCli(home, ['login', '--email', 'carol@example.com', '--password', 'carol password'])).code, 0, 'and logs in')
  t.is((await runCli(bossHome, ['register', '--username', 'boss', '--email', 'boss@example.com', '--password', 'boss password'])).code, 0, 'the admin registers')
  t.is((await runCli(bossHome, ['login', '--email', 'boss@example.com', '--password', 'boss password'])).code, 0, 'and logs in')

  const none = await runCli(home, ['credits'])
  t.ok(/\$0 available/.test(none.stdout), 'a new account has no credits: ' + none.stdout.trim().split('\n')[0])
  const selfGrant = await runCli(home, ['credits', 'grant', 'carol', '5'])
  t.is(selfGrant.code, 1, 'carol cannot grant herself credits')
  t.ok(/FORBIDDEN/.test(selfGrant.stderr), 'FORBIDDEN, said once: ' + selfGrant.stderr.trim())
  const badAmount = await runCli(bossHome, ['credits', 'grant', 'carol', '-3'])
  t.is(badAmount.code, 2, 'a negative amount is a usage error')
  const grant = await runCli(bossHome, ['credits', 'grant', 'carol', '0.5', '--note', 'welcome'])
  t.ok(grant.code === 0 && /granted \$0.50 to carol/.test(grant.stdout), 'the admin grants $0.50: ' + grant.stdout.trim())

  const key = await runCli(home, ['keys', 'create', '--name', 'capped', '--budget', '0.00002', '--models', 'synthetic', '--json'])
  t.is(key.code, 0, 'a key with a budget and a model list')
  const apiKey = key.json.key as string
  for (let i = 0; i < 2; i++) {
    const r = await runCli(home, ['infer', '--max-tokens', '10', `question ${i}`], { env: { HYPERINFER_API_KEY: apiKey } })
    t.is(r.code, 0, `request ${i + 1} fits the key budget`)
  }
  const over = await runCli(home, ['infer', '--max-tokens', '10', 'one too many'], { env: { HYPERINFER_API_KEY: apiKey } })
  t.ok(over.code !== 0 && /BUDGET_EXCEEDED/.test(over.stderr), 'the third is refused: ' + over.stderr.trim())

  const quota = await runCli(home, ['quota'], { env: { HYPERINFER_API_KEY: apiKey } })
  t.ok(/this key's budget/.test(quota.stdout) && /tokens per day/.test(quota.stdout), 'quota lists every limit')
  const today = new Date().toISOString().slice(0, 10)
  const usage = await runCli(home, ['usage', '--since', today])
  t.ok(usage.code === 0 && /synthetic/.test(usage.stdout) && /\$0\.00002/.test(usage.stdout), 'usage --since today shows the model and the $0.00002 spent:\n' + usage.stdout)
  const badSince = await runCli(home, ['usage', '--since', 'yesterday'])
  t.ok(badSince.code !== 0 && /YYYY-MM-DD/.test(badSince.stderr), 'a bad date is refused clearly: ' + badSince.stderr.trim())
  const ledger = await runCli(home, ['credits', '--json'])
  t.is(ledger.json.ledger.filter((e: { kind: string }) => e.kind === 'debit').length, 2, 'two debits in the ledger')
  t.ok(Math.abs(ledger.json.balanceUsd - (0.5 - 0.00002)) < 1e-12, 'the balance is the grant minus the two charges')

  // logout is global: the old session token is refused by every path, not just this CLI
  const oldToken = JSON.parse(fs.readFileSync(path.join(home, 'session.json'), 'utf8')).token as string
  const out = await runCli(home, ['logout'])
  t.ok(out.code === 0 && !fs.existsSync(path.join(home, 'session.json')), 'hyperinfer logout removes the session file')
  const { client } = await gatewayClient(t, mesh)
  const replay = await client.call(GatewayProtocol.listKeys, { token: oldToken }).catch((e) => e)
  t.is(replay.code, 'UNAUTHENTICATED', 'the logged-out token is refused over RPC: ' + replay.message)
  t.ok((await runCli(home, ['credits'])).code !== 0, 'and the CLI asks to log in again')
})
