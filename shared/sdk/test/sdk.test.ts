import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey, type TestMesh } from '../../../test/support/harness.ts'
import { syntheticText } from '../../../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../../protocol/gateway.ts'
import type { MeshClient } from '../../mesh/client.ts'
import { AIInferenceClient, MeshError } from '../index.ts'

// The SDK against a whole mesh of real processes, through both transports: RPC straight to the
// gateway, and HTTP through the web service's OpenAI-compatible routes. The same contract runs over
// each, and then both must give the same answers to the same request.
//
// One mesh serves every test in this file (starting one costs seconds); the first test starts it
// and the last stops it. Tokens come at 100/s, so a long stream can be broken off mid-way.

const RATE_LIMIT = 40
const BOGUS_KEY = 'hi_' + 'x'.repeat(43)

interface Env extends TestMesh { gw: MeshClient }
let env: Env | null = null
const cleanups: Array<{ fn: () => unknown, order: number }> = []
const collector = { teardown: (fn: () => unknown, o?: { order?: number }) => { cleanups.push({ fn, order: o?.order ?? 0 }) } }

type Transport = 'rpc' | 'http'

function client (mesh: TestMesh['mesh'], transport: Transport, apiKey: string): AIInferenceClient {
  const ai = transport === 'rpc'
    ? new AIInferenceClient({ apiKey, gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
    : new AIInferenceClient({ apiKey, baseUrl: mesh.webUrl! })
  collector.teardown(() => ai.close())
  return ai
}

/** The MeshError code `p` fails with ('resolved' when it does not fail, 'not a MeshError: …' when not coded). */
async function failure (p: Promise<unknown> | (() => Promise<unknown>)): Promise<{ code: string, err?: MeshError }> {
  try {
    await (typeof p === 'function' ? p() : p)
    return { code: 'resolved' }
  } catch (err) {
    return err instanceof MeshError ? { code: err.code, err } : { code: 'not a MeshError: ' + String(err) }
  }
}

async function collect (iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const d of iterable) out.push(d)
  return out
}

async function inflightBecomes (gw: MeshClient, want: (n: number) => boolean, ms = 5000): Promise<number> {
  const until = Date.now() + ms
  let n = -1
  while (Date.now() < until) {
    n = (await gw.call(GatewayProtocol.getServiceHealth, {})).inflight
    if (want(n)) return n
    await new Promise((r) => setTimeout(r, 25))
  }
  return n
}

test('sdk: start a mesh (auth, gateway, web, one synthetic worker)', { timeout: 120_000 }, async (t) => {
  const tm = await startTestMesh(collector, {
    serviceEnv: { inference: { SYNTHETIC_TOKENS_PER_SEC: '100' }, gateway: { DEFAULT_RATE_LIMIT: String(RATE_LIMIT) } }
  })
  const { client: gw } = await gatewayClient(collector, tm.mesh)
  env = { ...tm, gw }
  t.ok(tm.mesh.webUrl, 'the web service is up: ' + tm.mesh.webUrl)
})

for (const transport of ['rpc', 'http'] as const) {
  test(`sdk over ${transport}: inference, stream, cancel, errors, models, quota`, { timeout: 120_000 }, async (t) => {
    if (!env) return t.fail('no mesh')
    const { mesh, gw } = env
    const { key } = await userWithKey(gw)
    const ai = client(mesh, transport, key)
    t.is(ai.transport, transport)
    const prompt = `a haiku about ${transport} transports`
    const expected = syntheticText([{ role: 'user', content: prompt }], 8)

    const r = await ai.inference({ prompt, model: 'synthetic', maxTokens: 8 })
    t.is(r.text, expected, 'inference returns the worker\'s text, exactly')
    t.is(r.model, 'synthetic')
    t.alike(r.usage, { promptTokens: 5, completionTokens: 8 }, 'with usage')
    t.is(r.finishReason, 'length')
    t.ok(typeof r.id === 'string' && r.id.length > 0, 'and an id')
    if (transport === 'rpc') t.is(r.worker, mesh.keys.inference, 'RPC names the worker')

    const fromMessages = await ai.inference({ messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: prompt }], model: 'synthetic', maxTokens: 8 })
    t.is(fromMessages.text, expected, 'messages work like a prompt')

    const s = ai.stream({ prompt, model: 'synthetic', maxTokens: 8 })
    const deltas = await collect(s)
    t.ok(deltas.length >= 2, `the stream yields deltas (${deltas.length})`)
    t.is(deltas.join(''), expected, 'in order, adding up to the same text')
    const sr = await s.result
    t.is(sr.text, expected, 'then result has the whole text')
    t.alike(sr.usage, { promptTokens: 5, completionTokens: 8 }, 'and the usage')
    t.is(sr.finishReason, 'length')

    // breaking out cancels upstream: the gateway's in-flight count returns to 0
    const long = ai.stream({ prompt: 'a very long story', model: 'synthetic', maxTokens: 2000 })
    let seen = 0
    let during = -1
    for await (const d of long) {
      t.ok(d.length > 0)
      if (++seen === 3) { during = (await gw.call(GatewayProtocol.getServiceHealth, {})).inflight; break }
    }
    t.is(during, 1, 'the request was in flight while streaming')
    t.is((await failure(long.result)).code, 'CANCELLED', 'result rejects with CANCELLED after a break')
    t.is(await inflightBecomes(gw, (n) => n === 0), 0, 'breaking out cancelled it at the gateway')

    // aborting the signal does the same, and the loop throws CANCELLED
    const ac = new AbortController()
    const aborted = ai.stream({ prompt: 'another long story', model: 'synthetic', maxTokens: 2000 }, { signal: ac.signal })
    const loop = await failure(async () => { for await (const _ of aborted) ac.abort() })
    t.is(loop.code, 'CANCELLED', 'aborting the signal ends the loop with CANCELLED')
    t.is(await inflightBecomes(gw, (n) => n === 0), 0, 'and cancels it at the gateway')
    t.is((await failure(ai.inference({ prompt, model: 'synthetic' }, { signal: AbortSignal.abort() }))).code, 'CANCELLED', 'inference with an aborted signal: CANCELLED')

    const bad = client(mesh, transport, BOGUS_KEY)
    t.is((await failure(bad.inference({ prompt, model: 'synthetic' }))).code, 'INVALID_API_KEY', 'an unknown key: INVALID_API_KEY')
    t.is((await failure(collect(bad.stream({ prompt, model: 'synthetic' })))).code, 'INVALID_API_KEY', 'also when streaming')
    t.is((await failure(ai.inference({ prompt, model: 'gpt-17' }))).code, 'UNKNOWN_MODEL', 'an unknown model: UNKNOWN_MODEL')
    t.is((await failure(collect(ai.stream({ prompt, model: 'gpt-17' })))).code, 'UNKNOWN_MODEL', 'also when streaming')
    t.is((await failure(ai.inference({ model: 'synthetic' }))).code, 'BAD_REQUEST', 'neither prompt nor messages: BAD_REQUEST')
    t.is((await failure(ai.inference({ prompt: '', model: 'synthetic', maxTokens: 1 }))).code, 'resolved', 'an empty prompt is a prompt, as on OpenAI')

    // without a model, the gateway picks its default over RPC; the HTTP route requires one
    const noModel = await failure(ai.inference({ prompt, maxTokens: 8 }))
    if (transport === 'rpc') t.is(noModel.code, 'resolved', 'RPC: no model means the gateway default')
    else t.is(noModel.code, 'BAD_REQUEST', 'HTTP: no model is a BAD_REQUEST: ' + noModel.err?.reason)

    const models = await ai.models()
    const synthetic = models.find((m) => m.id === 'synthetic')
    t.ok(synthetic, 'models lists synthetic')
    t.is(synthetic?.backend, 'synthetic', 'with its backend')
    if (transport === 'rpc') t.is(synthetic?.workers, 1, 'and (RPC) its worker count')

    const quota = await failure(ai.quota())
    if (transport === 'rpc') {
      // admitted so far: inference, messages, stream, the two cancelled streams, the empty prompt, the default-model one;
      // the pre-aborted call never left, and bad requests and unknown models fail before the limiter
      const q = await ai.quota()
      t.is(q.limit, RATE_LIMIT, 'quota shows the limit')
      const before = q.used
      await ai.inference({ prompt, model: 'synthetic', maxTokens: 1 })
      const after = await ai.quota()
      t.is(after.used, before + 1, `quota counts each request (${before} → ${after.used})`)
      t.is(after.remaining, RATE_LIMIT - after.used)
      t.is(before, 7, 'every admitted request counted, cancelled ones too')
    } else {
      t.is(quota.code, 'UNSUPPORTED', 'HTTP has no quota route: UNSUPPORTED, said clearly: ' + quota.err?.reason)
    }
  })
}

