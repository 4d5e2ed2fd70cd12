// The soak as a bench section: three minutes (BENCH_SCALE scales it, at least one) of steady mixed
// load, the RSS slope per process after a minute's warm-up, descriptors and p99 over time
// (scripts/lib/soak-run.ts); the plot goes to bench-results/bench-soak.svg.
// Standalone: `npx tsx scripts/bench-soak.ts`; `npm run soak` is the long run.
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { runStandalone, type Row } from './bench-lib.ts'
import { runSoak } from './lib/soak-run.ts'
import { soakRows, writeSoak } from './lib/soak-report.ts'

export async function benchSoak (scale: number): Promise<Row[]> {
  const seconds = Math.max(60, Math.round(180 * scale))
  const r = await runSoak({ seconds, warmupSeconds: Math.round(seconds / 3), intervalSeconds: 5, rps: 150, lanes: 24, maxSlopeMbPerMin: 1 })
  const out = writeSoak(r, path.resolve('bench-results'), 'bench-soak')
  console.log(`  plot: ${out.svg}`)
  return soakRows(r)
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-soak', 'three minutes of steady mixed load', 'target: RSS slope < 1 MB/min per process after warm-up', benchSoak)
}
