import { z } from 'zod'

// What the registry Hyperbee holds. Keys are utf-8, values JSON:
//   models/<id>            ModelEntry
//   workers/<publicKeyHex> WorkerEntry
//   gateways/<publicKeyHex> GatewayEntry (a gateway the writer vouches for: workers serve only these)
// Every write is checked against these schemas before it reaches the bee, so a replica only ever
// reads values of this shape (from this version of the code or an older one). The protocols take
// their model names, model specs and registry changes from here, so nothing a peer may send over
// the wire is a value the registry would refuse.

export const MODELS_PREFIX = 'models/'
export const WORKERS_PREFIX = 'workers/'
export const GATEWAYS_PREFIX = 'gateways/'

/** a model's name: its registry id, and what requests, workers and API-key scopes name it by */
export const modelName = z.string()
  .min(1).max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/, 'letters, digits and . _ : / @ + - only, starting with a letter or digit')

export const workerKey = z.string()
  .regex(/^[0-9a-fA-F]{64}$/, 'a 32-byte public key as 64 hex characters')
  .transform((k) => k.toLowerCase())

const score = z.number().min(0).max(1)
/** USD per 1M tokens */
const price = z.number().finite().min(0).max(10_000)
const ms = z.number().finite().min(0)
/** A name or note a person types (key names, labels, notes) holds no control characters. */
export const plainText = (s: z.ZodString) => s.regex(/^[^\p{Cc}]*$/u, 'no control characters (such as NUL, tab or newline)')
const shortText = plainText(z.string().max(128))
/** who made a change: a public key (hex), a user name, or a service name */
export const actor = z.string().min(1).max(128)

export const measured = z.object({
  p50LatencyMs: ms,
  ttftMs: ms,
  errorRate: score,
  /** requests the figures are drawn from */
  samples: z.number().int().min(0),
  updatedAt: z.number().int().min(0)
}).strict()

/** What a caller gives for a model; the registry adds `measured`, `updatedAt` and `updatedBy`. */
export const modelInput = z.object({
  id: modelName,
  provider: z.string().min(1).max(64),
  backendModel: z.string().min(1).max(256),
  tasks: z.array(z.string().min(1).max(32).regex(/^[a-z0-9_-]+$/, 'lower-case task names')).min(1).max(16)
    .refine((t) => new Set(t).size === t.length, 'tasks must not repeat'),
  contextLength: z.number().int().min(1).max(100_000_000),
  /** USD per 1M input tokens */
  pricePer1MInput: price,
  /** USD per 1M output tokens */
  pricePer1MOutput: price,
  quality: score,
  safety: score
}).strict()

export const modelPatch = modelInput.omit({ id: true }).partial().strict()

export const modelEntry = modelInput.extend({
  measured: measured.nullable(),
  updatedAt: z.number().int().min(0),
  updatedBy: actor
}).strict()

export const approvalState = z.enum(['pending', 'approved', 'revoked'])

export const approval = z.object({
  state: approvalState,
  by: actor,
  at: z.number().int().min(0)
}).strict()

/** What a caller gives for a worker; approval is only ever changed by approveWorker / revokeWorker. */
export const workerInput = z.object({
  key: workerKey,
  models: z.array(modelName).max(256).default([]),
  label: shortText.default(''),
  region: shortText.default(''),
  /** concurrent requests the worker says it can take */
  capacity: z.number().int().min(1).max(100_000).default(1)
}).strict()

export const workerEntry = z.object({
  key: z.string().regex(/^[0-9a-f]{64}$/),
  models: z.array(modelName),
  approval,
  label: shortText,
  region: shortText,
  capacity: z.number().int().min(1),
  updatedAt: z.number().int().min(0)
}).strict()

/** What a caller gives to vouch for a gateway: its key and a note for operators. */
export const gatewayInput = z.object({
  key: workerKey,
  label: shortText.default('')
}).strict()

export const gatewayEntry = z.object({
  key: z.string().regex(/^[0-9a-f]{64}$/),
  label: shortText,
  /** who vouched for it */
  by: actor,
  at: z.number().int().min(0)
}).strict()

/**
 * A change to the registry as an admin (or a replica gateway forwarding one) sends it. `addModel`
 * adds the model unless the registry has it, so it never overwrites what an operator set.
 */
export const registryWrite = z.discriminatedUnion('op', [
  z.object({ op: z.literal('putModel'), input: modelInput }).strict(),
  z.object({ op: z.literal('addModel'), input: modelInput }).strict(),
  z.object({ op: z.literal('setModel'), id: modelName, patch: modelPatch }).strict(),
  z.object({ op: z.literal('removeModel'), id: modelName }).strict(),
  z.object({ op: z.literal('putWorker'), input: workerInput }).strict(),
  z.object({ op: z.literal('approveWorker'), key: workerKey }).strict(),
  z.object({ op: z.literal('revokeWorker'), key: workerKey }).strict(),
  z.object({ op: z.literal('putGateway'), input: gatewayInput }).strict(),
  z.object({ op: z.literal('removeGateway'), key: workerKey }).strict()
])

export const measurementSample = z.object({
  ttftMs: ms,
  latencyMs: ms,
  ok: z.boolean()
}).strict()

export type ModelInput = z.input<typeof modelInput>
export type ModelPatch = z.input<typeof modelPatch>
export type ModelEntry = z.infer<typeof modelEntry>
export type Measured = z.infer<typeof measured>
export type ApprovalState = z.infer<typeof approvalState>
export type Approval = z.infer<typeof approval>
export type WorkerInput = z.input<typeof workerInput>
export type WorkerEntry = z.infer<typeof workerEntry>
export type MeasurementSample = z.infer<typeof measurementSample>
export type GatewayInput = z.input<typeof gatewayInput>
export type GatewayEntry = z.infer<typeof gatewayEntry>
/** what a caller gives: defaults not yet filled in (a parsed change is one too) */
export type RegistryWrite = z.input<typeof registryWrite>
export type RegistryValue = ModelEntry | WorkerEntry | GatewayEntry

/** One change in the registry's log: what `history()` lists and change events carry. */
export interface HistoryEntry {
  /** the Hypercore index of the change (1 is the first change; 0 is the bee's header) */
  seq: number
  type: 'put' | 'del'
  key: string
  /** the value written, or null for a delete */
  value: RegistryValue | null
}

export const modelKey = (id: string) => MODELS_PREFIX + id
export const workerEntryKey = (key: string) => WORKERS_PREFIX + key.toLowerCase()
export const gatewayEntryKey = (key: string) => GATEWAYS_PREFIX + key.toLowerCase()

/** Parse with a schema, or throw BAD_REQUEST naming the first bad field. */
export function parseOrThrow<S extends z.ZodType> (schema: S, value: unknown, what: string, fail: (msg: string, details: Record<string, unknown>) => Error): z.infer<S> {
  const parsed = schema.safeParse(value)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const where = issue?.path?.length ? issue.path.join('.') + ': ' : ''
  throw fail(`invalid ${what}: ${where}${issue?.message ?? 'malformed'}`, { issues: parsed.error.issues.length })
}
