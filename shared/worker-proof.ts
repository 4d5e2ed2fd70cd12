import crypto from 'node:crypto'
import { z } from 'zod'

// How a worker shows it holds a token without sending it: an HMAC over both public keys, keyed by
// the token's SHA-256 (which is all a gateway stores). A proof made for one worker key and one
// gateway key is worth nothing from another worker or at another gateway, and a peer that records
// it learns nothing it could present elsewhere.

const CONTEXT = Buffer.from('hyperinfer/worker-join/v1')
/** join tokens start with this; the first JOIN_TOKEN_ID_LENGTH characters are their stored prefix */
export const JOIN_TOKEN_PREFIX = 'hij_'
export const JOIN_TOKEN_ID_LENGTH = 10
/** the tokenId of the network's shared worker token */
export const NETWORK_TOKEN_ID = 'network'

export const workerProof = z.object({
  /** which token: 'network', or a join token's prefix */
  tokenId: z.union([z.literal(NETWORK_TOKEN_ID), z.string().length(JOIN_TOKEN_ID_LENGTH).regex(/^hij_[A-Za-z0-9_-]+$/)]),
  /** HMAC-SHA256 as 64 hex characters */
  mac: z.string().regex(/^[0-9a-f]{64}$/)
}).strict()

export type WorkerProof = z.infer<typeof workerProof>

export function tokenDigest (token: string): Buffer {
  return crypto.createHash('sha256').update(token).digest()
}

/** the MAC for (worker, gateway), keyed by a token's SHA-256 */
export function proofMac (digest: Buffer, workerKey: string, gatewayKey: string): Buffer {
  return crypto.createHmac('sha256', digest)
    .update(CONTEXT)
    .update(Buffer.from(workerKey, 'hex'))
    .update(Buffer.from(gatewayKey, 'hex'))
    .digest()
}

/** What a worker holding `token` sends to the gateway `gatewayKey`. */
export function workerJoinProof (token: string, workerKey: string, gatewayKey: string): WorkerProof {
  const tokenId = token.startsWith(JOIN_TOKEN_PREFIX) ? token.slice(0, JOIN_TOKEN_ID_LENGTH) : NETWORK_TOKEN_ID
  return { tokenId, mac: proofMac(tokenDigest(token), workerKey, gatewayKey).toString('hex') }
}

/** Does `proof` match a token with this digest, for this worker at this gateway? Constant-time. */
export function proofMatches (proof: WorkerProof, digest: Buffer, workerKey: string, gatewayKey: string): boolean {
  const expected = proofMac(digest, workerKey, gatewayKey)
  const given = Buffer.from(proof.mac, 'hex')
  return given.length === expected.length && crypto.timingSafeEqual(given, expected)
}
