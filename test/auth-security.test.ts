import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import { SignJWT } from 'jose'
import { startTestMesh, gatewayClient, runCli, waitFor, type TestMesh } from './support/harness.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { loadSecret } from '../shared/service-env.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import { MeshError } from '../shared/errors.ts'
import { startServiceEnv } from '../scripts/start-env.ts'
import { setupCodeFile } from '../services/auth/bootstrap.ts'
import { Passwords } from '../services/auth/passwords.ts'

// The auth service under attack, against real processes: a mesh started the way `npm start` starts
// it, strangers reaching auth through the gateway, and the database and state dir they cannot see.
// One mesh serves every test in this file (the first test starts it, the last stops it); each test
// uses its own gateway clients, because auth throttles per client.

interface Env extends TestMesh { client: MeshClient, root: { id: string, email: string, password: string } }
let env: Env | null = null
const cleanups: Array<{ fn: () => unknown, order: number }> = []
const collector = { teardown: (fn: () => unknown, o?: { order?: number }) => { cleanups.push({ fn, order: o?.order ?? 0 }) } }

/** The MeshError `p` fails with, or 'ok'. */
async function outcome (p: Promise<unknown>): Promise<{ code: string, err?: MeshError }> {
  try {
    await p
    return { code: 'ok' }
  } catch (err) {
    return err instanceof MeshError ? { code: err.code, err } : { code: 'not a MeshError: ' + String(err) }
  }
}

const LONG = 30_000 // password hashing queues behind floods on a busy machine
const freshClient = async (): Promise<MeshClient> => (await gatewayClient(collector, env!.mesh)).client

async function register (client: MeshClient, name: string, extra: { setupCode?: string } = {}) {
  const password = 'pw-' + crypto.randomBytes(8).toString('hex')
  const email = `${name}@example.com`
  const { user } = await client.call(GatewayProtocol.register, { username: name, email, password, ...extra }, LONG)
  return { user, email, password }
}

async function restartAuth (adminUsers: string | null): Promise<void> {
  const { mesh, client, root } = env!
  const auth = mesh.children.get('auth')!
  if (adminUsers === null) delete auth.env.ADMIN_USERS
  else auth.env.ADMIN_USERS = adminUsers
  await mesh.restartChild('auth')
  // back once the gateway reaches the new auth process again
  await waitFor('auth reachable through the gateway', async () => {
    await client.call(GatewayProtocol.login, { email: root.email, password: root.password }, LONG)
    return true
  }, 60_000)
}

test('first admin: npm start names no admin; the one-time setup code in the state dir (0600) makes one, once', { timeout: 180_000 }, async (t) => {
  const serviceEnv = startServiceEnv({})
  t.absent(serviceEnv.auth?.ADMIN_USERS, 'npm start gives auth no ADMIN_USERS of its own')
  t.is(startServiceEnv({ ADMIN_USERS: 'alice' }).auth?.ADMIN_USERS, 'alice', 'an operator who sets ADMIN_USERS still gets it')
  const tm = await startTestMesh(collector, { serviceEnv })
  const { client } = await gatewayClient(collector, tm.mesh)

  const squatter = await register(client, 'admin')
  t.is(squatter.user.role, 'user', 'registering the name `admin` first makes nobody an admin')

  const file = setupCodeFile(tm.home)
  t.is(fs.statSync(file).mode & 0o777, 0o600, 'the setup code is in the state dir, readable only by the operator')
  const code = fs.readFileSync(file, 'utf8').trim()
  const wrong = await outcome(register(client, 'guesser', { setupCode: 'x'.repeat(32) }))
  t.is(wrong.code, 'FORBIDDEN', 'a wrong setup code is refused')

  const password = 'root password ' + crypto.randomBytes(4).toString('hex')
  const cli = await runCli(tm.home, ['register', '--username', 'root', '--email', 'root@example.com', '--password', password, '--setup-code', code])
  t.is(cli.code, 0, 'the operator redeems it with the CLI: ' + (cli.stderr.trim() || cli.stdout.trim()))
  t.ok(cli.stdout.includes('as an admin'), 'and is told the account is an admin')
  const login = await client.call(GatewayProtocol.login, { email: 'root@example.com', password }, LONG)
  t.is(login.user.role, 'admin', 'the account made with the code is an admin')

  const again = await outcome(register(client, 'second', { setupCode: code }))
  t.is(again.code, 'FORBIDDEN', 'the code works once')
  t.absent(fs.existsSync(file), 'and its file is gone')
  env = { ...tm, client, root: { id: login.user.id, email: 'root@example.com', password } }
})

