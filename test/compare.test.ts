import test from 'brittle'
import type pg from 'pg'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin } from './support/harness.ts'
import { startFakeOpenAI } from './fakes/fake-openai.ts'
import { FAIL_MODEL, SLOW_MODEL, fakeTokens } from './fakes/fake-llm.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { AIInferenceClient } from '../shared/sdk/index.ts'

// POST /v1/compare over real HTTP against the whole mesh: one prompt to several models at once,
// one result per model, each an ordinary request of its own, so each is in request_logs and on
// the credit ledger with its own id, and charged what its result says. The official openai client
// has no method for a custom route, so this is plain fetch, as any HTTP client would call it.

// USD per 1M tokens: gpt-a costs 1,000 nano-USD per prompt token and 2,000 per completion token
const PRICES = { 'gpt-a': { input: 1, output: 2 }, [SLOW_MODEL]: { input: 3, output: 5 } }
const nanoOf = (model: keyof typeof PRICES, tin: number, tout: number) => tin * PRICES[model].input * 1000 + tout * PRICES[model].output * 1000

async function post (base: string, key: string, body: unknown) {
  const res = await fetch(base + '/v1/compare', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  let json: any = null
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, json, text, headers: res.headers }
}

/** The events of a streamed compare, in order, and the raw data lines. */
async function streamed (base: string, key: string, body: unknown) {
  const res = await fetch(base + '/v1/compare', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...body as object, stream: true }) })
  const raw = await res.text()
  const data = raw.split('\n\n').filter(Boolean).map((block) => block.replace(/^data: /, ''))
  const events = data.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d))
  return { status: res.status, contentType: res.headers.get('content-type'), requestId: res.headers.get('x-request-id'), data, events }
}

async function rowsOf (pool: pg.Pool, traceId: string, expect: number) {
  // the gateway records in batches a few ms after answering
  for (let i = 0; i < 100; i++) {
    const { rows } = await pool.query('SELECT id, model_used, status, error_code, tokens_in, tokens_out, cost_nusd FROM request_logs WHERE trace_id = $1 AND status <> $2 ORDER BY model_used', [traceId, 'processing'])
    if (rows.length >= expect) return rows
    await new Promise((r) => setTimeout(r, 100))
  }
  return (await pool.query('SELECT id, model_used, status, error_code, tokens_in, tokens_out, cost_nusd FROM request_logs WHERE trace_id = $1 ORDER BY model_used', [traceId])).rows
}

