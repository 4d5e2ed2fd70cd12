import fs from 'node:fs'
import path from 'node:path'
import { readMeshFile } from '../../shared/meshfile.ts'
import { modelName } from '../../shared/protocol/common.ts'
import { UsageError } from '../context.ts'
import { BACKEND_ROWS, backendEnv, backendFlagOptions, backendHelp, chooseBackend, flagValue, fromEnv } from '../worker/flags.ts'
import { runWorker, type WorkerPlan } from '../worker/process.ts'
import type { Command, Parsed } from '../command.ts'

// `hyperinfer worker`: run an inference worker in the foreground on this machine and join it to a
// gateway anywhere on the DHT. This command checks the flags and builds the worker's env from them
// (the backend flags come from the backend table: ../worker/flags.ts); ../worker/process.ts runs the
// worker, reports its registration in one line and turns Ctrl-C into a drain.

// names whose key file belongs to a mesh service: a worker must never take over that identity
const RESERVED = /^(auth|metrics|web|gateway(-\d+)?|inference(-\d+)?)$/

/** Every flag checked, and the worker's env built from them (exported for tests of the rules). */
export function planWorker (ctx: { home: string, globals: { gateway?: string, bootstrap?: string }, bootstrap (): Array<{ host: string, port: number }> | undefined }, values: Parsed['values']): WorkerPlan {
  const row = chooseBackend(values)

  const name = flagValue(values, 'name') ?? 'worker'
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new UsageError('--name must be 1-64 letters, digits, dots, dashes or underscores')
  if (RESERVED.test(name)) throw new UsageError(`--name '${name}' is a mesh service's identity in this state dir; pick another name`)

  const models = (flagValue(values, 'models') ?? '').split(',').map((m) => m.trim()).filter(Boolean)
  for (const m of models) if (!modelName.safeParse(m).success) throw new UsageError(`--models: '${m}' is not a model name`)
  if (new Set(models).size !== models.length) throw new UsageError('--models lists a model twice')
  const backend = backendEnv(row, values, models)

  const capacityArg = flagValue(values, 'capacity')
  const capacity = capacityArg === undefined ? undefined : Number(capacityArg)
  if (capacity !== undefined && (!Number.isInteger(capacity) || capacity < 1 || capacity > 100_000)) throw new UsageError('--capacity must be a whole number from 1 to 100000')
  const label = flagValue(values, 'label')
  if (label !== undefined && label.length > 100) throw new UsageError('--label is at most 100 characters')

  // --network KEY: find every gateway on the network's DHT topic; else gateways by key:
  // --gateway KEY[,KEY2], else $HYPERINFER_GATEWAY, else the local mesh file
  const network = (flagValue(values, 'network') ?? process.env.HYPERINFER_NETWORK)?.toLowerCase()
  if (network !== undefined && !/^[0-9a-f]{64}$/.test(network)) throw new UsageError('--network: the network key is 64 hex characters (`hyperinfer registry` prints it)')
  const gwValue = ctx.globals.gateway || process.env.HYPERINFER_GATEWAY || (network ? '' : readMeshFile(ctx.home)?.services.gateway)
  if (!gwValue && !network) throw new UsageError('no gateway: pass --network <key> or --gateway <hex key>[,<hex key>…], set HYPERINFER_GATEWAY, or run `npm start` here first')
  const gateways = [...new Set((gwValue ?? '').split(/[\s,]+/).filter(Boolean).map((k) => k.toLowerCase()))]
  for (const k of gateways) if (!/^[0-9a-f]{64}$/.test(k)) throw new UsageError(`--gateway: '${k.slice(0, 20)}' is not a 64-hex-character public key`)

  const bootstrap = ctx.bootstrap()?.map((b) => `${b.host}:${b.port}`).join(',')

  // the network's worker token: --token, --token-env, $HYPERINFER_WORKER_TOKEN, else this machine's
  // own token when the mesh runs here (`npm start` made it)
  const tokenFlag = flagValue(values, 'token')
  const tokenEnv = flagValue(values, 'token-env')
  if (tokenFlag && tokenEnv) throw new UsageError('give --token or --token-env, not both')
  let token = tokenFlag ?? (tokenEnv ? fromEnv('token-env', tokenEnv) : undefined) ?? (process.env.HYPERINFER_WORKER_TOKEN || undefined)
  if (!token) {
    // no token file: the worker asks for an operator's approval instead
    try { token = fs.readFileSync(path.join(ctx.home, 'keys', 'worker-token.secret'), 'utf8').trim() || undefined } catch {}
  }
  if (token !== undefined && token.length > 200) throw new UsageError('the worker token is at most 200 characters')

  const env: Record<string, string> = {
    HYPERINFER_HOME: ctx.home,
    HYPERINFER_WORKER_NAME: name,
    HYPERINFER_GATEWAYS: gateways.join(','),
    ...(network ? { HYPERINFER_NETWORK: network } : {}),
    ...backend.env
  }
  const secrets = [...backend.secrets]
  if (bootstrap) env.HYPERINFER_BOOTSTRAP = bootstrap
  if (token) { env.HYPERINFER_WORKER_TOKEN = token; secrets.push(token) }
  if (capacity !== undefined) env.WORKER_CAPACITY = String(capacity)
  if (label !== undefined) env.WORKER_LABEL = label
  return { backend: row.id, name, gateways, bootstrap, token, env, secrets: secrets.filter((s) => s.length >= 4), models }
}

export const worker: Command = {
  usage: `worker --backend ${BACKEND_ROWS.map((r) => r.id).join('|')} [options]

${backendHelp()}
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

The worker's logs go to stderr at LOG_LEVEL (default warn). HYPERINFER_HOST sets the address its DHT
node binds and announces.`,
  options: {
    backend: { type: 'string' },
    ...backendFlagOptions,
    models: { type: 'string' },
    network: { type: 'string' },
    token: { type: 'string' },
    'token-env': { type: 'string' },
    name: { type: 'string' },
    label: { type: 'string' },
    capacity: { type: 'string' }
  },
  async run (ctx, { values }) {
    const plan = planWorker(ctx, values)
    await runWorker(plan, ctx.globals.json)
  }
}