test('sdk: both transports give the same answers, and the same errors', { timeout: 120_000 }, async (t) => {
  if (!env) return t.fail('no mesh')
  const { mesh, gw } = env
  const { key } = await userWithKey(gw)
  const rpc = client(mesh, 'rpc', key)
  const http = client(mesh, 'http', key)
  const req = { messages: [{ role: 'user' as const, content: 'the same question, twice' }], model: 'synthetic', maxTokens: 12 }

  const [a, b] = await Promise.all([rpc.inference(req), http.inference(req)])
  t.is(a.text, b.text, 'same text')
  t.alike(a.usage, b.usage, 'same usage')
  t.is(a.finishReason, b.finishReason, 'same finish reason')
  t.is(a.model, b.model, 'same model')
  t.is(a.text, syntheticText(req.messages, 12))

  const [sa, sb] = [rpc.stream(req), http.stream(req)]
  const [da, db] = await Promise.all([collect(sa), collect(sb)])
  t.is(da.join(''), db.join(''), 'same streamed text')
  const [ra, rb] = await Promise.all([sa.result, sb.result])
  t.alike(ra.usage, rb.usage, 'same streamed usage')
  t.is(ra.text, a.text, 'and streaming gives what inference gives')

  t.alike((await rpc.models()).map((m) => m.id), (await http.models()).map((m) => m.id), 'same model list')

  // spend the rest of this key's hour, then both transports refuse alike, with the wait
  const used = (await rpc.quota()).used
  await Promise.all(Array.from({ length: RATE_LIMIT - used }, () => rpc.inference({ prompt: 'x', model: 'synthetic', maxTokens: 1 })))
  for (const [name, ai] of [['rpc', rpc], ['http', http]] as const) {
    const f = await failure(ai.inference(req))
    t.is(f.code, 'RATE_LIMITED', `${name}: over the limit is RATE_LIMITED`)
    const retry = f.err?.details?.retryAfterSeconds
    t.ok(typeof retry === 'number' && retry > 0 && retry <= 3600, `${name}: with retryAfterSeconds (${retry})`)
    t.is((await failure(collect(ai.stream(req)))).code, 'RATE_LIMITED', `${name}: also when streaming`)
  }
})

