import { z } from 'zod'
import { method, streamMethod } from '../mesh/method.ts'
import { AuthProtocol, createKeyRequest, creditsRequest, grantCreditsRequest, listKeysRequest, loginRequest, registerRequest, revokeKeyRequest, usageRequest, whoamiRequest, type Credits, type LedgerEntry, type UsageReport } from './auth.ts'
import { apiKey, modelName, plainText, sessionToken } from './common.ts'
import { MAX_EMBED_INPUTS, chatMessage, embedInput, generationParams, type EmbedResult, type ModelInfo, type TokenChunk, type Usage } from './inference.ts'
import { MAX_MESSAGES, toolProblem, type FinishReason, type TokenLogprob, type ToolCall } from './chat.ts'
import type { ResponseOf } from '../mesh/method.ts'
import { modelInput, registryWrite, workerKey, type GatewayEntry, type HistoryEntry, type RegistryWrite, type WorkerEntry } from '../registry/schema.ts'
import { workerProof } from '../worker-proof.ts'
import type { UsageReceipt } from '../receipt.ts'
import { cacheDirective, cachePurgeRequest, cacheSettingsRequest, cacheStatsRequest, feedbackRequest, type CacheStats, type FeedbackResult } from './learning.ts'

// The gateway: the one public RPC entry of the mesh. Most methods are open to any peer and ask for an
// API key or a session in the body; any worker may register and gets traffic once approved
// (services/gateway/membership.ts says by what; a token is proven, never sent: ../worker-proof.ts);
// only a replica gateway may forward a registry change.

const strategy = z.enum(['cost', 'latency', 'quality', 'hybrid', 'learned'])
const unit = z.number().min(0).max(1)
/** how the gateway picks a model when the request names none */
export const routeSpec = z.object({
  strategy: strategy.optional(),
  task: z.string().trim().min(1).max(32).optional(),
  minSafety: unit.optional(),
  weights: z.object({ cost: unit.optional(), latency: unit.optional(), quality: unit.optional() }).strict().optional()
}).strict()

/** an idempotency key: printable ASCII, as HTTP's Idempotency-Key header carries it */
export const requestIdSchema = z.string().regex(/^[\x21-\x7e]{1,255}$/, 'printable ASCII, no spaces, at most 255 characters')

export const inferRequest = z.object({
  apiKey,
  model: modelName.optional(),
  /** with no model: route by strategy, task and minimum safety */
  route: routeSpec.optional(),
  prompt: z.string().optional(),
  messages: z.array(chatMessage).min(1).max(MAX_MESSAGES).optional(),
  /** true: tokens arrive as stream frames and the result's text (and tool calls) are empty */
  stream: z.boolean().optional(),
  /** carried into the request log, for tracing a request across services */
  traceId: z.string().regex(/^[\x21-\x7e]{1,100}$/, 'printable ASCII, no spaces').optional(),
  /** the response cache: true caches even a non-deterministic request, 'no-store' keeps this one out */
  cache: cacheDirective.optional(),
  /** an idempotency key: a retry with the same id (and the same request) gets the first attempt's answer, charged once */
  requestId: requestIdSchema.optional(),
  /** the HTTP client's address as the mesh's web service saw it; heeded from that service only */
  clientIp: z.string().regex(/^[0-9A-Za-z:.%_-]{1,64}$/, 'an IP address').optional(),
  ...generationParams
}).strict().superRefine((r, ctx) => {
  if ((r.prompt === undefined) === (r.messages === undefined)) ctx.addIssue({ code: 'custom', path: ['messages'], message: 'give exactly one of prompt or messages' })
  const tools = toolProblem(r)
  if (tools) ctx.addIssue({ code: 'custom', path: [tools.field], message: tools.message })
})

