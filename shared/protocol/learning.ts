import { z } from 'zod'
import { apiKey, modelName, plainText, sessionToken } from './common.ts'

// Request shapes and answers of the gateway methods for the response cache and learned routing
// (listed in GatewayProtocol, ./gateway.ts).

/** an inference request's cache directive: true caches even a non-deterministic request; 'no-store' (or false) keeps it out */
export const cacheDirective = z.union([z.boolean(), z.literal('no-store')])

export const cacheStatsRequest = z.object({
  token: sessionToken,
  /** admins: the whole mesh rather than their own account */
  all: z.boolean().optional()
}).strict()

export const cachePurgeRequest = z.object({
  token: sessionToken,
  /** admins: every account's entries (else only the caller's own) */
  all: z.boolean().optional(),
  /** only entries of this model */
  model: modelName.optional()
}).strict()

export const cacheSettingsRequest = z.object({
  token: sessionToken,
  keyId: z.string().uuid(),
  semantic: z.boolean(),
  /** cosine similarity a match must reach; absent: the gateway's default */
  threshold: z.number().gt(0).max(1).optional()
}).strict()

export const feedbackRequest = z.object({
  apiKey,
  /** the gateway's request id (the answer's `id`), or the trace id the request carried (HTTP: x-request-id) */
  requestId: z.string().regex(/^[\x21-\x7e]{1,100}$/, 'printable ASCII, no spaces'),
  /** 0 (bad) … 1 (good) */
  score: z.number().min(0).max(1),
  comment: plainText(z.string().max(1000)).optional()
}).strict()

export interface CacheStats {
  scope: 'account' | 'mesh'
  /** over the last 24 hours, from request_logs */
  window: '24h'
  requests: number
  hits: { local: number, shared: number, semantic: number, total: number }
  hitRate: number
  /** what the hits would have cost uncached, less what they were charged, USD */
  savedUsd: number
  /** live entries in the shared tier (of this scope) */
  entries: number
  bytes: number
  warmEntries: number
  /** this gateway's local tier (the whole tier, all accounts) */
  local: { entries: number, bytes: number }
  ttlSeconds: number
  semanticModel: string | null
}

export interface FeedbackResult { requestId: string, model: string, score: number }
