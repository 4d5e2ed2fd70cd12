import { z } from 'zod'

// What the registry Hyperbee holds. Keys are utf-8, values JSON:
//   models/<id>            ModelEntry
//   workers/<publicKeyHex> WorkerEntry
// Every write is checked against these schemas before it reaches the bee, so a replica only ever
// reads values of this shape (from this version of the code or an older one).

export const MODELS_PREFIX = 'models/'
export const WORKERS_PREFIX = 'workers/'

export const modelId = z.string()
  .min(1).max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/, 'letters, digits and . _ : / @ + - only, starting with a letter or digit')

export const workerKey = z.string()
  .regex(/^[0-9a-fA-F]{64}$/, 'a 32-byte public key as 64 hex characters')
  .transform((k) => k.toLowerCase())

const score = z.number().min(0).max(1)
const price = z.number().finite().min(0)
const ms = z.number().finite().min(0)
const shortText = z.string().max(128)
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
  id: modelId,
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
  models: z.array(modelId).max(256).default([]),
  label: shortText.default(''),
  region: shortText.default(''),
  /** concurrent requests the worker says it can take */
  capacity: z.number().int().min(1).max(100_000).default(1)
}).strict()

export const workerEntry = z.object({
  key: z.string().regex(/^[0-9a-f]{64}$/),
  models: z.array(modelId),
  approval,
  label: shortText,
  region: shortText,
  capacity: z.number().int().min(1),
  updatedAt: z.number().int().min(0)
}).strict()

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
export type RegistryValue = ModelEntry | WorkerEntry

export const modelKey = (id: string) => MODELS_PREFIX + id
export const workerEntryKey = (key: string) => WORKERS_PREFIX + key.toLowerCase()

/** Parse with a schema, or throw BAD_REQUEST naming the first bad field. */
export function parseOrThrow<S extends z.ZodType> (schema: S, value: unknown, what: string, fail: (msg: string, details: Record<string, unknown>) => Error): z.infer<S> {
  const parsed = schema.safeParse(value)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const where = issue?.path?.length ? issue.path.join('.') + ': ' : ''
  throw fail(`invalid ${what}: ${where}${issue?.message ?? 'malformed'}`, { issues: parsed.error.issues.length })
}
