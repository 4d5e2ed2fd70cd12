import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { bootstrapList, stateDir } from '../shared/config.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { readMeshFile } from '../shared/meshfile.ts'
import { MeshError } from '../shared/errors.ts'

// Where the CLI finds things: flags, then env (HYPERINFER_GATEWAY, HYPERINFER_API_KEY,
// HYPERINFER_BOOTSTRAP), then the mesh file of a local `npm start` in HYPERINFER_HOME.

export class UsageError extends Error {}

export interface Globals { json: boolean, gateway?: string, bootstrap?: string, timeout: number }

export class CliContext {
  readonly home = stateDir()
  readonly globals: Globals
  private rpc: RPC | null = null
  private dht: DHT | null = null
  private client: MeshClient | null = null

  constructor (globals: Globals) { this.globals = globals }

  gatewayKey (): string {
    const key = this.globals.gateway || process.env.HYPERINFER_GATEWAY || readMeshFile(this.home)?.services.gateway
    if (!key) throw new UsageError('no gateway: pass --gateway <hex key>, set HYPERINFER_GATEWAY, or run `npm start` here first')
    if (!/^[0-9a-f]{64}$/i.test(key)) throw new UsageError('the gateway key must be 64 hex characters')
    return key.toLowerCase()
  }

  bootstrap (): Array<{ host: string, port: number }> | undefined {
    const value = this.globals.bootstrap || process.env.HYPERINFER_BOOTSTRAP || readMeshFile(this.home)?.bootstrap.join(',')
    try { return bootstrapList(value) } catch (err) { throw new UsageError((err as Error).message) }
  }

  /** A connection to the gateway; fails with UNAVAILABLE when it cannot be reached in time. */
  async gateway (): Promise<MeshClient> {
    if (this.client) return this.client
    const key = this.gatewayKey()
    const keyPair = DHT.keyPair(crypto.randomBytes(32))
    this.dht = createDHT({ keyPair, bootstrap: this.bootstrap(), clientOnly: true })
    this.rpc = new RPC({ keyPair, dht: this.dht, valueEncoding: c.json })
    this.client = new MeshClient(this.rpc, Buffer.from(key, 'hex'), { name: `gateway ${key.slice(0, 8)}…`, maxBackoff: 1000 })
    try {
      await this.client.waitOpen(this.globals.timeout)
    } catch {
      throw MeshError.UNAVAILABLE(`gateway ${key.slice(0, 12)}… is not reachable (no answer within ${Math.round(this.globals.timeout / 1000)} s); check the key and the bootstrap list`)
    }
    return this.client
  }

  sessionFile (): string { return path.join(this.home, 'session.json') }

  saveSession (session: { token: string, expiresAt: string, username: string, gateway: string }): void {
    fs.mkdirSync(this.home, { recursive: true, mode: 0o700 })
    fs.writeFileSync(this.sessionFile(), JSON.stringify(session) + '\n', { mode: 0o600 })
  }

  sessionToken (): string {
    try {
      const s = JSON.parse(fs.readFileSync(this.sessionFile(), 'utf8')) as { token: string, expiresAt: string }
      if (Date.parse(s.expiresAt) <= Date.now()) throw new UsageError('your session expired: run `hyperinfer login` again')
      return s.token
    } catch (err) {
      if (err instanceof UsageError) throw err
      throw new UsageError('not logged in: run `hyperinfer login --email E --password P` first')
    }
  }

  apiKey (flag?: string): string {
    const key = flag || process.env.HYPERINFER_API_KEY
    if (!key) throw new UsageError('no API key: pass --key or set HYPERINFER_API_KEY (create one with `hyperinfer keys create --name N`)')
    return key
  }

  async close (): Promise<void> {
    await this.client?.close()
    await this.rpc?.destroy({ force: true }).catch(() => {})
    await this.dht?.destroy().catch(() => {})
  }
}