test('compare over HTTP: one result per model with text, usage, latency and cost; each model billed as its own request', { timeout: 240_000 }, async (t) => {
  const openai = await startFakeOpenAI({ apiKey: 'sk-compare', models: ['gpt-a', SLOW_MODEL, FAIL_MODEL] })
  t.teardown(() => openai.close(), { order: 2 })
  const { mesh, db } = await startTestMesh(t, {
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { MODEL_PRICES: JSON.stringify(PRICES) },
      inference: { OPENAI_BASE_URL: openai.baseURL, OPENAI_API_KEY: 'sk-compare', SYNTHETIC_TOKENS_PER_SEC: '50' }
    }
  })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client, 'comparer')
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: 'comparer', amountUsd: 1 })
  const base = mesh.webUrl!

  // ---- whole answers -------------------------------------------------------------------------
  const prompt = 'Compare these models please'
  const whole = await post(base, user.key, { models: ['synthetic', 'gpt-a'], prompt, max_tokens: 6 })
  t.is(whole.status, 200, 'a compare of two models answers 200: ' + whole.text.slice(0, 200))
  t.is(whole.json.object, 'compare')
  const [syn, gpt] = whole.json.results
  t.alike(whole.json.results.map((r: any) => [r.index, r.model]), [[0, 'synthetic'], [1, 'gpt-a']], 'one result per model, in the order asked')
  t.is(syn.text, syntheticText([{ role: 'user', content: prompt }], 6), "synthetic's own answer")
  t.is(gpt.text, fakeTokens('gpt-a', 6).join(''), "gpt-a's own answer")
  t.is(syn.usage.completion_tokens, 6)
  t.is(gpt.usage.total_tokens, gpt.usage.prompt_tokens + gpt.usage.completion_tokens)
  t.is(syn.cost.nano_usd, 0, 'the local model is free')
  t.is(gpt.cost.nano_usd, nanoOf('gpt-a', gpt.usage.prompt_tokens, gpt.usage.completion_tokens), `gpt-a costs its registry price: ${gpt.cost.nano_usd} nano-USD`)
  t.is(gpt.cost.usd, gpt.cost.nano_usd / 1e9, 'and the same in USD')
  t.ok(gpt.cost.nano_usd > 0)
  t.ok(syn.latency_ms >= 0 && gpt.latency_ms >= 0, `latency per model (${syn.latency_ms} ms, ${gpt.latency_ms} ms)`)
  t.is(syn.finish_reason, 'length')
  t.is(syn.error, null)
  t.is(whole.json.cost.nano_usd, gpt.cost.nano_usd, 'the total cost is the sum of the models\'')
  t.is(whole.json.usage.completion_tokens, 12)

  const traceId = whole.headers.get('x-request-id')!
  const rows = await rowsOf(db.pool, traceId, 2)
  t.is(rows.length, 2, 'two models → two requests in request_logs, both under this HTTP request\'s id')
  for (const r of [syn, gpt]) {
    const row = rows.find((x: any) => x.id === r.id)
    t.ok(row, `${r.model} has its own request id ${r.id}`)
    t.is(row?.status, 'success')
    t.is(Number(row?.cost_nusd), r.cost.nano_usd, `${r.model} is charged exactly what its result says`)
    t.is(row?.tokens_out, r.usage.completion_tokens)
  }
  const { rows: debits } = await db.pool.query("SELECT request_id, amount_nusd FROM credit_ledger WHERE user_id = $1 AND kind = 'debit'", [user.userId])
  t.alike(debits.map((d: any) => [d.request_id, Number(d.amount_nusd)]), [[gpt.id, -gpt.cost.nano_usd]], 'the credit ledger debits the paid model once, by its request id')

  // ---- streamed, side by side, with one model failing ----------------------------------------
  const sPrompt = 'Stream these side by side'
  const s = await streamed(base, user.key, { models: ['synthetic', SLOW_MODEL, FAIL_MODEL], prompt: sPrompt, max_tokens: 5 })
  t.is(s.status, 200)
  t.ok(s.contentType?.startsWith('text/event-stream'), 'server-sent events')
  t.is(s.data[s.data.length - 1], '[DONE]', 'the stream ends with [DONE]')
  t.is(s.events[0].type, 'compare.start', 'it opens with the models')
  t.alike(s.events[0].models, ['synthetic', SLOW_MODEL, FAIL_MODEL])
  const deltas = (i: number) => s.events.filter((e) => e.type === 'delta' && e.index === i)
  t.ok(deltas(0).length >= 2 && deltas(1).length >= 2, `each answer streams as it comes (${deltas(0).length} and ${deltas(1).length} deltas)`)
  t.ok(deltas(1).every((e) => e.model === SLOW_MODEL), 'each delta names its model as well as its index')
  const results = s.events.filter((e) => e.type === 'result')
  t.is(results.length, 3, 'a result event per model')
  const byIndex = (i: number) => results.find((r) => r.index === i)
  t.is(deltas(0).map((e) => e.text).join(''), syntheticText([{ role: 'user', content: sPrompt }], 5), "synthetic's deltas make its answer")
  t.is(deltas(1).map((e) => e.text).join(''), fakeTokens(SLOW_MODEL, 5).join(''), "the slow model's deltas make its answer")
  t.is(byIndex(1).text, fakeTokens(SLOW_MODEL, 5).join(''), 'and its result carries the whole text')
  t.is(byIndex(1).cost.nano_usd, nanoOf(SLOW_MODEL, byIndex(1).usage.prompt_tokens, 5))
  t.is(byIndex(2).error.code, 'BACKEND_ERROR', 'the failing model has an OpenAI error object in its result: ' + JSON.stringify(byIndex(2).error))
  t.is(byIndex(2).error.type, 'server_error')
  t.is(byIndex(2).cost, null)
  const done = s.events[s.events.length - 1]
  t.is(done.type, 'compare.done')
  t.is(done.cost.nano_usd, byIndex(1).cost.nano_usd, 'the total counts what the answered models cost')
  const sRows = await rowsOf(db.pool, s.requestId!, 3)
  t.alike(sRows.map((r: any) => [r.model_used, r.status]).sort(), [[FAIL_MODEL, 'failed'], [SLOW_MODEL, 'success'], ['synthetic', 'success']], 'three models → three requests logged, the failed one as failed')

  // ---- bad input: OpenAI error objects naming the field --------------------------------------
  const bad = async (body: unknown, param: string | null, what: RegExp, status = 400) => {
    const r = await post(base, user.key, body)
    t.is(r.status, status, `${JSON.stringify(body).slice(0, 60)} → ${status}`)
    t.is(r.json?.error?.param ?? null, param)
    t.ok(what.test(r.json?.error?.message), r.json?.error?.message)
  }
  await bad({ models: [], prompt: 'x' }, 'models', /at least one/)
  await bad({ models: Array.from({ length: 9 }, (_, i) => `m${i}`), prompt: 'x' }, 'models', /at most 8/)
  await bad({ models: ['synthetic', 'synthetic'], prompt: 'x' }, 'models[1]', /listed twice/)
  await bad({ models: ['synthetic'], prompt: 'x', messages: [{ role: 'user', content: 'y' }] }, 'messages', /exactly one of prompt or messages/)
  await bad({ models: ['synthetic'] }, 'messages', /exactly one of prompt or messages/)
  await bad({ models: ['synthetic'], prompt: 'x', tools: [] }, null, /unknown field tools/)
  await bad({ models: ['synthetic'], prompt: 'x', max_tokens: 0 }, 'max_tokens', /./)
  const noKey = await post(base, 'hi_' + 'z'.repeat(43), { models: ['synthetic'], prompt: 'x' })
  t.is(noKey.status, 401, 'a bad key is one 401, not an error per model')
  t.is(noKey.json.error.code, 'invalid_api_key')
  const unknown = await post(base, user.key, { models: ['synthetic', 'no-such-model'], messages: [{ role: 'user', content: 'hi there' }], max_tokens: 3 })
  t.is(unknown.status, 200, 'an unknown model fails alone')
  t.is(unknown.json.results[1].error.code, 'UNKNOWN_MODEL')
  t.is(unknown.json.results[0].text, syntheticText([{ role: 'user', content: 'hi there' }], 3), 'the other model still answers')

  // ---- the SDK over HTTP: the same comparison through /v1/compare's events -------------------
  const sdk = new AIInferenceClient({ apiKey: user.key, baseUrl: base })
  t.teardown(() => sdk.close(), { order: 0 })
  const seen = ['', '']
  const viaSdk = await sdk.compare({ models: ['synthetic', 'gpt-a'], prompt: 'sdk compare', maxTokens: 4 }, { onDelta: (i, text) => { seen[i] += text } })
  t.alike(viaSdk.results.map((e) => e.text), [syntheticText([{ role: 'user', content: 'sdk compare' }], 4), fakeTokens('gpt-a', 4).join('')], 'the SDK gets each model\'s answer')
  t.alike(seen, viaSdk.results.map((e) => e.text), 'and their deltas as they stream, by index')
  t.is(viaSdk.costNanoUsd, viaSdk.results[1]!.costNanoUsd)
  t.ok(viaSdk.results[1]!.costNanoUsd! > 0)
  const sdkBad = await sdk.compare({ models: [], prompt: 'x' }).catch((e) => e)
  t.is(sdkBad.code, 'BAD_REQUEST', 'the SDK refuses an empty model list itself')
})
