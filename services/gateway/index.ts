import { z } from 'zod'
import { hexKey, loadConfig, positiveInt } from '../../shared/config.ts'
import { createPool } from '../../shared/db.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { GatewayService } from './service.ts'

const schema = z.object({
  DATABASE_URL: z.string().min(1, 'DATABASE_URL is required'),
  HYPERINFER_AUTH_KEY: hexKey,
  HYPERINFER_WORKER_TOKEN: z.string().min(16).optional(),
  DEFAULT_RATE_LIMIT: positiveInt.default(100),
  PREMIUM_RATE_LIMIT: positiveInt.default(1000),
  MAX_PROMPT_CHARS: positiveInt.default(100_000),
  DEFAULT_MODEL: z.string().optional(),
  KEY_CACHE_TTL_MS: positiveInt.default(60_000),
  WORKER_IDLE_TIMEOUT_MS: positiveInt.default(60_000),
  DB_POOL_SIZE: positiveInt.default(10)
})

await runService('gateway', () => {
  const cfg = loadConfig(schema)
  const pool = createPool(cfg.DATABASE_URL, cfg.DB_POOL_SIZE)
  const service = new GatewayService({
    ...meshOptions('gateway'),
    pool,
    authKey: cfg.HYPERINFER_AUTH_KEY,
    workerToken: cfg.HYPERINFER_WORKER_TOKEN,
    rateLimits: { default: cfg.DEFAULT_RATE_LIMIT, premium: cfg.PREMIUM_RATE_LIMIT },
    maxPromptChars: cfg.MAX_PROMPT_CHARS,
    defaultModel: cfg.DEFAULT_MODEL,
    keyCacheTtlMs: cfg.KEY_CACHE_TTL_MS,
    workerIdleTimeoutMs: cfg.WORKER_IDLE_TIMEOUT_MS
  })
  return { service, cleanup: () => pool.end() }
}, (svc) => `gateway ready ${svc.publicKey}`)
