import { MeshError } from '../shared/errors.ts'
import { UsageError } from './context.ts'

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n')
}

/** A command that has already said why it failed: only its exit code is left to give. */
export class Failed extends Error {
  constructor (readonly exitCode: number) { super('failed') }
}

/** One clear line on stderr (or one JSON object on stdout with --json) and the exit code to use. */
export function reportError (err: unknown, json: boolean): number {
  if (err instanceof Failed) return err.exitCode
  if (err instanceof UsageError) {
    if (json) printJson({ error: { code: 'USAGE', message: err.message } })
    else process.stderr.write(`hyperinfer: ${err.message}\n`)
    return 2
  }
  const e = err instanceof MeshError ? err : MeshError.INTERNAL((err as Error)?.message ?? String(err))
  if (json) {
    printJson({ error: e.toWire() })
    return 1
  }
  let line = `hyperinfer: ${e.reason} [${e.code}]`
  if (e.code === 'RATE_LIMITED' && e.details?.retryAfterSeconds !== undefined) line += ` — retry after ${e.details.retryAfterSeconds} s`
  if (e.code === 'UNKNOWN_MODEL' && Array.isArray(e.details?.available)) line += ` — available: ${(e.details.available as string[]).join(', ') || 'none'}`
  process.stderr.write(line + '\n')
  return 1
}

export function table (rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}
