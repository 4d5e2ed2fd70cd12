import type pg from 'pg'
import { accountingInvariants, type Check } from '../lib/invariants.ts'
import { churn, cutWorkerNetwork, killGateway, killWorker, postgresOutage, restartGateway, together, type Fault } from './faults.ts'
import { Load, sleep, tally, type Outcome } from './load.ts'
import { MAX_TOKENS, startChaosMesh, type ChaosSetup } from './mesh.ts'

// A chaos run: steady load on the chaos mesh while faults come one after another, then several at
// once. After each step the load pauses, the mesh comes to rest, and every invariant is checked:
// nothing failed before its first token (it went to another worker or gateway), every stream cut
// after it ended with an explicit error, every answer's usage is recorded, and the accounting
// (request log, rollups, ledger, holds, limits) is exact.

export interface StepReport {
  fault: string
  requests: number
  ok: number
  refused: number
  failedBeforeFirstToken: number
  cutAfterFirstToken: number
  silentlyCut: number
  lostUsage: number
  recoverMs: number
  /** while PostgreSQL was down: how many requests got the coded refusal, and how long each took */
  outageRefusals?: { n: number, p50Ms: number, maxMs: number }
  checks: Check[]
  violations: string[]
}

export interface ChaosReport { seconds: number, startedAt: string, steps: StepReport[], violations: string[], totalRequests: number }

export type Plan = 'full' | 'short'

/** The faults one after another, then several at once. */
function plan (kind: Plan): { single: Fault[], overlapping: Fault[] } {
  if (kind === 'short') return { single: [killWorker, restartGateway], overlapping: [together(killGateway, cutWorkerNetwork(4))] }
  return {
    single: [killWorker, killGateway, restartGateway, postgresOutage(10), cutWorkerNetwork(8), churn],
    overlapping: [together(killWorker, killGateway), together(postgresOutage(10), cutWorkerNetwork(8)), together(restartGateway, churn, killWorker)]
  }
}

/**
 * The steps of a run of `seconds`: the short plan whole; the full one's single faults for the first
 * half of the time (at least one), its overlapping ones for the rest (at least one), repeating.
 */
function* steps (kind: Plan, seconds: number): Generator<Fault> {
  const { single, overlapping } = plan(kind)
  const started = Date.now()
  const elapsed = () => (Date.now() - started) / 1000
  if (kind === 'short') { yield * single; yield * overlapping; return }
  for (let i = 0; i === 0 || elapsed() < seconds / 2; i++) yield single[i % single.length]!
  for (let i = 0; i === 0 || elapsed() < seconds; i++) yield overlapping[i % overlapping.length]!
}

/** The usage of answered requests that is not in request_logs: by id (RPC) or trace id (HTTP). */
async function lostUsage (pool: pg.Pool, answered: Outcome[]): Promise<number> {
  const ids = answered.flatMap((o) => o.id ? [o.id] : [])
  const traces = answered.flatMap((o) => !o.id && o.trace ? [o.trace] : [])
  const { rows } = await pool.query(`
    SELECT (SELECT count(*) FROM request_logs WHERE id = ANY($1::uuid[]) AND status = 'success')::int AS ids,
           (SELECT count(DISTINCT trace_id) FROM request_logs WHERE trace_id = ANY($2::text[]) AND status = 'success')::int AS traces`, [ids, traces])
  return (ids.length - rows[0].ids) + (traces.length - rows[0].traces)
}

/** Wait for the mesh at rest (leases back, the sweeper done) until every invariant holds, or time is up. */
async function atRest (pool: pg.Pool, timeoutMs: number): Promise<Check[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const checks = await accountingInvariants(pool).catch((err: Error) => [{ name: 'database readable', ok: false, detail: err.message }])
    if (checks.every((c) => c.ok) || Date.now() > deadline) return checks
    await sleep(500)
  }
}

