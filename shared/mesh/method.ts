import type { z } from 'zod'
import { MeshError } from '../errors.ts'
import type { Callers } from './roles.ts'

// A method of a service's protocol: its wire name, who may call it (roles.ts), the schema its
// request must pass, and (for streams) the type of the frames it emits. Server, client and tests all
// import the same definition, so the three can never disagree about a name, a shape or a caller.

export interface MethodDef<Req = unknown, Res = unknown, Chunk = never> {
  readonly name: string
  readonly callers: Callers
  readonly request: z.ZodType<Req>
  readonly stream: boolean
  /** phantom fields carrying the response / chunk types */
  readonly _res?: Res
  readonly _chunk?: Chunk
}

export function method<Req, Res> (name: string, callers: Callers, request: z.ZodType<Req>): MethodDef<Req, Res, never> {
  return { name, callers, request, stream: false }
}

export function streamMethod<Req, Res, Chunk> (name: string, callers: Callers, request: z.ZodType<Req>): MethodDef<Req, Res, Chunk> {
  return { name, callers, request, stream: true }
}

export type RequestOf<M> = M extends MethodDef<infer R, any, any> ? R : never
export type ResponseOf<M> = M extends MethodDef<any, infer R, any> ? R : never
export type ChunkOf<M> = M extends MethodDef<any, any, infer C> ? C : never

/**
 * A request checked against its method's schema, or BAD_REQUEST naming the first bad field: what every
 * server answers. The message names the field, never the method: it may reach an HTTP client.
 */
export function parseRequest<Req> (def: MethodDef<Req, unknown, unknown>, raw: unknown): Req {
  const parsed = def.request.safeParse(raw)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const where = issue?.path?.length ? issue.path.join('.') + ': ' : ''
  throw MeshError.BAD_REQUEST(`${where}${issue?.message ?? 'malformed request'}`, { issues: parsed.error.issues.length, ...(issue?.path?.length ? { param: issue.path.join('.') } : {}) })
}
