import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey } from './support/harness.ts'
import { freePort } from '../scripts/lib/embedded-pg.ts'
import { accountingInvariants } from '../scripts/lib/invariants.ts'
import { Load, sleep } from '../scripts/chaos/load.ts'

// A rolling restart under steady load: each service in turn gets SIGTERM and is started again —
// gateway 1, gateway 2, auth, metrics, web — while RPC callers (the SDK, given both gateways) and
// HTTP callers (the `openai` client) keep asking for whole and streamed answers. A draining gateway
// finishes what it runs and refuses the rest with SHUTTING_DOWN, which the callers take to the other
// gateway; the workers register with the restarted gateway on their own. No request fails, and the
// accounting is exact afterwards.

const generous = JSON.stringify({ default: { requestsPerHour: 1e6, userRequestsPerHour: 1e6, tokensPerHour: 1e9, tokensPerDay: 1e9 } })

test('rolling restart: every service restarted in turn under load, zero failed requests, workers re-register', { timeout: 600_000 }, async (t) => {
  const webPort = await freePort()
  const { mesh, db } = await startTestMesh(t, {
    gateways: 2,
    workers: 2,
    webPort,
    serviceEnv: {
      gateway: { TIER_LIMITS: generous, DEFAULT_RATE_LIMIT: '1000000' },
      inference: { SYNTHETIC_TOKENS_PER_SEC: '40' }
    }
  })
  const { client } = await gatewayClient(t, mesh)
  const user = await userWithKey(client)
  const load = new Load({
    gateways: mesh.gatewayKeys, bootstrap: mesh.bootstrapString, webUrl: mesh.webUrl!, keys: [{ name: 'user', key: user.key }],
    model: 'synthetic', maxTokens: 16, concurrency: 2, httpRetries: 6
  })
  t.teardown(() => load.close(), { order: 0 })
  load.start()
  await sleep(2000)

  for (const name of ['gateway', 'gateway-2', 'auth', 'metrics', 'web']) {
    const started = Date.now()
    await mesh.restartChild(name)
    // the workers come back to a restarted gateway by themselves: nothing here tells them to
    for (const key of mesh.gatewayKeys) await mesh.waitUsable(2, key, 90_000)
    t.pass(`${name} restarted; both gateways have both workers again after ${Date.now() - started} ms`)
    await sleep(1500)
  }
  const outcomes = await load.pause()
  const failed = outcomes.filter((o) => o.fate !== 'ok')
  const by = (via: string, stream: boolean) => outcomes.filter((o) => o.via === via && o.stream === stream).length
  t.ok(by('rpc', false) > 5 && by('rpc', true) > 5 && by('http', false) > 5 && by('http', true) > 5,
    `steady mixed load: ${outcomes.length} requests (RPC ${by('rpc', false)} whole, ${by('rpc', true)} streamed; HTTP ${by('http', false)} whole, ${by('http', true)} streamed)`)
  t.alike(failed.map((o) => `${o.via}${o.stream ? ' stream' : ''} ${o.fate} ${o.code ?? ''} ${o.message ?? ''}`.trim()), [], 'no request failed')

  // at rest: every answer recorded once, nothing held, the rollups and the ledger exact
  let checks = await accountingInvariants(db.pool)
  for (let i = 0; i < 40 && !checks.every((c) => c.ok); i++) { await sleep(500); checks = await accountingInvariants(db.pool) }
  for (const c of checks) t.ok(c.ok, `${c.name}: ${c.detail}`)
  const ids = outcomes.flatMap((o) => o.id ? [o.id] : [])
  const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM request_logs WHERE id = ANY($1::uuid[]) AND status = 'success'`, [ids])
  t.is(rows[0].n, ids.length, `each of the ${ids.length} RPC answers is in request_logs`)
})
