import { GatewayConnection } from '../../shared/sdk/rpc-transport.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'

// A separate RPC client process for tests that kill a caller outright: it starts one streamed
// request and prints `frame` for each frame it gets. Arguments: gateway key, bootstrap, API key.

const [gateway, bootstrap, apiKey] = process.argv.slice(2) as [string, string, string]
const conn = new GatewayConnection({ gateway, bootstrap, connectTimeoutMs: 15_000 })
const client = await conn.open()
await client.stream(GatewayProtocol.infer, { apiKey, model: 'synthetic', prompt: 'a caller that will vanish', maxTokens: 400, stream: true }, {
  idleTimeout: 60_000,
  onChunk () { process.stdout.write('frame\n') }
}).catch((err: unknown) => { process.stdout.write('error ' + (err as Error).message + '\n') })
await conn.close()
