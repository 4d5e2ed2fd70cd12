// `npm run fuzz`: mutated RPC frames and HTTP bodies against a whole mesh of real processes (local
// DHT testnet, PostgreSQL), then the invariants: every answer coded, no 5xx but 503, no process
// died, a real inference still works over RPC and HTTP, no secret in any answer or log.
// FUZZ_FRAMES (default 100000) and FUZZ_HTTP (default 10000) set the counts, FUZZ_SEED replays a run,
// FUZZ_CONCURRENCY (default 64) bounds the calls in flight; DATABASE_URL uses that server.
// Prints a table; exits 1 when an invariant broke.
import fs from 'node:fs'
import os from 'node:os'
import { formatReport } from './fuzz/report.ts'
import { fuzzHome, runFuzz } from './fuzz/run.ts'

const num = (name: string, dflt: number) => {
  const v = Number(process.env[name] ?? dflt)
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number`)
  return Math.floor(v)
}

const home = fuzzHome(os.tmpdir())
let code = 1
try {
  const report = await runFuzz({
    frames: num('FUZZ_FRAMES', 100_000),
    http: num('FUZZ_HTTP', 10_000),
    seed: num('FUZZ_SEED', Date.now() % 2 ** 31),
    concurrency: Math.max(1, num('FUZZ_CONCURRENCY', 64)),
    timeoutMs: 15_000,
    home,
    databaseUrl: process.env.DATABASE_URL || undefined,
    log: (line) => console.log(line)
  })
  console.log(formatReport(report))
  code = report.failures.length ? 1 : 0
} catch (err) {
  console.error('fuzz: the run could not complete:', err)
} finally {
  if (code === 0) fs.rmSync(home, { recursive: true, force: true })
  else console.log(`state dir with the processes' logs kept at ${home}`)
}
process.exit(code)
