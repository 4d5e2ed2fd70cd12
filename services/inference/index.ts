import { z } from 'zod'
import { bool, keyList, loadConfig, positiveInt } from '../../shared/config.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { createBackends } from './backends/index.ts'
import type { Backend } from './backends/types.ts'
import { InferenceService } from './service.ts'

const list = z.string().default('').transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))

const schema = z.object({
  HYPERINFER_GATEWAYS: keyList,
  /** the network key (the registry key): join every gateway announced on its topic */
  HYPERINFER_NETWORK: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected the 64-character hex network key').optional(),
  HYPERINFER_WORKER_TOKEN: z.string().optional(),
  HYPERINFER_WORKER_NAME: z.string().default('inference'),
  SYNTHETIC: bool.default(true),
  SYNTHETIC_MODELS: list,
  SYNTHETIC_TOKENS_PER_SEC: z.coerce.number().min(0).default(0),
  OLLAMA_URL: z.string().url().optional(),
  OPENAI_BASE_URL: z.string().url().optional(),
  OPENAI_API_KEY: z.string().optional(),
  OPENAI_MODELS: list,
  WORKER_CAPACITY: positiveInt.default(64),
  WORKER_LABEL: z.string().max(100).optional(),
  /** serve only these model ids, whatever the backends list (empty: everything they list) */
  WORKER_MODELS: list,
  MODEL_REFRESH_MS: positiveInt.default(30_000)
})

await runService('inference', () => {
  const cfg = loadConfig(schema)
  const all = createBackends({
    synthetic: cfg.SYNTHETIC ? { models: cfg.SYNTHETIC_MODELS.length ? cfg.SYNTHETIC_MODELS : undefined, tokensPerSecond: cfg.SYNTHETIC_TOKENS_PER_SEC } : false,
    ollamaUrl: cfg.OLLAMA_URL,
    openai: cfg.OPENAI_API_KEY || cfg.OPENAI_BASE_URL
      ? { baseURL: cfg.OPENAI_BASE_URL ?? 'https://api.openai.com/v1', apiKey: cfg.OPENAI_API_KEY ?? 'none', models: cfg.OPENAI_MODELS.length ? cfg.OPENAI_MODELS : undefined }
      : undefined
  })
  const backends = cfg.WORKER_MODELS.length ? all.map((b) => onlyModels(b, new Set(cfg.WORKER_MODELS))) : all
  const service = new InferenceService({
    ...meshOptions(cfg.HYPERINFER_WORKER_NAME),
    backends,
    gateways: cfg.HYPERINFER_GATEWAYS,
    network: cfg.HYPERINFER_NETWORK,
    workerToken: cfg.HYPERINFER_WORKER_TOKEN,
    capacity: cfg.WORKER_CAPACITY,
    label: cfg.WORKER_LABEL ?? cfg.HYPERINFER_WORKER_NAME,
    modelRefreshMs: cfg.MODEL_REFRESH_MS
  })
  return { service }
}, (svc) => `inference ready ${svc.publicKey} models=${(svc as InferenceService).models.map((m) => m.id).join(',')}`)

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
