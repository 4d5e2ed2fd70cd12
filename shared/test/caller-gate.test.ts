import test from 'brittle'
import { CallerGate } from '../caller-gate.ts'
import { MeshError } from '../errors.ts'

// The gateway's own hold on logins relayed to auth: attempts in flight per caller, and a caller auth
// has held back is refused at the gateway, without asking auth, until its wait is over.

const refusal = (p: Promise<unknown>) => p.then(() => null, (err: MeshError) => err)

test('caller gate: a caller past its attempts in flight is refused at once; another caller is not', async (t) => {
  const gate = new CallerGate(2, 'too many login attempts from this client')
  let reachedAuth = 0
  let release!: () => void
  const held = new Promise<void>((resolve) => { release = resolve })
  const slow = () => { reachedAuth++; return held }
  const flood = Array.from({ length: 10 }, () => refusal(gate.run('attacker', slow)))
  const other = gate.run('user', async () => 'ok')
  t.is(await other, 'ok', 'another caller goes straight through')
  release()
  const errs = await Promise.all(flood)
  t.is(reachedAuth, 2, 'only two of ten concurrent attempts reached auth')
  t.is(errs.filter((e) => e?.code === 'RATE_LIMITED').length, 8, 'the other eight were refused as RATE_LIMITED')
  t.is(gate.size, 0, 'nothing is remembered once the attempts are over')
})

test('caller gate: once auth holds the whole caller back, the gateway refuses it itself until the wait ends', async (t) => {
  let now = 1_000_000
  const gate = new CallerGate(2, 'too many login attempts from this client', () => now)
  let reachedAuth = 0
  const auth = (scope: string) => async () => {
    reachedAuth++
    throw MeshError.RATE_LIMITED('too many login attempts from this client; retry in 4 s', 4, { scope })
  }
  await refusal(gate.run('attacker', auth('client')))
  const again = await refusal(gate.run('attacker', auth('client')))
  t.is(reachedAuth, 1, 'the second attempt never reached auth')
  t.is(again?.code, 'RATE_LIMITED')
  t.is(again?.details?.retryAfterSeconds, 4, 'and says how long to wait')
  now += 4001
  await refusal(gate.run('attacker', auth('client')))
  t.is(reachedAuth, 2, 'after the wait, auth is asked again')

  // a refusal about one account is not a reason to hold back the caller's other logins
  const other = new CallerGate(2, 'x', () => now)
  let asked = 0
  await refusal(other.run('caller', async () => { asked++; throw MeshError.RATE_LIMITED('account busy', 2, { scope: 'account' }) }))
  await other.run('caller', async () => { asked++ })
  t.is(asked, 2, 'an account-scoped refusal does not hold back the caller')
})
