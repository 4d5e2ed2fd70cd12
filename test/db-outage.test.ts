import test from 'brittle'
import { gatewayClient, userWithKey, registerAdmin, until, waitFor } from './support/harness.ts'
import { startOwnDbMesh } from './support/own-db.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { MeshError } from '../shared/errors.ts'
import { GatewayConnection } from '../shared/sdk/rpc-transport.ts'
import type { LocalMesh } from '../scripts/lib/localmesh.ts'

// PostgreSQL stopped under a running mesh, then started again. While it is out: a request the
// gateway's leased allowance covers is served; any other paid request, and a key the gateway has
// not seen, get a prompt 503 (HTTP: an OpenAI error object with Retry-After; RPC: a coded error),
// never a hang; answers already running finish. The gateway is SIGKILLed during the outage and
// started again while the database is still out: it refuses with the same code, over RPC and HTTP,
// while what it served before is recorded in the background. Once PostgreSQL is back,
// every answer given during the outage is in request_logs, charged once, and balances equal ledgers.

const PRICES = JSON.stringify({ synthetic: { input: 0, output: 1 } })

async function chat (mesh: LocalMesh, key: string, maxTokens: number, stream = false) {
  const started = Date.now()
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: 'Bearer ' + key, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic', stream, max_tokens: maxTokens, messages: [{ role: 'user', content: 'outage ' + Math.random() }] }),
    signal: AbortSignal.timeout(90_000)
  })
  const text = await res.text()
  return { status: res.status, ms: Date.now() - started, text, json: stream ? null : JSON.parse(text), retryAfter: res.headers.get('retry-after') }
}

