import test from 'brittle'
import crypto from 'node:crypto'
import { startTestMesh, runCli } from './support/harness.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'

// The whole product as a user meets it: `npm start`'s processes on a local DHT, real PostgreSQL, and
// the real `hyperinfer` binary. register → login → key → streamed infer → request log → revoke → denied.

test('e2e: a new user goes from register to a streamed answer, and a revoked key is refused', { timeout: 180_000 }, async (t) => {
  // a slow synthetic model, so streaming is observable as separate writes
  const { mesh, db, home } = await startTestMesh(t, { serviceEnv: { inference: { SYNTHETIC_TOKENS_PER_SEC: '60' } } })

  const reg = await runCli(home, ['register', '--username', 'alice', '--email', 'alice@example.com', '--password', 'correct horse battery'])
  t.is(reg.code, 0, 'register exits 0')
  t.ok(reg.stdout.includes('registered alice'), 'register says so')
  t.absent(reg.stdout.includes('correct horse'), 'the password is not echoed')

  const dup = await runCli(home, ['register', '--username', 'alice2', '--email', 'ALICE@example.com', '--password', 'another password'])
  t.is(dup.code, 1, 'a duplicate email is refused')
  t.ok(dup.stderr.includes('[CONFLICT]'), 'with a coded error: ' + dup.stderr.trim())

  const badLogin = await runCli(home, ['login', '--email', 'alice@example.com', '--password', 'wrong password'])
  t.is(badLogin.code, 1)
  t.ok(badLogin.stderr.includes('INVALID_CREDENTIALS'))

  const login = await runCli(home, ['login', '--email', 'alice@example.com', '--password', 'correct horse battery', '--json'])
  t.is(login.code, 0, 'login exits 0')
  t.is(login.json?.user?.username, 'alice', 'login --json prints one JSON object')
  t.absent(login.stdout.includes('eyJ'), 'the session token is kept in the state dir, not printed')

  const created = await runCli(home, ['keys', 'create', '--name', 'laptop', '--json'])
  t.is(created.code, 0)
  const key = created.json.key as string
  t.ok(/^hi_[A-Za-z0-9_-]{43}$/.test(key), 'the key is shown once, in full')
  const { rows: stored } = await db.pool.query('SELECT key_hash, prefix FROM api_keys WHERE id = $1', [created.json.id])
  t.is(stored[0].key_hash, crypto.createHash('sha256').update(key).digest('hex'), 'only its SHA-256 is stored')
  t.is(stored[0].prefix, key.slice(0, 10))

  const listed = await runCli(home, ['keys', 'list'])
  t.ok(listed.stdout.includes('laptop') && listed.stdout.includes('active'), 'keys list shows it')
  t.absent(listed.stdout.includes(key), 'and never the key again')

  const models = await runCli(home, ['models', '--json'])
  t.alike(models.json.models.map((m: { id: string }) => m.id), ['synthetic'], 'models lists what the worker serves')

  const prompt = 'Write a haiku about peer-to-peer networks'
  const expected = syntheticText([{ role: 'user', content: prompt }], 12)
  const answer = await runCli(home, ['infer', '--max-tokens', '12', prompt], { env: { HYPERINFER_API_KEY: key } })
  t.is(answer.code, 0, 'infer exits 0: ' + answer.stderr.trim())
  t.is(answer.stdout, expected + '\n', 'the answer is the worker\'s text, exactly')
  t.ok(answer.chunks.length >= 3, `tokens arrived as a stream (${answer.chunks.length} separate writes)`)
  const spread = answer.chunks[answer.chunks.length - 1]!.at - answer.chunks[0]!.at
  t.ok(spread >= 100, `over time, not at once (${spread} ms between first and last write)`)

  const fromStdin = await runCli(home, ['infer', '--json', '--max-tokens', '5'], { stdin: 'tell me a story\n', env: { HYPERINFER_API_KEY: key } })
  t.is(fromStdin.code, 0)
  t.is(fromStdin.json.text, syntheticText([{ role: 'user', content: 'tell me a story' }], 5), 'prompt from stdin; --json gives the whole result')
  t.is(fromStdin.json.usage.completionTokens, 5)

  // usage is written in batches: poll briefly
  const hash = crypto.createHash('sha256').update(prompt).digest('hex')
  let rows: any[] = []
  for (let i = 0; i < 40 && rows.length === 0; i++) {
    rows = (await db.pool.query('SELECT * FROM request_logs WHERE prompt_hash = $1', [hash])).rows
    if (rows.length === 0) await new Promise((r) => setTimeout(r, 100))
  }
  t.is(rows.length, 1, 'one request_logs row with the prompt\'s SHA-256')
  t.is(rows[0].status, 'success')
  t.is(rows[0].model_used, 'synthetic')
  t.is(rows[0].tokens_out, 12)
  t.is(rows[0].worker, mesh.keys.inference, 'the row names the worker that served it')
  const { rows: leaked } = await db.pool.query(`SELECT count(*)::int AS n FROM request_logs r WHERE r::text LIKE '%haiku%'`)
  t.is(leaked[0].n, 0, 'the prompt itself is stored nowhere')
  let daily: any[] = []
  for (let i = 0; i < 40; i++) {
    daily = (await db.pool.query('SELECT request_count, tokens_out FROM usage_stats WHERE api_key_id = $1', [created.json.id])).rows
    if (daily[0]?.request_count === 2) break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.is(daily[0]?.request_count, 2, 'usage_stats counts both requests')
  t.is(Number(daily[0]?.tokens_out), 17)

  const usage = await runCli(home, ['usage', '--json'])
  t.is(usage.json.totals.requests, 2, '`hyperinfer usage` shows them')

  const unknownModel = await runCli(home, ['infer', '--model', 'gpt-17', 'hi'], { env: { HYPERINFER_API_KEY: key } })
  t.is(unknownModel.code, 1)
  t.ok(unknownModel.stderr.includes('UNKNOWN_MODEL') && unknownModel.stderr.includes('synthetic'), 'unknown model: one line naming what is available: ' + unknownModel.stderr.trim())
  t.is(unknownModel.stderr.trim().split('\n').length, 1)

  const revoked = await runCli(home, ['keys', 'revoke', created.json.id])
  t.is(revoked.code, 0)
  const revokedAt = Date.now()
  const denied = await runCli(home, ['infer', 'hello again'], { env: { HYPERINFER_API_KEY: key } })
  t.is(denied.code, 1, 'the revoked key is refused')
  t.ok(denied.stderr.includes('INVALID_API_KEY'), denied.stderr.trim())
  t.comment(`denied ${Date.now() - revokedAt} ms after the revoke returned (including CLI start-up)`)

  const noKey = await runCli(home, ['infer', 'hi'])
  t.is(noKey.code, 2, 'no key at all is a usage error')
  t.ok(noKey.stderr.includes('HYPERINFER_API_KEY'))
})

test('e2e: an unknown gateway key fails in at most 10 s with one clear line', { timeout: 60_000 }, async (t) => {
  const { home } = await startTestMesh(t)
  const bogus = crypto.randomBytes(32).toString('hex')
  const res = await runCli(home, ['models', '--gateway', bogus])
  t.is(res.code, 1)
  t.ok(res.stderr.includes('not reachable') && res.stderr.includes('[UNAVAILABLE]'), res.stderr.trim())
  t.is(res.stderr.trim().split('\n').length, 1, 'one line')
  t.ok(res.ms <= 12_000, `gave up after ${res.ms} ms (the 10 s budget plus process start)`)
  const help = await runCli(home, ['infer', '--help'])
  t.is(help.code, 0)
  t.ok(help.stdout.includes('usage: hyperinfer infer'), 'every command has --help')
  const status = await runCli(home, ['status', '--json'])
  t.is(status.json.auth, 'connected')
  t.is(status.json.database, 'ok')
  t.is(status.json.workerCount, 1, 'status counts the one worker (the workers themselves are listed for admins)')
})
