// How fast the product starts as a user runs it, on real processes: `node cli/bin.js --help` (next to
// `node -e 0`, the floor), `npx hyperinfer --help`, a warm `npm start` (the state dir already made by a
// first, untimed start) to its "mesh is up" line, and `hyperinfer infer` from its spawn to the first
// token on stdout, against that running mesh. Medians of several runs.
// Budgets: --help ≤ 250 ms; infer to first token ≤ 500 ms; warm `npm start` ≤ 4 s.
// Standalone: `npm run build && node dist/scripts/bench-startup.js` (BENCH_SCALE=0.2 shortens it).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { PACKAGE_ROOT } from '../shared/package.ts'
import { percentile, runStandalone, type Row } from './bench-lib.ts'

const BIN = path.join(PACKAGE_ROOT, 'cli', 'bin.js')

interface Timed { ms: number, firstOutputMs: number | null, code: number | null, stdout: string, stderr: string }

/** Run a command to its end: total time, and time to its first byte on stdout. */
function timed (cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const since = () => Number(process.hrtime.bigint() - started) / 1e6
    const proc = spawn(cmd, args, { cwd: PACKAGE_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let firstOutputMs: number | null = null
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d: Buffer) => { firstOutputMs ??= since(); stdout += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    proc.on('error', reject)
    proc.on('close', (code) => resolve({ ms: since(), firstOutputMs, code, stdout, stderr }))
  })
}

function row (measure: string, ms: number[], budget: number | null): Row {
  const sorted = [...ms].sort((a, b) => a - b)
  const r: Row = { measure, runs: ms.length, 'median ms': percentile(sorted, 0.5).toFixed(0), 'min ms': sorted[0]!.toFixed(0), 'max ms': sorted[sorted.length - 1]!.toFixed(0) }
  if (budget !== null) {
    r['budget ms'] = budget
    r.met = percentile(sorted, 0.5) <= budget ? 'yes' : 'NO'
  }
  return r
}

async function repeat (n: number, what: string, once: () => Promise<Timed>, pick: (t: Timed) => number | null = (t) => t.ms): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t = await once()
    const v = pick(t)
    if (t.code !== 0 || v === null) throw new Error(`${what} failed (exit ${t.code}): ${t.stderr.trim().split('\n').slice(-2).join(' | ')}`)
    out.push(v)
  }
  return out
}

/** `npm start` in its own process group (as a terminal runs it), with the time its ready line took. */
function startMesh (env: NodeJS.ProcessEnv): Promise<{ ms: number, stop: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const proc = spawn('npm', ['start', '--silent'], { cwd: PACKAGE_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<void>((r) => proc.on('close', () => r()))
    // Ctrl-C in a terminal reaches the whole group: npm, its shell and the mesh's own process
    const stop = async () => {
      try { process.kill(-proc.pid!, 'SIGINT') } catch { return } // the group is gone already
      const kill = setTimeout(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} }, 30_000) // gone by then: nothing to kill
      await exited
      clearTimeout(kill)
    }
    let out = ''
    let err = ''
    let ready = false
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (!ready && out.includes('hyperinfer mesh is up')) {
        ready = true
        resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, stop })
      }
    })
    proc.stderr!.on('data', (d: Buffer) => { err += d.toString() })
    proc.on('close', (code) => {
      if (!ready) reject(new Error(`npm start exited (${code}) before the mesh was up: ${(err || out).trim().split('\n').slice(-3).join(' | ')}`))
    })
  })
}

export async function benchStartup (scale: number): Promise<Row[]> {
  const runs = Math.max(5, Math.round(15 * scale))
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-bench-startup-'))
  // the CLI and the mesh see only this state dir; the mesh uses its own embedded database
  const env: NodeJS.ProcessEnv = {
    ...process.env, HYPERINFER_HOME: home, HYPERINFER_API_KEY: '', HYPERINFER_GATEWAY: '', HYPERINFER_BOOTSTRAP: '',
    DATABASE_URL: '', WEB_SERVICE_PORT: '0', METRICS_SERVICE_PORT: '0', LOG_LEVEL: 'warn',
    // the first token comes as soon as the worker has it: the CLI and the mesh are measured, not a pace
    SYNTHETIC_TOKENS_PER_SEC: '0'
  }
  const rows: Row[] = []
  let mesh: { stop: () => Promise<void> } | null = null
  try {
    rows.push(row('node -e 0 (the floor)', await repeat(runs, 'node -e 0', () => timed(process.execPath, ['-e', '0'], env)), null))
    rows.push(row('node cli/bin.js --help', await repeat(runs, '--help', () => timed(process.execPath, [BIN, '--help'], env)), 250))
    rows.push(row('npx hyperinfer --help', await repeat(Math.max(3, Math.round(runs / 3)), 'npx --help', () => timed('npx', ['--no-install', 'hyperinfer', '--help'], env)), null))

    // the first start makes the state dir and the database (initdb): not what a returning user waits for
    await (await startMesh(env)).stop()
    const starts: number[] = []
    for (let i = 0; i < Math.max(2, Math.round(3 * scale)); i++) {
      const m = await startMesh(env)
      starts.push(m.ms)
      mesh = m
      if (i < Math.max(2, Math.round(3 * scale)) - 1) { await m.stop(); mesh = null }
    }
    rows.push(row('npm start, warm, to "mesh is up"', starts, 4000))

    // a user of the running mesh, made with the CLI as the README does
    const cli = (args: string[]) => timed(process.execPath, [BIN, ...args], env)
    const password = 'bench-startup-' + Math.random().toString(36).slice(2)
    for (const args of [['register', '--username', 'bench', '--email', 'bench@example.com', '--password', password], ['login', '--email', 'bench@example.com', '--password', password]]) {
      const r = await cli(args)
      if (r.code !== 0) throw new Error(`hyperinfer ${args[0]} failed: ${r.stderr.trim()}`)
    }
    const created = await cli(['keys', 'create', '--name', 'bench', '--quiet'])
    const key = created.stdout.trim()
    if (created.code !== 0 || !key) throw new Error(`hyperinfer keys create failed: ${created.stderr.trim()}`)
    const infer = () => cli(['infer', '--key', key, '--max-tokens', '8', 'Write a haiku about peer-to-peer networks'])
    await infer() // the mesh's first request warms its caches; users' later ones are what is measured
    rows.push(row('hyperinfer infer, spawn to first token', await repeat(runs, 'infer', infer, (t) => t.firstOutputMs), 500))
  } finally {
    await mesh?.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-startup', 'CLI start, a warm npm start, infer to first token', 'budgets: --help 250 ms, infer first token 500 ms, warm npm start 4000 ms', benchStartup)
}
