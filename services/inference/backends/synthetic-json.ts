import crypto from 'node:crypto'

// The synthetic backend's structured output: a JSON value valid against a JSON Schema, derived from a
// seed (same schema and seed, same value). It covers what structured-output clients send (OpenAI
// strict schemas, zod and pydantic exports): type (or a list of types), properties / required /
// additionalProperties, items / prefixItems / minItems / maxItems, enum, const, anyOf / oneOf / allOf,
// $ref into $defs or definitions, string formats and lengths, numeric bounds and multipleOf. A
// `pattern` it cannot satisfy in general: such strings are left to chance, and a schema that only a
// pattern constrains may not validate.

type Schema = Record<string, unknown>

const WORDS = ['mesh', 'peer', 'token', 'worker', 'gateway', 'model', 'stream', 'key', 'route', 'answer', 'node', 'hash']
const MAX_DEPTH = 12

/** Deterministic bytes, drawn in order from a seed. */
class Draw {
  private buf: Buffer
  private at = 0

  constructor (seed: string) { this.buf = crypto.createHash('sha256').update(seed).digest() }

  int (n: number): number {
    if (this.at + 4 > this.buf.length) { this.buf = crypto.createHash('sha256').update(this.buf).digest(); this.at = 0 }
    const v = this.buf.readUInt32BE(this.at)
    this.at += 4
    return n <= 0 ? 0 : v % n
  }

  word (): string { return WORDS[this.int(WORDS.length)]! }
}

/** A value valid against `schema`, the same for the same schema and seed. */
export function exampleFor (schema: unknown, seed: string): unknown {
  const root = isSchema(schema) ? schema : {}
  return new Generator(root, new Draw(seed)).value(root, 0)
}

