import { z } from 'zod'

// The response cache's settings, from the gateway's environment (README "Response cache").

/** The threshold measured on the labelled paraphrase set (scripts/bench-cache.ts, "semantic"). */
export const DEFAULT_SEMANTIC_THRESHOLD = 0.9

export interface CacheConfig {
  enabled: boolean
  /** 'account': one account never sees another's answers; 'global': deterministic answers are shared */
  scope: 'account' | 'global'
  ttlMs: number
  localMaxBytes: number
  sharedMaxBytes: number
  pruneEveryMs: number
  /** a hit is billed this fraction of what its tokens cost uncached (0: free) */
  priceFraction: number
  /** the mesh's embedding model for semantic lookups; null: no semantic cache */
  embedModel: string | null
  semanticThreshold: number
}

const num = (d: number) => z.coerce.number().finite().default(d)

export const cacheEnv = z.object({
  CACHE: z.enum(['on', 'off']).default('on'),
  CACHE_SCOPE: z.enum(['account', 'global']).default('account'),
  CACHE_TTL_MS: num(10 * 60_000).pipe(z.number().int().min(1000)),
  CACHE_LOCAL_MAX_BYTES: num(64 * 1024 * 1024).pipe(z.number().int().min(1024)),
  CACHE_SHARED_MAX_BYTES: num(1024 * 1024 * 1024).pipe(z.number().int().min(1024)),
  CACHE_PRICE: num(0).pipe(z.number().min(0).max(1)),
  CACHE_EMBED_MODEL: z.string().min(1).max(200).optional(),
  CACHE_SEMANTIC_THRESHOLD: num(DEFAULT_SEMANTIC_THRESHOLD).pipe(z.number().gt(0).max(1))
})

export function cacheConfig (env: z.infer<typeof cacheEnv>): CacheConfig {
  return {
    enabled: env.CACHE === 'on',
    scope: env.CACHE_SCOPE,
    ttlMs: env.CACHE_TTL_MS,
    localMaxBytes: env.CACHE_LOCAL_MAX_BYTES,
    sharedMaxBytes: env.CACHE_SHARED_MAX_BYTES,
    pruneEveryMs: 30_000,
    priceFraction: env.CACHE_PRICE,
    embedModel: env.CACHE_EMBED_MODEL ?? null,
    semanticThreshold: env.CACHE_SEMANTIC_THRESHOLD
  }
}

export const defaultCacheConfig = (): CacheConfig => cacheConfig(cacheEnv.parse({}))
