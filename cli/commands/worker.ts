import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { MeshError } from '../../shared/errors.ts'
import { readMeshFile } from '../../shared/meshfile.ts'
import { modelName } from '../../shared/protocol/common.ts'
import { UsageError } from '../context.ts'
import { printJson } from '../output.ts'
import type { Command, Parsed } from '../command.ts'

// `hyperinfer worker`: run an inference worker in the foreground on this machine and join it to a
// gateway anywhere on the DHT. It runs the worker's own entry (services/inference/index.ts) as a
// child with exactly the env it needs, so the worker is the same process `npm start` runs; this
// command checks the flags, reports registration in one line, and turns Ctrl-C into a drain.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const ENTRY = path.join(ROOT, 'services', 'inference', 'index.ts')

const BACKENDS = ['ollama', 'openai', 'synthetic'] as const
type BackendName = typeof BACKENDS[number]

// env the worker child must not inherit: it gets exactly what the flags say, nothing stale
const STRIPPED = [
  'HYPERINFER_SEED', 'HYPERINFER_SERVICE_NAME', 'HYPERINFER_GATEWAYS', 'HYPERINFER_WORKER_TOKEN', 'HYPERINFER_WORKER_NAME',
  'HYPERINFER_BOOTSTRAP', 'HYPERINFER_GATEWAY', 'HYPERINFER_API_KEY', 'HYPERINFER_PASSWORD',
  'SYNTHETIC', 'SYNTHETIC_MODELS', 'SYNTHETIC_TOKENS_PER_SEC', 'OLLAMA_URL', 'OPENAI_BASE_URL', 'OPENAI_API_KEY', 'OPENAI_MODELS',
  'WORKER_CAPACITY', 'WORKER_LABEL', 'WORKER_MODELS'
]

// names whose key file belongs to a mesh service: a worker must never take over that identity
const RESERVED = /^(auth|metrics|web|gateway(-\d+)?|inference(-\d+)?)$/

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

export interface WorkerPlan {
  backend: BackendName
  name: string
  gateways: string[]
  bootstrap?: string
  token?: string
  env: Record<string, string>
  /** values that must never be printed */
  secrets: string[]
  models: string[]
}

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/

function str (values: Parsed['values'], name: string): string | undefined {
  const v = values[name]
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`--${name} needs a value`)
  return v.trim()
}

