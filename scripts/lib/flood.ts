import crypto from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { bootstrapList } from '../../shared/config.ts'
import { MeshClient } from '../../shared/mesh/client.ts'
import { createDHT } from '../../shared/mesh/dht.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'

// A hostile caller in a process of its own, as an attacker on another machine would be: it sends
// one prompt after another to a gateway, under each API key it is given, until it is told to stop,
// then prints how many it sent. Run in the bench's own process, the attacker's encoding would stall
// the bench's event loop and be counted as the gateway's delay.

export interface Flood { stop (): Promise<number> }

/** Start the flood in a child process; `stop` ends it and resolves to the number of prompts sent. */
export function startFlood (opts: { bootstrap: string, gatewayKey: string, apiKeys: string[], prompt: { repeat: string, times: number }, maxTokens: number }): Promise<Flood> {
  const self = fileURLToPath(import.meta.url)
  const args = self.endsWith('.ts') ? ['--import', 'tsx', self] : [self]
  const child: ChildProcess = spawn(process.execPath, args, {
    env: { ...process.env, FLOOD_ARGS: JSON.stringify(opts) },
    stdio: ['pipe', 'pipe', 'inherit']
  })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  return new Promise((resolve, reject) => {
    const started = () => {
      if (!out.includes('flooding')) return
      child.stdout!.off('data', started)
      resolve({
        stop: () => new Promise<number>((done) => {
          child.once('exit', () => done(Number(/sent (\d+)/.exec(out)?.[1] ?? NaN)))
          child.stdin!.end()
        })
      })
    }
    child.stdout!.on('data', started)
    child.once('exit', (code) => reject(new Error(`the flood exited early (code ${code}): ${out.trim()}`)))
  })
}

async function flood (): Promise<void> {
  const opts = JSON.parse(process.env.FLOOD_ARGS!) as { bootstrap: string, gatewayKey: string, apiKeys: string[], prompt: { repeat: string, times: number }, maxTokens: number }
  const prompt = opts.prompt.repeat.repeat(opts.prompt.times)
  // a peer of its own for each key: a stranger cut off for its made-up keys does not stop the other
  const peers = await Promise.all(opts.apiKeys.map(async (apiKey) => {
    const keyPair = DHT.keyPair(crypto.randomBytes(32))
    const dht = createDHT({ keyPair, bootstrap: bootstrapList(opts.bootstrap), clientOnly: true })
    const rpc = new RPC({ keyPair, dht, valueEncoding: c.json })
    const gateway = new MeshClient(rpc, Buffer.from(opts.gatewayKey, 'hex'), { name: 'gateway' })
    await gateway.waitOpen(15_000)
    return { apiKey, gateway, rpc, dht }
  }))
  let running = true
  let sent = 0
  process.stdin.on('end', () => { running = false })
  process.stdin.resume()
  process.stdout.write('flooding\n')
  await Promise.all(peers.map(async ({ apiKey, gateway }) => {
    while (running) {
      sent++
      // refusals are the point; a peer refused at the handshake waits as a client would before retrying
      await gateway.call(GatewayProtocol.infer, { apiKey, prompt, maxTokens: opts.maxTokens }, 120_000)
        .catch((err) => err?.code === 'UNAVAILABLE' ? new Promise((resolve) => setTimeout(resolve, 100)) : null)
    }
  }))
  process.stdout.write(`sent ${sent}\n`)
  for (const p of peers) {
    await p.gateway.close()
    await p.rpc.destroy({ force: true }).catch(() => {})
    await p.dht.destroy().catch(() => {})
  }
  process.exit(0)
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await flood()
