import test from 'brittle'
import { startTestMesh } from './support/harness.ts'

// The web service's /api REST routes (register, log in, API keys, inference), over real HTTP, against the real auth and gateway.

async function http (base: string, method: string, path: string, opts: { body?: unknown, headers?: Record<string, string> } = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body)
  })
  const text = await res.text()
  let json: any = null
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, json, headers: res.headers }
}

test('web: register, log in, manage keys and infer over REST; users cannot touch each other\'s keys', { timeout: 120_000 }, async (t) => {
  const { mesh } = await startTestMesh(t)
  const base = mesh.webUrl!
  t.ok(base.startsWith('http://127.0.0.1:'), 'web listens on loopback: ' + base)

  const reg = await http(base, 'POST', '/api/auth/register', { body: { username: 'carol', email: 'carol@example.com', password: 'carol password 1' } })
  t.is(reg.status, 201)
  t.is(reg.json.user.username, 'carol')
  const dup = await http(base, 'POST', '/api/auth/register', { body: { username: 'carol', email: 'other@example.com', password: 'carol password 1' } })
  t.is(dup.status, 409, 'duplicate username → 409')
  t.is(dup.json.error.code, 'CONFLICT')

  const login = await http(base, 'POST', '/api/auth/login', { body: { email: 'carol@example.com', password: 'carol password 1' } })
  t.is(login.status, 200)
  const auth = { authorization: `Bearer ${login.json.token}` }
  const wrong = await http(base, 'POST', '/api/auth/login', { body: { email: 'carol@example.com', password: 'nope nope nope' } })
  t.is(wrong.status, 401)

  const created = await http(base, 'POST', '/api/auth/api-keys', { body: { name: 'web key' }, headers: auth })
  t.is(created.status, 201)
  const key = created.json.key as string
  const listed = await http(base, 'GET', '/api/auth/api-keys', { headers: auth })
  t.is(listed.json.keys.length, 1)
  t.absent(JSON.stringify(listed.json).includes(key), 'the list never contains the key itself')

  const inf = await http(base, 'POST', '/api/inference', { body: { prompt: 'hello over http', maxTokens: 4 }, headers: { 'x-api-key': key } })
  t.is(inf.status, 200)
  t.is(inf.json.usage.completionTokens, 4)
  t.ok(inf.json.text.length > 0, 'the answer text comes back')
  const badModel = await http(base, 'POST', '/api/inference', { body: { prompt: 'x', model: 'nope' }, headers: { 'x-api-key': key } })
  t.is(badModel.status, 404)
  t.is(badModel.json.error.code, 'UNKNOWN_MODEL')

  // a second user can neither see nor revoke carol's key
  await http(base, 'POST', '/api/auth/register', { body: { username: 'mallory', email: 'mallory@example.com', password: 'mallory password' } })
  const ml = await http(base, 'POST', '/api/auth/login', { body: { email: 'mallory@example.com', password: 'mallory password' } })
  const mAuth = { authorization: `Bearer ${ml.json.token}` }
  const mList = await http(base, 'GET', '/api/auth/api-keys', { headers: mAuth })
  t.alike(mList.json.keys, [], 'mallory sees no keys of carol\'s')
  const steal = await http(base, 'DELETE', `/api/auth/api-keys/${created.json.id}`, { headers: mAuth })
  t.is(steal.status, 404, 'revoking another user\'s key looks exactly like a missing key')
  const still = await http(base, 'POST', '/api/inference', { body: { prompt: 'still mine' }, headers: { 'x-api-key': key } })
  t.is(still.status, 200, 'carol\'s key still works')

  const revoke = await http(base, 'DELETE', `/api/auth/api-keys/${created.json.id}`, { headers: auth })
  t.is(revoke.status, 200)
  t.is(revoke.json.status, 'revoked')
  const denied = await http(base, 'POST', '/api/inference', { body: { prompt: 'after revoke' }, headers: { 'x-api-key': key } })
  t.is(denied.status, 401, 'revoked key → 401')
  t.is(denied.json.error.code, 'INVALID_API_KEY')
})
