import { z } from 'zod'
import { method } from '../mesh/method.ts'
import { apiKey, email, modelName, password, plainText, sessionToken, tier, username, uuid } from './common.ts'

// The auth service: users, sessions (JWT) and API keys. Only gateways and the web may call it: the
// CLI reaches it through the gateway's proxies, browsers through the web service.

export interface PublicUser { id: string, username: string, email: string, tier: string, role: string, createdAt: string }

export interface ApiKeyInfo {
  id: string
  name: string
  prefix: string
  scopes: string[]
  tier: string
  createdAt: string
  expiresAt: string | null
  revokedAt: string | null
  lastUsedAt: string | null
  status: 'active' | 'revoked' | 'expired'
  /** USD this key may spend in all (null: only the account's credits limit it) */
  budgetUsd: number | null
  /** models this key may use (null: all) */
  models: string[] | null
  /** the key's own safety policy (null: the account's or the operator's applies) */
  safety?: 'off' | 'flag' | 'redact' | 'block' | null
  /** set while the key is suspended pending an admin's review */
  suspendedAt?: string | null
  /** the last anomaly alert on the key, and its score */
  anomalyAt?: string | null
  anomalyScore?: number | null
}

/** A key minted for one browser session (the web service holds it; see services/auth/session-keys.ts). */
export interface SessionApiKey { id: string, key: string, expiresAt: string }

export interface KeyIdentity {
  keyId: string
  userId: string
  tier: string
  userTier: string
  scopes: string[]
  expiresAt: string | null
  /** nano-USD (1 USD = 1e9); null: no key budget */
  budgetNusd: number | null
  models: string[] | null
  /** safety policies: the key's and its account's (null: the next level's applies) */
  safety?: 'off' | 'flag' | 'redact' | 'block' | null
  accountSafety?: 'off' | 'flag' | 'redact' | 'block' | null
  suspendedAt?: string | null
}

export interface DailyUsage { date: string, requests: number, tokensIn: number, tokensOut: number, errors: number, costUsd: number }
export interface ModelUsage { model: string, requests: number, tokensIn: number, tokensOut: number, errors: number, costUsd: number }
export interface Credits { balanceUsd: number, reservedUsd: number, availableUsd: number }
export interface LedgerEntry { id: number, kind: 'grant' | 'debit' | 'refund', amountUsd: number, requestId: string | null, note: string | null, createdAt: string }
export interface UsageReport {
  userId: string
  since: string
  daily: DailyUsage[]
  byModel: ModelUsage[]
  totals: Omit<DailyUsage, 'date'>
  credits: Credits
}

/** `setupCode`: the one-time code that makes the first admin (see services/auth/bootstrap.ts) */
export const registerRequest = z.object({ username, email, password, setupCode: z.string().trim().min(1).max(200).optional() }).strict()
export const loginRequest = z.object({ email, password: z.string().min(1).max(256) }).strict()
/** what a mesh service adds when it relays a stranger's call to auth: who the stranger is, for throttling */
const relayed = { source: z.string().min(1).max(128).optional() }
const registerUserRequest = registerRequest.extend(relayed).strict()
const loginUserRequest = loginRequest.extend(relayed).strict()
export const createKeyRequest = z.object({
  token: sessionToken,
  name: plainText(z.string().trim().min(1).max(100)),
  /** what the key may do; the model catalog is public, so listing models needs no scope */
  scopes: z.array(z.enum(['inference'])).min(1).max(8).optional(),
  tier: tier.optional(),
  expiresInDays: z.number().int().min(1).max(3650).optional(),
  budgetUsd: z.number().min(0).max(1_000_000).optional(),
  models: z.array(modelName).min(1).max(100).optional(),
  safety: z.enum(['off', 'flag', 'redact', 'block']).optional()
}).strict()
export const listKeysRequest = z.object({ token: sessionToken }).strict()
export const revokeKeyRequest = z.object({ token: sessionToken, id: uuid }).strict()
const isoDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD').refine((d) => !Number.isNaN(Date.parse(d)), 'not a date')
export const usageRequest = z.object({ token: sessionToken, days: z.number().int().min(1).max(366).optional(), since: isoDate.optional() }).strict()
export const whoamiRequest = z.object({ token: sessionToken }).strict()
export const creditsRequest = z.object({ token: sessionToken, limit: z.number().int().min(1).max(1000).optional() }).strict()
export const grantCreditsRequest = z.object({
  token: sessionToken,
  username,
  amountUsd: z.number().positive().max(1_000_000),
  kind: z.enum(['grant', 'refund']).optional(),
  note: plainText(z.string().trim().max(200)).optional()
}).strict()

export const AuthProtocol = {
  registerUser: method<z.infer<typeof registerUserRequest>, { user: PublicUser }>('registerUser', { from: ['gateway', 'web'] }, registerUserRequest),
  loginUser: method<z.infer<typeof loginUserRequest>, { token: string, expiresAt: string, user: PublicUser }>('loginUser', { from: ['gateway', 'web'] }, loginUserRequest),
  generateApiKey: method<z.infer<typeof createKeyRequest>, ApiKeyInfo & { key: string }>('generateApiKey', { from: ['gateway', 'web'], needs: 'session' }, createKeyRequest),
  listApiKeys: method<z.infer<typeof listKeysRequest>, { keys: ApiKeyInfo[] }>('listApiKeys', { from: ['gateway', 'web'], needs: 'session' }, listKeysRequest),
  revokeApiKey: method<z.infer<typeof revokeKeyRequest>, ApiKeyInfo>('revokeApiKey', { from: ['gateway', 'web'], needs: 'session' }, revokeKeyRequest),
  /** gateways send the SHA-256 of the key, never the key itself */
  validateApiKey: method<{ keyHash: string }, KeyIdentity>('validateApiKey', { from: ['gateway'] }, z.object({ keyHash: z.string().regex(/^[0-9a-f]{64}$/) }).strict()),
  /** the web service only: an inference key bound to the session, expiring within the hour, revoked at its logout */
  sessionApiKey: method<z.infer<typeof whoamiRequest>, SessionApiKey>('sessionApiKey', { from: ['web'], needs: 'session' }, whoamiRequest),
  /** the session's user, read fresh from the database (role included) */
  whoami: method<z.infer<typeof whoamiRequest>, { user: PublicUser }>('whoami', { from: ['gateway', 'web'], needs: 'session' }, whoamiRequest),
  /** the session is refused everywhere from now on */
  logout: method<z.infer<typeof whoamiRequest>, { loggedOut: true }>('logout', { from: ['gateway', 'web'], needs: 'session' }, whoamiRequest),
  /** admins only */
  grantCredits: method<z.infer<typeof grantCreditsRequest>, Credits & { username: string, entry: LedgerEntry }>('grantCredits', { from: ['gateway'], needs: 'admin' }, grantCreditsRequest)
}

/** Events auth pushes to every connected gateway. */
export const AuthEvents = {
  keyRevoked: method<{ keyId: string }, void>('keyRevoked', { from: ['auth'] }, z.object({ keyId: uuid }).strict())
}

export { apiKey }
