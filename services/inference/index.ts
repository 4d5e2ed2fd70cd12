import { z } from 'zod'
import { keyList, loadConfig, positiveInt } from '../../shared/config.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { createBackends } from './backends/index.ts'
import { commaList } from './backends/table.ts'
import type { Backend } from './backends/types.ts'
import { InferenceService } from './service.ts'
import { ipcStatusReporter, sendWorkerStatus } from './status.ts'

// The worker's own settings; each backend reads its settings itself (./backends/table.ts).
const schema = z.object({
  HYPERINFER_GATEWAYS: keyList,
  /** the network key (the registry key): join every gateway announced on its topic */
  HYPERINFER_NETWORK: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected the 64-character hex network key').optional(),
  HYPERINFER_WORKER_TOKEN: z.string().optional(),
  HYPERINFER_WORKER_NAME: z.string().default('inference'),
  WORKER_CAPACITY: positiveInt.default(64),
  WORKER_LABEL: z.string().max(100).optional(),
  /** serve only these model ids, whatever the backends list (empty: everything they list) */
  WORKER_MODELS: commaList,
  MODEL_REFRESH_MS: positiveInt.default(30_000)
})

await runService('inference', async () => {
  const cfg = loadConfig(schema)
  const all = await createBackends(process.env)
  const backends = cfg.WORKER_MODELS.length ? all.map((b) => onlyModels(b, new Set(cfg.WORKER_MODELS))) : all
  const service = new InferenceService({
    ...meshOptions(cfg.HYPERINFER_WORKER_NAME),
    backends,
    gateways: cfg.HYPERINFER_GATEWAYS,
    network: cfg.HYPERINFER_NETWORK,
    workerToken: cfg.HYPERINFER_WORKER_TOKEN,
    capacity: cfg.WORKER_CAPACITY,
    label: cfg.WORKER_LABEL ?? cfg.HYPERINFER_WORKER_NAME,
    modelRefreshMs: cfg.MODEL_REFRESH_MS,
    onStatus: ipcStatusReporter()
  })
  // after close: the last word to a supervisor, written before the process exits
  return { service, cleanup: () => sendWorkerStatus({ type: 'stopped' }) }
}, (svc) => `inference ready ${svc.publicKey} models=${svc.models.map((m) => m.id).join(',')}`)

/** The same backend, listing only the allowed models (the worker then serves nothing else). */
function onlyModels (b: Backend, allow: Set<string>): Backend {
  return {
    name: b.name,
    listModels: async (signal) => (await b.listModels(signal)).filter((m) => allow.has(m.id)),
    chat: (req, signal) => b.chat(req, signal),
    health: (signal) => b.health(signal),
    ...(b.embed ? { embed: (req, signal) => b.embed!(req, signal) } : {}),
    ...(b.close ? { close: () => b.close!() } : {})
  }
}
