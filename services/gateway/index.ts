import { z } from 'zod'
import { ConfigError, hexKey, keyList, loadConfig, positiveInt } from '../../shared/config.ts'
import { createPool } from '../../shared/db.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { GatewayService } from './service.ts'
import { modelPrices, parseTiers } from './limits.ts'
import { adaptiveEnv, adaptiveOptions } from './adaptive-env.ts'

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
  DB_POOL_SIZE: positiveInt.default(10),
  /** JSON, e.g. {"default":{"tokensPerDay":50000}}: overrides fields of the built-in tiers */
  TIER_LIMITS: z.string().optional(),
  /** JSON, USD per 1M tokens: {"gpt-4o-mini":{"input":0.15,"output":0.6}} */
  MODEL_PRICES: z.string().optional().transform((v, ctx) => {
    if (!v) return {}
    try { return modelPrices.parse(JSON.parse(v)) } catch (err) { ctx.addIssue({ code: 'custom', message: 'MODEL_PRICES: ' + (err as Error).message.slice(0, 200) }); return z.NEVER }
  }),
  DEFAULT_MAX_TOKENS: positiveInt.default(1024),
  STUCK_REQUEST_MS: positiveInt.default(15 * 60_000),
  SWEEP_INTERVAL_MS: positiveInt.default(30_000),
  /** 'fsync': an answer waits until its settlement is on disk (survives a power cut); 'write': until the kernel has it (survives the process) */
  SETTLEMENT_SYNC: z.enum(['fsync', 'write']).default('write'),
  /** the network's share of each charge, percent; the serving worker's owner earns the rest */
  NETWORK_FEE_PCT: z.coerce.number().min(0).max(100).default(10),
  /** an unused lease slice goes back to PostgreSQL after this long */
  LEASE_IDLE_MS: positiveInt.default(2000),
  /** at rest, answered requests wait this long for company before they are written to PostgreSQL in one batch */
  SETTLEMENT_RECORD_DELAY_MS: positiveInt.default(20),
  /** a second gateway follows the first one's registry: its key, and the writer gateway's public key */
  HYPERINFER_REGISTRY_KEY: hexKey.optional(),
  HYPERINFER_REGISTRY_FROM: hexKey.optional(),
  /** on the writer: the replica gateways' keys, vouched for in the registry so workers serve them */
  HYPERINFER_REPLICA_GATEWAYS: keyList,
  REGISTRY_MEASURE_INTERVAL_MS: positiveInt.default(10_000),
  BREAKER_THRESHOLD: positiveInt.default(3),
  BREAKER_COOLDOWN_MS: positiveInt.default(10_000),
  /** the safety policy of keys whose key and account set none: off, flag, redact or block */
  SAFETY_DEFAULT_POLICY: z.enum(['off', 'flag', 'redact', 'block']).default('flag'),
  /** under redact: put the redacted items back into the answer */
  SAFETY_RESTORE_REDACTED: z.enum(['on', 'off']).default('off'),
  /** ask the mesh's moderation model (tagged `moderation` in the registry) about prompts when one is served */
  SAFETY_MODEL: z.enum(['auto', 'off']).default('auto'),
  SAFETY_ANOMALY_THRESHOLD: z.coerce.number().positive().default(10),
  /** what an anomalous key gets: an alert only, or also a suspension pending an admin's review */
  SAFETY_ANOMALY_ACTION: z.enum(['alert', 'suspend']).default('alert'),
  /** POSTed a JSON alert for each anomalous key */
  SAFETY_WEBHOOK_URL: z.string().url().optional(),
  /** signs each webhook body (HMAC-SHA256, header x-hyperinfer-signature) */
  SAFETY_WEBHOOK_SECRET: z.string().min(16).optional(),
  SAFETY_WEBHOOK_TIMEOUT_MS: positiveInt.default(5000),
  /** deliveries of one alert at most (the first and its retries) */
  SAFETY_WEBHOOK_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(3),
  /** the moderation model on answers: characters judged at a time */
  SAFETY_MODEL_WINDOW: z.coerce.number().int().min(16).max(8000).default(400),
  SAFETY_MODEL_TIMEOUT_MS: positiveInt.default(5000),
  /** what an answer gets when the model gives no verdict (busy, slow, failing): open lets it pass, closed ends it */
  SAFETY_MODEL_FAILURE: z.enum(['open', 'closed']).default('open'),
  /** classifications at once, all requests together; past it a window gets no verdict */
  SAFETY_MODEL_MAX_INFLIGHT: positiveInt.default(32),
  /** benchmarks only: 'off' turns off limits, credits and usage records */
  HYPERINFER_ACCOUNTING: z.enum(['on', 'off']).default('on'),
  /** on SIGTERM, how long running requests may take to finish; new ones go to other gateways meanwhile */
  DRAIN_TIMEOUT_MS: positiveInt.default(20_000)
}).extend(adaptiveEnv.shape)

