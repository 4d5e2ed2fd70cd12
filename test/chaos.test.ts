import test from 'brittle'
import { runChaos } from '../scripts/chaos/run.ts'

// The short chaos run (`npm run chaos` runs the whole plan): steady mixed load on two gateways and
// four workers — one in its own network namespace — while a worker is SIGKILLed mid-stream, a gateway
// restarts gracefully, and a gateway is SIGKILLed while the namespaced worker's link is down. After
// each step every invariant is checked, as in the full run. A machine that cannot make a network
// namespace fails this test, saying why: chaos without its network fault is not chaos.

test('chaos (short): faults under load break no invariant', { timeout: 600_000 }, async (t) => {
  const report = await runChaos({ seconds: Number(process.env.CHAOS_SECONDS ?? 20), plan: 'short', log: (line) => t.comment(line) })
  t.ok(report.steps.length >= 3, `${report.steps.length} steps, ${report.totalRequests} requests`)
  for (const s of report.steps) {
    t.ok(s.requests > 0, `${s.fault}: ${s.requests} requests under load (${s.ok} answered, ${s.refused} refused by a limit)`)
    t.alike(s.violations, [], `${s.fault}: no invariant broke (recovered in ${(s.recoverMs / 1000).toFixed(1)} s)`)
  }
})
