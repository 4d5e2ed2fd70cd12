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
