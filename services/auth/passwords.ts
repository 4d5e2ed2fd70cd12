import crypto from 'node:crypto'
import os from 'node:os'
import { promisify } from 'node:util'
import { MeshError } from '../../shared/errors.ts'
import { Semaphore } from './semaphore.ts'

// Password hashes: scrypt at one of OWASP's current equivalent settings (N=2^14, r=8, p=5: the same
// work as N=2^17, r=8, p=1 in an eighth of the memory, and 3–4× faster here because 16 MiB stays nearer
// the caches than 128 MiB), encoded as
// `scrypt$N$r$p$salt$hash`. The parameters travel with each hash, so a hash made with older ones
// still verifies, and `needsRehash` tells the caller to replace it after a successful login.
//
// Each hash costs 128·N·r bytes (16 MiB) and a core for a quarter of a second or so, so all of them go
// through one small gate: a few run, a few wait, and the rest are refused at once as RATE_LIMITED.

export interface ScryptParams { N: number, r: number, p: number }
export const CURRENT_PARAMS: ScryptParams = { N: 2 ** 14, r: 8, p: 5 }
const LEN = 32
// stored hashes come from our own database, but a bad row must not make us allocate gigabytes
const LIMITS: ScryptParams = { N: 2 ** 20, r: 16, p: 16 }

const scrypt = promisify(crypto.scrypt) as (pw: string, salt: Buffer, len: number, opts: crypto.ScryptOptions) => Promise<Buffer>

/** what scrypt itself needs (OpenSSL: 128·r·(N + 2) + 128·r·p), with room to spare */
const maxmem = (p: ScryptParams): number => 2 * 128 * p.r * (p.N + 2 + p.p)

function encode (p: ScryptParams, salt: Buffer, hash: Buffer): string {
  return `scrypt$${p.N}$${p.r}$${p.p}$${salt.toString('base64')}$${hash.toString('base64')}`
}

interface Decoded { params: ScryptParams, salt: Buffer, hash: Buffer }

function decode (encoded: string): Decoded | null {
  const [alg, n, r, p, salt, hash] = encoded.split('$')
  const params = { N: Number(n), r: Number(r), p: Number(p) }
  if (alg !== 'scrypt' || !salt || !hash) return null
  const ok = (k: keyof ScryptParams) => Number.isInteger(params[k]) && params[k] >= 1 && params[k] <= LIMITS[k]
  if (!ok('N') || !ok('r') || !ok('p')) return null
  const out = { params, salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') }
  return out.salt.length >= 8 && out.hash.length >= 16 ? out : null
}

export interface PasswordsOptions {
  params?: ScryptParams
  /** hashes computed at once (default: the cores, at most 4) */
  maxConcurrent?: number
  /** hashes waiting for a slot before more are refused (default: 8 per slot) */
  maxQueued?: number
  /** a hash that waited this long for a slot is refused: its caller (10 s RPC timeouts) is about to give up */
  maxWaitMs?: number
}

export class Passwords {
  readonly params: ScryptParams
  /** compared against when the account does not exist, so timing does not reveal which emails exist */
  readonly dummyHash: string
  private readonly gate: Semaphore

  constructor (opts: PasswordsOptions = {}) {
    this.params = opts.params ?? CURRENT_PARAMS
    this.dummyHash = encode(this.params, Buffer.alloc(16), Buffer.alloc(LEN))
    const slots = opts.maxConcurrent ?? Math.min(4, os.availableParallelism())
    this.gate = new Semaphore(slots, opts.maxQueued ?? 8 * slots,
      () => MeshError.RATE_LIMITED('auth is busy checking passwords; retry in a second', 1), opts.maxWaitMs ?? 4000)
  }

  async hash (password: string): Promise<string> {
    const salt = crypto.randomBytes(16)
    const p = this.params
    const hash = await this.gate.run(() => scrypt(password, salt, LEN, { N: p.N, r: p.r, p: p.p, maxmem: maxmem(p) }))
    return encode(p, salt, hash)
  }

  async verify (password: string, encoded: string): Promise<boolean> {
    // an unreadable hash costs as much as a real one and never matches
    const stored = decode(encoded)
    const d = stored ?? decode(this.dummyHash)!
    const { N, r, p } = d.params
    const actual = await this.gate.run(() => scrypt(password, d.salt, d.hash.length, { N, r, p, maxmem: maxmem(d.params) }))
    return stored !== null && crypto.timingSafeEqual(actual, d.hash)
  }

  /** True when a hash was made with other parameters than today's: replace it once the password is known. */
  needsRehash (encoded: string): boolean {
    const d = decode(encoded)
    return !d || d.params.N !== this.params.N || d.params.r !== this.params.r || d.params.p !== this.params.p
  }
}
