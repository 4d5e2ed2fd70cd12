import { z } from 'zod'
import { method } from '../mesh/method.ts'
import type { ApiKeyInfo } from './auth.ts'
import { apiKey, modelName, sessionToken, uuid } from './common.ts'

// The safety layer's methods: policies per key and per account (set at auth, reached through the
// gateway like the other key methods), a suspended key's review, the record of safety decisions,
// and moderation of any text on request (what /v1/moderations answers).

export const safetyPolicy = z.enum(['off', 'flag', 'redact', 'block'])
export type SafetyPolicyName = z.infer<typeof safetyPolicy>

export interface SafetyEvent {
  requestId: string
  keyId: string | null
  stage: 'input' | 'output' | 'key'
  detector: string
  category: string
  action: string
  createdAt: string
}

export interface ModerationVerdict {
  flagged: boolean
  /** every category the answer knows, true where found */
  categories: Record<string, boolean>
  categoryScores: Record<string, number>
  /** who decided: the built-in detectors, or the mesh's moderation model too */
  detectors: string[]
}

/** a key's policy; null: the account's (or the operator's default) applies */
const setKeySafetyRequest = z.object({ token: sessionToken, id: uuid, safety: safetyPolicy.nullable() }).strict()
/** the account's policy: read it, or set it (null: the operator's default applies) */
const accountSafetyRequest = z.object({ token: sessionToken, safety: safetyPolicy.nullable().optional() }).strict()
const resumeKeyRequest = z.object({ token: sessionToken, id: uuid }).strict()
const reportAnomalyRequest = z.object({
  keyId: uuid,
  score: z.number().min(0).max(1e6),
  signals: z.record(z.string().max(32), z.number()).refine((r) => Object.keys(r).length <= 16, 'at most 16 signals'),
  suspend: z.boolean()
}).strict()
const safetyEventsRequest = z.object({ token: sessionToken, keyId: uuid.optional(), limit: z.number().int().min(1).max(500).optional(), all: z.boolean().optional() }).strict()
export const moderateRequest = z.object({
  apiKey,
  input: z.union([z.string().max(100_000), z.array(z.string().max(100_000)).min(1).max(32)]),
  model: modelName.optional()
}).strict()

export interface AccountSafety { safety: SafetyPolicyName | null }

/** The auth service's side: where policies and suspensions are stored. */
export const AuthSafetyProtocol = {
  setApiKeySafety: method<z.infer<typeof setKeySafetyRequest>, ApiKeyInfo>('setApiKeySafety', { from: ['gateway', 'web'], needs: 'session' }, setKeySafetyRequest),
  accountSafetyPolicy: method<z.infer<typeof accountSafetyRequest>, AccountSafety>('accountSafetyPolicy', { from: ['gateway', 'web'], needs: 'session' }, accountSafetyRequest),
  /** admins: a key suspended pending review takes requests again */
  resumeApiKey: method<z.infer<typeof resumeKeyRequest>, ApiKeyInfo>('resumeApiKey', { from: ['gateway', 'web'], needs: 'admin' }, resumeKeyRequest),
  /** a gateway's anomaly alert: recorded on the key and in the audit log, and the key suspended if asked */
  reportKeyAnomaly: method<z.infer<typeof reportAnomalyRequest>, { suspended: boolean }>('reportKeyAnomaly', { from: ['gateway'] }, reportAnomalyRequest)
}

/** The gateway's side: the same key methods for CLI users, the record of decisions, and moderation. */
export const SafetyProtocol = {
  setKeySafety: method<z.infer<typeof setKeySafetyRequest>, ApiKeyInfo>('setKeySafety', { from: ['stranger'], needs: 'session' }, setKeySafetyRequest),
  accountSafety: method<z.infer<typeof accountSafetyRequest>, AccountSafety>('accountSafety', { from: ['stranger'], needs: 'session' }, accountSafetyRequest),
  resumeKey: method<z.infer<typeof resumeKeyRequest>, ApiKeyInfo>('resumeKey', { from: ['stranger'], needs: 'admin' }, resumeKeyRequest),
  /** the session's own keys' decisions, newest first; an admin's with `all`: everyone's */
  safetyEvents: method<z.infer<typeof safetyEventsRequest>, { events: SafetyEvent[] }>('safetyEvents', { from: ['stranger'], needs: 'session' }, safetyEventsRequest),
  moderate: method<z.infer<typeof moderateRequest>, { id: string, model: string, results: ModerationVerdict[] }>('moderate', { from: ['stranger'], needs: 'apiKey' }, moderateRequest)
}
