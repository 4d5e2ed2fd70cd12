import { z } from 'zod'
import { loadConfig, positiveInt } from '../../shared/config.ts'
import { createPool } from '../../shared/db.ts'
import { runService } from '../../shared/run.ts'
import { loadSecret, meshOptions } from '../../shared/service-env.ts'
import { AuthService } from './service.ts'

const schema = z.object({
  DATABASE_URL: z.string().min(1, 'DATABASE_URL is required'),
  JWT_SECRET: z.string().optional(),
  SESSION_TTL_SECONDS: positiveInt.default(86_400),
  DB_POOL_SIZE: positiveInt.default(10)
})

await runService('auth', () => {
  const cfg = loadConfig(schema)
  const mesh = meshOptions('auth')
  const pool = createPool(cfg.DATABASE_URL, cfg.DB_POOL_SIZE)
  const svc = new AuthService({ ...mesh, pool, jwtSecret: loadSecret(mesh.home, 'jwt', cfg.JWT_SECRET), sessionTtlSeconds: cfg.SESSION_TTL_SECONDS })
  return { service: svc, cleanup: () => pool.end() }
}, (svc) => `auth ready ${svc.publicKey}`)
