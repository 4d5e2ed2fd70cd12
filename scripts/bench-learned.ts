// Learned routing in simulation (scripts/lib/routing-sim.ts): synthetic models with hidden quality,
// latency, error and price distributions that drift halfway through; cumulative reward and regret
// against an oracle for `learned`, `hybrid` and random, before and after the drift, over several
// seeds. The budget: learned beats hybrid after the drift and keeps ≥ 90% of the oracle's reward.
// Standalone: `npx tsx scripts/bench-learned.ts` (BENCH_SCALE=0.2 shortens it).
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { runStandalone, type Row } from './bench-lib.ts'
import { simulate } from './lib/routing-sim.ts'

export async function benchLearned (scale: number): Promise<Row[]> {
  const rows: Row[] = []
  const steps = Math.max(4000, Math.round(20_000 * scale))
  for (const seed of [1, 2, 3, 4, 5]) {
    const r = simulate({ seed, steps })
    const o = r.oracle
    for (const [name, s] of Object.entries(r.strategies)) {
      rows.push({
        seed, strategy: name, requests: steps, 'reward / oracle': `${(s.reward / o.reward * 100).toFixed(1)}%`,
        'before drift': `${(s.beforeDrift / o.beforeDrift * 100).toFixed(1)}%`, 'after drift': `${(s.afterDrift / o.afterDrift * 100).toFixed(1)}%`,
        'cumulative regret': s.regret.toFixed(1), 'regret after drift': s.regretAfterDrift.toFixed(1), 'outside filter': s.outsideFilter
      })
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-learned', 'learned, hybrid and random routing against an oracle, with drift', 'budget: learned after drift > hybrid after drift, and learned ≥ 90% of the oracle', benchLearned)
}
