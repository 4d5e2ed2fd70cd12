import { spawn, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import path from 'node:path'
import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin, runCli, until } from './support/harness.ts'
import { startFakeOpenAI } from './fakes/fake-openai.ts'
import { FAIL_MODEL, SLOW_MODEL, fakeTokens } from './fakes/fake-llm.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'

// `hyperinfer compare` as a user runs it: the real binary against a running mesh. Piped, it writes
// labelled lines as they complete and a summary; with --json one object; on a terminal (a real
// pseudo-terminal from util-linux `script`) the columns are redrawn in place as the answers stream.

const ROOT = path.resolve(import.meta.dirname, '..')
const PRICES = { 'gpt-a': { input: 1, output: 2 }, [SLOW_MODEL]: { input: 3, output: 5 } }
const hasScript = spawnSync('script', ['--version']).status === 0

/** The CLI inside a pseudo-terminal: what a person at a terminal sees, escape sequences and all. */
function runInTerminal (home: string, args: string[], env: Record<string, string>): Promise<{ code: number | null, out: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`
  const cmd = [process.execPath, path.join(ROOT, 'cli', 'bin.js'), ...args].map(quote).join(' ')
  return new Promise((resolve) => {
    const proc = spawn('script', ['-qfec', cmd, '/dev/null'], {
      cwd: ROOT,
      env: { ...process.env, HYPERINFER_HOME: home, HYPERINFER_GATEWAY: '', HYPERINFER_BOOTSTRAP: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
    proc.on('close', (code) => resolve({ code, out: out.replace(/\r\n/g, '\n') }))
  })
}

test('cli compare: answers streamed side by side or as labelled lines, with latency and cost per model; each model billed', { timeout: 240_000 }, async (t) => {
  const openai = await startFakeOpenAI({ apiKey: 'sk-compare-cli', models: ['gpt-a', SLOW_MODEL, FAIL_MODEL] })
  t.teardown(() => openai.close(), { order: 2 })
  const { mesh, db, home } = await startTestMesh(t, {
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { MODEL_PRICES: JSON.stringify(PRICES) },
      inference: { OPENAI_BASE_URL: openai.baseURL, OPENAI_API_KEY: 'sk-compare-cli', SYNTHETIC_TOKENS_PER_SEC: '40' }
    }
  })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client, 'cli-comparer')
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: 'cli-comparer', amountUsd: 1 })
  const env = { HYPERINFER_API_KEY: user.key }

  // ---- piped: labelled lines, then the summary ----------------------------------------------
  const prompt = 'Lines for a pipe'
  const lines = await runCli(home, ['compare', '--models', `synthetic,${SLOW_MODEL},${FAIL_MODEL}`, '--max-tokens', '40', prompt], { env: { ...env, COLUMNS: '60' } })
  t.is(lines.code, 1, 'a model failed: exit 1 (the others are still shown): ' + lines.stderr.trim())
  const out = lines.stdout.split('\n')
  const labelled = (model: string) => out.filter((l) => l.startsWith(model.padEnd(9) + ' | ')).map((l) => l.slice(12))
  const synText = syntheticText([{ role: 'user', content: prompt }], 40)
  t.ok(labelled('synthetic').length >= 3, `a long answer is wrapped over several labelled lines (${labelled('synthetic').length})`)
  t.is(labelled('synthetic').join(' '), synText, "synthetic's lines make its whole answer")
  t.is(labelled(SLOW_MODEL).join(' '), fakeTokens(SLOW_MODEL, 40).join(''), "the slow model's lines make its answer")
  t.ok(out.filter((l) => l.includes(' | ')).every((l) => l.length <= 60), 'every labelled line fits the 60-column screen')
  t.ok(/^fail-500 {2}\| error: .*\[BACKEND_ERROR\]$/m.test(lines.stdout), 'the failed model says why, in its own line')
  const spread = lines.chunks[lines.chunks.length - 1]!.at - lines.chunks[0]!.at
  t.ok(lines.chunks.length >= 3 && spread >= 200, `lines are written as the answers stream (${lines.chunks.length} writes over ${spread} ms)`)
  const row = (model: string) => out.find((l) => l.startsWith(model + ' ') && !l.includes(' | '))
  t.ok(/^model +tokens in→out +ttft +latency +cost +finish$/m.test(lines.stdout), 'a summary table follows')
  t.ok(/^synthetic +\d+→40 +\d+ ms +\d+ ms +\$0 +length$/.test(row('synthetic') ?? ''), 'synthetic: tokens, ttft, latency, free: ' + row('synthetic'))
  const slowRow = /^slow +(\d+)→40 +\d+ ms +\d+ ms +\$([0-9.]+) +length$/.exec(row(SLOW_MODEL) ?? '')
  t.ok(slowRow, 'slow: tokens, ttft, latency and cost: ' + row(SLOW_MODEL))
  if (slowRow) t.is(Math.round(Number(slowRow[2]) * 1e9), Number(slowRow[1]) * 3000 + 40 * 5000, 'the cost shown is its price times its tokens, to the nano-dollar')
  t.ok(/^fail-500 .*error: .*\[BACKEND_ERROR\]$/.test(row(FAIL_MODEL) ?? ''), 'the failure is in the summary too')

  const hash = crypto.createHash('sha256').update(prompt).digest('hex')
  const rows = await until(() => db.pool.query('SELECT model_used, status, cost_nusd FROM request_logs WHERE prompt_hash = $1 AND status <> $2 ORDER BY model_used', [hash, 'processing']).then((r) => r.rows), (r) => r.length >= 3)
  t.alike(rows.map((r: any) => [r.model_used, r.status]), [[FAIL_MODEL, 'failed'], [SLOW_MODEL, 'success'], ['synthetic', 'success']], 'three models → three requests logged')
  if (slowRow) t.is(Number(rows.find((r: any) => r.model_used === SLOW_MODEL).cost_nusd), Math.round(Number(slowRow[2]) * 1e9), 'and the slow one charged what the CLI showed')

  // ---- --json: one object, costs exact ------------------------------------------------------
  const json = await runCli(home, ['compare', '--json', '--models', 'synthetic,gpt-a', '--max-tokens', '4', 'json please'], { env })
  t.is(json.code, 0, 'every model answered: exit 0 ' + json.stderr.trim())
  t.alike(json.json.results.map((e: any) => [e.model, e.text]), [['synthetic', syntheticText([{ role: 'user', content: 'json please' }], 4)], ['gpt-a', fakeTokens('gpt-a', 4).join('')]])
  const g = json.json.results[1]
  t.is(g.costNanoUsd, g.usage.promptTokens * 1000 + g.usage.completionTokens * 2000, 'gpt-a: its price times its tokens, in nano-USD')
  t.is(json.json.costNanoUsd, g.costNanoUsd)
  t.ok(typeof g.latencyMs === 'number' && typeof g.id === 'string', 'latency and request id per model')

  // ---- columns forced on a pipe: written once, side by side ---------------------------------
  const cPrompt = 'Side by side in a terminal'
  const cols = await runCli(home, ['compare', '--layout', 'columns', '--models', `synthetic,${SLOW_MODEL}`, '--max-tokens', '5', cPrompt], { env: { ...env, COLUMNS: '100' } })
  t.is(cols.code, 0, cols.stderr.trim())
  const cSyn = syntheticText([{ role: 'user', content: cPrompt }], 5)
  const cSlow = fakeTokens(SLOW_MODEL, 5).join('')
  const sideBySide = (text: string) => text.split('\n').find((l) => l.startsWith(cSyn) && l.includes(' │ ' + cSlow))
  t.ok(/^synthetic +│ slow$/m.test(cols.stdout), 'a header names each column')
  t.ok(sideBySide(cols.stdout), 'the two answers stand side by side on one line')
  t.absent(cols.stdout.includes('\x1b'), 'no escape sequences on a pipe')
  const narrow = await runCli(home, ['compare', '--layout', 'columns', '--models', 'synthetic,gpt-a,slow', 'x'], { env: { ...env, COLUMNS: '40' } })
  t.is(narrow.code, 2, 'columns that cannot fit are a usage error')
  t.ok(narrow.stderr.includes('--layout lines'), narrow.stderr.trim())
  const noModels = await runCli(home, ['compare', 'x'], { env })
  t.is(noModels.code, 2)
  t.ok(noModels.stderr.includes('--models is required'), noModels.stderr.trim())
  const tooMany = await runCli(home, ['compare', '--models', 'a,b,c,d,e,f,g,h,i', 'x'], { env })
  t.is(tooMany.code, 1)
  t.ok(tooMany.stderr.includes('at most 8') && tooMany.stderr.includes('[BAD_REQUEST]'), tooMany.stderr.trim())

  // ---- a real terminal: columns redrawn in place while streaming ----------------------------
  if (!hasScript) {
    t.fail('util-linux `script` is needed to run the CLI in a pseudo-terminal; install util-linux')
    return
  }
  const tty = await runInTerminal(home, ['compare', '--models', `synthetic,${SLOW_MODEL}`, '--max-tokens', '5', cPrompt], { ...env, COLUMNS: '120', LINES: '30' })
  t.is(tty.code, 0, 'exit 0 in a terminal')
  const redraws = tty.out.split(/\x1b\[\d+F\x1b\[J/).length - 1
  t.ok(redraws >= 1, `the columns are redrawn in place as tokens arrive (${redraws} redraws)`)
  const last = tty.out.split(/\x1b\[\d+F\x1b\[J/).pop()!
  t.ok(/^synthetic +│ slow$/m.test(last), 'the final frame has a column per model')
  t.ok(sideBySide(last), 'with the whole answers side by side')
  t.ok(/^slow +\d+→5 +\d+ ms +\d+ ms +\$0\.0000\d+ +length$/m.test(last), 'and latency and cost per model at the end')
})
