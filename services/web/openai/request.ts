import type { FastifyRequest } from 'fastify'
import type { z } from 'zod'
import { MeshError } from '../../../shared/errors.ts'

// What every /v1 route does first: find the API key, and check the body against the route's schema
// with an error that names the field and what was wrong with it, in the API's own terms.

/** The key from `Authorization: Bearer <key>` or `x-api-key: <key>`; its shape and validity are the gateway's to judge. */
export function apiKeyOf (req: FastifyRequest): string {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  if (m) return m[1]!
  const header = req.headers['x-api-key']
  if (typeof header === 'string' && header.trim()) return header.trim()
  throw MeshError.INVALID_API_KEY('no API key: send Authorization: Bearer <key> or x-api-key: <key>')
}

/**
 * The Idempotency-Key header, if given: a retry with the same key (and body) gets the first attempt's
 * answer, charged once. `part` tells apart the gateway requests one HTTP request makes (choices, batches).
 */
export function idempotencyKeyOf (req: FastifyRequest): string | undefined {
  const v = req.headers['idempotency-key']
  if (v === undefined) return undefined
  if (typeof v !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(v)) throw MeshError.BAD_REQUEST('Idempotency-Key: 1 to 200 printable ASCII characters, no spaces', { param: 'Idempotency-Key' })
  return v
}

/** The gateway's requestId for part `i` of an HTTP request with idempotency key `key`. */
export function partKey (key: string | undefined, i: number): { requestId?: string } {
  return key === undefined ? {} : { requestId: i === 0 ? key : `${key}#${i}` }
}

type Issue = z.core.$ZodIssue

/** The most telling issue: inside a union, the branch that got furthest (the longest path). */
function deepest (issue: Issue): Issue {
  if (issue.code !== 'invalid_union' || !issue.errors?.length) return issue
  let best: Issue = issue
  let depth = -1
  for (const branch of issue.errors) {
    for (const inner of branch) {
      const d = deepest({ ...inner, path: [...issue.path, ...inner.path] } as Issue)
      // a branch that failed on its type tag says only "not this branch": prefer one that got inside
      const tag = d.code === 'invalid_value' && d.path[d.path.length - 1] === 'type'
      const len = d.path.length - (tag ? 0.5 : 0)
      if (len > depth) { depth = len; best = d }
    }
  }
  return best
}

function describe (issue: Issue): string {
  // a union's own message when it has one (a discriminated union names its accepted tags)
  if (issue.code === 'invalid_union') return issue.message && issue.message !== 'Invalid input' ? issue.message : 'matches none of the accepted forms'
  if (issue.code === 'unrecognized_keys') return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}`
  return issue.message.replace(/^Invalid (input|option): /, '')
}

/** The body checked against `schema`, or BAD_REQUEST `<field>: <what was wrong>` with `param` naming the field. */
export function parseBody<S extends z.ZodType> (schema: S, body: unknown): z.infer<S> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw MeshError.BAD_REQUEST('the request body must be a JSON object')
  const r = schema.safeParse(body)
  if (r.success) return r.data
  const issue = deepest(r.error.issues[0]!)
  const param = issue.path.map((p, i) => typeof p === 'number' ? `[${p}]` : (i === 0 ? String(p) : '.' + String(p))).join('') || null
  throw MeshError.BAD_REQUEST(`${param ?? 'body'}: ${describe(issue)}`, { param })
}
