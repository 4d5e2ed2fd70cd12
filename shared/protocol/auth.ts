import { z } from 'zod'
import { method } from '../mesh/method.ts'
import { apiKey, email, password, sessionToken, tier, username, uuid } from './common.ts'

// The auth service: users, sessions (JWT) and API keys. Every method is internal to the mesh: the
// CLI reaches them through the gateway's proxies, browsers through the web service.

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
}

export interface KeyIdentity { keyId: string, userId: string, tier: string, scopes: string[], expiresAt: string | null }

export interface DailyUsage { date: string, requests: number, tokensIn: number, tokensOut: number, errors: number }

export const registerRequest = z.object({ username, email, password }).strict()
export const loginRequest = z.object({ email, password: z.string().min(1).max(256) }).strict()
export const createKeyRequest = z.object({
  token: sessionToken,
  name: z.string().trim().min(1).max(100),
  scopes: z.array(z.enum(['inference', 'models'])).min(1).max(8).optional(),
  tier: tier.optional(),
  expiresInDays: z.number().int().min(1).max(3650).optional()
}).strict()
export const listKeysRequest = z.object({ token: sessionToken }).strict()
export const revokeKeyRequest = z.object({ token: sessionToken, id: uuid }).strict()
export const usageRequest = z.object({ token: sessionToken, days: z.number().int().min(1).max(366).optional() }).strict()

export const AuthProtocol = {
  registerUser: method<z.infer<typeof registerRequest>, { user: PublicUser }>('registerUser', 'internal', registerRequest),
  loginUser: method<z.infer<typeof loginRequest>, { token: string, expiresAt: string, user: PublicUser }>('loginUser', 'internal', loginRequest),
  generateApiKey: method<z.infer<typeof createKeyRequest>, ApiKeyInfo & { key: string }>('generateApiKey', 'internal', createKeyRequest),
  listApiKeys: method<z.infer<typeof listKeysRequest>, { keys: ApiKeyInfo[] }>('listApiKeys', 'internal', listKeysRequest),
  revokeApiKey: method<z.infer<typeof revokeKeyRequest>, ApiKeyInfo>('revokeApiKey', 'internal', revokeKeyRequest),
  /** gateways send the SHA-256 of the key, never the key itself */
  validateApiKey: method<{ keyHash: string }, KeyIdentity>('validateApiKey', 'internal', z.object({ keyHash: z.string().regex(/^[0-9a-f]{64}$/) }).strict()),
  getUserUsage: method<z.infer<typeof usageRequest>, { userId: string, daily: DailyUsage[], totals: Omit<DailyUsage, 'date'> }>('getUserUsage', 'internal', usageRequest)
}

/** Events auth pushes to every connected gateway. */
export const AuthEvents = {
  keyRevoked: method<{ keyId: string }, void>('keyRevoked', 'internal', z.object({ keyId: uuid }).strict())
}

export { apiKey }
