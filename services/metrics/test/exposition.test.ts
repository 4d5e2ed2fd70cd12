import test from 'brittle'
import { ExpositionMerger, parseExposition, parseSample } from '../exposition.ts'
import { ActiveUsers, BoundedLabel, ServiceMetrics } from '../../../shared/metrics.ts'
import { countBackendError, trackWorkerLoad } from '../../inference/metrics.ts'
import { promtoolCheck, sampleValue } from './util.ts'

// The text-format merge and the label-bounding helpers, checked against the real promtool.

const member = (service: string, reqs: number) => `# HELP ai_platform_requests_total RPC requests served
# TYPE ai_platform_requests_total counter
ai_platform_requests_total{service="${service}",method="infer",status="success"} ${reqs}

# HELP ai_platform_rpc_duration_seconds Time to serve an RPC request
# TYPE ai_platform_rpc_duration_seconds histogram
ai_platform_rpc_duration_seconds_bucket{le="0.1",service="${service}",method="infer"} ${reqs}
ai_platform_rpc_duration_seconds_bucket{le="+Inf",service="${service}",method="infer"} ${reqs}
ai_platform_rpc_duration_seconds_sum{service="${service}",method="infer"} 0.5
ai_platform_rpc_duration_seconds_count{service="${service}",method="infer"} ${reqs}

# HELP odd_label A label value with quotes, a backslash and a newline
# TYPE odd_label gauge
odd_label{service="${service}",v="a \\"q\\" \\\\ b\\nc"} 1
`

