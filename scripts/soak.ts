// `npm run soak`: steady mixed load through a local mesh for SOAK_SECONDS (default 600), sampling every
// process's RSS and open descriptors and the latency per interval (scripts/lib/soak-run.ts). Prints a
// table, writes bench-results/soak.json and soak.svg, and exits 1 when a process's RSS grows faster
// than SOAK_MAX_SLOPE MB/min after warm-up (even the slope's 95% lower bound: a slope over it whose
// bound is not is reported 'noisy', for a longer run to decide), its descriptors keep growing, p99
// drifts, or a request fails.
// SOAK_WARMUP (s, default a third of the run, at most 300: the workers settle after about 3 minutes), SOAK_INTERVAL (s), SOAK_RPS, SOAK_LANES.
import os from 'node:os'
import path from 'node:path'
import { formatTable } from './bench-lib.ts'
import { runSoak } from './lib/soak-run.ts'
import { soakRows, writeSoak } from './lib/soak-report.ts'

const num = (name: string, def: number) => {
  const v = process.env[name]
  const n = v === undefined || v === '' ? def : Number(v)
  if (!Number.isFinite(n) || n <= 0) { console.error(`soak: ${name} must be a positive number`); process.exit(2) }
  return n
}
const seconds = num('SOAK_SECONDS', 600)
const opts = {
  seconds,
  warmupSeconds: num('SOAK_WARMUP', Math.min(300, Math.round(seconds / 3))),
  intervalSeconds: num('SOAK_INTERVAL', Math.max(2, Math.round(seconds / 120))),
  rps: num('SOAK_RPS', 150),
  lanes: num('SOAK_LANES', 24),
  maxSlopeMbPerMin: num('SOAK_MAX_SLOPE', 1)
}
console.log(`soak: ${seconds} s of mixed load at ~${opts.rps} req/s (warm-up ${opts.warmupSeconds} s, a sample every ${opts.intervalSeconds} s)…`)
try {
  const r = await runSoak({ ...opts, log: (l) => console.log(l) })
  console.log('\n' + formatTable(soakRows(r)))
  const out = writeSoak(r, path.resolve('bench-results'), 'soak')
  console.log(`\nRSS slope target < ${opts.maxSlopeMbPerMin} MB/min after warm-up; ${os.cpus().length} CPUs; node ${process.version}`)
  console.log(`wrote ${out.json} and ${out.svg}`)
  console.log(r.ok ? 'soak: ok' : 'soak: FAILED (see the verdict column)')
  process.exit(r.ok ? 0 : 1)
} catch (err) {
  console.error(`soak failed: ${(err as Error).message}`)
  process.exit(1)
}