test('sdk: bad options fail at once with coded errors; an unreachable gateway is UNAVAILABLE', { timeout: 60_000 }, async (t) => {
  t.is((await failure(async () => new AIInferenceClient({ apiKey: BOGUS_KEY, gateway: 'nope' }))).code, 'BAD_REQUEST', 'a malformed gateway key')
  t.is((await failure(async () => new AIInferenceClient({ apiKey: BOGUS_KEY, gateway: 'a'.repeat(64), bootstrap: 'host:notaport' }))).code, 'BAD_REQUEST', 'a malformed bootstrap list')
  t.is((await failure(async () => new AIInferenceClient({ apiKey: BOGUS_KEY, baseUrl: 'not a url' }))).code, 'BAD_REQUEST', 'a malformed base URL')
  if (!env) return t.fail('no mesh')
  const nobody = new AIInferenceClient({ apiKey: BOGUS_KEY, gateway: 'ab'.repeat(32), bootstrap: env.mesh.bootstrapString, connectTimeoutMs: 1500 })
  collector.teardown(() => nobody.close())
  const started = Date.now()
  const f = await failure(nobody.models())
  t.is(f.code, 'UNAVAILABLE', 'nobody at that key: UNAVAILABLE — ' + f.err?.reason)
  t.ok(Date.now() - started < 5000, 'within the connect timeout')
  const closedPort = new AIInferenceClient({ apiKey: BOGUS_KEY, baseUrl: 'http://127.0.0.1:1' })
  t.is((await failure(closedPort.inference({ prompt: 'x', model: 'synthetic' }))).code, 'UNAVAILABLE', 'nothing listening at the base URL: UNAVAILABLE')
  t.is((await failure(async () => { await new AIInferenceClient({ apiKey: '', baseUrl: 'http://127.0.0.1:1' }).inference({ prompt: 'x', model: 'm' }) })).code, 'INVALID_API_KEY', 'no key at all: INVALID_API_KEY, before any request')
})

test('sdk: stop the mesh', { timeout: 60_000 }, async (t) => {
  for (const c of cleanups.sort((a, b) => a.order - b.order)) await c.fn()
  t.pass('stopped')
})
