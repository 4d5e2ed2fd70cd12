import fs from 'node:fs'
import path from 'node:path'
import type { Row } from '../bench-lib.ts'
import type { SoakResult } from './soak-run.ts'
import { renderSvg } from './svg-plot.ts'

// What a soak leaves: a table (one row a process, and one for latency), a JSON file of every interval,
// and an SVG plot of RSS per process and p99 over time, under bench-results/.

export function soakRows (r: SoakResult): Row[] {
  const rows: Row[] = r.processes.map((p) => ({
    process: p.process,
    'RSS after warm-up MB': p.rssStartMb.toFixed(1),
    'RSS at end MB': p.rssEndMb.toFixed(1),
    'RSS slope MB/min': `${p.slopeMbPerMin.toFixed(2)} ± ${(2 * p.slopeSe).toFixed(2)}`,
    RSS: p.rss,
    'fds warm-up max': p.fdsWarm,
    'fds max': p.fdsMax,
    verdict: p.ok ? 'ok' : p.fdsBounded ? 'FAIL: RSS grows' : 'FAIL: descriptors grow'
  }))
  const l = r.latency
  rows.push({
    process: `requests: ${l.requests}, errors ${l.errors}`,
    'p99 first third ms': l.firstThirdP99.toFixed(1),
    'p99 last third ms': l.lastThirdP99.toFixed(1),
    verdict: l.steady && l.errors === 0 ? 'ok' : 'FAIL'
  })
  return rows
}

/** Writes <name>.json and <name>.svg under `dir`; returns their paths. */
export function writeSoak (r: SoakResult, dir: string, name: string): { json: string, svg: string } {
  fs.mkdirSync(dir, { recursive: true })
  const json = path.join(dir, `${name}.json`)
  const svg = path.join(dir, `${name}.svg`)
  fs.writeFileSync(json, JSON.stringify({ at: new Date().toISOString(), node: process.version, ...r }, null, 2) + '\n')
  const names = r.processes.map((p) => p.process)
  const min = (s: number) => s / 60
  const warm = min(r.options.warmupSeconds)
  fs.writeFileSync(svg, renderSvg(`soak: ${r.options.seconds} s at ~${r.options.rps} req/s (warm-up ${r.options.warmupSeconds} s, dashed)`, [
    {
      title: 'resident memory per process',
      yLabel: 'RSS MB',
      markX: warm,
      series: names.map((n) => ({ name: n, points: r.intervals.map((s) => [min(s.t), s.procs[n]!.rssMb] as [number, number]) }))
    },
    {
      title: 'latency per interval (all request kinds)',
      yLabel: 'ms',
      markX: warm,
      series: [
        { name: 'p99', points: r.intervals.map((s) => [min(s.t), s.p99] as [number, number]) },
        { name: 'p50', points: r.intervals.map((s) => [min(s.t), s.p50] as [number, number]) }
      ]
    },
    {
      title: 'open descriptors per process',
      yLabel: 'fds',
      markX: warm,
      series: names.map((n) => ({ name: n, points: r.intervals.map((s) => [min(s.t), s.procs[n]!.fds] as [number, number]) }))
    }
  ], 'minutes'))
  return { json, svg }
}
