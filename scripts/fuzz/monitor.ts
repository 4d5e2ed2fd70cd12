import fs from 'node:fs'
import path from 'node:path'
import type { LocalMesh } from '../lib/localmesh.ts'
import type { SecretScan } from './tally.ts'

// Watching the mesh's processes while they are fuzzed: each one's peak resident memory (VmRSS from
// /proc), which of them exited, and afterwards whether a secret reached their log files.

export interface ProcessReport { name: string, pid: number, alive: boolean, exit: string | null, maxRssMb: number }

export class ProcessMonitor {
  private readonly maxRss = new Map<string, number>()
  private readonly exits = new Map<string, string>()
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly mesh: LocalMesh, private readonly everyMs = 250) {}

  start (): void {
    for (const c of this.mesh.children.values()) {
      c.proc.once('exit', (code, signal) => this.exits.set(c.name, `exit ${code ?? signal}`))
    }
    this.sample()
    this.timer = setInterval(() => this.sample(), this.everyMs)
    this.timer.unref()
  }

  private sample (): void {
    for (const c of this.mesh.children.values()) {
      if (!c.proc.pid) continue
      let status: string
      try {
        status = fs.readFileSync(`/proc/${c.proc.pid}/status`, 'utf8')
      } catch {
        continue // the process is gone; its exit is recorded by the listener
      }
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
      this.maxRss.set(c.name, Math.max(this.maxRss.get(c.name) ?? 0, kb))
    }
  }

  stop (): ProcessReport[] {
    if (this.timer) clearInterval(this.timer)
    this.sample()
    return [...this.mesh.children.values()].map((c) => ({
      name: c.name,
      pid: c.proc.pid ?? 0,
      alive: c.proc.exitCode === null && c.proc.signalCode === null && !this.exits.has(c.name),
      exit: this.exits.get(c.name) ?? null,
      maxRssMb: Math.round((this.maxRss.get(c.name) ?? 0) / 1024)
    })).sort((a, b) => a.name.localeCompare(b.name))
  }
}

/** Every log file LocalMesh wrote, checked for the run's secrets; returns the bytes scanned. */
export function scanLogs (home: string, scan: SecretScan): number {
  const dir = path.join(home, 'logs')
  let bytes = 0
  for (const file of fs.readdirSync(dir)) {
    const data = fs.readFileSync(path.join(dir, file))
    bytes += data.length
    scan.check(data, `log ${file}`)
  }
  return bytes
}
