import test from 'brittle'
import { z } from 'zod'
import { localTestnet } from '../../test/support/testnet.ts'
import { MeshService } from '../mesh/service.ts'
import { handlers, type HandlerTable } from '../mesh/peer.ts'
import { method, streamMethod } from '../mesh/method.ts'
import { MeshError } from '../errors.ts'
import { keyPairFromSeed } from '../keys.ts'
import { createLogger } from '../log.ts'
import crypto from 'node:crypto'

const Echo = {
  echo: method<{ text: string }, { text: string, caller: string }>('echo', { from: ['stranger'] }, z.object({ text: z.string().max(10) }).strict()),
  secret: method<Record<string, never>, { ok: true }>('secret', { from: ['operator'] }, z.object({}).strict()),
  boom: method<Record<string, never>, never>('boom', { from: ['stranger'] }, z.object({}).strict()),
  slow: method<{ ms: number }, { done: true }>('slow', { from: ['stranger'] }, z.object({ ms: z.number() }).strict()),
  count: streamMethod<{ n: number, delay: number }, { sent: number, cancelled: boolean }, { i: number }>('count', { from: ['stranger'] }, z.object({ n: z.number().int(), delay: z.number() }).strict())
}

class EchoService extends MeshService {
  cancelled = 0
  protected handlers (): HandlerTable {
    return handlers()
      .on(Echo.echo, (req, ctx) => ({ text: req.text, caller: ctx.remoteKey }))
      .on(Echo.secret, () => ({ ok: true as const }))
      .on(Echo.boom, () => { throw new Error('database password=hunter2 leaked?') })
      .on(Echo.slow, async (req) => { await new Promise((r) => setTimeout(r, req.ms)); return { done: true as const } })
      .on(Echo.count, async (req, ctx) => {
        let sent = 0
        for (let i = 0; i < req.n; i++) {
          if (ctx.signal.aborted) { this.cancelled++; return { sent, cancelled: true } }
          ctx.emit({ i })
          sent++
          await new Promise((r) => setTimeout(r, req.delay))
        }
        return { sent, cancelled: false }
      })
      .table
  }
}

class ClientService extends MeshService {
  protected handlers (): HandlerTable { return new Map() }
}

const kp = () => keyPairFromSeed(crypto.randomBytes(32))
const log = createLogger('test', 'silent')

async function setup (t: any) {
  const { testnet, bootstrap } = await localTestnet(3)
  const clientKp = kp()
  const server = new EchoService({ name: 'echo', keyPair: kp(), log, bootstrap, allow: [] })
  await server.open()
  const client = new ClientService({ name: 'client', keyPair: clientKp, log, bootstrap })
  await client.open()
  t.teardown(async () => { await client.close(); await server.close(); await testnet.destroy() })
  const conn = client.connectTo(server.publicKey, { name: 'echo' })
  return { server, client, conn, clientKp }
}

test('mesh: calls carry the caller identity, coded errors cross the wire', async (t) => {
  const { conn, clientKp } = await setup(t)
  const res = await conn.call(Echo.echo, { text: 'hi' })
  t.is(res.text, 'hi')
  t.is(res.caller, clientKp.publicKey.toString('hex'), 'server sees the caller public key')

  const bad = await conn.call(Echo.echo, { text: 'far too long for this' }).catch((e) => e)
  t.ok(bad instanceof MeshError)
  t.is(bad.code, 'BAD_REQUEST')

  const wrongType = await conn.call(Echo.echo, { text: 42 } as any).catch((e) => e)
  t.is(wrongType.code, 'BAD_REQUEST')

  const forbidden = await conn.call(Echo.secret, {}).catch((e) => e)
  t.is(forbidden.code, 'FORBIDDEN', 'internal method refused to a non-member')

  const internal = await conn.call(Echo.boom, {}).catch((e) => e)
  t.is(internal.code, 'INTERNAL')
  t.absent(String(internal.message).includes('hunter2'), 'unknown errors never leak their text')

  const timeout = await conn.call(Echo.slow, { ms: 2000 }, 200).catch((e) => e)
  t.is(timeout.code, 'TIMEOUT')
})

test('mesh: streams arrive in order, cancel reaches the server', async (t) => {
  const { server, conn } = await setup(t)
  const seen: number[] = []
  const res = await conn.stream(Echo.count, { n: 20, delay: 0 }, { onChunk: (c) => seen.push(c.i), idleTimeout: 5000 })
  t.alike(seen, Array.from({ length: 20 }, (_, i) => i), 'every frame, in order, before the result')
  t.alike(res, { sent: 20, cancelled: false })

  const ac = new AbortController()
  const got: number[] = []
  const p = conn.stream(Echo.count, { n: 1000, delay: 10 }, {
    onChunk: (c) => { got.push(c.i); if (got.length === 5) ac.abort() },
    signal: ac.signal,
    idleTimeout: 5000
  })
  const err = await p.catch((e) => e)
  t.is(err.code, 'CANCELLED')
  await new Promise((r) => setTimeout(r, 300))
  t.is(server.cancelled, 1, 'server handler observed the cancellation')
})

test('mesh: a client reconnects after the server restarts', async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  const serverKp = kp()
  let server = new EchoService({ name: 'echo', keyPair: serverKp, log, bootstrap })
  await server.open()
  const client = new ClientService({ name: 'client', keyPair: kp(), log, bootstrap })
  await client.open()
  const conn = client.connectTo(server.publicKey, { name: 'echo', maxBackoff: 500 })
  t.teardown(async () => { await client.close(); await server.close(); await testnet.destroy() })
  t.is((await conn.call(Echo.echo, { text: 'a' })).text, 'a')
  await server.close()
  server = new EchoService({ name: 'echo', keyPair: serverKp, log, bootstrap })
  await server.open()
  const res = await conn.call(Echo.echo, { text: 'b' }, 15_000)
  t.is(res.text, 'b', 'same key, new process: the long-lived client found it again')
})
