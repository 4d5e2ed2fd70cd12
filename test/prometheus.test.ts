import test from 'brittle'
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startTestMesh, gatewayClient, userWithKey } from './support/harness.ts'
import { freePort } from '../scripts/lib/embedded-pg.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { parseExposition } from '../services/metrics/exposition.ts'
import { PROMETHEUS, PROMTOOL, promtoolCheck, run, sampleValue } from '../services/metrics/test/util.ts'

// The monitoring a user sets up: `npm start`'s processes (two workers), the metrics service's
// /metrics, promtool on that live output and on the shipped rules, and a real Prometheus server
// scraping it. Counters move by exactly the requests made; a killed worker reads as up 0.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const TIMEOUT_MS = 1500

/** Sum of every sample named `name` whose labels include `labels` (0 when there is none). */
function sum (text: string, name: string, labels: Record<string, string>): number {
  let total = 0
  for (const f of parseExposition(text).families) {
    for (const s of f.samples) {
      const l = Object.fromEntries(s.labels)
      if (s.name === name && Object.entries(labels).every(([k, v]) => l[k] === v)) total += Number(s.value)
    }
  }
  return total
}

test('rules: promtool accepts the shipped config and alert rules, and their unit tests pass', async (t) => {
  if (!fs.existsSync(PROMTOOL)) { t.comment(`skipped: ${PROMTOOL} is not installed`); return }
  const rules = await run(PROMTOOL, ['check', 'rules', path.join(ROOT, 'deploy/prometheus/alerts.yml')])
  t.is(rules.code, 0, 'promtool check rules alerts.yml: ' + rules.output.trim().split('\n').pop())
  const config = await run(PROMTOOL, ['check', 'config', path.join(ROOT, 'deploy/prometheus/prometheus.yml')])
  t.is(config.code, 0, 'promtool check config prometheus.yml')
  const unit = await run(PROMTOOL, ['test', 'rules', path.join(ROOT, 'deploy/prometheus/alerts.test.yml')])
  t.is(unit.code, 0, 'promtool test rules: each alert fires on its series ' + (unit.code ? unit.output : ''))
})

