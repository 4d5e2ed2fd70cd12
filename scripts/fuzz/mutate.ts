import crypto from 'node:crypto'
import { z } from 'zod'

// Request generators for the fuzzer: a plausible request built from a method's own zod schema (via
// its JSON Schema), then bent out of shape: wrong types, huge strings, hostile numbers, missing and
// extra fields, deep nesting, prototype-pollution keys. Deterministic for a given seed, so a failing
// run can be replayed with FUZZ_SEED.

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
interface JsonSchema {
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  required?: string[]
  items?: JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  enum?: Json[]
  const?: Json
  minLength?: number
  maxLength?: number
  minimum?: number
  maximum?: number
  minItems?: number
  format?: string
  additionalProperties?: JsonSchema | boolean
}

/** A small seeded PRNG (mulberry32): the same seed gives the same run. */
export class Rand {
  private s: number
  constructor (seed: number) { this.s = seed >>> 0 }
  next (): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0
    let t = this.s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int (n: number): number { return Math.floor(this.next() * n) }
  pick<T> (xs: readonly T[]): T { return xs[this.int(xs.length)]! }
  chance (p: number): boolean { return this.next() < p }
  bytes (n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = this.int(256)
    return b
  }
}

/** Values for fields whose meaning the fuzzer knows: a real key or session takes requests deeper. */
export type Known = Record<string, () => Json>

const SCHEMAS = new WeakMap<object, JsonSchema>()
export function jsonSchemaOf (schema: z.ZodType): JsonSchema {
  let s = SCHEMAS.get(schema)
  if (!s) {
    s = z.toJSONSchema(schema, { unrepresentable: 'any', io: 'input' }) as JsonSchema
    SCHEMAS.set(schema, s)
  }
  return s
}

/** A value the schema would most likely take. */
export function sample (s: JsonSchema, r: Rand, known: Known, field = ''): Json {
  if (known[field]) return known[field]!()
  if (s.const !== undefined) return s.const
  if (s.enum) return r.pick(s.enum)
  const alts = s.oneOf ?? s.anyOf
  if (alts) return sample(r.pick(alts), r, known, field)
  const type = Array.isArray(s.type) ? r.pick(s.type) : s.type
  switch (type) {
    case 'object': {
      const out: { [k: string]: Json } = {}
      for (const [k, v] of Object.entries(s.properties ?? {})) {
        if ((s.required ?? []).includes(k) || r.chance(0.5)) out[k] = sample(v, r, known, k)
      }
      return out
    }
    case 'array': {
      const n = Math.max(s.minItems ?? 0, r.int(3))
      return Array.from({ length: n }, () => sample(s.items ?? {}, r, known, field))
    }
    case 'string':
      if (s.format === 'uuid') return crypto.randomUUID()
      if (s.format === 'email') return `f${r.int(1e6)}@example.com`
      return 'x'.repeat(Math.max(s.minLength ?? 1, Math.min(s.maxLength ?? 12, 1 + r.int(12))))
    case 'integer': return Math.max(s.minimum ?? 0, Math.min(s.maximum ?? 100, 1 + r.int(16)))
    case 'number': return Math.max(s.minimum ?? 0, Math.min(s.maximum ?? 1, r.next()))
    case 'boolean': return r.chance(0.5)
    case 'null': return null
    default: return r.pick(['x', 1, true, null])
  }
}

const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '_sid', '']

/** One hostile value of any type. Sizes stay bounded so a run measures handling, not copying. */
export function hostile (r: Rand): Json {
  switch (r.int(16)) {
    case 0: return 'A'.repeat(r.pick([1000, 70_000, 300_000, 1_100_000]))
    case 1: return r.pick([-1, -1e308, 1e308, 2 ** 53 + 1, -0, 0.5, 1e-300, 2 ** 31, -(2 ** 63)])
    case 2: return r.pick(['NaN', 'Infinity', '-1', '1e309', '0x10', ''])
    case 3: return null
    case 4: return r.pick([true, false])
    case 5: return []
    case 6: return {}
    case 7: return nested(r, 20 + r.int(2000))
    case 8: return protoBomb(r)
    case 9: return Array.from({ length: r.pick([300, 5000]) }, () => r.pick(['x', 1, null, {}]))
    case 10: return r.pick(['\u0000', '\ud800', '\u202e\u0007', '💥'.repeat(100), '../../etc/passwd', "' OR 1=1 --", '%s%n%x', '${7*7}', '<script>'])
    case 11: return r.bytes(1 + r.int(64)).toString('latin1')
    case 12: return { [r.pick(HOSTILE_KEYS)]: hostile(r) }
    case 13: return r.int(1e9) - 5e8
    case 14: return crypto.randomUUID()
    default: return 'x'.repeat(r.int(40))
  }
}

export function nested (r: Rand, depth: number): Json {
  let v: Json = r.pick(['x', 1, null])
  for (let i = 0; i < depth; i++) v = r.chance(0.5) ? [v] : { a: v }
  return v
}

function protoBomb (r: Rand): Json {
  // JSON.parse makes these own properties; code that copies them with `obj[k] = v` pollutes prototypes
  return JSON.parse(r.pick([
    '{"__proto__":{"isAdmin":true,"role":"admin","polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}',
    '{"__proto__":null}',
    '{"toString":"boom","valueOf":1}'
  ])) as Json
}

function isObject (v: Json): v is { [k: string]: Json } {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Bend a valid-looking request: one to three mutations at random places. */
export function mutate (base: Json, r: Rand): Json {
  let v = structuredClone(base)
  const n = 1 + r.int(3)
  for (let i = 0; i < n; i++) v = mutateOnce(v, r)
  return v
}

function mutateOnce (v: Json, r: Rand): Json {
  if (!isObject(v) || r.chance(0.05)) return hostile(r)
  const keys = Object.keys(v)
  const op = r.int(6)
  if (op === 0 && keys.length) { delete v[r.pick(keys)]; return v } // missing field
  if (op === 1) { v[r.chance(0.5) ? r.pick(HOSTILE_KEYS) : 'extra' + r.int(100)] = hostile(r); return v } // extra field
  if (keys.length === 0) { v[r.pick(HOSTILE_KEYS)] = hostile(r); return v }
  const k = r.pick(keys)
  const child = v[k]!
  // recurse into objects and arrays so nested fields get bent too
  if (op === 2 && isObject(child)) { v[k] = mutateOnce(child, r); return v }
  if (op === 3 && Array.isArray(child) && child.length) { child[r.int(child.length)] = mutateOnce(child[r.int(child.length)]!, r); return v }
  v[k] = hostile(r) // wrong type / hostile value
  return v
}