test('exposition: many members merge into one family each, labelled, and promtool accepts it', async (t) => {
  const m = new ExpositionMerger()
  m.addText(member('gateway', 3), { service: 'gateway', instance: 'aaaa' })
  m.addText(member('inference', 5), { service: 'inference', instance: 'bbbb' })
  m.addText(member('inference', 6), { service: 'inference', instance: 'cccc' })
  // a member without a service label gets the target's; one disagreeing on a type is dropped, counted
  m.addText('# TYPE ai_platform_requests_total gauge\nai_platform_requests_total 9\n', { service: 'web', instance: 'dddd' })
  m.addText('# TYPE web_only gauge\nweb_only 2\n', { service: 'web', instance: 'dddd' }) // no HELP: the merger supplies one
  m.addGauge('ai_platform_up', 'member answered', [{ labels: { service: 'web', instance: 'dddd' }, value: 1 }, { labels: { service: 'auth', instance: 'eeee' }, value: 0 }])
  const text = m.render()

  t.is((text.match(/^# TYPE ai_platform_requests_total counter$/gm) ?? []).length, 1, 'one TYPE per family')
  t.is((text.match(/^# HELP ai_platform_rpc_duration_seconds /gm) ?? []).length, 1, 'one HELP per family')
  t.is(sampleValue(text, 'ai_platform_requests_total', { service: 'inference', instance: 'cccc' }), 6)
  t.is(sampleValue(text, 'ai_platform_requests_total', { service: 'gateway', instance: 'aaaa' }), 3)
  t.is(sampleValue(text, 'ai_platform_rpc_duration_seconds_bucket', { instance: 'bbbb', le: '+Inf' }), 5, 'histogram buckets keep le')
  t.is(sampleValue(text, 'web_only', { service: 'web', instance: 'dddd' }), 2, 'the target\'s service when the member names none')
  t.is(sampleValue(text, 'ai_platform_requests_total', { instance: 'dddd' }), null, 'a type conflict is dropped')
  t.is(m.conflicts, 1, 'and counted')
  t.ok(text.includes('odd_label{service="gateway",instance="aaaa",v="a \\"q\\" \\\\ b\\nc"} 1'), 'escaped label values survive unchanged')
  t.is(sampleValue(text, 'ai_platform_up', { service: 'auth', instance: 'eeee' }), 0)

  const lines = text.split('\n')
  const familyOf = (l: string) => l.startsWith('#') ? l.split(' ')[2] : l.replace(/[{ ].*$/, '').replace(/_(bucket|sum|count)$/, '')
  const order = lines.filter(Boolean).map(familyOf)
  const blocks = order.filter((f, i) => f !== order[i - 1])
  t.is(new Set(blocks).size, blocks.length, 'each family\'s lines are contiguous')

  const check = await promtoolCheck(text)
  if (check.skipped) t.comment(`promtool skipped: ${check.skipped}`)
  else t.is(check.code, 0, 'promtool check metrics: ' + (check.output || 'clean'))

  // the check itself can fail: a naive concatenation is rejected
  const naive = member('gateway', 1) + member('inference', 1)
  const bad = await promtoolCheck(naive)
  if (!bad.skipped) t.not(bad.code, 0, 'promtool rejects duplicate HELP/TYPE (the check is real)')
})

test('exposition: the parser refuses malformed lines and keeps going', (t) => {
  t.is(parseSample('bad name{a="b"} 1'), null)
  t.is(parseSample('x{a="unterminated} 1'), null)
  t.is(parseSample('x{1a="b"} 1'), null)
  t.is(parseSample('x 1 2 3'), null)
  t.alike(parseSample('x{a="b",} 1.5e3 1700000000000'), { name: 'x', labels: [['a', 'b']], value: '1.5e3', timestamp: '1700000000000' })
  t.alike(parseSample('x +Inf'), { name: 'x', labels: [], value: '+Inf' })
  const { families, malformed } = parseExposition('# TYPE a counter\na_total 1\na 2\ngarbage here\n# TYPE b nonsense\nb 3\n')
  t.is(malformed, 2, 'a bad line and a bad TYPE counted')
  t.alike(families.map((f) => [f.name, f.type, f.samples.length]), [['a', 'counter', 1], ['a_total', 'untyped', 1], ['b', 'untyped', 1]])
})

test('BoundedLabel: at most N distinct values, then other', (t) => {
  const l = new BoundedLabel(3)
  t.alike(['a', 'b', 'a', 'c', 'd', 'e', 'b'].map((v) => l.value(v)), ['a', 'b', 'a', 'c', 'other', 'other', 'b'])
  t.is(l.value('x'.repeat(101)), 'other', 'too long')
  t.is(new BoundedLabel(5).value('has space'), 'other', 'not printable ASCII without spaces')
  t.is(l.value(''), 'unknown')
  t.is(l.size, 3)
})

test('ActiveUsers: distinct users per window, hashed, bounded', (t) => {
  let now = 1_000_000_000
  const u = new ActiveUsers({ now: () => now, maxTracked: 1000 })
  u.touch('alice'); u.touch('bob')
  now += 10 * 60_000 // 10 min later
  u.touch('carol'); u.touch('alice')
  t.alike(u.counts(), { '5m': 2, '1h': 3, '24h': 3 }, 'alice counted once, bob only in 1h/24h')
  now += 2 * 60 * 60_000
  u.touch('dave')
  t.alike(u.counts(), { '5m': 1, '1h': 1, '24h': 4 })
  now += 25 * 60 * 60_000
  t.alike(u.counts(), { '5m': 0, '1h': 0, '24h': 0 }, 'a day later all are forgotten')
  t.is(u.tracked, 0, 'and their hashes dropped')

  const small = new ActiveUsers({ now: () => now, maxTracked: 100 })
  for (let i = 0; i < 10_000; i++) small.touch('user-' + i)
  t.is(small.tracked, 100, 'memory bounded by maxTracked')
  t.alike(small.counts(), { '5m': 100, '1h': 100, '24h': 100 })
})

test('ServiceMetrics: bounded model labels, worker gauges, in-flight age, METRICS_DISABLED', async (t) => {
  const m = new ServiceMetrics('inference', { env: {}, maxModels: 2 })
  m.countTokens('llama3', 10, 5)
  m.countTokens('qwen', 1, 1)
  m.countTokens('user-supplied-model-3', 7, 7)
  m.countTokens('user-supplied-model-4', 1, 1)
  m.observeInference('llama3', 0.2)
  countBackendError(m, 'ollama', 'TIMEOUT')
  countBackendError(m, 'ollama', 'not a code')
  trackWorkerLoad(m, () => ({ capacity: 2, inflight: { llama3: 3, qwen: 1 } }))
  const end = m.begin('infer')
  await new Promise((r) => setTimeout(r, 30))
  let text = await m.registry.metrics()
  t.is(sampleValue(text, 'ai_platform_tokens_total', { model: 'llama3', direction: 'in' }), 10)
  t.is(sampleValue(text, 'ai_platform_tokens_total', { model: 'other', direction: 'in' }), 8, 'models past the bound fold into other')
  t.is(sampleValue(text, 'ai_platform_request_duration_seconds_count', { service: 'inference', model: 'llama3' }), 1)
  t.is(sampleValue(text, 'ai_platform_backend_errors_total', { backend: 'ollama', code: 'TIMEOUT' }), 1)
  t.is(sampleValue(text, 'ai_platform_backend_errors_total', { backend: 'ollama', code: 'INTERNAL' }), 1, 'a malformed code is not a new label value')
  t.is(sampleValue(text, 'ai_platform_worker_queue_depth', {}), 2, 'queue = in flight beyond capacity')
  t.is(sampleValue(text, 'ai_platform_worker_inflight', { model: 'llama3' }), 3)
  t.is(sampleValue(text, 'ai_platform_requests_in_flight', { method: 'infer' }), 1)
  t.ok(sampleValue(text, 'ai_platform_oldest_request_age_seconds', {})! >= 0.02, 'the oldest request ages')
  end('ok')
  text = await m.registry.metrics()
  t.is(sampleValue(text, 'ai_platform_requests_in_flight', { method: 'infer' }), 0)
  t.is(sampleValue(text, 'ai_platform_oldest_request_age_seconds', {}), 0)
  t.is(sampleValue(text, 'ai_platform_requests_total', { method: 'infer', status: 'success' }), 1)
  t.absent(text.includes('nodejs_active_handles_total'), 'the *_total gauges promtool rejects are gone')

  const auth = new ServiceMetrics('auth', { env: {} })
  auth.ensureFamilies()
  const authText = await auth.registry.metrics()
  t.is(sampleValue(authText, 'ai_platform_registrations_total', {}), 0, 'auth exports registrations from the start, at 0')
  t.is(sampleValue(authText, 'ai_platform_active_users', { time_window: '24h' }), 0)
  auth.counter('ai_platform_registrations_total').inc(); auth.counter('ai_platform_api_keys_created_total').inc(); auth.userActive('u1'); auth.userActive('u1'); auth.userActive('u2')
  const authAfter = await auth.registry.metrics()
  t.is(sampleValue(authAfter, 'ai_platform_registrations_total', {}), 1)
  t.is(sampleValue(authAfter, 'ai_platform_api_keys_created_total', {}), 1)
  t.is(sampleValue(authAfter, 'ai_platform_active_users', { time_window: '5m' }), 2)
  t.absent(authAfter.includes('u1'), 'no user id in the output')
  for (const [name, body] of [['auth', authAfter], ['inference', text]]) {
    const check = await promtoolCheck(body!)
    if (!check.skipped) t.is(check.code, 0, `the ${name} registry passes promtool on its own: ` + (check.output || 'clean'))
  }

  const off = new ServiceMetrics('gateway', { env: { METRICS_DISABLED: '1' } })
  off.observeRequest('infer', 'ok', 0.1)
  off.countTokens('llama3', 1, 1)
  off.begin('infer')('ok')
  const offText = await off.registry.metrics()
  t.is(sampleValue(offText, 'ai_platform_requests_total', { method: 'infer' }), null, 'disabled: nothing recorded')
  t.absent(offText.includes('process_cpu'), 'disabled: no process metrics collected')
})
