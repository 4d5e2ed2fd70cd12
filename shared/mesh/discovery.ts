import crypto from 'node:crypto'
import type DHT from 'hyperdht'
import type { KeyPair } from 'hyperdht'
import type { Logger } from '../log.ts'

// Finding gateways by the network key alone. The network key is the registry's key (the identity of
// one mesh); gateways announce themselves on a DHT topic derived from it, and a worker that knows
// only the network key looks the topic up and dials every gateway it finds.

export function networkTopic (networkKey: string): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(networkKey)) throw new Error('the network key is 64 hex characters (hyperinfer registry prints it)')
  return crypto.createHash('sha256').update('hyperinfer/network/v1').update(Buffer.from(networkKey, 'hex')).digest()
}

/** Announce `keyPair` on the topic now and every `everyMs` (DHT records expire). Returns a stop function that unannounces. */
export function announceOn (dht: DHT, topic: Buffer, keyPair: KeyPair, log?: Logger, everyMs = 5 * 60_000): () => Promise<void> {
  let stopped = false
  const once = async () => {
    if (stopped || dht.destroyed) return
    try {
      await dht.announce(topic, keyPair).finished()
    } catch (err) {
      log?.warn({ err: (err as Error).message }, 'announce on the network topic failed; will retry')
    }
  }
  void once()
  const timer = setInterval(() => { void once() }, everyMs)
  timer.unref()
  return async () => {
    stopped = true
    clearInterval(timer)
    if (!dht.destroyed) await dht.unannounce(topic, keyPair).catch((err) => log?.debug({ err: (err as Error).message }, 'unannounce failed; the DHT record expires on its own'))
  }
}

/** The public keys announced on the topic right now (hex, deduplicated). */
export async function lookupTopic (dht: DHT, topic: Buffer): Promise<string[]> {
  const found = new Set<string>()
  const q = dht.lookup(topic)
  for await (const reply of q) for (const p of reply.peers) found.add(p.publicKey.toString('hex'))
  return [...found]
}
