import { z } from 'zod'
import { parseMembers } from './mesh/roles.ts'

// Every process reads its configuration from the environment once, at start, through a schema:
// a bad value stops the process with one clear line instead of failing later.

export const bool = z.union([z.boolean(), z.string()]).transform((v) => v === true || v === 'true' || v === '1' || v === 'yes')
export const port = z.coerce.number().int().min(0).max(65535)
export const positiveInt = z.coerce.number().int().positive()
export const hexKey = z.string().regex(/^[0-9a-f]{64}$/i, 'expected a 64-character hex public key')
export const keyList = z.string().default('').transform((s) => s.split(/[\s,]+/).filter(Boolean)).pipe(z.array(hexKey))

export { bootstrapList, stateDir } from './places.ts'

export class ConfigError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

export function loadConfig<S extends z.ZodType> (schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env)
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`)
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`)
  }
  return result.data
}

/** Common settings every mesh process understands. */
export const meshEnv = {
  HYPERINFER_HOME: z.string().optional(),
  HYPERINFER_BOOTSTRAP: z.string().optional(),
  HYPERINFER_HOST: z.string().default('127.0.0.1'),
  /** the mesh members: `kind=key` entries (gateway-2=…, web=…) or bare keys (operators' tools); see mesh/roles.ts */
  HYPERINFER_MESH_ALLOW: z.string().default('').transform((s) => s.split(/[\s,]+/).filter(Boolean)).superRefine((entries, ctx) => {
    try { parseMembers(entries) } catch (err) { ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message }) }
  }),
  LOG_LEVEL: z.string().default('info')
}
