// `npm run chaos`: steady mixed load (RPC through the SDK, HTTP through the `openai` client) on two
// gateways and four workers while workers and gateways are killed and restarted, PostgreSQL stops,
// a worker's network is cut and workers churn; one after another, then several at once. Prints one
// table, writes bench-results/chaos-<time>.json, and exits 1 when any invariant broke.
//   CHAOS_SECONDS=60 npm run chaos        (default 60; faults repeat until the time is up)
import fs from 'node:fs'
import path from 'node:path'
import { formatTable } from './bench-lib.ts'
import { runChaos, type ChaosReport } from './chaos/run.ts'

export function chaosTable (report: ChaosReport): string {
  return formatTable(report.steps.map((s) => ({
    fault: s.fault,
    requests: s.requests,
    'failed-before-first-token': s.outageRefusals ? `${s.failedBeforeFirstToken} (${s.outageRefusals.n} refused for the outage, slowest ${s.outageRefusals.maxMs} ms)` : s.failedBeforeFirstToken,
    'cut-after-first-token': s.silentlyCut ? `${s.cutAfterFirstToken} (${s.silentlyCut} silent)` : s.cutAfterFirstToken,
    'lost usage': s.lostUsage,
    'time to recover': `${(s.recoverMs / 1000).toFixed(1)} s`
  })))
}

const seconds = Number(process.env.CHAOS_SECONDS ?? 60)
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error('CHAOS_SECONDS must be a positive number of seconds')
  process.exit(2)
}
let report: ChaosReport
try {
  report = await runChaos({ seconds })
} catch (err) {
  console.error(`chaos failed: ${(err as Error).message}`)
  process.exit(1)
}
console.log('\n' + chaosTable(report))
const outDir = path.resolve('bench-results')
fs.mkdirSync(outDir, { recursive: true })
const file = path.join(outDir, `chaos-${report.startedAt.replace(/[:.]/g, '-')}.json`)
fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
console.log(`\n${report.totalRequests} requests over ${report.steps.length} steps; written to ${path.relative(process.cwd(), file)}`)
if (report.violations.length) {
  console.log(`\n${report.violations.length} invariant(s) broke:\n` + report.violations.map((v) => `  - ${v}`).join('\n'))
  process.exit(1)
}
console.log('every invariant held')
process.exit(0)