test('demotion: a name taken off ADMIN_USERS loses the role at the next auth start, with its sessions and join tokens', { timeout: 180_000 }, async (t) => {
  if (!env) return t.fail('no mesh')
  const { client, root } = env
  await restartAuth('exboss')
  const exboss = await register(client, 'exboss')
  t.is(exboss.user.role, 'admin', 'a listed name registers as an admin')
  const { token } = await client.call(GatewayProtocol.login, { email: exboss.email, password: exboss.password }, LONG)
  const made = await client.call(GatewayProtocol.joinTokens, { token, op: 'create', label: 'made by exboss' })
  const rootToken = (await client.call(GatewayProtocol.login, { email: root.email, password: root.password }, LONG)).token
  const rootMade = await client.call(GatewayProtocol.joinTokens, { token: rootToken, op: 'create', label: 'made by root' })

  await restartAuth(null)
  const old = await outcome(client.call(GatewayProtocol.whoami, { token }))
  t.is(old.code, 'UNAUTHENTICATED', 'the demoted account\'s session is refused')
  const relogin = await client.call(GatewayProtocol.login, { email: exboss.email, password: exboss.password }, LONG)
  t.is(relogin.user.role, 'user', 'logging in again gives a user, not an admin')
  t.is((await client.call(GatewayProtocol.whoami, { token: relogin.token })).user.role, 'user', 'and its new session works')
  const asAdmin = await outcome(client.call(GatewayProtocol.joinTokens, { token: relogin.token, op: 'list' }))
  t.is(asAdmin.code, 'FORBIDDEN', 'admin methods refuse it')

  const rootNow = await client.call(GatewayProtocol.login, { email: root.email, password: root.password }, LONG)
  t.is(rootNow.user.role, 'admin', 'the admin made with the setup code stays an admin')
  const { tokens } = await client.call(GatewayProtocol.joinTokens, { token: rootNow.token, op: 'list' })
  t.is(tokens.find((j) => j.id === made.created!.id)?.status, 'revoked', 'the join token the demoted admin made is revoked')
  t.is(tokens.find((j) => j.id === rootMade.created!.id)?.status, 'active', 'the setup-code admin\'s join token is not')
})