test('database outage: leased allowance serves, the rest is refused promptly, running answers finish, and everything is recorded after a SIGKILL', { timeout: 360_000 }, async (t) => {
  const { mesh, query, stopDb, startDb } = await startOwnDbMesh(t, {
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { MODEL_PRICES: PRICES, LEASE_IDLE_MS: '300000' },
      inference: { SYNTHETIC_TOKENS_PER_SEC: '20' }
    }
  })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const a = await userWithKey(client)
  const b = await userWithKey(client)
  for (const u of [a, b]) {
    const name = (await client.call(GatewayProtocol.whoami, { token: u.token })).user.username
    await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })
  }
  const unseen = await client.call(GatewayProtocol.createKey, { token: b.token, name: 'never used' })

  // a leases allowance for several requests of 60 tokens; b's key is known to the gateway but its slice is small
  const warm = await Promise.all(Array.from({ length: 4 }, () => chat(mesh, a.key, 60)))
  t.alike(warm.map((r) => r.status), [200, 200, 200, 200], 'a warmed up')
  t.is((await chat(mesh, b.key, 2)).status, 200, 'b warmed up with a small request')

  // answers running when the database goes: one over HTTP, one over RPC
  const httpRunning = chat(mesh, a.key, 60, true)
  let frames = 0
  const rpcRunning = client.stream(GatewayProtocol.infer, { apiKey: a.key, model: 'synthetic', prompt: 'running', maxTokens: 60, stream: true }, { idleTimeout: 60_000, onChunk () { frames++ } })
  await until(async () => frames, (n) => n > 0, 30_000)
  await stopDb()
  t.pass('PostgreSQL stopped')

  const covered = await chat(mesh, a.key, 8)
  if (covered.status !== 200) t.comment('covered request: ' + covered.text)
  t.is(covered.status, 200, `a request the leased allowance covers is served during the outage (${covered.ms} ms)`)

  const refused = await chat(mesh, b.key, 500)
  t.comment(`uncovered request refused in ${refused.ms} ms: ${refused.text}`)
  t.is(refused.status, 503, 'a request the allowance does not cover gets 503')
  t.is(refused.json?.error?.code, 'database_unavailable', 'with code database_unavailable')
  t.ok(Number(refused.retryAfter) >= 1, 'and Retry-After: ' + refused.retryAfter)
  t.ok(refused.ms < 5000, 'promptly, not after a hang')

  const stranger = await chat(mesh, unseen.key, 8)
  t.comment(`unseen key answered in ${stranger.ms} ms: ${stranger.text}`)
  t.is(stranger.status, 503, 'a key the gateway has not seen gets 503 while its account cannot be read')
  t.is(stranger.json?.error?.code, 'database_unavailable')
  t.ok(stranger.ms < 5000, 'promptly')

  const rpcStarted = Date.now()
  const rpcErr = await client.call(GatewayProtocol.infer, { apiKey: b.key, model: 'synthetic', prompt: 'over rpc', maxTokens: 500 }, 60_000).catch((err: unknown) => err)
  t.is((rpcErr as MeshError).code, 'DATABASE_UNAVAILABLE', `RPC: a coded error in ${Date.now() - rpcStarted} ms`)

  const finished = await httpRunning
  t.is(finished.status, 200, 'the HTTP answer running when PostgreSQL stopped finished')
  t.ok(finished.text.trim().endsWith('data: [DONE]'), 'to its [DONE]')
  const rpcDone = await rpcRunning
  t.is(rpcDone.usage.completionTokens, 60, 'the RPC answer running then finished with its 60 tokens')

  // the gateway dies with those answers recorded only in its settlement log, and starts while the
  // database is still out; its callers have noticed the dead link, so what they ask next reaches the new process
  mesh.children.get('gateway')!.proc.kill('SIGKILL')
  const webSees = async () => ((await (await fetch(mesh.webUrl + '/health')).json()) as { gateway: string }).gateway
  await waitFor('the callers notice the killed gateway', async () => !client.connected && await webSees() === 'disconnected', 30_000)
  const spawned = Date.now()
  await mesh.restartChild('gateway')
  const listening = Date.now()
  const timed = <T>(p: Promise<T>) => p.then((v) => ({ v, ms: Date.now() - listening }))
  const ask = (c: { call: typeof client.call }) => c.call(GatewayProtocol.infer, { apiKey: a.key, model: 'synthetic', prompt: 'after the restart', maxTokens: 8 }, 30_000).then(() => null, (err: MeshError) => err.code)
  const fresh = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 30_000 })
  t.teardown(() => fresh.close())
  const [overRpc, overHttp, overFresh] = await Promise.all([timed(ask(client)), chat(mesh, a.key, 8), timed(fresh.open().then(ask))])
  t.comment(`the restarted gateway printed its ready line ${listening - spawned} ms after its start; refusals after that: ` +
    `RPC ${overRpc.ms} ms, HTTP ${overHttp.ms} ms, a new RPC connection ${overFresh.ms} ms`)
  t.is(overRpc.v, 'DATABASE_UNAVAILABLE', 'the restarted gateway (no allowance yet) refuses over RPC with DATABASE_UNAVAILABLE')
  t.is(overFresh.v, 'DATABASE_UNAVAILABLE', 'and on a new connection')
  t.is(overHttp.status, 503, 'over HTTP: 503')
  t.is(overHttp.json?.error?.code, 'database_unavailable', 'with code database_unavailable: ' + overHttp.text)
  t.ok(Number(overHttp.retryAfter) >= 1, 'and Retry-After')
  await mesh.waitUsable(1)

  await startDb()
  t.pass('PostgreSQL started again')
  const expectA = 4 + 1 + 1 + 1 // warm-ups, the covered one, the two running answers
  const rows = await until(() => query<{ n: number, tokens: number }>(`SELECT count(*)::int AS n, coalesce(sum(tokens_out), 0)::int AS tokens FROM request_logs WHERE user_id = $1 AND status = 'success'`, [a.userId]).then((r) => r.rows[0]!).catch(() => ({ n: -1, tokens: -1 })),
    (r) => r.n === expectA, 60_000, 250)
  t.is(rows.n, expectA, `all ${expectA} answers a got are in request_logs, the outage's included`)
  t.is(rows.tokens, 4 * 60 + 8 + 2 * 60, 'with exactly their tokens')
  const ledger = await until(() => query(`SELECT count(*) FILTER (WHERE c.balance_nusd <> coalesce(l.sum, 0))::int AS off, coalesce(sum(c.held_nusd), 0)::bigint AS held,
      (SELECT count(*)::int FROM request_logs WHERE status = 'processing') AS processing
    FROM credit_accounts c LEFT JOIN (SELECT user_id, sum(amount_nusd) AS sum FROM credit_ledger GROUP BY user_id) l USING (user_id)`).then((r) => r.rows[0]),
  (r) => r.off === 0 && Number(r.held) === 0 && r.processing === 0, 30_000, 250)
  t.is(ledger.off, 0, 'every balance equals its ledger')
  t.is(ledger.processing, 0, 'nothing left processing')
  const { rows: [bal] } = await query('SELECT balance_nusd::bigint AS b FROM credit_accounts WHERE user_id = $1', [a.userId])
  t.is(Number(bal.b), 1e9 - (4 * 60 + 8 + 2 * 60) * 1000, 'a was charged exactly once for each answer')

  const again = await until(() => chat(mesh, b.key, 500), (r) => r.status === 200, 30_000, 500)
  t.is(again.status, 200, 'b is served again once the database is back')
  const conn = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString })
  t.teardown(() => conn.close())
  t.ok(await conn.open(), 'the gateway answers RPC again')
})
