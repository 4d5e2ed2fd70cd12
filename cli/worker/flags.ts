import { BACKENDS, type BackendRow } from '../../services/inference/backends/table.ts'
import { UsageError } from '../context.ts'
import type { Parsed } from '../command.ts'

// The backend flags of `hyperinfer worker`, read from the backend table: which flags exist, which
// backend each belongs to, how each value is checked and which worker setting it becomes, and their
// help lines. A backend added to the table gets its flags here with no edit.

/** the backends by name, as the flags and their help list them */
export const BACKEND_ROWS = [...BACKENDS].sort((a, b) => a.id.localeCompare(b.id))
const BACKEND_FLAGS = [...new Set(BACKEND_ROWS.flatMap((r) => Object.keys(r.worker.flags)))]
const METAVAR = { url: 'URL', 'secret-env': 'VAR', number: 'N' } as const

/** the parseArgs options of the backend flags */
export const backendFlagOptions = Object.fromEntries(BACKEND_FLAGS.map((flag) => [flag, { type: 'string' as const }]))

/** A string flag's trimmed value; present but empty is a usage error. */
export function flagValue (values: Parsed['values'], name: string): string | undefined {
  const v = values[name]
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`--${name} needs a value`)
  return v.trim()
}

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/

/** The value of the environment variable a flag names (a secret: the flag carries only its name). */
export function fromEnv (flag: string, name: string): string {
  if (!envName.test(name)) throw new UsageError(`--${flag} takes the NAME of an environment variable, e.g. --${flag} OPENAI_API_KEY`)
  const v = process.env[name]
  if (!v) throw new UsageError(`--${flag} ${name}: the environment variable ${name} is not set (or empty)`)
  return v
}

function httpUrl (flag: string, value: string): string {
  let u: URL
  try { u = new URL(value) } catch { throw new UsageError(`--${flag} '${value}' is not a URL (e.g. http://127.0.0.1:11434)`) }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--${flag} must be an http(s) URL`)
  if (u.username || u.password) throw new UsageError(`--${flag} must not carry credentials; use --api-key-env`)
  return value
}

const orList = (items: string[]) => items.length > 1 ? `${items.slice(0, -1).join(', ')} or ${items.at(-1)}` : items.join('')

/** --backend's row; a flag of another backend is a usage error. */
export function chooseBackend (values: Parsed['values']): BackendRow {
  const id = flagValue(values, 'backend')
  const ids = BACKEND_ROWS.map((r) => r.id).join(', ')
  if (!id) throw new UsageError(`--backend is required: one of ${ids}`)
  const row = BACKEND_ROWS.find((r) => r.id === id)
  if (!row) throw new UsageError(`--backend '${id}' is not a backend: use one of ${ids}`)
  for (const flag of BACKEND_FLAGS) {
    if (flagValue(values, flag) !== undefined && !(flag in row.worker.flags)) {
      throw new UsageError(`--${flag} is for --backend ${orList(BACKEND_ROWS.filter((r) => flag in r.worker.flags).map((r) => r.id))}`)
    }
  }
  return row
}

/** The chosen backend's settings from its flags and --models, every other backend switched off. */
export function backendEnv (row: BackendRow, values: Parsed['values'], models: string[]): { env: Record<string, string>, secrets: string[] } {
  const env: Record<string, string> = {}
  for (const other of BACKENDS) Object.assign(env, other === row ? other.worker.on : other.worker.off)
  const secrets: string[] = []
  for (const [flag, spec] of Object.entries(row.worker.flags)) {
    const value = flagValue(values, flag)
    if (spec.kind === 'url') {
      const url = value ?? spec.fallback?.(process.env)
      if (url === undefined && spec.required) throw new UsageError(`--backend ${row.id} needs --${flag} (${spec.required})`)
      if (url !== undefined) env[spec.env] = httpUrl(flag, url)
    } else if (spec.kind === 'secret-env') {
      const secret = value === undefined ? undefined : fromEnv(flag, value)
      if (secret !== undefined) secrets.push(secret)
      const setting = secret ?? spec.fallback
      if (setting !== undefined) env[spec.env] = setting
    } else if (value !== undefined) {
      const n = Number(value)
      if (!Number.isFinite(n) || n < spec.min) throw new UsageError(`--${flag} must be a number ≥ ${spec.min}${spec.note ? ` (${spec.note})` : ''}`)
      env[spec.env] = String(n)
    }
  }
  const list = models.length ? models : row.worker.defaultModels?.models ?? []
  if (list.length) for (const name of row.worker.modelsEnv) env[name] = list.join(',')
  return { env, secrets }
}

/** One option of the help: the flag, then its text wrapped under column 22. */
function option (head: string, text: string): string {
  let out = '  ' + head.padEnd(20)
  let line = out.length
  for (const word of text.split(' ')) {
    if (line > 22 && line + 1 + word.length > 102) { out += '\n' + ' '.repeat(22); line = 22 }
    if (line > 22) { out += ' '; line++ }
    out += word
    line += word.length
  }
  return out
}

/** The help lines of --backend, the backend flags and --models. */
export function backendHelp (): string {
  return [
    option('--backend B', orList(BACKEND_ROWS.map((r) => r.worker.about ? `${r.id} (${r.worker.about})` : r.id))),
    ...BACKEND_FLAGS.map((flag) => {
      const specs = BACKEND_ROWS.flatMap((r) => r.worker.flags[flag] ? [{ id: r.id, spec: r.worker.flags[flag] }] : [])
      return option(`--${flag} ${METAVAR[specs[0]!.spec.kind]}`, specs.map((s) => `${s.id}: ${s.spec.help}`).join('; '))
    }),
    option('--models a,b', 'serve only these models' + BACKEND_ROWS.flatMap((r) => r.worker.defaultModels ? [` (${r.id}: ${r.worker.defaultModels.help})`] : []).join(''))
  ].join('\n')
}
