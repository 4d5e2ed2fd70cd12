import crypto from 'node:crypto'

// API keys: `hi_` + 43 base64url characters (32 random bytes). Only the SHA-256 is stored; the first
// 10 characters are kept as a display prefix so a user can tell keys apart.

export const KEY_PREFIX = 'hi_'

export function newApiKey (): { key: string, hash: string, prefix: string } {
  const key = KEY_PREFIX + crypto.randomBytes(32).toString('base64url')
  return { key, hash: hashApiKey(key), prefix: key.slice(0, 10) }
}

/** Whether a string has the shape of a key this mesh issues; anything else is refused without a lookup. */
export function hasApiKeyShape (key: string): boolean {
  return /^hi_[A-Za-z0-9_-]{43}$/.test(key)
}

export function hashApiKey (key: string): string {
  return crypto.hash('sha256', key, 'hex')
}

export function sha256Hex (text: string): string {
  return crypto.hash('sha256', text, 'hex')
}
