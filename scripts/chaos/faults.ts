import { execFileSync } from 'node:child_process'
import type { LocalMesh } from '../lib/localmesh.ts'
import type { NetNs } from '../../test/support/netns.ts'
import { sleep } from './load.ts'

// The faults a chaos run injects, each a real act on real processes: SIGKILL, SIGTERM, stopping
// PostgreSQL, taking a network link down, workers leaving and joining. Each one injects its fault,
// undoes it (restart, start, link up, rejoin) and returns once the mesh is whole again: every
// gateway reaches auth and has every live worker registered.

export interface ChaosMesh {
  mesh: LocalMesh
  /** the worker inside its own network namespace, and the namespace */
  ns: NetNs
  netnsWorker: string
  /** workers expected to be registered now, by name */
  workers: Set<string>
  log (line: string): void
}

export interface Fault {
  name: string
  /** inject and undo the fault; resolves once recovered */
  run (c: ChaosMesh): Promise<void>
}

let churned = 0

/** Every gateway answers with auth connected and every live worker registered. */
export async function whole (c: ChaosMesh, timeoutMs = 90_000): Promise<void> {
  const started = Date.now()
  await Promise.all(c.mesh.gatewayKeys.map((key) => c.mesh.waitUsable(c.workers.size, key, timeoutMs)))
  c.log(`  every gateway has its ${c.workers.size} workers ${Date.now() - started} ms later`)
}

/** Run one phase of a fault, saying how long it took. */
async function phase<T> (c: ChaosMesh, what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now()
  const out = await fn()
  c.log(`  ${what}: ${Date.now() - started} ms`)
  return out
}

function hostWorkers (c: ChaosMesh): string[] {
  return [...c.workers].filter((n) => n !== c.netnsWorker && c.mesh.children.get(n)?.proc.exitCode === null).sort()
}

function kill (c: ChaosMesh, name: string): void {
  const child = c.mesh.children.get(name)
  if (!child) throw new Error(`no process named ${name}`)
  child.proc.kill('SIGKILL')
}

async function exited (c: ChaosMesh, name: string): Promise<void> {
  const p = c.mesh.children.get(name)!.proc
  if (p.exitCode === null && p.signalCode === null) await new Promise((resolve) => p.once('exit', resolve))
}

export const killWorker: Fault = {
  name: 'SIGKILL a worker mid-stream',
  async run (c) {
    const name = hostWorkers(c)[0]!
    // mid-stream: the load keeps every worker busy; let its streams get going first
    await sleep(500)
    kill(c, name)
    await exited(c, name)
    c.workers.delete(name)
    await sleep(1000)
    await phase(c, `${name} started again`, () => c.mesh.restartChild(name))
    c.workers.add(name)
    await whole(c)
  }
}

export const killGateway: Fault = {
  name: 'SIGKILL a gateway',
  async run (c) {
    const name = c.mesh.gatewayNames.at(-1)!
    kill(c, name)
    await exited(c, name)
    await sleep(1000)
    await phase(c, `${name} started again`, () => c.mesh.restartChild(name))
    await whole(c)
  }
}

export const restartGateway: Fault = {
  name: 'restart a gateway (SIGTERM, start)',
  async run (c) {
    const name = c.mesh.gatewayNames[0]!
    await phase(c, `${name} drained and stopped`, () => c.mesh.stopChild(name))
    await phase(c, `${name} started again`, () => c.mesh.restartChild(name))
    await whole(c)
  }
}

export const postgresOutage = (seconds = 10): Fault => ({
  name: `stop PostgreSQL for ${seconds} s`,
  async run (c) {
    await c.mesh.stopDatabase()
    await sleep(seconds * 1000)
    await c.mesh.startDatabase()
    await whole(c)
  }
})

function link (ns: NetNs, state: 'up' | 'down'): void {
  execFileSync('ip', ['-n', ns.name, 'link', 'set', ns.nsIf, state], { stdio: ['ignore', 'ignore', 'pipe'] })
}

export const cutWorkerNetwork = (seconds = 8): Fault => ({
  name: `cut a worker's network for ${seconds} s`,
  async run (c) {
    link(c.ns, 'down')
    try { await sleep(seconds * 1000) } finally { link(c.ns, 'up') }
    await whole(c)
  }
})

/** Churn: one worker leaves, one joins with a new key, the one that left rejoins with its old key, the new one leaves. */
export const churn: Fault = {
  name: 'churn workers (leave, join new, rejoin old)',
  async run (c) {
    const leaving = hostWorkers(c).at(-1)!
    await c.mesh.stopChild(leaving)
    c.workers.delete(leaving)
    const fresh = `churn-${++churned}`
    const template = c.mesh.children.get(leaving)!
    await c.mesh.spawn(fresh, {
      ...template.env, HYPERINFER_WORKER_NAME: fresh, HYPERINFER_WORKER_TOKEN: c.mesh.workerToken
    }, 'inference')
    c.workers.add(fresh)
    await whole(c)
    await c.mesh.restartChild(leaving)
    c.workers.add(leaving)
    await whole(c)
    await c.mesh.stopChild(fresh)
    c.workers.delete(fresh)
    await whole(c)
  }
}

/** A fault made of several at once: they start together, and it ends when all have. */
export function together (...faults: Fault[]): Fault {
  return {
    name: faults.map((f) => f.name).join(' + '),
    async run (c) { await Promise.all(faults.map((f, i) => sleep(i * 300).then(() => f.run(c)))) }
  }
}
