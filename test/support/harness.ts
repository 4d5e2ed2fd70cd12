import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalMesh, type LocalMeshOptions } from '../../scripts/lib/localmesh.ts'
import { createTestDatabase, type TestDatabase } from './db.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { GatewayConnection } from '../../shared/sdk/rpc-transport.ts'

// Real processes for end-to-end tests: a fresh database, a temp state dir, the whole mesh via
// LocalMesh, the real CLI binary, and a real RPC client — the same parts a user runs.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

export interface TestMesh { mesh: LocalMesh, db: TestDatabase, home: string }

export async function startTestMesh (t: { teardown: (fn: () => unknown, o?: { order?: number }) => void }, opts: Partial<LocalMeshOptions> = {}): Promise<TestMesh> {
  const db = await createTestDatabase()
  const home = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'mesh-'))
  const mesh = new LocalMesh({ home, databaseUrl: db.url, webPort: 0, metricsPort: 0, ...opts })
  t.teardown(async () => {
    await mesh.stop()
    await db.drop()
    fs.rmSync(home, { recursive: true, force: true })
  }, { order: 1 })
  await mesh.start()
  return { mesh, db, home }
}

export interface CliResult { code: number | null, stdout: string, stderr: string, chunks: Array<{ at: number, data: string }>, ms: number, json: any }

/** Run the real `hyperinfer` binary against a mesh's state dir. */
export function runCli (home: string, args: string[], opts: { stdin?: string, env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const started = Date.now()
    const proc = spawn(process.execPath, [path.join(ROOT, 'cli', 'bin.js'), ...args], {
      cwd: ROOT,
      env: { ...process.env, HYPERINFER_HOME: home, HYPERINFER_API_KEY: '', HYPERINFER_GATEWAY: '', HYPERINFER_BOOTSTRAP: '', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    const chunks: CliResult['chunks'] = []
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d: Buffer) => { chunks.push({ at: Date.now(), data: d.toString() }); stdout += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    if (opts.stdin !== undefined) proc.stdin.end(opts.stdin)
    else proc.stdin.end()
    proc.on('close', (code) => {
      let json: unknown = null
      try { json = JSON.parse(stdout) } catch {}
      resolve({ code, stdout, stderr, chunks, ms: Date.now() - started, json })
    })
  })
}

/** An in-process RPC client to the mesh's gateway, with a fresh identity (a stranger to the mesh). */
export async function gatewayClient (t: { teardown: (fn: () => unknown, o?: { order?: number }) => void }, mesh: LocalMesh, key = mesh.gatewayKey): Promise<{ client: MeshClient }> {
  const conn = new GatewayConnection({ gateway: key, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
  t.teardown(() => conn.close(), { order: 0 })
  return { client: await conn.open() }
}

/** Register, log in and create a key over RPC: the fixture most tests need. */
export async function userWithKey (client: MeshClient, name = 'u' + crypto.randomBytes(4).toString('hex')): Promise<{ token: string, key: string, keyId: string, userId: string }> {
  const { GatewayProtocol } = await import('../../shared/protocol/gateway.ts')
  const password = 'pw-' + crypto.randomBytes(8).toString('hex')
  const email = `${name}@example.com`
  const reg = await client.call(GatewayProtocol.register, { username: name, email, password })
  const { token } = await client.call(GatewayProtocol.login, { email, password })
  const k = await client.call(GatewayProtocol.createKey, { token, name: 'test' })
  return { token, key: k.key, keyId: k.id, userId: reg.user.id }
}

export function alive (mesh: LocalMesh): string[] {
  return [...mesh.children.values()].filter((c) => c.proc.exitCode === null && c.proc.signalCode === null).map((c) => c.name).sort()
}

/** Poll `fn` until `ok` holds of its value or `ms` pass; returns the last value (the test asserts on it). */
export async function until<T> (fn: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000, every = 25): Promise<T> {
  const deadline = Date.now() + ms
  let v = await fn()
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, every))
    v = await fn()
  }
  return v
}

/** Poll until `fn` resolves true; returns the ms it took, or throws naming `what`. */
export async function waitFor (what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now()
  while (Date.now() - started < timeoutMs) {
    if (await fn().catch(() => false)) return Date.now() - started
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`)
}

/** The password of the admin that registerAdmin makes (tests log in with it from the CLI too). */
export const ADMIN_PASSWORD = 'boss-password-' + crypto.randomBytes(4).toString('hex')

/** Register and log in `boss` (the mesh must list it in auth's ADMIN_USERS); returns the session token. */
export async function registerAdmin (client: MeshClient): Promise<string> {
  const { GatewayProtocol } = await import('../../shared/protocol/gateway.ts')
  await client.call(GatewayProtocol.register, { username: 'boss', email: 'boss@example.com', password: ADMIN_PASSWORD })
  return (await client.call(GatewayProtocol.login, { email: 'boss@example.com', password: ADMIN_PASSWORD })).token
}

/** A worker process the mesh does not know: not on its allow-list, with a token only if `env` gives one. Its key. */
export async function strangerWorker (mesh: LocalMesh, name: string, models: string, env: Record<string, string> = {}): Promise<string> {
  const child = await mesh.spawn(name, {
    HYPERINFER_HOME: mesh.home, HYPERINFER_BOOTSTRAP: mesh.bootstrapString, HYPERINFER_MESH_ALLOW: mesh.gatewayKeys.join(','),
    HYPERINFER_WORKER_NAME: name, HYPERINFER_GATEWAYS: mesh.gatewayKey, SYNTHETIC_MODELS: models, ...env
  }, 'inference')
  return /inference ready ([0-9a-f]{64})/.exec(child.readyLine)![1]!
}
