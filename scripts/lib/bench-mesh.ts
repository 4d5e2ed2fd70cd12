import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { LocalMesh, type LocalMeshOptions } from './localmesh.ts'
import { bootstrapList } from '../../shared/config.ts'
import { MeshClient } from '../../shared/mesh/client.ts'
import { createDHT } from '../../shared/mesh/dht.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'

// One bench section's mesh: real processes in a temp home, and a client peer of the bench's own,
// started for the section and torn down whatever happens to it.

/** limits no bench reaches, so what is measured is the mesh and not a refusal */
const UNLIMITED = { requestsPerHour: 1e8, userRequestsPerHour: 1e8, tokensPerHour: 1e12, tokensPerDay: 1e12 }
export const UNLIMITED_TIERS = JSON.stringify({ default: UNLIMITED, premium: UNLIMITED })

export interface BenchMesh {
  mesh: LocalMesh
  rpc: RPC
  /** the bench's own peer key (hex) */
  self: string
  /** a client of the (first) gateway, open */
  gateway: MeshClient
  /** a client of any other member by its key */
  client (key: string, name: string): MeshClient
}

export interface BenchMeshOptions extends Omit<LocalMeshOptions, 'home'> {
  /** the member kind the bench's peer is named as (`operator`, `metrics`, …); none: a stranger */
  memberAs?: string
}

export async function withBenchMesh<T> (name: string, opts: BenchMeshOptions, run: (b: BenchMesh) => Promise<T>): Promise<T> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), `hyperinfer-bench-${name}-`))
  const keyPair = DHT.keyPair(crypto.randomBytes(32))
  const { memberAs, ...meshOpts } = opts
  const self = keyPair.publicKey.toString('hex')
  const mesh = new LocalMesh({
    databaseUrl: process.env.DATABASE_URL || undefined,
    webPort: 0,
    metricsPort: 0,
    ...meshOpts,
    home,
    extraAllow: [...(opts.extraAllow ?? []), ...(memberAs ? [`${memberAs}=${self}`] : [])]
  })
  let rpc: RPC | null = null
  let dht: DHT | null = null
  try {
    await mesh.start()
    dht = createDHT({ keyPair, bootstrap: bootstrapList(mesh.bootstrapString), clientOnly: true })
    const live = new RPC({ keyPair, dht, valueEncoding: c.json })
    rpc = live
    const client = (key: string, label: string) => new MeshClient(live, Buffer.from(key, 'hex'), { name: label })
    const gateway = client(mesh.gatewayKey, 'gateway')
    await gateway.waitOpen(15_000)
    return await run({ mesh, rpc: live, self, gateway, client })
  } finally {
    // best effort: the section's figures are taken (or its failure thrown) already
    await rpc?.destroy({ force: true }).catch(() => {})
    await dht?.destroy().catch(() => {})
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }
}

/** A fresh account on the gateway, logged in, with one API key. */
export async function benchAccount (gateway: MeshClient, prefix: string): Promise<{ token: string, key: string }> {
  const name = prefix + Date.now() + crypto.randomBytes(2).toString('hex')
  const email = `${name}@example.com`
  await gateway.call(GatewayProtocol.register, { username: name, email, password: 'bench password' }, 30_000)
  const { token } = await gateway.call(GatewayProtocol.login, { email, password: 'bench password' }, 30_000)
  const { key } = await gateway.call(GatewayProtocol.createKey, { token, name: 'bench' })
  return { token, key }
}
