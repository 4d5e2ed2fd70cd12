import { hasApiKeyShape, hashApiKey } from '../../shared/apikey.ts'
import { MeshError } from '../../shared/errors.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { AuthProtocol, type KeyIdentity } from '../../shared/protocol/auth.ts'

// API key → identity, cached so the hot path costs no auth round trip. Correctness of revocation does
// not rest on the TTL: auth pushes `keyRevoked` to every connected gateway, and the whole cache is
// dropped whenever the connection to auth drops (a push may have been missed). Concurrent lookups of
// one key share a single auth call.
//
// A revocation may overtake a validation: auth read the key as valid, then revoked it and pushed the
// revocation, and only then did the answer arrive. So every revocation and every clear starts a new
// generation: an answer to a validation begun in an older one is handed to its waiters but not cached,
// and a lookup made after the revocation does not join it.

const MAX_INVALID = 10_000

/**
 * Auth's answer for a key hash. While auth is not connected (this gateway is starting, or auth is
 * away) and PostgreSQL, where auth reads keys, is out of reach too, the answer is DATABASE_UNAVAILABLE
 * at once rather than after a wait for a connection that could not check the key anyway.
 */
export function authValidator (auth: () => MeshClient, databaseUp: () => Promise<boolean>, timeoutMs = 5000): (keyHash: string) => Promise<KeyIdentity> {
  return (keyHash) => {
    const client = auth()
    const asked = client.call(AuthProtocol.validateApiKey, { keyHash }, timeoutMs)
    if (client.connected) return asked
    const out = databaseUp().then((up) => up
      ? new Promise<never>(() => {}) // auth's own answer (or its timeout) decides
      : Promise.reject(MeshError.DATABASE_UNAVAILABLE('the database is unavailable and this API key is not known here yet; try again shortly')))
    return Promise.race([asked, out])
  }
}

export class KeyCache {
  private readonly entries = new Map<string, { identity: KeyIdentity, until: number }>()
  private readonly byKeyId = new Map<string, string>()
  private readonly pending = new Map<string, { generation: number, answer: Promise<KeyIdentity> }>()
  private readonly invalid = new Map<string, number>()
  private readonly ttlMs: number
  private readonly validate: (keyHash: string) => Promise<KeyIdentity>
  private generation = 0
  private lastKey = ''
  private lastHash = ''

  constructor (validate: (keyHash: string) => Promise<KeyIdentity>, ttlMs = 60_000) {
    this.validate = validate
    this.ttlMs = ttlMs
  }

  get size (): number { return this.entries.size }

  async resolve (apiKey: string): Promise<KeyIdentity> {
    // a placeholder ('EMPTY'), a key of another service or garbage: unknown, whatever its length
    if (!hasApiKeyShape(apiKey)) throw MeshError.INVALID_API_KEY()
    // a request's key is checked at the door and again by the pipeline, and most requests in a row
    // carry the same key: the last one's hash is remembered rather than computed again
    const hash = apiKey === this.lastKey ? this.lastHash : hashApiKey(apiKey)
    this.lastKey = apiKey
    this.lastHash = hash
    const now = Date.now()
    const hit = this.entries.get(hash)
    if (hit && hit.until > now) {
      if (hit.identity.expiresAt && Date.parse(hit.identity.expiresAt) <= now) {
        this.drop(hash)
        throw MeshError.INVALID_API_KEY('API key has expired')
      }
      return hit.identity
    }
    // a short negative cache keeps a flood of bad keys off auth
    const bad = this.invalid.get(hash)
    if (bad && bad > now) throw MeshError.INVALID_API_KEY()
    const inFlight = this.pending.get(hash)
    if (inFlight && inFlight.generation === this.generation) return inFlight.answer
    const gen = this.generation
    const answer: Promise<KeyIdentity> = this.validate(hash).then((identity) => {
      if (gen === this.generation) {
        this.entries.set(hash, { identity, until: Date.now() + this.ttlMs })
        this.byKeyId.set(identity.keyId, hash)
      }
      return identity
    }, (err) => {
      if ((err as MeshError).code === 'INVALID_API_KEY') {
        // random keys from a stranger must not grow memory: this cache only shields auth, so it may forget
        if (this.invalid.size >= MAX_INVALID) this.invalid.clear()
        this.invalid.set(hash, Date.now() + 1000)
      }
      throw err
    }).finally(() => { if (this.pending.get(hash)?.answer === answer) this.pending.delete(hash) })
    this.pending.set(hash, { generation: gen, answer })
    return answer
  }

  dropKeyId (keyId: string): void {
    // which key a validation in flight is for is unknown until it answers: none of them may be cached
    this.generation++
    const hash = this.byKeyId.get(keyId)
    if (hash) this.drop(hash)
  }

  private drop (hash: string): void {
    const e = this.entries.get(hash)
    if (e) this.byKeyId.delete(e.identity.keyId)
    this.entries.delete(hash)
  }

  /** Forget entries past their time, so memory follows the keys in use. */
  sweep (now = Date.now()): void {
    for (const [hash, e] of this.entries) if (e.until <= now) this.drop(hash)
    for (const [hash, until] of this.invalid) if (until <= now) this.invalid.delete(hash)
  }

  clear (): void {
    this.generation++ // answers already in flight must not repopulate a cache we just cleared
    this.entries.clear()
    this.byKeyId.clear()
    this.invalid.clear()
  }
}
