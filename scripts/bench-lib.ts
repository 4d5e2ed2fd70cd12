import fs from 'node:fs'
import os from 'node:os'

// What every benchmark script shares: a closed-loop load generator and a table printer.

export type Row = Record<string, string | number>

export function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

export interface LoadResult { p50: number, p99: number, rps: number, errors: number, codes: Map<string, number> }

/** `requests` calls of `once`, `concurrency` at a time; latency of the successful ones, errors by code. */
export async function runLoad (concurrency: number, requests: number, once: (i: number) => Promise<unknown>): Promise<LoadResult> {
  const ms: number[] = []
  const codes = new Map<string, number>()
  let errors = 0
  let next = 0
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < requests) {
      const i = next++
      const s = process.hrtime.bigint()
      try {
        await once(i)
      } catch (err) {
        errors++
        const code = (err as { code?: string }).code ?? 'INTERNAL'
        codes.set(code, (codes.get(code) ?? 0) + 1)
        continue
      }
      ms.push(Number(process.hrtime.bigint() - s) / 1e6)
    }
  }))
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  ms.sort((a, b) => a - b)
  return { p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), rps: ms.length / seconds, errors, codes }
}

/** ms from the call to its first streamed chunk, for `n` calls one at a time */
export async function firstTokens (n: number, open: (i: number, onFirst: () => void) => Promise<unknown>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    let first = 0
    await open(i, () => { if (!first) first = Number(process.hrtime.bigint() - t0) / 1e6 })
    out.push(first)
  }
  return out.sort((a, b) => a - b)
}

/** user + system CPU seconds of a process since `from` (Linux, clock ticks of 10 ms; NaN elsewhere) */
export function cpuSeconds (pid: number | undefined, from: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(f[11]) + Number(f[12])) / 100 - from
  } catch { return NaN } // not Linux, or the process is gone: the column says so
}

/** user + system CPU seconds of every PostgreSQL process on the machine (the server and its backends) */
function postgresSeconds (): number {
  let total = 0
  try {
    for (const pid of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
        if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === 'postgres') total += cpuSeconds(Number(pid), 0)
      } catch {} // it exited while being read
    }
  } catch { return NaN } // not Linux
  return total
}

/**
 * CPU time per request of each process a load runs through: start() before the load, then
 * perRequest(n) gives µs per request for this process (the load's client), each named child and
 * PostgreSQL. On two cores the processes share, their sum bounds the requests per second.
 */
export class CpuMeter {
  private from = new Map<string, number>()
  constructor (private readonly pids: () => Record<string, number | undefined>) {}

  private read (): Map<string, number> {
    const own = process.cpuUsage()
    const out = new Map<string, number>([['client', (own.user + own.system) / 1e6]])
    for (const [name, pid] of Object.entries(this.pids())) out.set(name, cpuSeconds(pid, 0))
    out.set('PostgreSQL', postgresSeconds())
    return out
  }

  start (): void { this.from = this.read() }

  perRequest (requests: number): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [name, s] of this.read()) out[name] = Math.round((s - (this.from.get(name) ?? NaN)) / requests * 1e6)
    return out
  }
}

export function formatTable (rows: Row[]): string {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))]
  const cell = (r: Row, c: string) => r[c] === undefined ? '' : String(r[c])
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r, c).length)))
  const fmt = (cells: string[]) => '| ' + cells.map((s, i) => s.padEnd(widths[i]!)).join(' | ') + ' |'
  return [fmt(cols), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map((r) => fmt(cols.map((c) => cell(r, c))))].join('\n')
}

/** Run a bench script on its own (`npx tsx scripts/bench-x.ts`): print its table, exit 0, or say why it failed. */
export async function runStandalone (name: string, what: string, footer: string, bench: (scale: number) => Promise<Row[]>): Promise<never> {
  const scale = Number(process.env.BENCH_SCALE ?? 1)
  console.log(`${name}: ${what}…`)
  try {
    const rows = await bench(scale)
    console.log('\n' + formatTable(rows))
    console.log(`\n${footer}; ${os.cpus().length} CPUs; node ${process.version}; scale ${scale}`)
    process.exit(0)
  } catch (err) {
    console.error(`${name} failed: ${(err as Error).message}`)
    process.exit(1)
  }
}