test('floods: wrong passwords and registrations are throttled with a retry time, and a real login still gets through', { timeout: 240_000 }, async (t) => {
  if (!env) return t.fail('no mesh')
  const setup = await freshClient()
  const flooded = await register(setup, 'flooded')
  const real = await register(setup, 'realuser')
  const [attacker, user] = [await freshClient(), await freshClient()]
  const wrongLogin = (email: string) => outcome(attacker.call(GatewayProtocol.login, { email, password: 'wrong password!' }, LONG))

  const flood = Array.from({ length: 100 }, () => wrongLogin(flooded.email))
  const realLogin = outcome(user.call(GatewayProtocol.login, { email: real.email, password: real.password }, LONG))
  const results = await Promise.all(flood)
  t.is((await realLogin).code, 'ok', 'the real login during the flood succeeds')
  const limited = results.filter((r) => r.code === 'RATE_LIMITED')
  const checked = results.filter((r) => r.code === 'INVALID_CREDENTIALS')
  t.is(limited.length + checked.length, 100, 'every attempt is answered: ' + [...new Set(results.map((r) => r.code))].join(', '))
  t.ok(checked.length <= 1, `a burst on one account costs one password hash (${checked.length} checked, ${limited.length} refused)`)
  t.ok(limited.every((r) => Number(r.err!.details?.retryAfterSeconds) >= 1), 'each refusal says when to retry')

  // one guess after another: five are checked, then the account backs off, even for the right password
  const steps: string[] = []
  for (let i = 0; i < 8 && steps.at(-1) !== 'RATE_LIMITED'; i++) steps.push((await wrongLogin(flooded.email)).code)
  t.alike(steps, [...Array(5 - checked.length).fill('INVALID_CREDENTIALS'), 'RATE_LIMITED'], 'after 5 wrong passwords the account backs off: ' + steps.join(', '))
  const owner = await outcome(user.call(GatewayProtocol.login, { email: flooded.email, password: flooded.password }, LONG))
  t.is(owner.code, 'RATE_LIMITED', 'the right password waits too')
  t.ok(Number(owner.err?.details?.retryAfterSeconds) >= 1, 'with the time to wait')

  // the same client guessing at many other accounts at once
  const spread = await Promise.all(Array.from({ length: 10 }, (_, i) => wrongLogin(`nobody${i}@example.com`)))
  const clientLimited = spread.filter((r) => r.code === 'RATE_LIMITED')
  t.ok(clientLimited.length >= 8 && clientLimited.every((r) => r.err!.message.includes('client')), `the client is throttled across accounts (${clientLimited.length} of 10 refused)`)

  const signups = await Promise.all(Array.from({ length: 10 }, (_, i) => outcome(register(attacker, 'spam' + i + crypto.randomBytes(2).toString('hex')))))
  const signupLimited = signups.filter((r) => r.code === 'RATE_LIMITED')
  t.ok(signupLimited.length >= 9 && signupLimited.every((r) => Number(r.err!.details?.retryAfterSeconds) >= 1), `registrations from one client are throttled (${signupLimited.length} of 10 refused)`)
})

test('password hashing: a few at a time, the rest refused at once', async (t) => {
  const passwords = new Passwords({ params: { N: 2 ** 14, r: 8, p: 1 }, maxConcurrent: 1, maxQueued: 1 })
  const results = await Promise.all(Array.from({ length: 4 }, () => outcome(passwords.hash('a password'))))
  t.alike(results.map((r) => r.code).sort(), ['RATE_LIMITED', 'RATE_LIMITED', 'ok', 'ok'], 'one runs, one waits, two are refused')
})

test('session tokens: a token without exp or jti is refused, even when signed with the real secret', { timeout: 60_000 }, async (t) => {
  if (!env) return t.fail('no mesh')
  const { home, root } = env
  const client = await freshClient()
  const key = new Uint8Array(loadSecret(home, 'jwt'))
  const forge = async (claims: { exp?: boolean, jti?: boolean }) => {
    let jwt = new SignJWT({ username: 'root', role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject(root.id).setIssuer('hyperinfer-auth').setIssuedAt()
    if (claims.exp) jwt = jwt.setExpirationTime('1h')
    if (claims.jti) jwt = jwt.setJti(crypto.randomUUID())
    return jwt.sign(key)
  }
  const whoami = async (token: string) => (await outcome(client.call(GatewayProtocol.whoami, { token }))).code
  t.is(await whoami(await forge({ exp: true, jti: true })), 'ok', 'a token with every claim is accepted (the secret is the real one)')
  t.is(await whoami(await forge({ jti: true })), 'UNAUTHENTICATED', 'no exp: refused')
  t.is(await whoami(await forge({ exp: true })), 'UNAUTHENTICATED', 'no jti: refused')
  t.is(await whoami(await forge({})), 'UNAUTHENTICATED', 'neither: refused')
})

test('names: control characters in key names, labels, notes and usernames are a 400, not a 500', { timeout: 60_000 }, async (t) => {
  if (!env) return t.fail('no mesh')
  const { mesh, root } = env
  const client = await freshClient()
  const { token } = await client.call(GatewayProtocol.login, { email: root.email, password: root.password }, LONG)
  const bad = ['nul\u0000name', 'line\nbreak', 'esc\u001b[31m', 'c1\u0085']
  for (const name of bad) {
    const r = await outcome(client.call(GatewayProtocol.createKey, { token, name }))
    t.is(r.code, 'BAD_REQUEST', `key name ${JSON.stringify(name)}: ${r.err?.message ?? r.code}`)
  }
  t.ok((await outcome(client.call(GatewayProtocol.createKey, { token, name: 'nul\u0000name' }))).err?.message.includes('control characters'), 'the message says why')
  const res = await fetch(mesh.webUrl + '/api/auth/api-keys', {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ name: 'nul\u0000name' })
  })
  t.is(res.status, 400, 'over HTTP it is a 400')
  t.is((await res.json() as { error: { code: string } }).error.code, 'BAD_REQUEST')
  t.is((await outcome(client.call(GatewayProtocol.joinTokens, { token, op: 'create', label: 'lab\u0000el' }))).code, 'BAD_REQUEST', 'join token label')
  t.is((await outcome(client.call(GatewayProtocol.grantCredits, { token, username: 'root', amountUsd: 1, note: 'no\u0000te' }))).code, 'BAD_REQUEST', 'credit note')
  t.is((await outcome(client.call(GatewayProtocol.register, { username: 'nul\u0000user', email: 'nul@example.com', password: 'long enough pw' }))).code, 'BAD_REQUEST', 'username')
  t.is((await client.call(GatewayProtocol.createKey, { token, name: '  plain name  ' })).name, 'plain name', 'an ordinary name still works, trimmed as before')
})

