import { z } from 'zod'
import { cacheConfig, cacheEnv } from './cache/config.ts'
import type { AdaptiveOptions } from './adaptive.ts'

// The gateway's settings for the response cache, warm-up and learned routing (README "Response
// cache" and "Learned routing").

const num = (d: number) => z.coerce.number().finite().default(d)

export const adaptiveEnv = cacheEnv.extend({
  /** tokens an hour predictive warm-up may spend (0: off) */
  CACHE_WARM_BUDGET_TOKENS: num(0).pipe(z.number().int().min(0)),
  CACHE_WARM_MIN_USES: num(3).pipe(z.number().min(1)),
  CACHE_WARM_INTERVAL_MS: num(30_000).pipe(z.number().int().min(100)),
  LEARNED_EXPLORATION: num(0.05).pipe(z.number().min(0).max(1)),
  LEARNED_HALF_LIFE_MS: num(10 * 60_000).pipe(z.number().int().min(1000)),
  LEARNED_SYNC_MS: num(2000).pipe(z.number().int().min(100))
})

export function adaptiveOptions (env: z.infer<typeof adaptiveEnv>): AdaptiveOptions {
  return {
    cache: cacheConfig(env),
    warmup: { budgetTokensPerHour: env.CACHE_WARM_BUDGET_TOKENS, minUses: env.CACHE_WARM_MIN_USES, everyMs: env.CACHE_WARM_INTERVAL_MS },
    learned: { exploration: env.LEARNED_EXPLORATION, halfLifeMs: env.LEARNED_HALF_LIFE_MS, syncEveryMs: env.LEARNED_SYNC_MS }
  }
}
