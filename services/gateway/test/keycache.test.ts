import test from 'brittle'
import { KeyCache } from '../keycache.ts'
import { MeshError } from '../../../shared/errors.ts'
import type { KeyIdentity } from '../../../shared/protocol/auth.ts'

// The gateway's key cache on its own, with the validation function handed in (in production it is an
// RPC call to auth): what reaches auth, and what the cache keeps in memory.

function counting (valid: Set<string>, delayMs = 5) {
  const calls: string[] = []
  const validate = async (keyHash: string): Promise<KeyIdentity> => {
    calls.push(keyHash)
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs))
    if (!valid.has(keyHash)) throw MeshError.INVALID_API_KEY()
    return { keyId: 'k-' + keyHash.slice(0, 6), userId: 'u1', tier: 'default', userTier: 'default', scopes: ['inference'], expiresAt: null, budgetNusd: null, models: null }
  }
  return { calls, validate }
}

test('key cache: 200 concurrent lookups of one key cost one validation; revocation drops it', async (t) => {
  const { hashApiKey } = await import('../../../shared/apikey.ts')
  const key = 'hi_' + 'a'.repeat(43)
  const { calls, validate } = counting(new Set([hashApiKey(key)]))
  const cache = new KeyCache(validate, 60_000)
  const ids = await Promise.all(Array.from({ length: 200 }, () => cache.resolve(key)))
  t.ok(ids.every((i) => i.keyId === ids[0]!.keyId))
  t.is(calls.length, 1, 'one call to auth')
  await cache.resolve(key)
  t.is(calls.length, 1, 'then served from the cache')
  cache.dropKeyId(ids[0]!.keyId)
  await cache.resolve(key)
  t.is(calls.length, 2, 'a pushed revocation sends the next lookup to auth')
})

test('key cache: bad keys from a stranger neither reach auth twice a second nor grow memory', async (t) => {
  const { calls, validate } = counting(new Set(), 0)
  const cache = new KeyCache(validate, 60_000)
  const bad = 'hi_' + 'b'.repeat(43)
  await cache.resolve(bad).catch(() => {})
  const again = await cache.resolve(bad).catch((e) => e)
  t.is(again.code, 'INVALID_API_KEY')
  t.is(calls.length, 1, 'a repeated bad key is refused without asking auth')
  for (let i = 0; i < 12_000; i++) await cache.resolve('hi_' + String(i).padStart(43, 'x')).catch(() => {})
  t.ok((cache as any).invalid.size <= 10_000, `the negative cache stays bounded (${(cache as any).invalid.size})`)
  cache.sweep(Date.now() + 2000)
  t.is((cache as any).invalid.size, 0, 'and is swept once its entries expire')
})

test('key cache: sweep drops expired identities', async (t) => {
  const { hashApiKey } = await import('../../../shared/apikey.ts')
  const key = 'hi_' + 'c'.repeat(43)
  const { validate } = counting(new Set([hashApiKey(key)]))
  const cache = new KeyCache(validate, 1000)
  await cache.resolve(key)
  t.is(cache.size, 1)
  cache.sweep(Date.now() + 5000)
  t.is(cache.size, 0, 'memory follows the keys in use')
})

test('key cache: a key revoked while its validation is in flight is not cached, and later lookups ask auth again', async (t) => {
  const { hashApiKey } = await import('../../../shared/apikey.ts')
  const key = 'hi_' + 'd'.repeat(43)
  const keyId = 'k-' + hashApiKey(key).slice(0, 6)
  const { calls, validate } = counting(new Set([hashApiKey(key)]), 50)
  const cache = new KeyCache(validate, 60_000)
  const first = cache.resolve(key) // auth has read the key as valid; its answer is on the way
  await new Promise((r) => setTimeout(r, 10))
  cache.dropKeyId(keyId) // the revocation overtakes the answer
  await first
  t.is(cache.size, 0, 'the answer to a validation begun before the revocation is not cached')
  await cache.resolve(key)
  t.is(calls.length, 2, 'so the next lookup asks auth, which would refuse the key')

  const other = 'hi_' + 'f'.repeat(43)
  const before = cache.resolve(other).catch((e) => e)
  cache.dropKeyId(keyId)
  const after = cache.resolve(other).catch((e) => e)
  t.is(calls.length, 4, 'a lookup made after a revocation does not join a validation begun before it')
  await Promise.all([before, after])
})