export async function runChaos (opts: { seconds: number, plan?: Plan, log?: (line: string) => void }): Promise<ChaosReport> {
  const log = opts.log ?? ((line: string) => console.log(line))
  const setup: ChaosSetup = await startChaosMesh(log)
  const report: ChaosReport = { seconds: opts.seconds, startedAt: new Date().toISOString(), steps: [], violations: [], totalRequests: 0 }
  let stopLoad = async () => {}
  try {
    const gateways = setup.mesh.gatewayKeys
    const load = new Load({ gateways, bootstrap: setup.mesh.bootstrapString, webUrl: setup.mesh.webUrl!, keys: setup.keys, model: 'synthetic', maxTokens: MAX_TOKENS, concurrency: 3, httpRetries: 0 }) // the mesh must fail over by itself: a client's own retries would hide what it did not
    stopLoad = () => load.close()
    for (const fault of steps(opts.plan ?? 'full', opts.seconds)) {
      load.start()
      await sleep(1500) // the load is flowing before the fault
      const from = Date.now()
      log(`fault: ${fault.name}`)
      let error: string | null = null
      await fault.run(setup).catch((err: Error) => { error = `${fault.name}: the mesh did not recover: ${err.message}` })
      const recoverMs = Date.now() - from
      await sleep(1000) // and keeps flowing after it
      const outcomes = await load.pause()
      const step = await judge(setup.pool, fault.name, outcomes, recoverMs)
      if (error) step.violations.push(error)
      report.steps.push(step)
      report.totalRequests += outcomes.length
      for (const v of step.violations) log(`  VIOLATION: ${v}`)
      log(`  ${step.requests} requests, ${step.failedBeforeFirstToken} failed before the first token, ${step.cutAfterFirstToken} cut after it; recovered in ${recoverMs} ms`)
      const r = step.outageRefusals
      if (r) log(`  ${r.n} refused for the outage with a coded error, in p50 ${r.p50Ms} ms, at most ${r.maxMs} ms`)
      if (error) break // a mesh that did not come back is not faulted further
    }
  } finally {
    await stopLoad()
    // a broken invariant is explained by what the services warned of: their logs go with the mesh
    if (report.steps.some((s) => s.violations.length > 0)) for (const line of setup.warnings()) log(line)
    await setup.stop()
  }
  report.violations = report.steps.flatMap((s) => s.violations.map((v) => `${s.fault}: ${v}`))
  return report
}

async function judge (pool: pg.Pool, fault: string, outcomes: Outcome[], recoverMs: number): Promise<StepReport> {
  const t = tally(outcomes, 0, Infinity)
  const checks = await atRest(pool, 30_000)
  const answered = outcomes.filter((o) => o.fate === 'ok')
  const lost = await lostUsage(pool, answered).catch(() => answered.length)
  const violations: string[] = []
  const outage = /PostgreSQL/.test(fault)
  // while PostgreSQL is down a paid request may be refused, but at once and plainly (503), never after a wait
  const before = outcomes.filter((o) => o.fate === 'failed-before-first-token' && !(outage && clearOutageRefusal(o)))
  const refusalMs = outage ? outcomes.filter((o) => o.fate === 'failed-before-first-token' && OUTAGE_CODES.has(o.code ?? '')).map((o) => o.end - o.start).sort((a, b) => a - b) : []
  if (before.length) violations.push(`${before.length} requests failed before their first token: ${summary(before)}`)
  const silent = outcomes.filter((o) => o.fate === 'cut-silent')
  if (silent.length) violations.push(`${silent.length} answers ended short without an error: ${summary(silent)}`)
  if (lost > 0) violations.push(`${lost} answered requests are missing from request_logs`)
  for (const c of checks) if (!c.ok) violations.push(`${c.name}: ${c.detail}`)
  return {
    fault,
    requests: t.requests,
    ok: t.ok,
    refused: t.refused,
    failedBeforeFirstToken: t['failed-before-first-token'],
    cutAfterFirstToken: t['cut-explicit'] + t['cut-silent'],
    silentlyCut: t['cut-silent'],
    lostUsage: lost,
    recoverMs,
    ...(refusalMs.length ? { outageRefusals: { n: refusalMs.length, p50Ms: refusalMs[Math.floor(refusalMs.length / 2)]!, maxMs: refusalMs[refusalMs.length - 1]! } } : {}),
    checks,
    violations
  }
}

/** the refusals a caller may get while PostgreSQL is down, over RPC and over HTTP */
const OUTAGE_CODES = new Set(['DATABASE_UNAVAILABLE', 'database_unavailable', 'UNAVAILABLE', '503'])

function clearOutageRefusal (o: Outcome): boolean {
  return OUTAGE_CODES.has(o.code ?? '') && o.end - o.start <= 2000
}

function summary (os: Outcome[]): string {
  const by = new Map<string, { n: number, message: string | undefined }>()
  for (const o of os) {
    const k = `${o.via}${o.stream ? ' stream' : ''} ${o.code ?? 'no error'}${o.end - o.start > 2000 ? ` after ${Math.round((o.end - o.start) / 1000)} s` : ''}`
    const seen = by.get(k)
    if (seen) seen.n++
    else by.set(k, { n: 1, message: o.message })
  }
  // one message per kind says why: the first one of its kind
  return [...by].map(([k, { n, message }]) => `${n}× ${k}${message && message !== k ? ` ("${message.slice(0, 160)}")` : ''}`).join(', ')
}
