import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin, runCli, until, ADMIN_PASSWORD } from './support/harness.ts'
import { GatewayProtocol, type InferResult } from '../shared/protocol/gateway.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'

// The response cache on a real mesh of two gateways sharing one PostgreSQL: exact hits from the
// local and the shared tier, streamed replays in the original chunks, per-account scope, no-store,
// the HTTP header, request_logs rows and the cache price, semantic lookups for a key that opted in,
// stats and purge from the CLI, and expiry.

const PRICE_OUT = 2 // USD per 1M output tokens for `synthetic`; `free-model` has no price
const TTL_MS = 120_000
/** gateway-2 keeps what it writes for only this long: the expiry check */
const SHORT_TTL_MS = 4000

async function infer (client: MeshClient, req: Record<string, unknown>): Promise<{ r: InferResult, chunks: Array<{ text: string, cached?: true }> }> {
  const chunks: Array<{ text: string, cached?: true }> = []
  // the gateway's note on ignored parameters is a frame of its own, not part of the answer
  const r = await client.stream(GatewayProtocol.infer, req as never, { onChunk: (c) => { if (!c.ignored) chunks.push(c) }, idleTimeout: 30_000 })
  return { r, chunks }
}

test('response cache: exact and semantic hits, replayed chunks, scope, no-store, HTTP, billing, stats, purge, expiry', { timeout: 300_000 }, async (t) => {
  const { mesh, db, home } = await startTestMesh(t, {
    gateways: 2,
    instanceEnv: { 'gateway-2': { CACHE_TTL_MS: String(SHORT_TTL_MS) } },
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { MODEL_PRICES: JSON.stringify({ synthetic: { input: 0, output: PRICE_OUT } }), CACHE_PRICE: '0.5', CACHE_TTL_MS: String(TTL_MS), CACHE_EMBED_MODEL: 'synthetic-embed' },
      inference: { SYNTHETIC_MODELS: 'synthetic,free-model,synthetic-embed', SYNTHETIC_TOKENS_PER_SEC: '0' }
    }
  })
  const { client } = await gatewayClient(t, mesh)
  const { client: second } = await gatewayClient(t, mesh, mesh.gatewayKeys[1])
  const boss = await registerAdmin(client)
  const alice = await userWithKey(client, 'alice')
  const bob = await userWithKey(client, 'bob')
  for (const u of ['alice', 'bob']) await client.call(GatewayProtocol.grantCredits, { token: boss, username: u, amountUsd: 1 })
  const messages = [{ role: 'user', content: 'Explain quantum computing' }]
  const ask = { apiKey: alice.key, model: 'synthetic', messages, maxTokens: 12, temperature: 0 }

  // a deterministic request: the first answer goes to a worker, the same request again is a hit
  const first = await infer(client, { ...ask, stream: true })
  t.absent(first.r.cached, 'the first answer comes from a worker')
  t.is(first.chunks.map((c) => c.text).join(''), syntheticText(messages as never, 12))
  const again = await infer(client, { ...ask, stream: true })
  t.is(again.r.cached, true, 'the same request again: cached: true')
  t.is(again.r.cache?.tier, 'local')
  t.is(again.r.cache?.sourceId, first.r.id, 'naming the request whose answer it replays')
  t.alike(again.chunks.map((c) => c.text), first.chunks.map((c) => c.text), 'a streamed hit replays the original chunks, one frame each')
  t.is(again.chunks[0]!.cached, true, 'its first frame says it is cached')
  t.ok(again.r.id !== first.r.id, 'a hit is a request of its own')
  t.alike(again.r.usage, first.r.usage)
  t.is(again.r.costUsd, Math.round(first.r.costUsd * 1e9 / 2) / 1e9, 'billed at the cache price (half here)')
  const whole = await infer(client, { ...ask, messages: [{ role: 'user', content: '  Explain quantum computing\r\n' }] })
  t.is(whole.r.cached, true, 'normalized messages: surrounding whitespace and line ends do not matter')
  t.is(whole.r.text, first.chunks.map((c) => c.text).join(''), 'a whole (not streamed) hit carries the text')

  // what is not cached
  const other = await infer(client, { ...ask, maxTokens: 13 })
  t.absent(other.r.cached, 'other parameters: another key')
  t.absent((await infer(client, { ...ask, temperature: 0.7 })).r.cached, 'a non-deterministic request is not cached…')
  t.absent((await infer(client, { ...ask, temperature: 0.7 })).r.cached, '…or served from the cache')
  await infer(client, { ...ask, temperature: 0.7, maxTokens: 5, cache: true })
  t.is((await infer(client, { ...ask, temperature: 0.7, maxTokens: 5, cache: true })).r.cached, true, 'unless the caller asks (cache: true)')
  t.absent((await infer(client, { ...ask, cache: 'no-store' })).r.cached, 'no-store: never served from the cache')
  const fresh = { ...ask, messages: [{ role: 'user', content: 'a prompt asked once with no-store' }] }
  await infer(client, { ...fresh, cache: 'no-store' })
  t.absent((await infer(client, fresh)).r.cached, 'and never stored')
  t.absent((await infer(client, { ...ask, apiKey: bob.key })).r.cached, 'another account never gets alice\'s answer')

  // the shared tier: the other gateway has never seen the request
  const viaSecond = await infer(second, ask)
  t.is(viaSecond.r.cached, true, 'the second gateway answers from the shared tier')
  t.is(viaSecond.r.cache?.tier, 'shared')

  // request_logs: each hit a success row with its tier, source and price; rollups still match
  const rows = await until(async () => (await db.pool.query(`SELECT cache, cached_from, cost_nusd, tokens_out FROM request_logs WHERE cache IS NOT NULL ORDER BY created_at`)).rows, (r) => r.length >= 4)
  t.alike(rows.map((r) => r.cache), ['local', 'local', 'local', 'shared'], 'every hit recorded, with its tier')
  t.is(rows[0].cached_from, first.r.id)
  t.is(Number(rows[0].cost_nusd), Math.round(first.r.costUsd * 1e9 / 2))
  const rollup = await db.pool.query(`SELECT (SELECT sum(request_count) FROM usage_stats) AS s, (SELECT count(*) FROM request_logs WHERE status <> 'processing') AS r`)
  t.is(Number(rollup.rows[0].s), Number(rollup.rows[0].r), 'usage_stats still sums request_logs')

  // a priced hit the account cannot pay for is not served from the cache
  const broke = await userWithKey(client, 'broke')
  const brokeAsk = { ...ask, apiKey: broke.key, model: 'free-model' }
  await infer(client, brokeAsk)
  t.is((await infer(client, brokeAsk)).r.costUsd, 0, 'a free model\'s hit is free')
  const unpaid = await infer(client, { ...ask, apiKey: broke.key }).catch((e) => e)
  t.is(unpaid.code, 'INSUFFICIENT_CREDITS', 'a priced request from an empty account is refused as ever')

  // HTTP: the header in and out
  const post = (body: unknown, headers: Record<string, string> = {}) => fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST', headers: { authorization: `Bearer ${alice.key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body)
  })
  const httpBody = { model: 'free-model', messages: [{ role: 'user', content: 'over http' }], max_tokens: 6, temperature: 0 }
  const h1 = await post(httpBody)
  t.is(h1.headers.get('x-hyperinfer-cache'), 'miss')
  const h2 = await post(httpBody)
  t.is(h2.headers.get('x-hyperinfer-cache'), 'hit', 'x-hyperinfer-cache: hit')
  t.is((await h2.json() as any).choices[0].message.content, (await h1.json() as any).choices[0].message.content)
  t.is((await post(httpBody, { 'cache-control': 'no-store' })).headers.get('x-hyperinfer-cache'), 'miss', 'Cache-Control: no-store bypasses it')
  const sse = await post({ ...httpBody, stream: true })
  t.is(sse.headers.get('x-hyperinfer-cache'), 'hit', 'a streamed hit says so too')
  t.ok((await sse.text()).includes('[DONE]'))

  // semantic: off until the key opts in; then a paraphrase over the threshold is a hit
  const q1 = { ...ask, model: 'free-model', messages: [{ role: 'user', content: 'How do I reverse a list in Python?' }] }
  const q2 = { ...q1, messages: [{ role: 'user', content: 'How can I reverse a Python list?' }] }
  await infer(client, q1)
  t.absent((await infer(client, q2)).r.cached, 'semantic lookups are opt-in')
  await client.call(GatewayProtocol.cacheSettings, { token: alice.token, keyId: alice.keyId, semantic: true, threshold: 0.7 })
  const other2 = await client.call(GatewayProtocol.cacheSettings, { token: bob.token, keyId: alice.keyId, semantic: true }).catch((e) => e)
  t.is(other2.code, 'NOT_FOUND', 'only the key\'s owner sets it')
  // a question asked now is stored with its embedding; its paraphrase finds it
  await infer(client, { ...q1, maxTokens: 11 })
  const sem = await infer(client, { ...q2, maxTokens: 11 })
  t.is(sem.r.cache?.tier, 'semantic', `a paraphrase is a semantic hit (similarity ${sem.r.cache?.similarity?.toFixed(3)})`)
  t.absent((await infer(client, { ...q2, maxTokens: 11, apiKey: bob.key })).r.cached, 'within the account only')
  t.absent((await infer(client, { ...q1, maxTokens: 11, messages: [{ role: 'user', content: 'How do I sort a dictionary in JavaScript?' }] })).r.cached, 'an unrelated question is not')

  await client.call(GatewayProtocol.cacheSettings, { token: alice.token, keyId: alice.keyId, semantic: false })

  // A in both gateways' local tiers (the second copied it from the shared tier), B in the first's only
  const a = { ...ask, model: 'free-model', messages: [{ role: 'user', content: 'kept by both gateways' }] }
  const b = { ...ask, model: 'free-model', messages: [{ role: 'user', content: 'kept by the first gateway' }] }
  await infer(client, a)
  await infer(client, b)
  t.is((await infer(second, a)).r.cache?.tier, 'shared')
  t.is((await infer(second, a)).r.cache?.tier, 'local')
  // stats and purge from the CLI, as a user and as the admin
  const own = await client.call(GatewayProtocol.cacheStats, { token: alice.token })
  t.is(own.scope, 'account')
  t.ok(own.hits.total >= 6 && own.hits.total < own.requests, `alice's own hits: ${JSON.stringify(own.hits)} of ${own.requests}`)
  t.is((await client.call(GatewayProtocol.cacheStats, { token: alice.token, all: true }).catch((e) => e)).code, 'FORBIDDEN', 'the whole mesh is for admins')
  const bossLogin = await runCli(home, ['login', '--email', 'boss@example.com', '--password-stdin'], { stdin: ADMIN_PASSWORD })
  t.is(bossLogin.code, 0, bossLogin.stderr)
  const all = await runCli(home, ['cache', 'stats', '--all', '--json'])
  t.is(all.code, 0, all.stderr)
  t.ok(all.json.hits.total >= 7 && all.json.hits.shared === 2 && all.json.hits.semantic === 1, `mesh stats: ${JSON.stringify(all.json.hits)}`)
  t.ok(all.json.entries >= 2 && all.json.hitRate > 0, `${all.json.entries} live entries, hit rate ${all.json.hitRate}`)
  const purge = await runCli(home, ['cache', 'purge', '--all', '--json'])
  t.is(purge.code, 0, purge.stderr)
  t.ok(purge.json.shared >= 2, `purged ${purge.json.shared} shared entries`)
  await new Promise((resolve) => setTimeout(resolve, 500)) // the other gateway hears the purge over LISTEN/NOTIFY
  t.absent((await infer(second, a)).r.cached, 'after a purge: a miss on the other gateway, whose local tier heard of it…')
  t.absent((await infer(client, b)).r.cached, '…and on the gateway that purged')

  // expiry: an entry is not served past its TTL (gateway-2 writes with a short one)
  const soon = { ...ask, model: 'free-model', messages: [{ role: 'user', content: 'expire me' }] }
  await infer(second, soon)
  t.is((await infer(second, soon)).r.cached, true)
  await new Promise((resolve) => setTimeout(resolve, SHORT_TTL_MS + 500))
  t.absent((await infer(second, soon)).r.cached, 'past its TTL an entry is served from neither tier')
})
