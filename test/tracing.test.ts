import crypto from 'node:crypto'
import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey, until } from './support/harness.ts'
import { OtlpReceiver, type ReceivedSpan } from '../scripts/lib/otlp-receiver.ts'

// Tracing on a real mesh: every process exports to an OTLP/HTTP receiver (protobuf, decoded with the
// official definitions), and one HTTP request becomes one trace across web, gateway and worker.

const GATEWAY_STEPS = ['authorize', 'admission.authenticate', 'routing', 'admission.hold', 'dispatch', 'settlement']

function one (spans: ReceivedSpan[], service: string, name: string): ReceivedSpan | undefined {
  return spans.find((s) => s.service === service && s.name === name)
}

test('tracing: one HTTP request is one trace across web, gateway and worker, named by x-request-id and request_logs.trace_id', { timeout: 180_000 }, async (t) => {
  const rx = new OtlpReceiver()
  await rx.listen()
  t.teardown(() => rx.close(), { order: 2 })
  const { mesh, db } = await startTestMesh(t, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint, OTEL_BSP_SCHEDULE_DELAY: '100' } })
  const { client } = await gatewayClient(t, mesh)
  const { key, token, userId } = await userWithKey(client)
  const prompt = 'tracing secret prompt ' + crypto.randomBytes(6).toString('hex')

  // a client that is itself traced sends its traceparent: the request joins that trace
  const traceId = crypto.randomBytes(16).toString('hex')
  const clientSpan = crypto.randomBytes(8).toString('hex')
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', traceparent: `00-${traceId}-${clientSpan}-01` },
    body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: prompt }], max_tokens: 5 })
  })
  t.is(res.status, 200)
  await res.json()
  t.is(res.headers.get('x-request-id'), traceId, 'x-request-id is the trace id of the traceparent sent')

  const spans = await until(async () => rx.trace(traceId), (s) => s.some((x) => x.service === 'inference' && x.name === 'first_token') && s.some((x) => x.name === 'settlement') && s.some((x) => x.service === 'web'))
  const services = new Set(spans.map((s) => s.service))
  t.ok(services.has('web') && services.has('gateway') && services.has('inference'), `spans from web, gateway and worker share the trace (${[...services].join(', ')})`)

  const web = one(spans, 'web', 'POST /v1/chat/completions')
  t.ok(web, 'web: a server span for the route')
  t.is(web?.kind, 'server')
  t.is(web?.parentSpanId, clientSpan, 'web: its parent is the client\'s span')
  t.is(web?.attributes['http.response.status_code'], 200)

  const infer = one(spans, 'gateway', 'infer')
  t.ok(infer, 'gateway: a server span for infer')
  t.is(infer?.parentSpanId, web?.spanId, 'gateway: infer is a child of the web span (the traceparent crossed the RPC)')
  for (const step of GATEWAY_STEPS) {
    const s = one(spans, 'gateway', step)
    t.is(s?.parentSpanId, infer?.spanId, `gateway: step ${step} is a child of infer`)
  }
  const stepsInOrder = GATEWAY_STEPS.map((n) => one(spans, 'gateway', n)!.startNs)
  t.alike([...stepsInOrder].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), stepsInOrder, 'gateway: the steps start in order')
  const dispatch = one(spans, 'gateway', 'dispatch')
  t.is(dispatch?.kind, 'client')
  t.is(one(spans, 'gateway', 'first_token')?.parentSpanId, dispatch?.spanId, 'gateway: first_token is a child of dispatch')
  t.is(one(spans, 'gateway', 'admission.hold')?.attributes['hyperinfer.model'], 'synthetic')

  const worker = one(spans, 'inference', 'processPrompt')
  t.ok(worker, 'worker: a server span for processPrompt')
  t.is(worker?.parentSpanId, dispatch?.spanId, 'worker: its span is a child of the gateway\'s dispatch')
  t.is(worker?.attributes['hyperinfer.backend'], 'synthetic')
  t.is(one(spans, 'inference', 'first_token')?.parentSpanId, worker?.spanId, 'worker: first_token is a child of processPrompt')
  t.ok(dispatch && worker && worker.startNs >= dispatch.startNs && worker.endNs <= dispatch.endNs + 5_000_000n, 'worker: runs within the dispatch step')

  const rows = await db.pool.query<{ id: string, trace_id: string }>('SELECT id, trace_id FROM request_logs WHERE user_id = $1', [userId])
  t.is(rows.rows.length, 1)
  t.is(rows.rows[0]?.trace_id, traceId, 'request_logs.trace_id is the trace id')
  t.is(infer?.attributes['hyperinfer.request_id'], rows.rows[0]?.id, 'the gateway span names the request row')

  const values = spans.flatMap((s) => Object.values(s.attributes).map(String).concat(s.name, s.statusMessage))
  t.absent(values.find((v) => v.includes(key) || v.includes(token) || v.includes(prompt) || v.includes(key.slice(0, 20))), 'no span carries the API key, the session token or the prompt')

  // a client with no trace of its own: a new trace whose id is the request id the response names
  const streamed = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true })
  })
  await streamed.text()
  const requestId = streamed.headers.get('x-request-id') ?? ''
  t.ok(/^[0-9a-f]{32}$/.test(requestId), 'x-request-id is a W3C trace id')
  const fresh = await until(async () => rx.trace(requestId), (s) => s.some((x) => x.service === 'inference' && x.name === 'processPrompt') && s.some((x) => x.service === 'web'))
  const root = one(fresh, 'web', 'POST /v1/chat/completions')
  t.is(root?.parentSpanId, '', 'a streamed request without traceparent starts a trace at the web span')
  t.is(one(fresh, 'gateway', 'infer')?.parentSpanId, root?.spanId)
  const logged = await db.pool.query<{ trace_id: string }>('SELECT trace_id FROM request_logs WHERE user_id = $1 AND trace_id = $2', [userId, requestId])
  t.is(logged.rows.length, 1, 'request_logs.trace_id of the streamed request is its x-request-id')

  // a refused request: the step that refused it is marked failed with its code
  const refusedTrace = crypto.randomBytes(16).toString('hex')
  const refused = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: 'Bearer hi_not_a_real_key_0123456789', 'content-type': 'application/json', traceparent: `00-${refusedTrace}-${clientSpan}-01` },
    body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: 'x' }] })
  })
  t.is(refused.status, 401)
  const failed = await until(async () => rx.trace(refusedTrace), (s) => s.some((x) => x.service === 'gateway') && s.some((x) => x.service === 'web'))
  const gate = one(failed, 'gateway', 'infer')
  t.is(gate?.statusCode, 2, 'the gateway\'s span of the refused call failed')
  t.is(gate?.attributes['error.type'], 'INVALID_API_KEY', 'with the refusal\'s code')
  t.absent(failed.find((x) => x.name === 'admission.hold' || x.name === 'dispatch'), 'nothing was held or dispatched')
  t.is(rx.refused, 0, 'every export decoded')
})
