import fs from 'node:fs'
import path from 'node:path'
import type { MeshClient } from '../shared/mesh/client.ts'
import { readMeshFile } from '../shared/meshfile.ts'
import { bootstrapList, stateDir } from '../shared/places.ts'
import type { AIInferenceClient, GatewayConnection } from '../shared/sdk/index.ts'

// Where the CLI finds things: flags, then env (HYPERINFER_GATEWAY, HYPERINFER_API_KEY,
// HYPERINFER_BOOTSTRAP), then the mesh file of a local `npm start` in HYPERINFER_HOME. The SDK (and with
// it the DHT and RPC stack) loads only when a command first reaches the gateway.

export class UsageError extends Error {}

export interface Globals { json: boolean, gateway?: string, bootstrap?: string, timeout: number }

export class CliContext {
  readonly home = stateDir()
  readonly globals: Globals
  // at most one of the two per run: inference commands use the SDK, account commands the raw gateway
  private connection: GatewayConnection | null = null
  private sdkClient: AIInferenceClient | null = null

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

  /** The raw gateway connection (account and key commands); UNAVAILABLE when it cannot be reached in time. */
  async gateway (): Promise<MeshClient> {
    const { GatewayConnection } = await import('../shared/sdk/index.ts')
    this.connection ??= new GatewayConnection({ gateway: this.gatewayKey(), bootstrap: this.bootstrap(), connectTimeoutMs: this.globals.timeout })
    return this.connection.open()
  }

  /**
   * The SDK over RPC to the same gateway, for infer, models and quota. `timeoutMs` is the per-request
   * timeout; connecting is bounded by --timeout, as for every command. Each command calls it once.
   */
  async sdk (opts: { apiKey?: string, timeoutMs?: number } = {}): Promise<AIInferenceClient> {
    const { AIInferenceClient } = await import('../shared/sdk/index.ts')
    this.sdkClient ??= new AIInferenceClient({
      gateway: this.gatewayKey(),
      bootstrap: this.bootstrap(),
      connectTimeoutMs: this.globals.timeout,
      apiKey: opts.apiKey ?? '',
      timeoutMs: opts.timeoutMs ?? this.globals.timeout
    })
    return this.sdkClient
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

  /**
   * A read the gateway answers an admin's session in more detail: made with the session when there is
   * one, and without it when there is none or auth no longer accepts it (the public answer still helps).
   */
  async withSessionIfAny<Res> (call: (req: { token?: string }) => Promise<Res>): Promise<Res> {
    let token: string
    try { token = this.sessionToken() } catch { return call({}) } // no current session
    try {
      return await call({ token })
    } catch (err) {
      if ((err as { code?: string }).code === 'UNAUTHENTICATED') return call({})
      throw err
    }
  }

  apiKey (flag?: string): string {
    const key = flag || process.env.HYPERINFER_API_KEY
    if (!key) throw new UsageError('no API key: pass --key or set HYPERINFER_API_KEY (create one with `hyperinfer keys create --name N`)')
    return key
  }

  async close (): Promise<void> {
    await this.sdkClient?.close()
    await this.connection?.close()
  }
}
