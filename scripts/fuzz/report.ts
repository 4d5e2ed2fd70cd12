import type { FuzzReport } from './run.ts'
import type { Tally } from './tally.ts'

// The run as a table a reader checks at a glance, then what failed.

function pad (rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)).join('  ')).join('\n')
}

function top (m: Map<string, number>, n: number): string {
  return [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${k} ${v}`).join(', ')
}

export function formatReport (r: FuzzReport): string {
  const row = (t: Tally, what: string) => [what, String(t.sent), String(t.counts.success), String(t.counts.coded), String(t.counts.timeout), String(t.counts.dropped), String(t.counts.event), String(t.counts.failure)]
  const out = [
    '',
    pad([['traffic', 'sent', 'success', 'coded error', 'timeout', 'dropped', 'event', 'FAILED'], row(r.rpc, 'RPC frames'), row(r.http, 'HTTP requests')]),
    '',
    pad([['process', 'pid', 'alive', 'max RSS MB'], ...r.processes.map((p) => [p.name, String(p.pid), p.alive ? 'yes' : `NO (${p.exit})`, String(p.maxRssMb)])]),
    '',
    pad([['check', 'result'],
      ['processes crashed', String(r.processes.filter((p) => !p.alive).length)],
      ['inference over RPC after the run', r.postRun.rpc],
      ['inference over HTTP after the run', r.postRun.http],
      ['secrets in answers or logs', r.leaks.length ? r.leaks.slice(0, 3).join('; ') : `none (${Math.round(r.logBytes / 1024)} KB of logs scanned)`],
      ['duration', `${r.seconds.toFixed(1)} s`]]),
    '',
    `RPC coded errors: ${top(r.rpc.codes, 8)}`,
    `HTTP coded errors: ${top(r.http.codes, 8)}`
  ]
  if (r.rpc.timeouts.size || r.http.timeouts.size) out.push(`timeouts: ${top(new Map([...r.rpc.timeouts, ...r.http.timeouts]), 8)}`)
  out.push('', r.failures.length ? 'FAILED:\n' + r.failures.map((f) => '  - ' + f).join('\n') : 'all invariants hold')
  return out.join('\n')
}
