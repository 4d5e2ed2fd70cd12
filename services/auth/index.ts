import { z } from 'zod'
import { loadConfig, positiveInt } from '../../shared/config.ts'
import { createPool } from '../../shared/db.ts'
import { runService } from '../../shared/run.ts'
import { loadSecret, meshOptions } from '../../shared/service-env.ts'
import { AuthService } from './service.ts'
import { syncAdminRoles } from './roles.ts'
import { AdminSetupCode } from './bootstrap.ts'

const schema = z.object({
  DATABASE_URL: z.string().min(1, 'DATABASE_URL is required'),
  JWT_SECRET: z.string().optional(),
  SESSION_TTL_SECONDS: positiveInt.default(86_400),
  DB_POOL_SIZE: positiveInt.default(10),
  ADMIN_USERS: z.string().default('').transform((v) => v.split(/[\s,]+/).filter(Boolean)),
  SIGNUP_CREDIT_USD: z.coerce.number().min(0).max(1_000_000).default(0)
})

await runService('auth', async () => {
  const cfg = loadConfig(schema)
  const mesh = meshOptions('auth')
  const pool = createPool(cfg.DATABASE_URL, cfg.DB_POOL_SIZE)
  // roles are settled before the first request is served: a name taken off ADMIN_USERS is no admin from now on
  await syncAdminRoles(pool, cfg.ADMIN_USERS, mesh.log)
  const setupCode = await AdminSetupCode.prepare(pool, mesh.home, mesh.log)
  const svc = new AuthService({ ...mesh, pool, jwtSecret: loadSecret(mesh.home, 'jwt', cfg.JWT_SECRET), sessionTtlSeconds: cfg.SESSION_TTL_SECONDS, adminUsers: cfg.ADMIN_USERS, signupCreditUsd: cfg.SIGNUP_CREDIT_USD, setupCode })
  return { service: svc, cleanup: () => pool.end() }
}, (svc) => `auth ready ${svc.publicKey}`)
