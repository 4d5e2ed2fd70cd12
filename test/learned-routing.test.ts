import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey, runCli, until } from './support/harness.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'

// Learned routing and feedback on a real mesh: the `learned` strategy routes within the request's
// filters, users score answers over RPC, HTTP (/v1/feedback) and the CLI, and what the gateways
// learn lands in PostgreSQL (shared by every gateway, kept across restarts). The gateway's metrics
// carry the cache counters, the router's decisions and the demand forecast.

test('learned routing: routes, takes feedback three ways, keeps what it learns in the database', { timeout: 240_000 }, async (t) => {
  const { mesh, db, home } = await startTestMesh(t, {
    gateways: 2,
    serviceEnv: {
      // predictive warm-up on a short clock: entries live 2 s, a prompt asked twice is hot
      gateway: { LEARNED_SYNC_MS: '200', CACHE_TTL_MS: '2000', CACHE_WARM_BUDGET_TOKENS: '100000', CACHE_WARM_MIN_USES: '2', CACHE_WARM_INTERVAL_MS: '300' },
      inference: { SYNTHETIC_MODELS: 'synthetic,other', SYNTHETIC_TOKENS_PER_SEC: '0' },
      // a loaded machine must not turn a slow scrape into a missing member
      metrics: { METRICS_SCRAPE_TIMEOUT_MS: '20000' }
    }
  })
  const { client } = await gatewayClient(t, mesh)
  const alice = await userWithKey(client, 'alice')
  const bob = await userWithKey(client, 'bob')

  const r = await client.call(GatewayProtocol.infer, { apiKey: alice.key, prompt: 'route me', maxTokens: 4, route: { strategy: 'learned' } }, 30_000)
  t.is(r.routing.strategy, 'learned')
  t.ok(/^learned: (best estimate|exploring) (synthetic|other) \(value [0-9.]+\) for 'chat' among 2 model\(s\)/.test(r.routing.reason), r.routing.reason)
  const none = await client.call(GatewayProtocol.infer, { apiKey: alice.key, prompt: 'x', route: { strategy: 'learned', task: 'code' } }, 30_000).catch((e) => e)
  t.is(none.code, 'NO_WORKER', 'no model meets the filter: nothing is explored outside it')

  // feedback over RPC: one's own request only, a score in [0, 1]
  const fb = await client.call(GatewayProtocol.feedback, { apiKey: alice.key, requestId: r.id, score: 1 })
  t.alike(fb, { requestId: r.id, model: r.model, score: 1 })
  t.is((await client.call(GatewayProtocol.feedback, { apiKey: bob.key, requestId: r.id, score: 0 }).catch((e) => e)).code, 'NOT_FOUND', 'another account\'s request is unknown')
  t.is((await client.call(GatewayProtocol.feedback, { apiKey: alice.key, requestId: r.id, score: 2 } as never).catch((e) => e)).code, 'BAD_REQUEST')

  // over HTTP: the answer names its request id; feedback takes it
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST', headers: { authorization: `Bearer ${alice.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'other', messages: [{ role: 'user', content: 'hello' }], max_tokens: 3 })
  })
  const requestId = res.headers.get('x-hyperinfer-request-id')
  t.ok(requestId, 'x-hyperinfer-request-id on the answer')
  const post = (body: unknown, key = alice.key) => fetch(mesh.webUrl + '/v1/feedback', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const ok = await post({ request_id: requestId, score: 0.25, comment: 'too short' })
  t.is(ok.status, 200)
  t.alike(await ok.json(), { object: 'feedback', request_id: requestId, model: 'other', score: 0.25 })
  const bad = await post({ request_id: requestId, score: 'great' })
  t.is(bad.status, 400)
  t.is(((await bad.json()) as any).error.param, 'score')
  t.is((await post({ request_id: requestId, score: 1 }, bob.key)).status, 404)
  const traced = await post({ request_id: res.headers.get('x-request-id'), score: 0.5 })
  t.is(traced.status, 200, 'the trace id (x-request-id) works as well')

  // and from the CLI
  const cli = await runCli(home, ['feedback', r.id, '0.75', '--json'], { env: { HYPERINFER_API_KEY: alice.key } })
  t.is(cli.code, 0, cli.stderr)
  t.is(cli.json.score, 0.75)
  const { rows: scores } = await db.pool.query('SELECT score FROM request_feedback ORDER BY created_at')
  t.alike(scores.map((s) => s.score).sort(), [0.5, 0.75], 'one score per request (the last one given)')

  // what the gateway learned is in the shared store: outcomes and first scores, per context and model
  const arms = await until(async () => (await db.pool.query('SELECT context, model, n, q_n FROM routing_arms ORDER BY model')).rows,
    (rows) => rows.some((a) => a.model === 'other' && a.q_n > 0.9) && rows.some((a) => a.model === r.model && a.n > 0.9 && a.q_n > 0.9), 10_000)
  t.ok(arms.some((a) => a.model === r.model && a.n > 0.9 && a.q_n > 0.9), `arms in PostgreSQL: ${JSON.stringify(arms)}`)
  t.ok(arms.every((a) => a.context === 'chat'))

  // warm-up: a hot deterministic prompt is answered again before its entry expires, so it is still a
  // hit well past its TTL; a prompt asked once is not
  const hot = { apiKey: alice.key, model: 'synthetic', prompt: 'a hot prompt', maxTokens: 3, temperature: 0 }
  const cold = { ...hot, prompt: 'a cold prompt' }
  await client.call(GatewayProtocol.infer, cold, 30_000)
  for (let i = 0; i < 4; i++) await client.call(GatewayProtocol.infer, hot, 30_000)
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const warmHit = await client.call(GatewayProtocol.infer, hot, 30_000)
  t.is(warmHit.cached, true, 'a hot prompt is still cached after its TTL: warm-up refreshed it')
  t.absent((await client.call(GatewayProtocol.infer, cold, 30_000)).cached, 'a cold one expired')

  // the metrics: cache counters, router decisions, demand and capacity per model
  await client.call(GatewayProtocol.infer, { apiKey: alice.key, prompt: 'cache me', maxTokens: 2, temperature: 0 }, 30_000)
  await client.call(GatewayProtocol.infer, { apiKey: alice.key, prompt: 'cache me', maxTokens: 2, temperature: 0 }, 30_000)
  /** a sample of `family` whose labels include all of `labels`, with a value above 0 */
  const positive = (text: string, family: string, ...labels: string[]) => text.split('\n').some((l) =>
    l.startsWith(family + '{') && labels.every((x) => l.includes(x)) && Number(l.slice(l.lastIndexOf(' ') + 1)) > 0)
  const text = await until(() => fetch(new URL(mesh.metricsUrl!).origin + '/metrics').then((m) => m.text()), (s) => positive(s, 'ai_platform_cache_requests_total', 'tier="local"', 'result="hit"'), 10_000)
  t.ok(positive(text, 'ai_platform_cache_requests_total', 'tier="local"', 'result="hit"'), 'ai_platform_cache_requests_total{tier,result}')
  t.ok(positive(text, 'ai_platform_router_decisions_total', 'strategy="learned"'), 'ai_platform_router_decisions_total')
  t.ok(text.split('\n').some((l) => l.startsWith('ai_platform_demand_forecast_requests_per_minute{') && l.includes('model="synthetic"')), 'ai_platform_demand_forecast_requests_per_minute')
  t.ok(positive(text, 'ai_platform_cache_warm_hits_total'), 'ai_platform_cache_warm_hits_total')
  t.ok(positive(text, 'ai_platform_cache_warm_tokens_total'), 'ai_platform_cache_warm_tokens_total: what warming cost')
  t.ok(positive(text, 'ai_platform_model_capacity_requests_per_minute', 'model="other"'), 'ai_platform_model_capacity_requests_per_minute')
})
