import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'

// A throwaway network namespace joined to this host by a veth pair: "another machine" for tests.
// The host side gets 10.A.B.1/24, the namespace side 10.A.B.2/24, on a random subnet no interface
// here uses yet. Everything it makes has a unique name and is removed by destroy().

export interface NetNs {
  name: string
  hostIf: string
  nsIf: string
  hostIp: string
  nsIp: string
  /** pids of the processes running in the namespace */
  pids (): number[]
  destroy (): void
}

function ip (args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function errText (err: unknown): string {
  const e = err as { stderr?: string | Buffer, message?: string, code?: string }
  return (e.stderr ? String(e.stderr) : '').trim() || e.code || e.message || String(err)
}

/** Make a namespace, or return why this machine cannot (not root, no `ip`, EPERM, …). */
export function createNetNs (): { ns: NetNs } | { reason: string } {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { reason: `network namespaces need root (uid ${process.getuid()})` }
  try { ip(['-V']) } catch (err) { return { reason: `the \`ip\` command (iproute2) is not available: ${errText(err)}` } }

  const id = crypto.randomBytes(3).toString('hex')
  const name = `hinf-${process.pid}-${id}`
  const hostIf = `hih${id}` // interface names are at most 15 characters
  const nsIf = `hin${id}`
  let used = ''
  try { used = ip(['-4', '-o', 'addr', 'show']) } catch {}
  let a = 0
  let b = 0
  for (let i = 0; i < 50; i++) {
    a = 100 + crypto.randomInt(150)
    b = crypto.randomInt(256)
    if (!used.includes(` 10.${a}.${b}.`)) break
  }
  const hostIp = `10.${a}.${b}.1`
  const nsIp = `10.${a}.${b}.2`

  let made = false
  const destroy = () => {
    if (!made) return
    made = false
    // processes left inside (ours: the test started them there) would keep the namespace alive
    for (const pid of pidsIn(name)) { try { process.kill(pid, 'SIGKILL') } catch {} }
    try { ip(['netns', 'del', name]) } catch {}
    try { ip(['link', 'del', hostIf]) } catch {} // normally gone with its peer already
  }
  try {
    ip(['netns', 'add', name])
    made = true
    ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf])
    ip(['link', 'set', nsIf, 'netns', name])
    ip(['addr', 'add', `${hostIp}/24`, 'dev', hostIf])
    ip(['link', 'set', hostIf, 'up'])
    ip(['-n', name, 'addr', 'add', `${nsIp}/24`, 'dev', nsIf])
    ip(['-n', name, 'link', 'set', nsIf, 'up'])
    ip(['-n', name, 'link', 'set', 'lo', 'up'])
  } catch (err) {
    made = true
    destroy()
    return { reason: `cannot set up a network namespace here: ${errText(err)}` }
  }
  return { ns: { name, hostIf, nsIf, hostIp, nsIp, pids: () => pidsIn(name), destroy } }
}

function pidsIn (name: string): number[] {
  try { return ip(['netns', 'pids', name]).split(/\s+/).filter(Boolean).map(Number) } catch { return [] }
}

/**
 * The real `hyperinfer` binary as a long-running process (e.g. `hyperinfer worker`), optionally inside
 * a namespace: output is collected, and waitFor() resolves on the first stdout match.
 */
export interface LongCli {
  proc: ChildProcess
  stdout: () => string
  stderr: () => string
  waitFor: (re: RegExp, timeoutMs: number) => Promise<RegExpExecArray>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** SIGINT/SIGTERM, then wait (SIGKILL after timeoutMs) */
  stop: (signal?: NodeJS.Signals, timeoutMs?: number) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

export function spawnLongCli (root: string, args: string[], env: Record<string, string>, opts: { netns?: string } = {}): LongCli {
  const bin = [process.execPath, `${root}/cli/bin.js`, ...args]
  const [cmd, ...argv] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...bin] : bin
  const proc = spawn(cmd!, argv, {
    cwd: root,
    env: { ...process.env, HYPERINFER_API_KEY: '', HYPERINFER_GATEWAY: '', HYPERINFER_BOOTSTRAP: '', HYPERINFER_WORKER_TOKEN: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); for (const w of waiters) w() })
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => { resolve({ code, signal }); for (const w of waiters) w() })
  })
  const waitFor = (re: RegExp, timeoutMs: number) => new Promise<RegExpExecArray>((resolve, reject) => {
    const check = () => {
      const m = re.exec(out)
      if (m) { done(); resolve(m) } else if (proc.exitCode !== null || proc.signalCode !== null) {
        done(); reject(new Error(`the CLI exited (${proc.exitCode ?? proc.signalCode}) before printing ${re}: ${err.trim().split('\n').slice(-3).join(' | ')}`))
      }
    }
    const timer = setTimeout(() => { done(); reject(new Error(`no ${re} within ${timeoutMs} ms; stdout: ${out.trim()} stderr: ${err.trim().split('\n').slice(-3).join(' | ')}`)) }, timeoutMs)
    const done = () => { clearTimeout(timer); waiters.delete(check) }
    waiters.add(check)
    check()
  })
  const stop = async (signal: NodeJS.Signals = 'SIGINT', timeoutMs = 15_000) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
    const r = await exited
    clearTimeout(t)
    return r
  }
  return { proc, stdout: () => out, stderr: () => err, waitFor, exited, stop }
}
