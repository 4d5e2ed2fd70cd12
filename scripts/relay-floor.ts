// A process that only relays: it answers the worker's own `processPrompt` call by passing it to a
// worker and passing the worker's frames and answer back, with nothing else on the way (no key
// check, admission, routing, safety, receipt or settlement). The bench measures it beside the
// gateway: what one more process and its two encrypted hops cost by themselves, the floor under any
// gateway of this design on the same machine.
// Env: the service's (HYPERINFER_HOME, HYPERINFER_BOOTSTRAP, HYPERINFER_SEED, HYPERINFER_MESH_ALLOW
// for its callers) and RELAY_WORKERS, a JSON object from model id to the worker's public key (hex).
import { z } from 'zod'
import { ConfigError } from '../shared/config.ts'
import { MeshError } from '../shared/errors.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import { handlers, type HandlerContext, type HandlerTable } from '../shared/mesh/peer.ts'
import { MeshService, type MeshServiceOptions } from '../shared/mesh/service.ts'
import { InferenceProtocol, type PromptResult, type TokenChunk } from '../shared/protocol/inference.ts'
import type { RequestOf } from '../shared/mesh/method.ts'
import { runService } from '../shared/run.ts'
import { meshOptions } from '../shared/service-env.ts'

const IDLE_TIMEOUT_MS = 60_000

export class RelayFloor extends MeshService {
  private readonly workerKeys: Record<string, string>
  private readonly workers = new Map<string, MeshClient>()

  constructor (opts: Omit<MeshServiceOptions, 'name' | 'frames'> & { workers: Record<string, string> }) {
    super({ ...opts, name: 'relay', frames: 'relay' })
    this.workerKeys = opts.workers
  }

  protected handlers (): HandlerTable {
    return handlers().on(InferenceProtocol.processPrompt, (req, ctx) => this.relay(req, ctx)).table
  }

  protected async onOpen (): Promise<void> {
    for (const [model, key] of Object.entries(this.workerKeys)) this.workers.set(model, this.connectTo(key, { name: `worker ${model}` }))
  }

  private relay (req: RequestOf<typeof InferenceProtocol.processPrompt>, ctx: HandlerContext<TokenChunk>): Promise<PromptResult> {
    const worker = this.workers.get(req.model)
    if (!worker) throw MeshError.UNKNOWN_MODEL(req.model, [...this.workers.keys()])
    return worker.stream(InferenceProtocol.processPrompt, req, { onChunk: (c) => ctx.emit(c), signal: ctx.signal, idleTimeout: IDLE_TIMEOUT_MS })
  }
}

const workersEnv = z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/))

await runService('relay', () => {
  const parsed = workersEnv.safeParse(JSON.parse(process.env.RELAY_WORKERS ?? '{}'))
  if (!parsed.success || Object.keys(parsed.data).length === 0) throw new ConfigError('RELAY_WORKERS: expected a JSON object from model id to a worker\'s 64-hex public key')
  return { service: new RelayFloor({ ...meshOptions('relay'), workers: parsed.data }) }
}, (svc) => `relay ready ${svc.publicKey}`)
