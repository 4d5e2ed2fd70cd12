import test from 'brittle'
import crypto from 'node:crypto'
import { z } from 'zod'
import { localTestnet } from '../../../test/support/testnet.ts'
import { MeshService } from '../../../shared/mesh/service.ts'
import { handlers, type HandlerTable } from '../../../shared/mesh/peer.ts'
import { method } from '../../../shared/mesh/method.ts'
import { keyPairFromSeed } from '../../../shared/keys.ts'
import { createLogger } from '../../../shared/log.ts'
import { MetricsProtocol } from '../../../shared/protocol/metrics.ts'
import { MetricsService } from '../service.ts'
import { promtoolCheck, sampleValue } from './util.ts'

// The metrics service in-process on a local DHT: two small mesh members with a real RPC method, a
// member that dies, and a client pushing metrics. What is asserted is what Prometheus would read.

const ping = method<Record<string, never>, { pong: true }>('ping', { from: ['stranger'] }, z.object({}).strict())

class Member extends MeshService {
  protected handlers (): HandlerTable { return handlers().on(ping, () => ({ pong: true as const })).table }
}
class Plain extends MeshService {
  protected handlers (): HandlerTable { return new Map() }
}

const kp = () => keyPairFromSeed(crypto.randomBytes(32))
const log = createLogger('test', 'silent')