export interface InferResult {
  id: string
  model: string
  worker: string
  text: string
  /** the tool calls the answer made (not streamed: streamed calls came as frames) */
  toolCalls?: ToolCall[]
  /** each token's log probability, when asked (not streamed) */
  logprobs?: TokenLogprob[]
  /** the request's parameters the serving backend does not honour (their names in this request) */
  ignored?: string[]
  usage: Usage
  /** what this request was charged, USD */
  costUsd: number
  /** content_filter: the key's safety policy ended the answer there */
  finishReason: FinishReason
  ttftMs: number | null
  durationMs: number
  /** how the model was chosen: the caller named it, or the router's strategy, score and reason */
  routing: { strategy: string, reason: string, score: number | null, attempts: number }
  /** answered from the response cache: which tier, and the request whose answer it replays */
  cached?: true
  cache?: { tier: 'local' | 'shared' | 'semantic', sourceId: string, similarity?: number }
}

export interface WorkerSummary {
  publicKey: string
  models: string[]
  inflight: number
  served: number
  failures: number
  connectedAt: string
  /** unapproved workers are connected but get no traffic */
  approved: boolean
  breaker: 'closed' | 'open' | 'half-open'
  capacity: number
  label: string | null
}

export interface GatewayHealth {
  status: 'ok' | 'degraded'
  publicKey: string
  uptimeSeconds: number
  auth: 'connected' | 'disconnected'
  database: 'ok' | 'error'
  /** connected workers, approved or not */
  workerCount: number
  /** each worker by its key: for admins and mesh members only */
  workers?: WorkerSummary[]
  models: string[]
  inflight: number
}

/** the registry's public view; its key (the network key) is for admins and mesh members only */
export interface RegistryListing { key?: string, writable: boolean, models: ModelListing[], gateways?: GatewayEntry[] }

/** a public method's request that may carry a session: an admin's session gets the full answer */
const maybeAdmin = z.object({ token: sessionToken.optional() }).strict()

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

export interface ModelListing extends ModelInfo {
  workers: number
  /** from the registry; absent for a model it does not know yet */
  tasks?: string[]
  price?: { input: number, output: number }
  /** USD per 1M tokens, cheapest and dearest among the workers serving it now (operators price their own) */
  priceRange?: { input: { min: number, max: number }, output: { min: number, max: number } }
  quality?: number
  safety?: number
  latency?: { p50Ms: number, ttftMs: number, errorRate: number, samples: number } | null
}

/** a registry worker entry, with how it is connected to this gateway now */
export interface RegistryWorker extends WorkerEntry {
  /** the account it belongs to (by name), null for a worker no account owns */
  owner?: string | null
  /** its owner (or an admin) drained it: it gets no new requests */
  drained?: boolean
  connected: boolean
  inflight: number
  served: number
  failures: number
  breaker: 'closed' | 'open' | 'half-open' | null
}

const adminToken = z.object({ token: sessionToken })
export interface JoinTokenInfo {
  id: string
  prefix: string
  label: string
  createdAt: string
  expiresAt: string | null
  revokedAt: string | null
  uses: number
  lastUsedAt: string | null
  status: 'active' | 'revoked' | 'expired'
  /** the account its workers belong to */
  owner: string | null
}

export const joinTokensRequest = z.discriminatedUnion('op', [
  adminToken.extend({ op: z.literal('list') }).strict(),
  adminToken.extend({
    op: z.literal('create'), label: plainText(z.string().trim().min(1).max(100)), expiresInHours: z.number().int().min(1).max(24 * 365).optional(),
    /** the account the workers it admits belong to, by name (default: the admin making it) */
    owner: z.string().trim().min(1).max(50).optional()
  }).strict(),
  adminToken.extend({ op: z.literal('revoke'), id: z.string().uuid() }).strict()
])

/** the workers waiting for approval on one gateway: clear them all, or reject one */
export const pendingWorkersRequest = z.discriminatedUnion('op', [
  adminToken.extend({ op: z.literal('clear') }).strict(),
  adminToken.extend({ op: z.literal('reject'), key: workerKey }).strict()
])

export const registerWorkerRequest = z.object({
  /** proof of a token, bound to this worker's and this gateway's keys */
  proof: workerProof.optional(),
  models: z.array(z.object({ id: modelName, backend: z.string().max(50), contextLength: modelInput.shape.contextLength.optional() }).strict()).max(1000),
  capacity: z.number().int().min(1).max(100_000).optional(),
  label: plainText(z.string().max(100)).optional()
}).strict()

