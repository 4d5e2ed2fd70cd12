// `npm test`: builds dist/ (what changed since the last build), then runs every test file as its own
// process (node + tsx), against a real PostgreSQL (embedded in a temp dir, or TEST_DATABASE_URL when
// set), and prints one summary line:
//   N passed, N failed
// The processes the tests start (services, the `hyperinfer` binary) run the fresh compiled JS, as
// users run them. Usage: npm test [-- file-or-substring ...]
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startEmbeddedPostgres, type EmbeddedDatabase } from './lib/embedded-pg.ts'
import { SPAWN_COMPILED_ENV } from '../shared/package.ts'

const root = path.resolve(import.meta.dirname, '..')

// a stale dist/ is never tested: the build runs first, and a failed build fails the run
function buildStep (args: string[]): string | null {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
  return r.status === 0 ? null : (r.error?.message ?? `exit code ${r.status ?? r.signal}`)
}
const buildFailed = buildStep([path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'tsconfig.build.json']) ??
  buildStep([path.join(root, 'dist', 'scripts', 'bundle.js')])
if (buildFailed) {
  process.stdout.write(`\nthe build failed (${buildFailed})\n0 passed, 1 failed\n`)
  process.exit(1)
}

function findTests (dir: string, out: string[] = []): string[] {
  if (!fs.existsSync(dir)) return out
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) findTests(p, out)
    else if (entry.name.endsWith('.test.ts')) out.push(p)
  }
  return out
}

const filters = process.argv.slice(2)
const files = ['shared', 'services', 'cli', 'test'].flatMap((d) => findTests(path.join(root, d))).sort()
  .filter((f) => filters.length === 0 || filters.some((q) => f.includes(q)))

let db: EmbeddedDatabase | null = null
let adminUrl = process.env.TEST_DATABASE_URL
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-test-'))
if (!adminUrl) {
  db = await startEmbeddedPostgres(path.join(tmp, 'pg'), { database: 'postgres' })
  adminUrl = db.url
}

let passed = 0
let failed = 0
let skipped = 0
const failures: string[] = []

function runFile (file: string): Promise<void> {
  return new Promise((resolve) => {
    const rel = path.relative(root, file)
    process.stdout.write(`\n# ${rel}\n`)
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, HYPERINFER_TEST_PG: adminUrl, HYPERINFER_TEST_TMP: tmp, LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent', [SPAWN_COMPILED_ENV]: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let buf = ''
    let filePassed = 0
    let fileFailed = 0
    const onLine = (line: string) => {
      process.stdout.write(line + '\n')
      // top-level test results only: brittle indents subtests and assertions
      const m = /^(not ok|ok) \d+ - (.*?)(\s+#\s*(SKIP|TODO).*)?$/i.exec(line)
      if (!m) return
      if (m[4]) { skipped++; return }
      if (m[1] === 'ok') filePassed++
      else { fileFailed++; failures.push(`${rel}: ${m[2]}`) }
    }
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let i
      while ((i = buf.indexOf('\n')) >= 0) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1) }
    })
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d))
    const limit = setTimeout(() => { process.stdout.write(`# ${rel}: timed out, killing\n`); child.kill('SIGKILL') }, 15 * 60_000)
    child.on('close', (code) => {
      clearTimeout(limit)
      if (buf) onLine(buf)
      if (code !== 0 && fileFailed === 0) { fileFailed++; failures.push(`${rel}: exited with code ${code}`) }
      passed += filePassed
      failed += fileFailed
      resolve()
    })
  })
}

try {
  for (const file of files) await runFile(file)
} finally {
  if (db) await db.stop().catch(() => {}) // best effort: its data dir is removed next either way; test results stand
  fs.rmSync(tmp, { recursive: true, force: true })
}

if (failures.length) process.stdout.write('\n# failures:\n' + failures.map((f) => `#   ${f}`).join('\n') + '\n')
if (files.length === 0) { process.stdout.write('no test files matched\n'); failed++ }
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`)
process.exit(failed > 0 ? 1 : 0)