function isSchema (v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

class Generator {
  private readonly root: Schema
  private readonly draw: Draw

  constructor (root: Schema, draw: Draw) {
    this.root = root
    this.draw = draw
  }

  value (s: Schema, depth: number): unknown {
    if (depth > MAX_DEPTH) return null
    if (typeof s.$ref === 'string') return this.value(this.resolve(s.$ref), depth + 1)
    if ('const' in s) return s.const
    if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[this.draw.int(s.enum.length)]
    const alternatives = (Array.isArray(s.anyOf) ? s.anyOf : Array.isArray(s.oneOf) ? s.oneOf : null)?.filter(isSchema)
    // the first alternative that is not null: an optional field gets a value
    if (alternatives?.length) return this.value(alternatives.find((a) => a.type !== 'null') ?? alternatives[0]!, depth + 1)
    if (Array.isArray(s.allOf) && s.allOf.length > 0) return this.value(Object.assign({}, ...s.allOf.filter(isSchema).map((x) => this.deref(x)), { allOf: undefined }), depth + 1)
    const types = Array.isArray(s.type) ? s.type as string[] : typeof s.type === 'string' ? [s.type] : [guessType(s)]
    const type = types.find((t) => t !== 'null') ?? 'null'
    switch (type) {
      case 'object': return this.object(s, depth)
      case 'array': return this.array(s, depth)
      case 'string': return this.string(s)
      case 'integer': return this.number(s, true)
      case 'number': return this.number(s, false)
      case 'boolean': return this.draw.int(2) === 1
      default: return null
    }
  }

  private deref (s: Schema): Schema {
    return typeof s.$ref === 'string' ? this.resolve(s.$ref) : s
  }

  /** A local reference: '#', '#/$defs/X', '#/definitions/X' or any JSON pointer into the root. */
  private resolve (ref: string): Schema {
    if (!ref.startsWith('#')) return {}
    let at: unknown = this.root
    for (const raw of ref.slice(1).split('/').filter(Boolean)) {
      const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
      at = isSchema(at) ? at[key] : undefined
    }
    return isSchema(at) ? at : {}
  }

  private object (s: Schema, depth: number): Record<string, unknown> {
    const props = isSchema(s.properties) ? s.properties : {}
    const required = new Set(Array.isArray(s.required) ? s.required.filter((k): k is string => typeof k === 'string') : [])
    const out: Record<string, unknown> = {}
    // every property, required or not: a client's schema says what it wants to see
    for (const [key, sub] of Object.entries(props)) if (isSchema(sub)) out[key] = this.value(sub, depth + 1)
    for (const key of required) if (!(key in out)) out[key] = isSchema(s.additionalProperties) ? this.value(s.additionalProperties, depth + 1) : this.draw.word()
    const min = typeof s.minProperties === 'number' ? s.minProperties : 0
    for (let i = 0; Object.keys(out).length < min && i < 100; i++) {
      out[`${this.draw.word()}_${i}`] = isSchema(s.additionalProperties) ? this.value(s.additionalProperties, depth + 1) : this.draw.word()
    }
    return out
  }

  private array (s: Schema, depth: number): unknown[] {
    const prefix = Array.isArray(s.prefixItems) ? s.prefixItems.filter(isSchema) : []
    const items = isSchema(s.items) ? s.items : {}
    const min = Math.max(typeof s.minItems === 'number' ? s.minItems : 0, prefix.length)
    const max = typeof s.maxItems === 'number' ? s.maxItems : Math.max(min, 3)
    const count = Math.min(max, Math.max(min, Math.min(2, max)))
    const out: unknown[] = []
    for (let i = 0; i < count && i < 1000; i++) out.push(this.value(prefix[i] ?? items, depth + 1))
    return s.uniqueItems ? unique(out, () => this.value(items, depth + 1)) : out
  }

  private string (s: Schema): string {
    const stamp = 1_700_000_000_000 + this.draw.int(100_000_000) * 1000
    switch (s.format) {
      case 'date-time': return new Date(stamp).toISOString()
      case 'date': return new Date(stamp).toISOString().slice(0, 10)
      case 'time': return new Date(stamp).toISOString().slice(11, 19) + 'Z'
      case 'email': return `${this.draw.word()}@example.com`
      case 'uri': case 'url': return `https://example.com/${this.draw.word()}`
      case 'uuid': return crypto.hash('sha256', String(stamp), 'hex').replace(/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*$/, '$1-$2-4$3-8$4-$5')
      case 'ipv4': return `10.${this.draw.int(256)}.${this.draw.int(256)}.${this.draw.int(256)}`
      case 'hostname': return `${this.draw.word()}.example.com`
    }
    const min = typeof s.minLength === 'number' ? s.minLength : 0
    const max = typeof s.maxLength === 'number' ? s.maxLength : Infinity
    let text = `${this.draw.word()} ${this.draw.word()}`
    while (text.length < min) text += ' ' + this.draw.word()
    return text.slice(0, Math.max(min, Math.min(max, text.length)))
  }

  private number (s: Schema, integer: boolean): number {
    const num = (k: string) => typeof s[k] === 'number' ? s[k] as number : undefined
    const exMin = typeof s.exclusiveMinimum === 'number' ? s.exclusiveMinimum : undefined
    const exMax = typeof s.exclusiveMaximum === 'number' ? s.exclusiveMaximum : undefined
    let lo = num('minimum') ?? (exMin !== undefined ? exMin + (integer ? 1 : 1e-6) : 0)
    let hi = num('maximum') ?? (exMax !== undefined ? exMax - (integer ? 1 : 1e-6) : lo + 100)
    if (integer) { lo = Math.ceil(lo); hi = Math.floor(hi) }
    if (hi < lo) hi = lo
    const step = num('multipleOf')
    if (step && step > 0) {
      const first = Math.ceil(lo / step)
      const last = Math.floor(hi / step)
      return (first + this.draw.int(Math.max(1, last - first + 1))) * step
    }
    return integer ? lo + this.draw.int(Math.min(hi - lo + 1, 2 ** 31)) : lo + (hi - lo) * this.draw.int(1000) / 1000
  }
}

/** A type for a schema that names none, from the keywords it uses. */
function guessType (s: Schema): string {
  if (s.properties || s.additionalProperties || s.required) return 'object'
  if (s.items || s.prefixItems) return 'array'
  if (typeof s.minLength === 'number' || typeof s.format === 'string' || typeof s.pattern === 'string') return 'string'
  if (typeof s.minimum === 'number' || typeof s.maximum === 'number') return 'number'
  return 'string'
}

function unique (values: unknown[], more: () => unknown): unknown[] {
  const seen = new Set<string>()
  const out: unknown[] = []
  for (let i = 0; out.length < values.length && i < values.length * 4; i++) {
    const v = i < values.length ? values[i] : more()
    const k = JSON.stringify(v)
    if (!seen.has(k)) { seen.add(k); out.push(v) }
  }
  return out
}