export const gatewayEmbedRequest = z.object({
  apiKey,
  model: modelName,
  input: z.union([embedInput, z.array(embedInput).min(1).max(MAX_EMBED_INPUTS)]),
  /** the vectors' length: the backend shortens them, or the worker keeps the first this many and normalises */
  dimensions: z.number().int().min(1).max(65_536).optional(),
  requestId: requestIdSchema.optional(),
  traceId: z.string().regex(/^[\x21-\x7e]{1,100}$/, 'printable ASCII, no spaces').optional()
}).strict()

const weight = z.number().min(0).max(1)
export const aiRequestSchema = z.object({
  apiKey,
  task: z.string().trim().min(1).max(50),
  input: z.union([z.string().min(1), z.array(chatMessage).min(1).max(MAX_MESSAGES)]),
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
  aiRequest: method<z.infer<typeof aiRequestSchema>, AiResponse>('aiRequest', { from: ['stranger'], needs: 'apiKey' }, aiRequestSchema),
  embed: method<z.infer<typeof gatewayEmbedRequest>, EmbedResult & { id: string, worker: string, costUsd: number }>('embed', { from: ['stranger'], needs: 'apiKey' }, gatewayEmbedRequest),
  register: method<z.infer<typeof registerRequest>, ResponseOf<typeof AuthProtocol.registerUser>>('register', { from: ['stranger'] }, registerRequest),
  login: method<z.infer<typeof loginRequest>, ResponseOf<typeof AuthProtocol.loginUser>>('login', { from: ['stranger'] }, loginRequest),
  createKey: method<z.infer<typeof createKeyRequest>, ResponseOf<typeof AuthProtocol.generateApiKey>>('createKey', { from: ['stranger'], needs: 'session' }, createKeyRequest),
  listKeys: method<z.infer<typeof listKeysRequest>, ResponseOf<typeof AuthProtocol.listApiKeys>>('listKeys', { from: ['stranger'], needs: 'session' }, listKeysRequest),
  revokeKey: method<z.infer<typeof revokeKeyRequest>, ResponseOf<typeof AuthProtocol.revokeApiKey>>('revokeKey', { from: ['stranger'], needs: 'session' }, revokeKeyRequest),
  usage: method<z.infer<typeof usageRequest>, UsageReport>('usage', { from: ['stranger'], needs: 'session' }, usageRequest),
  whoami: method<z.infer<typeof whoamiRequest>, ResponseOf<typeof AuthProtocol.whoami>>('whoami', { from: ['stranger'], needs: 'session' }, whoamiRequest),
  logout: method<z.infer<typeof whoamiRequest>, ResponseOf<typeof AuthProtocol.logout>>('logout', { from: ['stranger'], needs: 'session' }, whoamiRequest),
  credits: method<z.infer<typeof creditsRequest>, Credits & { ledger: LedgerEntry[] }>('credits', { from: ['stranger'], needs: 'session' }, creditsRequest),
  grantCredits: method<z.infer<typeof grantCreditsRequest>, ResponseOf<typeof AuthProtocol.grantCredits>>('grantCredits', { from: ['stranger'], needs: 'admin' }, grantCreditsRequest),
  infer: streamMethod<z.infer<typeof inferRequest>, InferResult, TokenChunk>('infer', { from: ['stranger'], needs: 'apiKey' }, inferRequest),
  models: method<Record<string, never>, { models: ModelListing[] }>('models', { from: ['stranger'] }, z.object({}).strict()),
  getServiceHealth: method<z.infer<typeof maybeAdmin>, GatewayHealth>('getServiceHealth', { from: ['stranger'] }, maybeAdmin),
  /** the caller's own request's usage receipt (shared/receipt.ts), by request id; another account's is NOT_FOUND */
  receipt: method<{ apiKey: string, id: string }, UsageReceipt>('receipt', { from: ['stranger'], needs: 'apiKey' },
    z.object({ apiKey, id: z.string().regex(/^[\x21-\x7e]{1,100}$/, 'printable ASCII, no spaces') }).strict()),
  getUserQuota: method<{ apiKey: string }, Quota>('getUserQuota', { from: ['stranger'], needs: 'apiKey' }, z.object({ apiKey }).strict()),
  /** a session's account-wide limits (all keys together) and credits */
  accountQuota: method<{ token: string }, { tier: string, limits: QuotaLimit[], credits: Credits }>('accountQuota', { from: ['stranger'], needs: 'session' }, z.object({ token: sessionToken }).strict()),
  registerWorker: method<z.infer<typeof registerWorkerRequest>, { accepted: true, gateway: string, approval: 'approved' | 'pending' }>('registerWorker', { from: ['stranger'] }, registerWorkerRequest),
  /** a registered worker's load, every couple of seconds; `draining` asks for no new requests */
  workerHeartbeat: method<{ inflight: number, queue: number, capacity: number, draining: boolean }, { ok: true }>('workerHeartbeat', { from: ['worker'] },
    z.object({ inflight: z.number().int().min(0).max(1e7), queue: z.number().int().min(0).max(1e7), capacity: z.number().int().min(1).max(100_000), draining: z.boolean() }).strict()),
  /** the registry's models (public: the catalog) and, for admins and members, its key and gateways */
  registry: method<z.infer<typeof maybeAdmin>, RegistryListing>('registry', { from: ['stranger'] }, maybeAdmin),
  /** admins: change the registry (models, worker approval); on a replica gateway the write goes to the writer */
  registryChange: method<z.infer<typeof adminToken> & { change: RegistryWrite }, { result: unknown }>('registryChange', { from: ['stranger'], needs: 'admin' }, adminToken.extend({ change: registryWrite }).strict()),
  registryHistory: method<z.infer<typeof adminToken> & { limit?: number }, { key: string, entries: HistoryEntry[] }>('registryHistory', { from: ['stranger'], needs: 'admin' }, adminToken.extend({ limit: z.number().int().min(1).max(1000).optional() }).strict()),
  /** every worker for an admin; an operator's own workers for anyone else */
  workers: method<z.infer<typeof adminToken>, { workers: RegistryWorker[] }>('workers', { from: ['stranger'], needs: 'session' }, adminToken.strict()),
  /** admins: join tokens for workers (a worker presenting one is approved at once); the token is shown once */
  joinTokens: method<z.infer<typeof joinTokensRequest>, { tokens: JoinTokenInfo[], created?: JoinTokenInfo & { token: string } }>('joinTokens', { from: ['stranger'], needs: 'admin' }, joinTokensRequest),
  /** admins: drop the workers waiting for approval on this gateway (all, or one key, refused for a while after); they are disconnected */
  pendingWorkers: method<z.infer<typeof pendingWorkersRequest>, { cleared: number }>('pendingWorkers', { from: ['stranger'], needs: 'admin' }, pendingWorkersRequest),
  /** admins: replace the network's worker token (shown once); the old one admits no new worker */
  rotateWorkerToken: method<z.infer<typeof adminToken>, { token: string, createdAt: string }>('rotateWorkerToken', { from: ['stranger'], needs: 'admin' }, adminToken.strict()),
  /**
   * between gateways: a replica forwards a change to the writer. With an admin's session the writer
   * checks it and records the admin; without, only a gateway's own changes (a worker joining, a model
   * it offers) are taken, recorded as the replica
   */
  /** the response cache: hit rates and entries (an admin may ask for the whole mesh), purge, per-key semantic opt-in */
  cacheStats: method<z.infer<typeof cacheStatsRequest>, CacheStats>('cacheStats', { from: ['stranger'], needs: 'session' }, cacheStatsRequest),
  cachePurge: method<z.infer<typeof cachePurgeRequest>, { shared: number, local: number }>('cachePurge', { from: ['stranger'], needs: 'session' }, cachePurgeRequest),
  cacheSettings: method<z.infer<typeof cacheSettingsRequest>, { keyId: string, semantic: boolean, threshold: number | null }>('cacheSettings', { from: ['stranger'], needs: 'session' }, cacheSettingsRequest),
  /** a user's score for an answer: learned routing's reward */
  feedback: method<z.infer<typeof feedbackRequest>, FeedbackResult>('feedback', { from: ['stranger'], needs: 'apiKey' }, feedbackRequest),
  registryForward: method<{ change: RegistryWrite, token?: string }, { result: unknown }>('registryForward', { from: ['replicaGateway'] }, z.object({ change: registryWrite, token: sessionToken.optional() }).strict())
}
