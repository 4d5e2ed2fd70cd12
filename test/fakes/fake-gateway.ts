import crypto from 'node:crypto'
import { MeshService } from '../../shared/mesh/service.ts'
import { handlers, type HandlerContext } from '../../shared/mesh/peer.ts'
import { MeshError } from '../../shared/errors.ts'
import { GatewayProtocol, type InferResult } from '../../shared/protocol/gateway.ts'
import type { TokenChunk } from '../../shared/protocol/inference.ts'
import { keyPairFromSeed } from '../../shared/keys.ts'
import { createLogger } from '../../shared/log.ts'
import type { Bootstrap } from '../../shared/mesh/dht.ts'

// A gateway that speaks the real RPC protocol (the real server, encryption and framing) but whose
// `infer` answers come from a script the test writes: which tokens, when, and how it ends. One API
// key is valid; any other is refused the way the gateway refuses it.

export type InferScript = (req: { model?: string, stream?: boolean }, ctx: HandlerContext<TokenChunk>) => Promise<{ text: string, completionTokens: number }>

export class FakeGateway extends MeshService {
  script: InferScript = async () => ({ text: '', completionTokens: 0 })
  readonly apiKey = 'hi_fake_' + crypto.randomBytes(16).toString('hex')

  constructor (bootstrap: Bootstrap) {
    super({ name: 'gateway', keyPair: keyPairFromSeed(crypto.randomBytes(32)), log: createLogger('fake-gateway', 'silent'), bootstrap })
  }

  protected handlers () {
    return handlers().on(GatewayProtocol.infer, async (req, ctx): Promise<InferResult> => {
      const { text, completionTokens } = await this.script(req, ctx)
      return {
        id: crypto.randomUUID(), model: req.model ?? 'synthetic', worker: 'fake', text: req.stream ? '' : text,
        usage: { promptTokens: 3, completionTokens }, costUsd: 0, finishReason: 'stop', ttftMs: 0, durationMs: 0,
        routing: { strategy: 'named', reason: 'named by the caller', score: null, attempts: 1 }
      }
    }).table
  }

  protected async verifyCredential (_needs: string, value: string): Promise<void> {
    if (value !== this.apiKey) throw MeshError.INVALID_API_KEY()
  }
}