test('register: a taken username and a taken email get the same answer, naming neither', { timeout: 60_000 }, async (t) => {
  if (!env) return t.fail('no mesh')
  const client = await freshClient()
  const taken = await register(client, 'taken')
  const byName = await outcome(client.call(GatewayProtocol.register, { username: 'TAKEN', email: 'fresh@example.com', password: 'long enough pw' }, LONG))
  const byEmail = await outcome(client.call(GatewayProtocol.register, { username: 'fresh', email: taken.email.toUpperCase(), password: 'long enough pw' }, LONG))
  t.is(byName.code, 'CONFLICT')
  t.is(byEmail.code, 'CONFLICT')
  t.is(byName.err!.message, byEmail.err!.message, 'one message for both: ' + byName.err!.message)
  t.absent(/email|username/i.test(byName.err!.message), 'it names no field')
  t.absent(byName.err!.details ?? byEmail.err!.details, 'and carries no details')
})

test('passwords: scrypt at N=2^14, r=8, p=5, and an older hash is replaced at the next good login', { timeout: 60_000 }, async (t) => {
  if (!env) return t.fail('no mesh')
  const { db, root } = env
  const client = await freshClient()
  const { rows } = await db.pool.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [root.id])
  t.ok(rows[0]!.password_hash.startsWith('scrypt$16384$8$5$'), 'new hashes use N=2^14, r=8, p=5')

  const password = 'an old password'
  const salt = crypto.randomBytes(16)
  const old = crypto.scryptSync(password, salt, 32, { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 })
  const legacy = `scrypt$32768$8$1$${salt.toString('base64')}$${old.toString('base64')}`
  const { rows: made } = await db.pool.query<{ id: string }>(
    "INSERT INTO users (username, email, password_hash) VALUES ('legacy', 'legacy@example.com', $1) RETURNING id", [legacy])
  await db.pool.query('INSERT INTO credit_accounts (user_id, balance_nusd) VALUES ($1, 0)', [made[0]!.id])
  const first = await client.call(GatewayProtocol.login, { email: 'legacy@example.com', password }, LONG)
  t.is(first.user.username, 'legacy', 'an account with an N=2^15 hash logs in')
  const { rows: after } = await db.pool.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [made[0]!.id])
  t.ok(after[0]!.password_hash.startsWith('scrypt$16384$8$5$'), 'and its hash now has today\'s parameters')
  t.is((await client.call(GatewayProtocol.login, { email: 'legacy@example.com', password }, LONG)).user.username, 'legacy', 'the new hash verifies')
})

test('auth security: stop the mesh', { timeout: 60_000 }, async () => {
  for (const c of cleanups.sort((a, b) => a.order - b.order)) await c.fn()
})