function fromEnv (flag: string, name: string): string {
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

/** Every flag checked, and the worker's env built from them (exported for tests of the rules). */
export function planWorker (ctx: { home: string, globals: { gateway?: string, bootstrap?: string }, bootstrap (): Array<{ host: string, port: number }> | undefined }, values: Parsed['values']): WorkerPlan {
  const backendArg = str(values, 'backend')
  if (!backendArg) throw new UsageError(`--backend is required: one of ${BACKENDS.join(', ')}`)
  if (!(BACKENDS as readonly string[]).includes(backendArg)) throw new UsageError(`--backend '${backendArg}' is not a backend: use one of ${BACKENDS.join(', ')}`)
  const backend = backendArg as BackendName

  const name = str(values, 'name') ?? 'worker'
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new UsageError('--name must be 1-64 letters, digits, dots, dashes or underscores')
  if (RESERVED.test(name)) throw new UsageError(`--name '${name}' is a mesh service's identity in this state dir; pick another name`)

  const models = (str(values, 'models') ?? '').split(',').map((m) => m.trim()).filter(Boolean)
  for (const m of models) if (!modelName.safeParse(m).success) throw new UsageError(`--models: '${m}' is not a model name`)
  if (new Set(models).size !== models.length) throw new UsageError('--models lists a model twice')

  const baseUrl = str(values, 'base-url')
  const apiKeyEnv = str(values, 'api-key-env')
  const tokensPerSec = str(values, 'tokens-per-sec')
  if (backend === 'synthetic' && baseUrl) throw new UsageError('--base-url is for --backend ollama or openai')
  if (backend !== 'openai' && apiKeyEnv) throw new UsageError('--api-key-env is for --backend openai')
  if (backend !== 'synthetic' && tokensPerSec !== undefined) throw new UsageError('--tokens-per-sec is for --backend synthetic')
  if (backend === 'openai' && !baseUrl) throw new UsageError('--backend openai needs --base-url (https://api.openai.com/v1 for OpenAI itself, or your server\'s /v1 URL)')

  const capacityArg = str(values, 'capacity')
  const capacity = capacityArg === undefined ? undefined : Number(capacityArg)
  if (capacity !== undefined && (!Number.isInteger(capacity) || capacity < 1 || capacity > 100_000)) throw new UsageError('--capacity must be a whole number from 1 to 100000')
  const tps = tokensPerSec === undefined ? undefined : Number(tokensPerSec)
  if (tps !== undefined && (!Number.isFinite(tps) || tps < 0)) throw new UsageError('--tokens-per-sec must be a number ≥ 0 (0 = no delay)')
  const label = str(values, 'label')
  if (label !== undefined && label.length > 100) throw new UsageError('--label is at most 100 characters')

  // --network KEY: find every gateway on the network's DHT topic; else gateways by key:
  // --gateway KEY[,KEY2], else $HYPERINFER_GATEWAY, else the local mesh file
  const network = (str(values, 'network') ?? process.env.HYPERINFER_NETWORK)?.toLowerCase()
  if (network !== undefined && !/^[0-9a-f]{64}$/.test(network)) throw new UsageError('--network: the network key is 64 hex characters (`hyperinfer registry` prints it)')
  const gwValue = ctx.globals.gateway || process.env.HYPERINFER_GATEWAY || (network ? '' : readMeshFile(ctx.home)?.services.gateway)
  if (!gwValue && !network) throw new UsageError('no gateway: pass --network <key> or --gateway <hex key>[,<hex key>…], set HYPERINFER_GATEWAY, or run `npm start` here first')
  const gateways = [...new Set((gwValue ?? '').split(/[\s,]+/).filter(Boolean).map((k) => k.toLowerCase()))]
  for (const k of gateways) if (!/^[0-9a-f]{64}$/.test(k)) throw new UsageError(`--gateway: '${k.slice(0, 20)}' is not a 64-hex-character public key`)

  const list = ctx.bootstrap()
  const bootstrap = list?.map((b) => `${b.host}:${b.port}`).join(',')

  // the network's worker token: --token, --token-env, $HYPERINFER_WORKER_TOKEN, else this machine's
  // own token when the mesh runs here (`npm start` made it)
  const tokenFlag = str(values, 'token')
  const tokenEnv = str(values, 'token-env')
  if (tokenFlag && tokenEnv) throw new UsageError('give --token or --token-env, not both')
  let token = tokenFlag ?? (tokenEnv ? fromEnv('token-env', tokenEnv) : undefined) ?? (process.env.HYPERINFER_WORKER_TOKEN || undefined)
  if (!token) {
    try { token = fs.readFileSync(path.join(ctx.home, 'keys', 'worker-token.secret'), 'utf8').trim() || undefined } catch {}
  }
  if (token !== undefined && token.length > 200) throw new UsageError('the worker token is at most 200 characters')

  const secrets: string[] = []
  const env: Record<string, string> = {
    HYPERINFER_HOME: ctx.home,
    HYPERINFER_WORKER_NAME: name,
    HYPERINFER_GATEWAYS: gateways.join(','),
    ...(network ? { HYPERINFER_NETWORK: network } : {}),
    SYNTHETIC: backend === 'synthetic' ? 'true' : 'false'
  }
  if (bootstrap) env.HYPERINFER_BOOTSTRAP = bootstrap
  if (token) { env.HYPERINFER_WORKER_TOKEN = token; secrets.push(token) }
  if (capacity !== undefined) env.WORKER_CAPACITY = String(capacity)
  if (label !== undefined) env.WORKER_LABEL = label
  if (backend === 'synthetic') {
    env.SYNTHETIC_MODELS = (models.length ? models : ['synthetic']).join(',')
    if (tps !== undefined) env.SYNTHETIC_TOKENS_PER_SEC = String(tps)
  } else if (backend === 'ollama') {
    env.OLLAMA_URL = httpUrl('base-url', baseUrl ?? (process.env.OLLAMA_URL || 'http://127.0.0.1:11434'))
    if (models.length) env.WORKER_MODELS = models.join(',')
  } else {
    env.OPENAI_BASE_URL = httpUrl('base-url', baseUrl!)
    if (apiKeyEnv) {
      const key = fromEnv('api-key-env', apiKeyEnv)
      env.OPENAI_API_KEY = key
      secrets.push(key)
    } else {
      env.OPENAI_API_KEY = 'none' // servers that need no key (vLLM, llama.cpp, LM Studio, …)
    }
    // advertised when the server has no /models, and the only models served when it has
    if (models.length) { env.OPENAI_MODELS = models.join(','); env.WORKER_MODELS = models.join(',') }
  }
  return { backend, name, gateways, bootstrap, token, env, secrets: secrets.filter((s) => s.length >= 4), models }
}

function redact (text: string, secrets: string[]): string {
  let out = text
  for (const s of secrets) out = out.split(s).join('[redacted]')
  return out
}

const short = (key: string) => `${key.slice(0, 16)}…`

export const worker: Command = {
  name: 'worker',
  summary: 'run an inference worker here and join it to a gateway (Ctrl-C drains and stops it)',
  usage: `worker --backend ollama|openai|synthetic [options]

  --backend B         ollama, openai (any OpenAI-compatible server) or synthetic
  --base-url URL      ollama: default $OLLAMA_URL or http://127.0.0.1:11434; openai: required
                      (https://api.openai.com/v1, or your server's /v1 URL)
  --api-key-env VAR   openai: read the backend's API key from the environment variable VAR
                      (the key is never taken from a flag, printed or logged)
  --models a,b        serve only these models (synthetic: the names it serves, default 'synthetic')
  --network KEY       join every gateway of the network with this key (\`hyperinfer registry\` prints it)
  --gateway KEY[,K2]  gateway(s) to join (default: $HYPERINFER_GATEWAY, else the local mesh file)
  --bootstrap H:P,…   DHT bootstrap (default: $HYPERINFER_BOOTSTRAP, else the local mesh file)
  --token T           the network's worker token (see \`hyperinfer worker-token\` on the mesh machine)
  --token-env VAR     read the token from the environment variable VAR
                      (default: $HYPERINFER_WORKER_TOKEN, else this machine's own mesh token)
  --name N            this worker's identity: its key is kept in $HYPERINFER_HOME/keys/N.seed, so a
                      restart keeps the same public key (default 'worker')
  --label L           a label the gateway shows for this worker
  --capacity N        concurrency weight the gateway routes by (default 64)
  --tokens-per-sec N  synthetic: generation speed (default 0 = no delay)

The worker's logs go to stderr at LOG_LEVEL (default warn). HYPERINFER_HOST sets the address its DHT
node binds and announces.`,
  options: {
    backend: { type: 'string' },
    'base-url': { type: 'string' },
    'api-key-env': { type: 'string' },
    models: { type: 'string' },
    network: { type: 'string' },
    token: { type: 'string' },
    'token-env': { type: 'string' },
    name: { type: 'string' },
    label: { type: 'string' },
    capacity: { type: 'string' },
    'tokens-per-sec': { type: 'string' }
  },
  async run (ctx, { values }) {
    const plan = planWorker(ctx, values)
    await runWorker(plan, ctx.globals.json)
  }
}

async function runWorker (plan: WorkerPlan, json: boolean): Promise<void> {
  const userLevel = (process.env.LOG_LEVEL ?? 'warn').toLowerCase()
  const threshold = LEVELS[userLevel] ?? LEVELS.warn!
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const k of STRIPPED) delete env[k]
  // the backend key lives in exactly one variable of the child: OPENAI_API_KEY
  for (const [k, v] of Object.entries(process.env)) if (v && plan.secrets.includes(v)) delete env[k]
  Object.assign(env, plan.env)
  // the worker logs at info at least: this command reads its connect lines to report registration
  env.LOG_LEVEL = threshold < LEVELS.info! ? userLevel : 'info'

  if (!plan.token) {
    process.stderr.write('hyperinfer: no worker token (--token, --token-env or HYPERINFER_WORKER_TOKEN): the gateway admits this worker only if it is a mesh member or an admin approves it\n')
  }

  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY], {
    cwd: ROOT,
    env,
    // its own process group: Ctrl-C reaches this command only, which then drains the worker once;
    // the IPC channel makes the worker stop itself if this command dies without a word
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  const say = (line: string) => process.stderr.write(redact(line, plan.secrets) + '\n')

  let workerKey = ''
  let served: string[] = []
  let reported = false
  const registered = new Set<string>()
  const refused = new Map<string, string>()
  // gateways that recorded this worker as pending (no token; an operator must approve it), when the
  // worker logs its registration answer: { peer: 'gateway:…', approval: 'pending' }
  const pending = new Set<string>()
  let stderrTail = ''
  let stopping = false

  const reportedGateways = new Set<string>()
  const announce = () => {
    if (!workerKey) return
    for (const gw of plan.gateways) {
      if (!registered.has(gw) || reportedGateways.has(gw)) continue
      reportedGateways.add(gw)
      const models = served.length ? served.join(',') : '(no models yet)'
      const note = pending.has(gw) ? ' (pending approval: it gets no traffic until an operator approves it)' : ''
      if (!reported) {
        reported = true
        if (json) printJson({ worker: workerKey, name: plan.name, backend: plan.backend, models: served, gateway: gw, registered: true, ...(pending.has(gw) ? { approval: 'pending' } : {}) })
        else process.stdout.write(`worker ${short(workerKey)} serving ${models} via ${plan.backend}; registered with gateway ${short(gw)}${note}\n`)
        if (served.length === 0) say(`hyperinfer: the ${plan.backend} backend lists no models${plan.models.length ? ` named ${plan.models.join(',')}` : ''} yet; the worker checks again every 30 s`)
      } else if (!json) {
        process.stdout.write(`worker ${short(workerKey)} registered with gateway ${short(gw)}${note}\n`)
      }
    }
  }

  const onLogLine = (line: string) => {
    if (!line) return
    const ready = /^inference ready ([0-9a-f]{64}) models=(.*)$/.exec(line)
    if (ready) {
      workerKey = ready[1]!
      served = ready[2]!.split(',').filter(Boolean)
      announce()
      return
    }
    let rec: { level?: number, msg?: string, peer?: string, code?: string, models?: string[] } | null = null
    try { rec = JSON.parse(line) } catch {}
    if (!rec || typeof rec !== 'object') { say(line); return }
    // gateways found on the network topic join the list the worker reports on
    const joining = (rec as { gateway?: unknown }).gateway
    if (rec.msg === 'joining gateway' && typeof joining === 'string' && /^[0-9a-f]{64}$/.test(joining) && !plan.gateways.includes(joining)) plan.gateways.push(joining)
    const gw = typeof rec.peer === 'string' && rec.peer.startsWith('gateway:') ? plan.gateways.find((k) => k.startsWith(rec!.peer!.slice(8))) : undefined
    if (gw && (rec as { approval?: string }).approval === 'pending') pending.add(gw)
    else if (gw && (rec as { approval?: string }).approval === 'approved') pending.delete(gw)
    if (gw && rec.msg === 'connected') {
      refused.delete(gw)
      if (registered.has(gw) && reportedGateways.has(gw) && !stopping) say(`hyperinfer: reconnected to gateway ${short(gw)} and registered again`)
      registered.add(gw)
      announce()
    } else if (gw && rec.msg === 'connection setup failed' && refused.get(gw) !== rec.code) {
      refused.set(gw, rec.code ?? 'UNKNOWN')
      const hint = rec.code === 'FORBIDDEN' ? ' — the worker token is missing or wrong (see `hyperinfer worker-token` on the mesh machine)' : ''
      say(`hyperinfer: gateway ${short(gw)} refused the registration [${rec.code ?? 'UNKNOWN'}]${hint}; retrying`)
    } else if (rec.msg === 'model catalog changed' && Array.isArray(rec.models)) {
      served = rec.models
      if (!json) process.stdout.write(`worker ${short(workerKey)} now serves ${served.join(',') || '(no models)'}\n`)
    }
    if ((rec.level ?? 0) >= threshold) say(line)
  }

  const lines = (stream: NodeJS.ReadableStream, fn: (line: string) => void) => {
    let buf = ''
    stream.on('data', (d: Buffer) => {
      buf += d.toString()
      let i
      while ((i = buf.indexOf('\n')) >= 0) { fn(buf.slice(0, i)); buf = buf.slice(i + 1) }
    })
    stream.on('end', () => { if (buf) fn(buf) })
  }
  lines(child.stdout!, onLogLine)
  lines(child.stderr!, (line) => {
    stderrTail = (stderrTail + line + '\n').slice(-2000)
    say(line)
  })

  const slow = setTimeout(() => {
    if (registered.size === 0 && !stopping) {
      say(`hyperinfer: not registered with any gateway after 20 s (is the gateway key right, and is the bootstrap ${plan.bootstrap ?? '(public DHT)'} reachable from here?); still trying`)
    }
  }, 20_000)
  slow.unref()

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      say('hyperinfer: stopping now, without waiting for in-flight requests')
      child.kill('SIGKILL')
      return
    }
    stopping = true
    say('hyperinfer: stopping the worker: it takes no new requests and finishes the ones in flight (up to 5 s)…')
    child.kill(signal)
  }
  const onInt = () => stop('SIGINT')
  const onTerm = () => stop('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)

  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('exit', (c, s) => resolve([c, s]))
  })
  clearTimeout(slow)
  process.off('SIGINT', onInt)
  process.off('SIGTERM', onTerm)
  const why = redact(stderrTail.trim().split('\n').slice(-3).join(' | '), plan.secrets)
  if (code === 0 && stopping) {
    if (!json) say(`hyperinfer: worker ${workerKey ? short(workerKey) : ''} stopped`)
    return
  }
  if (code === 2 && !workerKey) throw new UsageError(why || 'the worker refused its configuration')
  throw MeshError.INTERNAL(`the worker ${workerKey ? 'stopped' : 'failed to start'} (${code !== null ? `exit code ${code}` : `signal ${signal}`})${why ? ': ' + why : ''}`)
}
