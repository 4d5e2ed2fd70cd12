// The per-service environment `npm start` gives the mesh it starts, from the operator's environment.
// No account is an admin by name: the first admin registers with the one-time setup code auth writes
// to the state dir (see services/auth/bootstrap.ts). ADMIN_USERS still names admins when set.
import type { LocalMeshOptions } from './lib/localmesh.ts'

export function startServiceEnv (env: NodeJS.ProcessEnv = process.env): NonNullable<LocalMeshOptions['serviceEnv']> {
  return {
    inference: {
      OLLAMA_URL: env.OLLAMA_URL ?? 'http://127.0.0.1:11434',
      // a visible stream for people trying it out; `npm run bench` measures at zero delay
      SYNTHETIC_TOKENS_PER_SEC: env.SYNTHETIC_TOKENS_PER_SEC ?? '40'
    },
    auth: env.ADMIN_USERS ? { ADMIN_USERS: env.ADMIN_USERS } : {}
  }
}