test('metrics: one merged exposition of every member, a dead member is up 0 within the timeout', { timeout: 60_000 }, async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  const metricsKp = kp()
  const clientKp = kp()
  const metricsKey = metricsKp.publicKey.toString('hex')
  const alpha = new Member({ name: 'alpha', keyPair: kp(), log, bootstrap, allow: ['metrics=' + metricsKey] })
  const beta = new Member({ name: 'beta', keyPair: kp(), log, bootstrap, allow: ['metrics=' + metricsKey] })
  await alpha.open()
  await beta.open()
  const metrics = new MetricsService({
    keyPair: metricsKp,
    log,
    bootstrap,
    allow: [clientKp.publicKey.toString('hex')],
    port: 0,
    targets: [{ name: 'alpha', publicKey: alpha.publicKey }, { name: 'beta', publicKey: beta.publicKey, instance: 'beta-eu' }],
    scrapeTimeoutMs: 1500
  })
  await metrics.open()
  const client = new Plain({ name: 'client', keyPair: clientKp, log, bootstrap })
  await client.open()
  t.teardown(async () => {
    await client.close(); await metrics.close(); await alpha.close(); await beta.close(); await testnet.destroy()
  })

  const scrape = async () => {
    const res = await fetch(`${metrics.url}/metrics`)
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() }
  }
  const a = { service: 'alpha', instance: alpha.publicKey.slice(0, 16) }
  const b = { service: 'beta', instance: 'beta-eu' }

  // the first scrape may race the initial connections; wait until both are up
  let text = ''
  for (let i = 0; i < 40; i++) {
    text = (await scrape()).text
    if (sampleValue(text, 'ai_platform_up', a) === 1 && sampleValue(text, 'ai_platform_up', b) === 1) break
    await new Promise((r) => setTimeout(r, 250))
  }
  t.is(sampleValue(text, 'ai_platform_up', a), 1, 'alpha up, instance = its key prefix')
  t.is(sampleValue(text, 'ai_platform_up', b), 1, 'beta up, instance = its configured name')
  t.is(sampleValue(text, 'ai_platform_up', { service: 'metrics', instance: metrics.publicKey.slice(0, 16) }), 1, 'the metrics service itself')

  // real traffic on alpha: 7 calls, counted by alpha, seen through the metrics service
  const conn = client.connectTo(alpha.publicKey, { name: 'alpha' })
  for (let i = 0; i < 7; i++) await conn.call(ping, {}, 5000)
  const first = await scrape()
  t.is(first.status, 200)
  t.ok(first.type?.startsWith('text/plain'), 'Prometheus text format')
  text = first.text
  t.is(sampleValue(text, 'ai_platform_requests_total', { ...a, method: 'ping', status: 'success' }), 7, 'alpha counted exactly the 7 pings')
  t.is(sampleValue(text, 'ai_platform_requests_total', { ...b, method: 'ping', status: 'success' }), null, 'beta served none')
  t.is(sampleValue(text, 'ai_platform_rpc_duration_seconds_count', { ...a, method: 'ping' }), 7, 'and timed them')
  t.is((text.match(/^# TYPE process_cpu_user_seconds_total /gm) ?? []).length, 1, 'one TYPE line per family although three processes export it')
  t.is((text.match(/^# HELP ai_platform_requests_total /gm) ?? []).length, 1, 'one HELP line per family')
  t.ok(sampleValue(text, 'process_cpu_user_seconds_total', a) !== null && sampleValue(text, 'process_cpu_user_seconds_total', b) !== null, 'each member\'s process metrics, labelled')
  const unlabelled = text.split('\n').filter((l) => l && !l.startsWith('#') && !(/service="[^"]+"/.test(l) && /instance="[^"]+"/.test(l)))
  t.alike(unlabelled, [], 'every sample carries service and instance')
  t.absent(/serviceInfo|metricsText/.test(text.split('\n').filter((l) => l.startsWith('ai_platform_requests_total')).join('\n')), 'scraping is not counted as traffic')
  const check = await promtoolCheck(text)
  if (check.skipped) t.comment(`promtool check skipped: ${check.skipped}`)
  else t.is(check.code, 0, `promtool check metrics accepts the live output ${check.output}`)

  const health = await (await fetch(`${metrics.url}/health`)).json() as any
  t.is(health.status, 'ok')
  t.alike(health.services.map((s: any) => [s.name, s.instance, s.up, s.version]), [['alpha', a.instance, true, '0.1.0'], ['beta', 'beta-eu', true, '0.1.0']], '/health lists both with version')
  t.alike(health.summary, { alpha: { up: 1, total: 1 }, beta: { up: 1, total: 1 } })

  await beta.close()
  const started = Date.now()
  const after = await scrape()
  const ms = Date.now() - started
  t.is(after.status, 200, 'still 200 with a dead member')
  t.is(sampleValue(after.text, 'ai_platform_up', b), 0, 'beta down')
  t.is(sampleValue(after.text, 'ai_platform_up', a), 1, 'alpha still up')
  t.is(sampleValue(after.text, 'process_cpu_user_seconds_total', b), null, 'no stale samples from beta')
  t.ok(ms < 1500 + 1000, `scrape bounded by the per-member timeout (${ms} ms, timeout 1500 ms)`)

  const degraded = await (await fetch(`${metrics.url}/api/health`)).json() as any
  t.is(degraded.status, 'degraded', '/api/health: degraded')
  const bh = degraded.services.find((s: any) => s.name === 'beta')
  t.is(bh.up, false)
  t.ok(['TIMEOUT', 'UNAVAILABLE'].includes(bh.error), `with the reason (${bh.error})`)

  const json = await (await fetch(`${metrics.url}/api/metrics?name=ai_platform_up`)).json() as any
  t.alike(json.families.map((f: any) => f.name), ['ai_platform_up'], '/api/metrics filters by name')
  t.is(json.families[0].samples.find((s: any) => s.labels.instance === 'beta-eu').value, 0)

  const sys = await client.connectTo(metrics.publicKey, { name: 'metrics' }).call(MetricsProtocol.getSystemHealth, {}, 5000)
  t.is(sys.status, 'degraded', 'getSystemHealth over RPC')
})

test('metrics: recordMetric takes allow-listed names and label values only; bad input changes nothing', { timeout: 60_000 }, async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  const clientKp = kp()
  const metrics = new MetricsService({ keyPair: kp(), log, bootstrap, allow: [clientKp.publicKey.toString('hex')], port: 0, targets: [] })
  await metrics.open()
  const client = new Plain({ name: 'client', keyPair: clientKp, log, bootstrap })
  await client.open()
  t.teardown(async () => { await client.close(); await metrics.close(); await testnet.destroy() })
  const conn = client.connectTo(metrics.publicKey, { name: 'metrics' })
  const own = { service: 'metrics', instance: metrics.publicKey.slice(0, 16) }

  const before = await conn.call(MetricsProtocol.getMetrics, {}, 5000)
  const bad: Array<[string, any]> = [
    ['unknown name', { name: 'user_ids_total', value: 1 }],
    ['unbounded label value', { name: 'ai_platform_client_requests_total', value: 1, labels: { status: 'user-42' } }],
    ['unknown label', { name: 'ai_platform_client_requests_total', value: 1, labels: { status: 'success', user: 'x' } }],
    ['huge label value', { name: 'ai_platform_client_requests_total', value: 1, labels: { status: 'x'.repeat(10_000) } }],
    ['negative counter', { name: 'ai_platform_client_requests_total', value: -5, labels: { status: 'success' } }],
    ['value out of range', { name: 'ai_platform_client_latency_seconds', value: 1e9, labels: { status: 'success' } }],
    ['not a number', { name: 'ai_platform_client_requests_total', value: 'NaN', labels: { status: 'success' } }]
  ]
  for (const [what, req] of bad) {
    const err = await conn.call(MetricsProtocol.recordMetric, req, 5000).catch((e) => e)
    t.is(err.code, 'BAD_REQUEST', `${what}: BAD_REQUEST`)
    t.ok(typeof err.message === 'string' && err.message.length < 500, `${what}: a short message (${err.message.slice(0, 80)})`)
  }
  const unchanged = await conn.call(MetricsProtocol.getMetrics, {}, 5000)
  const clientSamples = (s: string) => s.split('\n').filter((l) => l.startsWith('ai_platform_client_')).join('\n')
  t.is(clientSamples(unchanged.text), clientSamples(before.text), 'refused pushes changed nothing')
  t.absent(unchanged.text.includes('user_ids_total'), 'no new family')

  t.alike(await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_requests_total', value: 2, labels: { status: 'success' } }), { recorded: true })
  await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_latency_seconds', value: 0.3, labels: { status: 'success' } })
  const after = await conn.call(MetricsProtocol.getMetrics, {}, 5000)
  t.is(sampleValue(after.text, 'ai_platform_client_requests_total', { ...own, status: 'success' }), 2, 'recorded counter appears (getMetrics)')
  t.is(sampleValue(after.text, 'ai_platform_client_latency_seconds_count', { ...own, status: 'success' }), 1, 'recorded histogram appears')
  const viaHttp = await (await fetch(`${metrics.url}/metrics`)).text()
  t.is(sampleValue(viaHttp, 'ai_platform_client_requests_total', { ...own, status: 'success' }), 2, 'and in /metrics')

  const health = await (await fetch(`${metrics.url}/health`)).json() as any
  t.alike([health.status, health.services], ['ok', []], 'no targets: ok and empty')
  const notFound = await fetch(`${metrics.url}/nope`)
  t.is(notFound.status, 404)
  t.is(((await notFound.json()) as any).error.code, 'NOT_FOUND', 'unknown path: coded error')
  const post = await fetch(`${metrics.url}/metrics`, { method: 'POST' })
  t.is(post.status, 405)
})

test('metrics: internal methods refuse non-members', { timeout: 30_000 }, async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  const metrics = new MetricsService({ keyPair: kp(), log, bootstrap, allow: [], port: 0, targets: [] })
  await metrics.open()
  const stranger = new Plain({ name: 'stranger', keyPair: kp(), log, bootstrap })
  await stranger.open()
  t.teardown(async () => { await stranger.close(); await metrics.close(); await testnet.destroy() })
  const conn = stranger.connectTo(metrics.publicKey, { name: 'metrics' })
  const err = await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_requests_total', value: 1, labels: { status: 'success' } }, 1500).catch((e) => e)
  t.ok(['UNAVAILABLE', 'FORBIDDEN', 'TIMEOUT'].includes(err.code), `refused (${err.code})`)
  const text = await (await fetch(`${metrics.url}/metrics`)).text()
  t.is(sampleValue(text, 'ai_platform_client_requests_total', { status: 'success' }), null, 'nothing recorded')
})