function tiersFrom (json: string | undefined, requests: { default: number, premium: number }) {
  try {
    return parseTiers(json, requests)
  } catch (err) {
    const issues = (err as { issues?: Array<{ path: unknown[], message: string }> }).issues
    throw new ConfigError(`invalid configuration: TIER_LIMITS: ${issues ? issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') : (err as Error).message}`)
  }
}

await runService('gateway', () => {
  const cfg = loadConfig(schema)
  const pool = createPool(cfg.DATABASE_URL, cfg.DB_POOL_SIZE)
  if (!!cfg.HYPERINFER_REGISTRY_KEY !== !!cfg.HYPERINFER_REGISTRY_FROM) {
    throw new ConfigError('invalid configuration: set both HYPERINFER_REGISTRY_KEY and HYPERINFER_REGISTRY_FROM (the writer gateway), or neither')
  }
  const mesh = meshOptions('gateway')
  const service = new GatewayService({
    ...mesh,
    instance: process.env.HYPERINFER_SERVICE_NAME || 'gateway',
    registryKey: cfg.HYPERINFER_REGISTRY_KEY,
    registryFrom: cfg.HYPERINFER_REGISTRY_FROM,
    replicaGateways: cfg.HYPERINFER_REPLICA_GATEWAYS,
    measureIntervalMs: cfg.REGISTRY_MEASURE_INTERVAL_MS,
    breaker: { threshold: cfg.BREAKER_THRESHOLD, cooldownMs: cfg.BREAKER_COOLDOWN_MS },
    pool,
    authKey: cfg.HYPERINFER_AUTH_KEY,
    workerToken: cfg.HYPERINFER_WORKER_TOKEN,
    tiers: tiersFrom(cfg.TIER_LIMITS, { default: cfg.DEFAULT_RATE_LIMIT, premium: cfg.PREMIUM_RATE_LIMIT }),
    prices: cfg.MODEL_PRICES,
    networkFeePct: cfg.NETWORK_FEE_PCT,
    defaultMaxTokens: cfg.DEFAULT_MAX_TOKENS,
    stuckAfterMs: cfg.STUCK_REQUEST_MS,
    sweepEveryMs: cfg.SWEEP_INTERVAL_MS,
    settlementSync: cfg.SETTLEMENT_SYNC,
    leaseIdleMs: cfg.LEASE_IDLE_MS,
    recordDelayMs: cfg.SETTLEMENT_RECORD_DELAY_MS,
    accounting: cfg.HYPERINFER_ACCOUNTING === 'on',
    maxPromptChars: cfg.MAX_PROMPT_CHARS,
    defaultModel: cfg.DEFAULT_MODEL,
    keyCacheTtlMs: cfg.KEY_CACHE_TTL_MS,
    workerIdleTimeoutMs: cfg.WORKER_IDLE_TIMEOUT_MS,
    drainTimeoutMs: cfg.DRAIN_TIMEOUT_MS,
    adaptive: adaptiveOptions(cfg),
    safety: {
      defaultPolicy: cfg.SAFETY_DEFAULT_POLICY,
      restoreRedacted: cfg.SAFETY_RESTORE_REDACTED === 'on',
      useModel: cfg.SAFETY_MODEL === 'auto',
      outputModel: { window: cfg.SAFETY_MODEL_WINDOW, timeoutMs: cfg.SAFETY_MODEL_TIMEOUT_MS, failClosed: cfg.SAFETY_MODEL_FAILURE === 'closed', maxInflight: cfg.SAFETY_MODEL_MAX_INFLIGHT },
      anomaly: {
        threshold: cfg.SAFETY_ANOMALY_THRESHOLD, action: cfg.SAFETY_ANOMALY_ACTION, webhook: cfg.SAFETY_WEBHOOK_URL ?? null,
        webhookSecret: cfg.SAFETY_WEBHOOK_SECRET ?? null, webhookTimeoutMs: cfg.SAFETY_WEBHOOK_TIMEOUT_MS, webhookAttempts: cfg.SAFETY_WEBHOOK_ATTEMPTS
      }
    }
  })
  return { service, cleanup: () => pool.end() }
}, (svc) => `gateway ready ${svc.publicKey} registry=${(svc as GatewayService).catalog.key}`)
