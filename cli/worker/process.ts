import { spawn } from 'node:child_process'
import { MeshError } from '../../shared/errors.ts'
import { entryArgs, PACKAGE_ROOT } from '../../shared/package.ts'
import { BACKENDS } from '../../services/inference/backends/table.ts'
import { parseWorkerStatus } from '../../services/inference/status.ts'
import { UsageError } from '../context.ts'
import { short, WorkerReport } from './report.ts'

// Runs the worker's own entry (services/inference/index, compiled when this CLI is) as a child with exactly the env its plan
// says, so the worker is the same process `npm start` runs. What the user sees on the terminal comes
// from the status messages the worker sends over the child's IPC channel (services/inference/status.ts);
// its logs pass through to stderr, with every secret redacted. Ctrl-C drains it, a second one kills it.

// env the worker child must not inherit: it gets exactly what the flags say, nothing stale
const STRIPPED = [
  'HYPERINFER_SEED', 'HYPERINFER_SERVICE_NAME', 'HYPERINFER_GATEWAYS', 'HYPERINFER_WORKER_TOKEN', 'HYPERINFER_WORKER_NAME',
  'HYPERINFER_BOOTSTRAP', 'HYPERINFER_GATEWAY', 'HYPERINFER_API_KEY', 'HYPERINFER_PASSWORD',
  ...BACKENDS.flatMap((b) => b.envNames), 'WORKER_CAPACITY', 'WORKER_LABEL', 'WORKER_MODELS'
]

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])

export interface WorkerPlan {
  backend: string
  name: string
  gateways: string[]
  bootstrap?: string
  token?: string
  env: Record<string, string>
  /** values that must never be printed */
  secrets: string[]
  models: string[]
}

function redact (text: string, secrets: string[]): string {
  let out = text
  for (const s of secrets) out = out.split(s).join('[redacted]')
  return out
}

/** Run the worker in the foreground until it stops; reports its registration on stdout. */
export async function runWorker (plan: WorkerPlan, json: boolean): Promise<void> {
  const userLevel = (process.env.LOG_LEVEL ?? 'warn').toLowerCase()
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const k of STRIPPED) delete env[k]
  // the backend key lives in exactly one variable of the child: the one its backend reads
  for (const [k, v] of Object.entries(process.env)) if (v && plan.secrets.includes(v)) delete env[k]
  Object.assign(env, plan.env)
  // the worker logs at the user's level: its state comes as IPC messages, never from its logs
  env.LOG_LEVEL = LEVELS.has(userLevel) ? userLevel : 'warn'

  if (!plan.token) {
    process.stderr.write('hyperinfer: no worker token (--token, --token-env or HYPERINFER_WORKER_TOKEN): the gateway admits this worker only if it is a mesh member or an admin approves it\n')
  }

  const child = spawn(process.execPath, entryArgs('services/inference/index'), {
    cwd: PACKAGE_ROOT,
    env,
    // its own process group: Ctrl-C reaches this command only, which then drains the worker once;
    // the IPC channel carries the worker's status, and makes it stop itself if this command dies
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  const say = (line: string) => process.stderr.write(redact(line, plan.secrets) + '\n')

  const report = new WorkerReport({ name: plan.name, backend: plan.backend, models: plan.models, gateways: plan.gateways, json, say })
  child.on('message', (message: unknown) => {
    const status = parseWorkerStatus(message)
    if (status) report.on(status)
  })
  let stderrTail = ''

  const lines = (stream: NodeJS.ReadableStream, fn: (line: string) => void) => {
    let buf = ''
    stream.on('data', (d: Buffer) => {
      buf += d.toString()
      let i
      while ((i = buf.indexOf('\n')) >= 0) { fn(buf.slice(0, i)); buf = buf.slice(i + 1) }
    })
    stream.on('end', () => { if (buf) fn(buf) })
  }
  // its logs, and its ready line (meant for `npm start`: this command reports from the IPC messages)
  lines(child.stdout!, (line) => { if (line && !line.startsWith('inference ready ')) say(line) })
  lines(child.stderr!, (line) => {
    stderrTail = (stderrTail + line + '\n').slice(-2000)
    say(line)
  })

  const slow = setTimeout(() => {
    if (!report.registeredAnywhere && !report.quiet) {
      say(`hyperinfer: not registered with any gateway after 20 s (is the gateway key right, and is the bootstrap ${plan.bootstrap ?? '(public DHT)'} reachable from here?); still trying`)
    }
  }, 20_000)
  slow.unref()

  const stop = (signal: NodeJS.Signals) => {
    if (report.stopping) {
      say('hyperinfer: stopping now, without waiting for in-flight requests')
      child.kill('SIGKILL')
      return
    }
    report.stopping = true
    say('hyperinfer: stopping the worker: it takes no new requests and finishes the ones in flight (up to 5 s)…')
    child.kill(signal)
  }
  const onInt = () => stop('SIGINT')
  const onTerm = () => stop('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)

  // 'close', not 'exit': every status message and log line of the worker has been read by then
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('close', (c, s) => resolve([c, s]))
  })
  clearTimeout(slow)
  process.off('SIGINT', onInt)
  process.off('SIGTERM', onTerm)
  const why = redact(stderrTail.trim().split('\n').slice(-3).join(' | '), plan.secrets)
  const workerKey = report.workerKey
  if (report.stopping && report.stopped && code === 0) {
    if (!json) say(`hyperinfer: worker ${workerKey ? short(workerKey) : ''} stopped`)
    return
  }
  if (code === 2 && !workerKey) throw new UsageError(why || 'the worker refused its configuration')
  throw MeshError.INTERNAL(`the worker ${workerKey ? 'stopped' : 'failed to start'} (${code !== null ? `exit code ${code}` : `signal ${signal}`})${why ? ': ' + why : ''}`)
}
