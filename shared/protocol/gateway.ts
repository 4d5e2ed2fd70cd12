import { z } from 'zod'
import { method, streamMethod } from '../mesh/method.ts'
import { AuthProtocol, createKeyRequest, creditsRequest, grantCreditsRequest, listKeysRequest, loginRequest, registerRequest, revokeKeyRequest, usageRequest, whoamiRequest, type Credits } from './auth.ts'
import { apiKey, modelName } from './common.ts'
import { chatMessage, generationParams, type EmbedResult, type ModelInfo, type TokenChunk, type Usage } from './inference.ts'
import type { ResponseOf } from '../mesh/method.ts'

// The gateway: the one public RPC entry of the mesh. Strangers may call the public methods; the
// worker registration is open to workers that present the network's worker token or are mesh members.

export const inferRequest = z.object({
  apiKey,
  model: modelName.optional(),
  prompt: z.string().optional(),
  messages: z.array(chatMessage).min(1).max(256).optional(),
  /** true: tokens arrive as stream frames and the result's text is empty */
  stream: z.boolean().optional(),
  /** carried into the request log, for tracing a request across services */
  traceId: z.string().min(1).max(100).optional(),
  ...generationParams
}).strict().refine((r) => (r.prompt === undefined) !== (r.messages === undefined), { message: 'give exactly one of prompt or messages' })

export interface InferResult {
  id: string
  model: string
  worker: string
  text: string
  usage: Usage
  /** what this request was charged, USD */
  costUsd: number
  finishReason: 'stop' | 'length' | 'cancelled'
  ttftMs: number | null
  durationMs: number
}

export interface WorkerSummary { publicKey: string, models: string[], inflight: number, served: number, failures: number, connectedAt: string }

export interface GatewayHealth {
  status: 'ok' | 'degraded'
  publicKey: string
  uptimeSeconds: number
  auth: 'connected' | 'disconnected'
  database: 'ok' | 'error'
  workers: WorkerSummary[]
  models: string[]
  inflight: number
}

export interface QuotaLimit {
  name: string
  description: string
  unit: 'requests' | 'tokens' | 'usd'
  cap: number
  /** settled plus held by running requests */
  used: number
  remaining: number
  resetsAt: string | null
}

/** The top-level fields describe the key's requests per hour; `limits` lists every limit that applies. */
export interface Quota {
  tier: string
  limit: number
  used: number
  remaining: number
  windowSeconds: number
  resetsAt: string | null
  limits: QuotaLimit[]
  credits: Credits
  models: string[] | null
}

export interface ModelListing extends ModelInfo { workers: number }

export const registerWorkerRequest = z.object({
  token: z.string().max(200).optional(),
  models: z.array(z.object({ id: modelName, backend: z.string().max(50), contextLength: z.number().int().positive().optional() }).strict()).max(1000),
  capacity: z.number().int().min(1).max(100_000).optional(),
  label: z.string().max(100).optional()
}).strict()

export const gatewayEmbedRequest = z.object({
  apiKey,
  model: modelName,
  input: z.union([z.string().min(1).max(100_000), z.array(z.string().min(1).max(100_000)).min(1).max(256)]),
  traceId: z.string().min(1).max(100).optional()
}).strict()

const weight = z.number().min(0).max(1)
export const aiRequestSchema = z.object({
  apiKey,
  task: z.string().trim().min(1).max(50),
  input: z.union([z.string().min(1), z.array(chatMessage).min(1).max(256)]),
  preferences: z.object({ speed: weight.optional(), cost: weight.optional(), quality: weight.optional() }).strict().optional(),
  maxTokens: generationParams.maxTokens
}).strict()

export interface RoutingInfo {
  strategy: string
  reason: string
  ranked: Array<{ id: string, score: number, signals: { speed: number, cost: number, quality: number } }>
}

export interface AiResponse {
  id: string
  model: string
  worker: string
  response: string | number[][]
  /** cost: what the request was charged, USD */
  usage: { tokens: number, promptTokens: number, completionTokens: number, cost: number }
  routing: RoutingInfo
}

export const GatewayProtocol = {
  aiRequest: method<z.infer<typeof aiRequestSchema>, AiResponse>('aiRequest', 'public', aiRequestSchema),
  embed: method<z.infer<typeof gatewayEmbedRequest>, EmbedResult & { id: string, worker: string, costUsd: number }>('embed', 'public', gatewayEmbedRequest),
  register: method<z.infer<typeof registerRequest>, ResponseOf<typeof AuthProtocol.registerUser>>('register', 'public', registerRequest),
  login: method<z.infer<typeof loginRequest>, ResponseOf<typeof AuthProtocol.loginUser>>('login', 'public', loginRequest),
  createKey: method<z.infer<typeof createKeyRequest>, ResponseOf<typeof AuthProtocol.generateApiKey>>('createKey', 'public', createKeyRequest),
  listKeys: method<z.infer<typeof listKeysRequest>, ResponseOf<typeof AuthProtocol.listApiKeys>>('listKeys', 'public', listKeysRequest),
  revokeKey: method<z.infer<typeof revokeKeyRequest>, ResponseOf<typeof AuthProtocol.revokeApiKey>>('revokeKey', 'public', revokeKeyRequest),
  usage: method<z.infer<typeof usageRequest>, ResponseOf<typeof AuthProtocol.getUserUsage>>('usage', 'public', usageRequest),
  whoami: method<z.infer<typeof whoamiRequest>, ResponseOf<typeof AuthProtocol.whoami>>('whoami', 'public', whoamiRequest),
  credits: method<z.infer<typeof creditsRequest>, ResponseOf<typeof AuthProtocol.getCredits>>('credits', 'public', creditsRequest),
  grantCredits: method<z.infer<typeof grantCreditsRequest>, ResponseOf<typeof AuthProtocol.grantCredits>>('grantCredits', 'public', grantCreditsRequest),
  infer: streamMethod<z.infer<typeof inferRequest>, InferResult, TokenChunk>('infer', 'public', inferRequest),
  models: method<Record<string, never>, { models: ModelListing[] }>('models', 'public', z.object({}).strict()),
  getServiceHealth: method<Record<string, never>, GatewayHealth>('getServiceHealth', 'public', z.object({}).strict()),
  getUserQuota: method<{ apiKey: string }, Quota>('getUserQuota', 'public', z.object({ apiKey }).strict()),
  registerWorker: method<z.infer<typeof registerWorkerRequest>, { accepted: true, gateway: string }>('registerWorker', 'public', registerWorkerRequest)
}
