import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { parseExposition } from '../exposition.ts'

// Helpers for reading a Prometheus exposition in tests, and running the real promtool on one.

export const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool'
export const PROMETHEUS = process.env.PROMETHEUS ?? '/usr/bin/prometheus'

/**
 * The value of the one sample named `name` whose labels include all of `labels`; null when there is
 * none. Throws when several match, so a test never reads an ambiguous series by accident.
 */
export function sampleValue (text: string, name: string, labels: Record<string, string>): number | null {
  const matches: number[] = []
  for (const f of parseExposition(text).families) {
    for (const s of f.samples) {
      if (s.name !== name) continue
      const l = Object.fromEntries(s.labels)
      if (Object.entries(labels).every(([k, v]) => l[k] === v)) matches.push(Number(s.value))
    }
  }
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return matches[0] ?? null
}

export function run (cmd: string, args: string[], stdin?: string): Promise<{ code: number | null, output: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    p.stdout.on('data', (d: Buffer) => { output += d.toString() })
    p.stderr.on('data', (d: Buffer) => { output += d.toString() })
    p.on('error', (err) => resolve({ code: -1, output: String(err) }))
    p.on('close', (code) => resolve({ code, output }))
    p.stdin.end(stdin ?? '')
  })
}

/** `promtool check metrics` on an exposition; skipped (with the reason) when promtool is not installed. */
export async function promtoolCheck (text: string): Promise<{ skipped?: string, code?: number | null, output: string }> {
  if (!fs.existsSync(PROMTOOL)) return { skipped: `${PROMTOOL} is not installed`, output: '' }
  const r = await run(PROMTOOL, ['check', 'metrics'], text)
  return { code: r.code, output: r.output.trim() }
}
