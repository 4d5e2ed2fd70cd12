import type RPC from '@hyperswarm/rpc'
import type { Client } from '@hyperswarm/rpc'
import type { KeyPair } from 'hyperdht'
import c from 'compact-encoding'
import { isErrorCode } from '../../shared/errors.ts'
import type { MethodDef } from '../../shared/mesh/method.ts'
import { hostile, jsonSchemaOf, mutate, Rand, sample, type Known } from './mutate.ts'
import { Tally, type SecretScan } from './tally.ts'

// The RPC half of the fuzzer: frames straight through @hyperswarm/rpc, so the payload can be
// anything (the typed client would refuse to encode most of them). Every answer must be our coded
// envelope or one of protomux-rpc's own coded transport errors; anything else is a failure.

export interface RpcTarget {
  service: string
  publicKey: string
  defs: Array<MethodDef<any, any, any>>
}

export interface Identity {
  name: 'stranger' | 'member'
  rpc: RPC
  /** the key pair it dials with: connect() would otherwise use the DHT node's own */
  keyPair: KeyPair
  targets: RpcTarget[]
  /** what the field names mean for this identity (real key, session, model) */
  known: (def: MethodDef<any, any, any>, r: Rand) => Known
}

/** protomux-rpc's own coded failures: the remote refused the frame before a handler saw it */
const TRANSPORT_CODED = new Set(['UNKNOWN_METHOD', 'DECODE_ERROR'])
const DROPPED = new Set(['CHANNEL_CLOSED', 'CHANNEL_DESTROYED'])

export class RpcFuzzer {
  private readonly clients = new Map<string, Client>()
  readonly tally: Tally
  private readonly timeoutMs: number
  private readonly allNames: string[]

  constructor (private readonly ids: Identity[], scan: SecretScan, opts: { timeoutMs: number }) {
    this.tally = new Tally('rpc', scan)
    this.timeoutMs = opts.timeoutMs
    this.allNames = [...new Set(ids.flatMap((id) => id.targets.flatMap((t) => t.defs.map((d) => d.name))))]
  }

  /** One long-lived connection per identity, target and lane; a closed one is dialled again. */
  private client (id: Identity, target: RpcTarget, lane: string): Client {
    const key = `${id.name}/${target.service}/${lane}`
    let cl = this.clients.get(key)
    if (!cl || cl.closed) {
      cl?.destroy()
      cl = id.rpc.connect(Buffer.from(target.publicKey, 'hex'), { keyPair: id.keyPair })
      this.clients.set(key, cl)
    }
    return cl
  }

  /** Send frame number `i` (its own random stream, so a seed replays a run); resolves once it is classified. */
  async frame (i: number, seed: number): Promise<void> {
    const r = new Rand(seed + i * 0x9e3779b1)
    const id = this.ids[i % this.ids.length]!
    const target = r.pick(id.targets)
    const roll = r.next()
    let method: string
    let value: unknown
    let raw = false
    let lane = 'main'
    let label: string
    if (roll < 0.08) {
      // random bytes where a JSON value belongs
      method = r.chance(0.8) ? r.pick(target.defs).name : r.pick(this.allNames)
      value = r.bytes(r.chance(0.9) ? r.int(256) : 4096 + r.int(60_000))
      raw = true
      label = `raw:${method}`
    } else if (roll < 0.16) {
      method = r.pick([r.pick(this.allNames), 'x'.repeat(1 + r.int(300)), '', '__proto__', 'constructor', '_chunk', '_cancel', 'hasOwnProperty', r.bytes(8).toString('latin1')])
      value = r.chance(0.5) ? {} : hostile(r)
      label = 'unknown-or-foreign'
    } else if (roll < 0.161) {
      // oversized: a separate connection, so a remote that drops it does not take other calls with it
      const def = r.pick(target.defs)
      method = def.name
      const depth = 100_000
      // nested past what JSON.stringify can recurse into: encoded by hand
      value = r.chance(0.5) ? { blob: 'B'.repeat(3_000_000 + r.int(2_000_000)) } : c.encode(c.string, '['.repeat(depth) + ']'.repeat(depth))
      raw = Buffer.isBuffer(value)
      lane = 'big'
      label = `oversized:${method}`
    } else if (roll < 0.19) {
      // events expect no answer: fire them and count them
      const name = r.pick(['_chunk', '_cancel', ...target.defs.map((d) => d.name)])
      const payload = r.chance(0.5) ? { id: hostile(r), batch: hostile(r) } : hostile(r)
      try {
        this.client(id, target, lane).event(name, payload)
        this.tally.count('event', `event:${name}`)
      } catch (err) {
        this.tally.count('dropped', `event:${name}`, (err as Error).message)
      }
      return
    } else {
      const def = r.pick(target.defs)
      method = def.name
      const base = sample(jsonSchemaOf(def.request), r, id.known(def, r))
      value = r.chance(0.1) ? base : mutate(base, r)
      if (def.stream && r.chance(0.3) && value && typeof value === 'object' && !Array.isArray(value)) {
        (value as Record<string, unknown>)._sid = r.chance(0.5) ? 1 + r.int(1e6) : hostile(r)
      }
      label = `${target.service}.${method}`
    }
    await this.send(id, target, lane, method, value, raw, `${id.name}->${label}`)
  }

  private async send (id: Identity, target: RpcTarget, lane: string, method: string, value: unknown, raw: boolean, label: string): Promise<void> {
    let res: Buffer
    try {
      const cl = this.client(id, target, lane)
      res = await cl.request(method, value, { requestEncoding: raw ? c.raw : c.json, responseEncoding: c.raw, timeout: this.timeoutMs })
    } catch (err) {
      const code = (err as { code?: string }).code ?? ''
      if (code === 'TIMEOUT_EXCEEDED') this.tally.count('timeout', label)
      else if (TRANSPORT_CODED.has(code)) this.tally.count('coded', label)
      else if (DROPPED.has(code) || (err as Error).message === 'RPC client closed') this.tally.count('dropped', label)
      else this.tally.count('failure', label, `transport error ${code || (err as Error).message}`)
      return
    }
    this.tally.scan(res, label)
    let env: unknown
    try {
      env = c.decode(c.json, res)
    } catch {
      this.tally.count('failure', label, 'response is not JSON')
      return
    }
    const e = env as { ok?: unknown, error?: { code?: unknown, message?: unknown } }
    if (e?.ok === true) this.tally.count('success', label)
    else if (e?.ok === false && isErrorCode(e.error?.code) && typeof e.error?.message === 'string') {
      if (e.error!.code === 'INTERNAL') this.tally.count('failure', label, 'INTERNAL error answered')
      else this.tally.count('coded', label, String(e.error!.code))
    } else this.tally.count('failure', label, 'uncoded response: ' + JSON.stringify(env).slice(0, 200))
  }

  close (): void {
    for (const cl of this.clients.values()) cl.destroy()
    this.clients.clear()
  }
}
