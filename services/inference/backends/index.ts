import type { Backend } from './types.ts'
import { BACKENDS } from './table.ts'

/**
 * The backends a worker runs, from its env (one row of ./table.ts each, in the table's order). Every
 * row's settings are checked (ConfigError) before any backend's file is loaded.
 */
export async function createBackends (env: NodeJS.ProcessEnv): Promise<Backend[]> {
  const builders = BACKENDS.map((b) => b.plan(env))
  return Promise.all(builders.flatMap((build) => build ? [build()] : []))
}
