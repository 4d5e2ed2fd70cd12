import crypto from 'node:crypto'
import { MeshService } from '../../shared/mesh/service.ts'
import { handlers, type HandlerTable, type Peer } from '../../shared/mesh/peer.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { InferenceProtocol } from '../../shared/protocol/inference.ts'
import { chargeFor, signClaim, type WorkerClaim } from '../../shared/receipt.ts'
import { keyPairFromSeed } from '../../shared/keys.ts'
import { createLogger } from '../../shared/log.ts'
import { bootstrapList } from '../../shared/config.ts'
import { workerJoinProof } from '../../shared/worker-proof.ts'

// A worker approved by the network's token that signs a usage receipt for every answer, each model
// its own way: `honest` as a real worker does; the others lie in one respect each. `overcharge`
// states a charge above its tokens × price; `own-price` states a higher price with a matching charge;
// `other-key` signs with a key that is not its own; `other-text` hashes a text it did not send;
// `nul-id` names the request with a NUL character in it, text PostgreSQL cannot store in jsonb.

export const RECEIPT_MODES = ['honest', 'overcharge', 'own-price', 'other-key', 'other-text', 'nul-id'] as const
export type ReceiptMode = typeof RECEIPT_MODES[number]
export const FAKE_TEXT = ['signed ', 'and ', 'sealed']

export class ReceiptWorker extends MeshService {
  gatewayPeer: Peer | null = null
  private readonly stranger = keyPairFromSeed(crypto.randomBytes(32))

  static make (bootstrap: string, gateway: string): ReceiptWorker {
    return new ReceiptWorker({ name: 'receipt-worker', keyPair: keyPairFromSeed(crypto.randomBytes(32)), log: createLogger('receipt-worker', 'silent'), bootstrap: bootstrapList(bootstrap), host: '127.0.0.1', allow: [gateway] })
  }

  protected handlers (): HandlerTable {
    return handlers()
      .on(InferenceProtocol.processPrompt, async (req, ctx) => {
        const mode = req.model as ReceiptMode
        for (const text of FAKE_TEXT) ctx.emit({ text })
        const price = req.price ?? { input: 0, output: 0 }
        const sent = FAKE_TEXT.join('')
        const claim: WorkerClaim = {
          requestId: mode === 'nul-id' ? req.requestId + '\u0000' : req.requestId, model: req.model, tokensIn: 4, tokensOut: FAKE_TEXT.length,
          outputSha256: crypto.createHash('sha256').update(mode === 'other-text' ? sent + ' (and more)' : sent).digest('hex'),
          gatewayKey: ctx.remoteKey, workerKey: this.publicKey, time: new Date().toISOString(),
          priceNusdPerToken: mode === 'own-price' ? { input: price.input * 10 + 1, output: price.output * 10 + 1 } : price,
          chargeNusd: 0
        }
        claim.chargeNusd = chargeFor(claim.priceNusdPerToken, claim.tokensIn, claim.tokensOut) + (mode === 'overcharge' ? 1_000_000 : 0)
        const receipt = signClaim(claim, mode === 'other-key' ? this.stranger.secretKey : this.keyPair.secretKey)
        return { model: req.model, backend: 'receipts', usage: { promptTokens: 4, completionTokens: FAKE_TEXT.length }, finishReason: 'stop' as const, ttftMs: 1, receipt }
      })
      .table
  }

  join (gateway: string, token: string): void {
    const models = RECEIPT_MODES.map((id) => ({ id, backend: 'receipts' }))
    this.connectTo(gateway, {
      name: 'gateway',
      handlers: this.handlers(),
      onOpen: (peer) => peer.call(GatewayProtocol.registerWorker, { proof: workerJoinProof(token, this.publicKey, gateway), models, capacity: 4 }, { timeout: 10_000 }).then(() => { this.gatewayPeer = peer })
    })
  }
}
