import test from 'brittle'
import crypto from 'node:crypto'
import { localTestnet } from '../../../shared/testing/testnet.ts'
import { MeshService } from '../../../shared/mesh/service.ts'
import type { HandlerTable } from '../../../shared/mesh/peer.ts'
import { keyPairFromSeed } from '../../../shared/keys.ts'
import { createLogger } from '../../../shared/log.ts'
import { MetricsProtocol } from '../../../shared/protocol/metrics.ts'
import { MetricsService } from '../service.ts'

class Plain extends MeshService {
  protected handlers (): HandlerTable { return new Map() }
}

const kp = () => keyPairFromSeed(crypto.randomBytes(32))
const log = createLogger('test', 'silent')

function upValue (text: string, name: string): string | null {
  const line = text.split('\n').find((l) => l.startsWith('ai_platform_up{') && l.includes(`target_service="${name}"`))
  return line ? line.slice(line.lastIndexOf(' ') + 1) : null
}

test('metrics: scrapes targets over RPC, a dead target shows 0 without stalling, recordMetric is allow-listed', async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  const metricsKp = kp()
  const clientKp = kp()
  const metricsKey = metricsKp.publicKey.toString('hex')
  const alpha = new Plain({ name: 'alpha', keyPair: kp(), log, bootstrap, allow: [metricsKey] })
  const beta = new Plain({ name: 'beta', keyPair: kp(), log, bootstrap, allow: [metricsKey] })
  await alpha.open()
  await beta.open()
  const metrics = new MetricsService({
    keyPair: metricsKp,
    log,
    bootstrap,
    allow: [clientKp.publicKey.toString('hex')],
    port: 0,
    targets: [{ name: 'alpha', publicKey: alpha.publicKey }, { name: 'beta', publicKey: beta.publicKey }],
    scrapeTimeoutMs: 2000
  })
  await metrics.open()
  const client = new Plain({ name: 'client', keyPair: clientKp, log, bootstrap })
  await client.open()
  t.teardown(async () => {
    await client.close(); await metrics.close(); await alpha.close(); await beta.close(); await testnet.destroy()
  })

  // the first scrape may race the initial connections; wait until both are up
  let text = ''
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${metrics.url}/metrics`)
    t.is(res.status, 200, i === 0 ? '/metrics answers 200' : undefined)
    text = await res.text()
    if (upValue(text, 'alpha') === '1' && upValue(text, 'beta') === '1') break
    await new Promise((r) => setTimeout(r, 250))
  }
  t.is(upValue(text, 'alpha'), '1', 'alpha up')
  t.is(upValue(text, 'beta'), '1', 'beta up')
  t.ok(text.includes(`instance="${alpha.publicKey.slice(0, 16)}"`), 'instance is the key prefix')
  t.ok(/^ai_platform_scrape_duration_seconds\{[^}]*target_service="alpha"[^}]*\} [0-9.e-]+$/m.test(text), 'scrape duration gauge')
  t.ok(text.includes('process_cpu_user_seconds_total'), 'own process metrics included')

  const health = await (await fetch(`${metrics.url}/health`)).json() as any
  t.is(health.status, 'ok')
  t.alike(health.services.map((s: any) => [s.name, s.up]), [['alpha', true], ['beta', true]], '/health lists both')
  t.is(health.services[0].version, '0.1.0')

  await beta.close()
  const started = Date.now()
  const res = await fetch(`${metrics.url}/metrics`)
  const ms = Date.now() - started
  t.is(res.status, 200, 'still 200 with a dead target')
  text = await res.text()
  t.is(upValue(text, 'beta'), '0', 'beta down')
  t.is(upValue(text, 'alpha'), '1', 'alpha still up')
  t.ok(ms < 3000, `scrape bounded by the per-target timeout (${ms} ms)`)

  const degraded = await (await fetch(`${metrics.url}/health`)).json() as any
  t.is(degraded.status, 'degraded')
  t.is(degraded.services.find((s: any) => s.name === 'beta').up, false)

  const conn = client.connectTo(metrics.publicKey, { name: 'metrics' })
  const unknown = await conn.call(MetricsProtocol.recordMetric, { name: 'user_ids_total', value: 1 }).catch((e) => e)
  t.is(unknown.code, 'BAD_REQUEST', 'unknown metric name refused')
  const badLabel = await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_requests_total', value: 1, labels: { status: 'user-42' } }).catch((e) => e)
  t.is(badLabel.code, 'BAD_REQUEST', 'unbounded label value refused')
  const extraLabel = await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_requests_total', value: 1, labels: { status: 'success', user: 'x' } }).catch((e) => e)
  t.is(extraLabel.code, 'BAD_REQUEST', 'unknown label refused')
  t.alike(await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_requests_total', value: 2, labels: { status: 'success' } }), { recorded: true })
  await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_latency_seconds', value: 0.3, labels: { status: 'success' } })

  const viaRpc = await conn.call(MetricsProtocol.getMetrics, {}, 5000)
  t.ok(/^ai_platform_client_requests_total\{[^}]*status="success"[^}]*\} 2$/m.test(viaRpc.text), 'recorded counter appears (getMetrics)')
  text = await (await fetch(`${metrics.url}/metrics`)).text()
  t.ok(/^ai_platform_client_requests_total\{[^}]*status="success"[^}]*\} 2$/m.test(text), 'recorded counter appears in /metrics')
  t.ok(/^ai_platform_client_latency_seconds_count\{[^}]*status="success"[^}]*\} 1$/m.test(text), 'recorded histogram appears')

  const sys = await conn.call(MetricsProtocol.getSystemHealth, {}, 5000)
  t.is(sys.status, 'degraded', 'getSystemHealth over RPC')
})

test('metrics: internal methods refuse non-members', async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  const metrics = new MetricsService({ keyPair: kp(), log, bootstrap, allow: [], port: 0, targets: [] })
  await metrics.open()
  const stranger = new Plain({ name: 'stranger', keyPair: kp(), log, bootstrap })
  await stranger.open()
  t.teardown(async () => { await stranger.close(); await metrics.close(); await testnet.destroy() })
  const conn = stranger.connectTo(metrics.publicKey, { name: 'metrics' })
  const err = await conn.call(MetricsProtocol.recordMetric, { name: 'ai_platform_client_requests_total', value: 1, labels: { status: 'success' } }, 1500).catch((e) => e)
  t.ok(['UNAVAILABLE', 'FORBIDDEN', 'TIMEOUT'].includes(err.code), `refused (${err.code})`)
  const health = await (await fetch(`${metrics.url}/health`)).json() as any
  t.alike(health, { status: 'ok', services: [] }, 'no targets: ok and empty')
})
