import fs from 'node:fs'
import path from 'node:path'
import DHT, { type KeyPair } from 'hyperdht'
import crypto from 'hypercore-crypto'

// A service's identity is a 32-byte seed kept in the state dir (mode 0600) or given as hex in an env
// var; the same seed always gives the same Ed25519 key pair, so a restarted service keeps its key.

export function seedPath (home: string, name: string): string {
  return path.join(home, 'keys', `${name}.seed`)
}

export function loadOrCreateSeed (home: string, name: string): Buffer {
  const file = seedPath(home, name)
  try {
    const hex = fs.readFileSync(file, 'utf8').trim()
    if (/^[0-9a-f]{64}$/i.test(hex)) return Buffer.from(hex, 'hex')
    throw new Error(`seed file ${file} is corrupt (expected 64 hex characters)`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const seed = crypto.randomBytes(32)
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  fs.writeFileSync(file, seed.toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
  return seed
}

export function keyPairFromSeed (seed: Buffer): KeyPair {
  if (seed.length !== 32) throw new Error('a seed is 32 bytes')
  return DHT.keyPair(seed)
}

/** Identity of a service: HYPERINFER_SEED (hex) wins, else the seed file for `name` in `home`. */
export function serviceKeyPair (home: string, name: string, envSeed?: string): KeyPair {
  if (envSeed) {
    if (!/^[0-9a-f]{64}$/i.test(envSeed)) throw new Error('HYPERINFER_SEED must be 64 hex characters')
    return keyPairFromSeed(Buffer.from(envSeed, 'hex'))
  }
  return keyPairFromSeed(loadOrCreateSeed(home, name))
}
