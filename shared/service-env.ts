import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import { z } from 'zod'
import { bootstrapList, ConfigError, loadConfig, meshEnv, stateDir } from './config.ts'
import { serviceKeyPair } from './keys.ts'
import { createLogger } from './log.ts'
import type { MeshServiceOptions } from './mesh/service.ts'
import { connectionLimits } from './mesh/conn-limit.ts'

// What every service process reads first: where its state lives, its identity, the bootstrap list,
// and the allow-list of mesh members.

const schema = z.object({ ...meshEnv, HYPERINFER_SEED: z.string().optional() })

export function meshOptions (name: string, env: NodeJS.ProcessEnv = process.env): Omit<MeshServiceOptions, 'name'> & { home: string } {
  const cfg = loadConfig(schema, env)
  const home = stateDir(env)
  let bootstrap
  try { bootstrap = bootstrapList(cfg.HYPERINFER_BOOTSTRAP) } catch (err) { throw new ConfigError((err as Error).message) }
  return {
    home,
    // HYPERINFER_SERVICE_NAME names a second instance of a service (gateway-2): its own key file
    keyPair: serviceKeyPair(home, env.HYPERINFER_SERVICE_NAME || name, cfg.HYPERINFER_SEED),
    log: createLogger(env.HYPERINFER_SERVICE_NAME || name, cfg.LOG_LEVEL),
    bootstrap,
    host: env.HYPERINFER_HOST || undefined,
    allow: cfg.HYPERINFER_MESH_ALLOW,
    connectionLimits: connectionLimits(env)
  }
}

/** A secret from an env var (hex or base64, ≥ 32 bytes) or a file in the state dir, made on first use. */
export function loadSecret (home: string, name: string, envValue?: string): Buffer {
  if (envValue) {
    const buf = /^[0-9a-f]+$/i.test(envValue) ? Buffer.from(envValue, 'hex') : Buffer.from(envValue, 'base64')
    if (buf.length < 32) throw new ConfigError(`${name} must be at least 32 bytes (64 hex characters)`)
    return buf
  }
  const file = path.join(home, 'keys', `${name}.secret`)
  try {
    return Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'hex')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const secret = crypto.randomBytes(32)
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  try {
    fs.writeFileSync(file, secret.toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
    return secret
  } catch {
    return Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'hex') // another process won the race
  }
}

export function requireEnv (env: NodeJS.ProcessEnv, name: string): string {
  const v = env[name]
  if (!v) throw new ConfigError(`${name} is required`)
  return v
}
