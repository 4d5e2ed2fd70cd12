import test from 'brittle'
import { PeerStrikes } from '../mesh/strikes.ts'

// Strangers presenting bad credentials: refused once over the limit, let in again after the ban,
// members never counted, and the memory kept per peer bounded whatever the number of keys.

const limits = { max: 3, windowMs: 60_000, banMs: 10_000 }

test('strikes: a peer over the limit within the window is refused until the ban ends', (t) => {
  let now = 1_000_000
  const s = new PeerStrikes(limits, () => false, undefined, () => now)
  t.is(s.strike('a'), false)
  t.is(s.strike('a'), false)
  t.is(s.banned('a'), false, 'two failures: still in')
  t.is(s.strike('a'), true, 'the third failure bans')
  t.is(s.banned('a'), true)
  t.is(s.banned('b'), false, 'another peer is not affected')
  now += limits.banMs
  t.is(s.banned('a'), false, 'the ban ends')
  t.is(s.strike('a'), false, 'and the count starts again')
})

test('strikes: failures spread over more than the window do not add up', (t) => {
  let now = 0
  const s = new PeerStrikes(limits, () => false, undefined, () => now)
  for (let i = 0; i < 10; i++) {
    t.is(s.strike('slow'), false)
    now += 31_000 // two per window at most
  }
  t.is(s.banned('slow'), false)
})

test('strikes: mesh members are never counted', (t) => {
  const s = new PeerStrikes(limits, (k) => k === 'web')
  for (let i = 0; i < 10; i++) s.strike('web')
  t.is(s.banned('web'), false)
  t.is(s.size, 0)
})

test('strikes: a flood of fresh keys keeps the map bounded', (t) => {
  const s = new PeerStrikes(limits, () => false)
  for (let i = 0; i < 60_000; i++) s.strike('k' + i)
  t.ok(s.size <= 50_000, `${s.size} peers remembered`)
})
