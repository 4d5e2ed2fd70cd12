import { z } from 'zod'
import { bool, keyList, loadConfig, positiveInt } from '../../shared/config.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { createBackends } from './backends/index.ts'
import { InferenceService } from './service.ts'

const list = z.string().default('').transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))

const schema = z.object({
  HYPERINFER_GATEWAYS: keyList,
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
  MODEL_REFRESH_MS: positiveInt.default(30_000)
})

await runService('inference', () => {
  const cfg = loadConfig(schema)
  const backends = createBackends({
    synthetic: cfg.SYNTHETIC ? { models: cfg.SYNTHETIC_MODELS.length ? cfg.SYNTHETIC_MODELS : undefined, tokensPerSecond: cfg.SYNTHETIC_TOKENS_PER_SEC } : false,
    ollamaUrl: cfg.OLLAMA_URL,
    openai: cfg.OPENAI_API_KEY || cfg.OPENAI_BASE_URL
      ? { baseURL: cfg.OPENAI_BASE_URL ?? 'https://api.openai.com/v1', apiKey: cfg.OPENAI_API_KEY ?? 'none', models: cfg.OPENAI_MODELS.length ? cfg.OPENAI_MODELS : undefined }
      : undefined
  })
  const service = new InferenceService({
    ...meshOptions(cfg.HYPERINFER_WORKER_NAME),
    backends,
    gateways: cfg.HYPERINFER_GATEWAYS,
    workerToken: cfg.HYPERINFER_WORKER_TOKEN,
    capacity: cfg.WORKER_CAPACITY,
    label: cfg.WORKER_LABEL,
    modelRefreshMs: cfg.MODEL_REFRESH_MS
  })
  return { service }
}, (svc) => `inference ready ${svc.publicKey} models=${(svc as InferenceService).models.map((m) => m.id).join(',')}`)