test('prometheus: live /metrics of a running mesh, exact counters, a killed worker, a real Prometheus', { timeout: 240_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { workers: 2, serviceEnv: { metrics: { METRICS_SCRAPE_TIMEOUT_MS: String(TIMEOUT_MS) } } })
  const metricsUrl = new URL(mesh.metricsUrl!).origin // the ready line names the /metrics URL
  const inst = (name: string) => mesh.keys[name]!.slice(0, 16)
  const members = ['auth', 'gateway', 'web', 'inference', 'inference-2']
  const scrape = async () => {
    const started = Date.now()
    const res = await fetch(metricsUrl + '/metrics')
    return { status: res.status, text: await res.text(), ms: Date.now() - started }
  }

  let text = ''
  for (let i = 0; i < 60; i++) {
    text = (await scrape()).text
    if (members.every((m) => sampleValue(text, 'ai_platform_up', { instance: inst(m) }) === 1)) break
    await new Promise((r) => setTimeout(r, 250))
  }
  for (const m of members) t.is(sampleValue(text, 'ai_platform_up', { instance: inst(m) }), 1, `${m} is up`)
  t.is(sampleValue(text, 'ai_platform_up', { service: 'inference', instance: inst('inference-2') }), 1, 'workers carry service="inference"')

  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)
  const N = 7
  const MAX_TOKENS = 3
  const before = (await scrape()).text
  const gatewayBefore = sum(before, 'ai_platform_requests_total', { service: 'gateway', method: 'infer', status: 'success' })
  const workerBefore = sum(before, 'ai_platform_requests_total', { service: 'inference', method: 'processPrompt', status: 'success' })
  const tokensBefore = sum(before, 'ai_platform_tokens_total', { service: 'inference', model: 'synthetic', direction: 'out' })
  for (let i = 0; i < N; i++) {
    const r = await client.call(GatewayProtocol.infer, { apiKey: key, prompt: `count me ${i}`, maxTokens: MAX_TOKENS }, 30_000)
    t.is(r.usage.completionTokens, MAX_TOKENS, i === 0 ? 'inference answers' : undefined)
  }
  // a refused request is counted under its code, not as a success
  const refused = await client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'x', model: 'no-such-model' }, 30_000).catch((e) => e)
  t.is(refused.code, 'UNKNOWN_MODEL')

  const live = await scrape()
  t.is(live.status, 200)
  text = live.text
  t.is(sum(text, 'ai_platform_requests_total', { service: 'gateway', method: 'infer', status: 'success' }) - gatewayBefore, N, `gateway infer successes rose by exactly ${N}`)
  t.is(sum(text, 'ai_platform_requests_total', { service: 'gateway', method: 'infer', status: 'unknown_model' }), 1, 'the refused one is counted as unknown_model')
  t.is(sum(text, 'ai_platform_requests_total', { service: 'inference', method: 'processPrompt', status: 'success' }) - workerBefore, N, 'the workers served exactly N between them')
  t.is(sum(text, 'ai_platform_tokens_total', { service: 'inference', model: 'synthetic', direction: 'out' }) - tokensBefore, N * MAX_TOKENS, 'tokens out by model, on the workers')
  t.is(sum(text, 'ai_platform_request_duration_seconds_count', { service: 'inference', model: 'synthetic' }), N, 'request duration per model on the workers')
  t.ok(sum(text, 'ai_platform_time_to_first_token_seconds_count', { service: 'gateway', model: 'synthetic' }) >= N, 'time to first token (gateway)')
  t.is(sum(text, 'ai_platform_requests_in_flight', { service: 'gateway', method: 'infer' }), 0, 'nothing left in flight')
  t.ok(sampleValue(text, 'ai_platform_gateway_workers_connected', { service: 'gateway', instance: inst('gateway') }) === 2, 'the gateway reports 2 workers')
  t.is(sampleValue(text, 'ai_platform_worker_capacity', { instance: inst('inference') }), 64, 'worker gauges')
  t.absent(text.includes(key) || /user_id|api_key_id/.test(text), 'no keys or user ids in the output')
  const check = await promtoolCheck(text)
  if (check.skipped) t.comment(`promtool check metrics skipped: ${check.skipped}`)
  else t.is(check.code, 0, `promtool check metrics accepts the live output of the mesh ${check.output}`)

  // a real Prometheus, scraping the metrics service every second
  let prom: ChildProcess | null = null
  let query: (q: string) => Promise<Array<{ metric: Record<string, string>, value: [number, string] }> | null> = async () => null
  if (!fs.existsSync(PROMETHEUS)) {
    t.comment(`Prometheus part skipped: ${PROMETHEUS} is not installed`)
  } else {
    const promPort = await freePort()
    const dir = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'prom-'))
    fs.copyFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), path.join(dir, 'alerts.yml'))
    // the shipped config, pointed at this mesh's metrics port and scraping faster
    const shipped = fs.readFileSync(path.join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')
    const config = shipped
      .replace(/scrape_interval: \S+/, 'scrape_interval: 1s').replace(/evaluation_interval: \S+/, 'evaluation_interval: 1s')
      .replace(/scrape_timeout: \S+/, 'scrape_timeout: 1s')
      .replace("'127.0.0.1:3004'", `'${new URL(metricsUrl).host}'`)
    t.ok(config.includes(new URL(metricsUrl).host) && config.includes('honor_labels: true'), 'the shipped config, retargeted')
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), config)
    const p = prom = spawn(PROMETHEUS, [
      `--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    let promLog = ''
    p.stderr!.on('data', (d: Buffer) => { promLog = (promLog + d.toString()).slice(-2000) })
    t.teardown(async () => {
      if (p.exitCode === null) {
        const exited = new Promise((r) => p.once('exit', r))
        p.kill('SIGTERM')
        await exited
      }
      fs.rmSync(dir, { recursive: true, force: true })
    }, { order: 0 })
    query = async (q) => {
      try {
        const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`)
        const body = await res.json() as { status: string, data: { result: Array<{ metric: Record<string, string>, value: [number, string] }> } }
        return body.status === 'success' ? body.data.result : null
      } catch { return null }
    }
    const expected = gatewayBefore + N
    let got: string | null = null
    for (let i = 0; i < 120 && got !== String(expected); i++) {
      const r = await query('sum(ai_platform_requests_total{service="gateway",method="infer",status="success"})')
      got = r?.[0]?.value[1] ?? null
      if (got !== String(expected)) await new Promise((res) => setTimeout(res, 250))
    }
    t.is(got, String(expected), `Prometheus' /api/v1/query returns the request count (${expected})${got === null ? ' — prometheus: ' + promLog.trim().split('\n').pop() : ''}`)
    const ups = await query('ai_platform_up{service="inference"}')
    t.alike((ups ?? []).map((r) => r.metric.instance).sort(), [inst('inference'), inst('inference-2')].sort(), 'each worker is its own instance in Prometheus (honor_labels)')
    const targets = await (await fetch(`http://127.0.0.1:${promPort}/api/v1/targets`)).json() as any
    t.is(targets.data.activeTargets[0]?.health, 'up', 'Prometheus reports the metrics service target healthy')
  }

  // kill a worker outright: the next scrape answers within the timeout with that worker at 0
  await mesh.stopChild('inference-2', 'SIGKILL')
  const afterKill = await scrape()
  t.is(afterKill.status, 200, 'the scrape still answers')
  t.ok(afterKill.ms < TIMEOUT_MS + 1500, `within about the per-member timeout (${afterKill.ms} ms, timeout ${TIMEOUT_MS} ms)`)
  t.is(sampleValue(afterKill.text, 'ai_platform_up', { service: 'inference', instance: inst('inference-2') }), 0, 'the killed worker: ai_platform_up 0')
  t.is(sampleValue(afterKill.text, 'ai_platform_up', { service: 'inference', instance: inst('inference') }), 1, 'the other worker: still 1')
  t.is(sampleValue(afterKill.text, 'process_cpu_user_seconds_total', { instance: inst('inference-2') }), null, 'no samples from the dead worker')
  const afterCheck = await promtoolCheck(afterKill.text)
  if (!afterCheck.skipped) t.is(afterCheck.code, 0, 'still valid for promtool')

  if (prom) {
    let down: string | null = null
    for (let i = 0; i < 80 && down !== '0'; i++) {
      const r = await query(`ai_platform_up{instance="${inst('inference-2')}"}`)
      down = r?.[0]?.value[1] ?? null
      if (down !== '0') await new Promise((res) => setTimeout(res, 250))
    }
    t.is(down, '0', 'Prometheus sees the dead worker as 0')
    t.is((prom as ChildProcess).exitCode, null, 'Prometheus kept running')
  }

  const health = await (await fetch(metricsUrl + '/health')).json() as any
  const dead = health.services.find((s: any) => s.instance === inst('inference-2'))
  t.is(health.status, 'degraded', '/health: degraded')
  t.is(dead?.up, false, '/health: the killed worker is down, with a reason: ' + dead?.error)
  t.alike(health.summary.inference, { up: 1, total: 2 }, '/health summary per service')
  t.is(health.services.find((s: any) => s.name === 'gateway')?.version, '0.1.0', '/health: versions')
})
