import createTestnet, { type Testnet } from 'hyperdht/testnet.js'

// A local DHT on 127.0.0.1 for tests; never the public DHT.

export async function localTestnet (size = 3): Promise<{ testnet: Testnet, bootstrap: Array<{ host: string, port: number }>, bootstrapString: string }> {
  const testnet = await createTestnet(size, { host: '127.0.0.1' })
  const bootstrap = testnet.bootstrap.map((b) => ({ host: b.host, port: b.port }))
  return { testnet, bootstrap, bootstrapString: bootstrap.map((b) => `${b.host}:${b.port}`).join(',') }
}
