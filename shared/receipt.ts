import c, { type Encoding, type State } from 'compact-encoding'
import hcrypto from 'hypercore-crypto'
import { z } from 'zod'
import { modelName } from './registry/schema.ts'

// A signed usage receipt. The worker that served a request signs what it did (the request, model,
// tokens in and out, a SHA-256 of the text it sent, both peers' keys, the time, the price it was
// told and the charge that makes); the gateway checks that and countersigns what it billed. Each
// signature (Ed25519) is over a canonical binary encoding of its fields (compact-encoding, in a fixed
// order, behind a domain tag and a version), rebuilt from the receipt's JSON when it is checked, so
// anyone holding the JSON can check both signatures offline: no database, no mesh. Changing any
// field, even one token, breaks the signature over it.

export const RECEIPT_VERSION = 1
const WORKER_TAG = 'hyperinfer usage receipt/worker'
const GATEWAY_TAG = 'hyperinfer usage receipt/gateway'

const key = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters')
const signature = z.string().regex(/^[0-9a-f]{128}$/, 'must be 128 lowercase hex characters')
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
/** a time as the receipt carries it: ISO 8601 UTC with milliseconds, exactly as Date prints it (one spelling per instant) */
const time = z.string().max(30).refine((s) => { const ms = Date.parse(s); return Number.isFinite(ms) && ms >= 0 && new Date(ms).toISOString() === s }, 'must be an ISO 8601 UTC time such as 2025-01-31T12:00:00.000Z')

/** A price as a worker is told it: nano-USD per token (USD per 1M tokens × 1000). */
export const tokenPrice = z.object({ input: count, output: count }).strict()
export type TokenPrice = z.infer<typeof tokenPrice>

/** What the worker states and signs. */
export const workerClaim = z.object({
  /** printable ASCII (request ids are UUIDs): PostgreSQL's jsonb, where receipts are kept, takes no NUL or lone surrogate */
  requestId: z.string().min(1).max(100).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII'),
  model: modelName,
  tokensIn: count,
  tokensOut: count,
  /** SHA-256 (hex) of the UTF-8 text the worker sent, every frame's text in order */
  outputSha256: key,
  gatewayKey: key,
  workerKey: key,
  time,
  priceNusdPerToken: tokenPrice,
  chargeNusd: count
}).strict()
export type WorkerClaim = z.infer<typeof workerClaim>
export const workerReceipt = workerClaim.extend({ signature }).strict()
export type WorkerReceipt = z.infer<typeof workerReceipt>

/** What the gateway billed, countersigned over the worker's receipt (signature included). */
export const gatewayBill = z.object({ tokensIn: count, tokensOut: count, chargeNusd: count, time, signature }).strict()
export type GatewayBill = z.infer<typeof gatewayBill>

/** The document a user gets: countersigned, or (refused at settlement) the worker's receipt and why it was refused. */
export const usageReceipt = z.object({
  version: z.literal(RECEIPT_VERSION),
  worker: workerReceipt,
  gateway: gatewayBill.optional(),
  disputed: z.string().max(500).optional()
}).strict()
export type UsageReceipt = z.infer<typeof usageReceipt>

/** nano-USD for tokens at a price: what a claim's and a bill's charge must be. */
export function chargeFor (price: TokenPrice, tokensIn: number, tokensOut: number): number {
  return tokensIn * price.input + tokensOut * price.output
}

type Field = [Encoding<any>, unknown]

function encodeFields (fields: Field[]): Buffer {
  const state: State = c.state()
  for (const [enc, v] of fields) enc.preencode(state, v)
  state.buffer = Buffer.allocUnsafe(state.end)
  for (const [enc, v] of fields) enc.encode(state, v)
  return state.buffer
}

const hex = (s: string) => Buffer.from(s, 'hex')

/** The bytes a worker signs: its claim's fields in a fixed order, behind the tag and version. */
export function encodeClaim (w: WorkerClaim): Buffer {
  return encodeFields([
    [c.string, WORKER_TAG], [c.uint, RECEIPT_VERSION], [c.string, w.requestId], [c.string, w.model], [c.uint, w.tokensIn], [c.uint, w.tokensOut],
    [c.fixed32, hex(w.outputSha256)], [c.fixed32, hex(w.gatewayKey)], [c.fixed32, hex(w.workerKey)], [c.uint, Date.parse(w.time)],
    [c.uint, w.priceNusdPerToken.input], [c.uint, w.priceNusdPerToken.output], [c.uint, w.chargeNusd]
  ])
}

/** the claim bytes of a receipt just checked, for its countersignature (encoding them costs as much as hashing them) */
const checkedClaims = new WeakMap<WorkerReceipt, Buffer>()

function claimBytes (w: WorkerReceipt): Buffer {
  return checkedClaims.get(w) ?? encodeClaim(claimOf(w))
}

/** The bytes a gateway signs: the worker's claim and signature, then what it billed. */
export function encodeBill (w: WorkerReceipt, b: Omit<GatewayBill, 'signature'>): Buffer {
  return encodeFields([
    [c.string, GATEWAY_TAG], [c.uint, RECEIPT_VERSION], [c.buffer, claimBytes(w)], [c.fixed64, hex(w.signature)],
    [c.uint, b.tokensIn], [c.uint, b.tokensOut], [c.uint, b.chargeNusd], [c.uint, Date.parse(b.time)]
  ])
}

function claimOf (w: WorkerReceipt): WorkerClaim {
  const { signature: _, ...claim } = w
  return claim
}

export function signClaim (claim: WorkerClaim, secretKey: Buffer): WorkerReceipt {
  return { ...claim, signature: hcrypto.sign(encodeClaim(claim), secretKey).toString('hex') }
}

export function workerSignatureValid (w: WorkerReceipt): boolean {
  const claim = encodeClaim(claimOf(w))
  const ok = hcrypto.verify(claim, hex(w.signature), hex(w.workerKey))
  if (ok) checkedClaims.set(w, claim)
  return ok
}

export function countersign (w: WorkerReceipt, bill: Omit<GatewayBill, 'signature'>, secretKey: Buffer): UsageReceipt {
  return { version: RECEIPT_VERSION, worker: w, gateway: { ...bill, signature: hcrypto.sign(encodeBill(w, bill), secretKey).toString('hex') } }
}

export interface ReceiptCheck { name: string, ok: boolean, detail: string }

/**
 * Check a receipt with nothing but itself: its shape, the worker's signature, that the worker's
 * charge is its tokens × its price, the gateway's countersignature, and that the bill is the billed
 * tokens at the same price. `gateway`/`worker`: keys the signers must have (else any key is shown).
 */
export function verifyReceipt (doc: unknown, expect: { gateway?: string, worker?: string } = {}): { ok: boolean, checks: ReceiptCheck[], receipt: UsageReceipt | null } {
  const parsed = usageReceipt.safeParse(doc)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    return { ok: false, receipt: null, checks: [{ name: 'format', ok: false, detail: `not a version ${RECEIPT_VERSION} receipt: ${issue?.path.join('.') || 'document'}: ${issue?.message ?? 'invalid'}` }] }
  }
  const r = parsed.data
  const w = r.worker
  const checks: ReceiptCheck[] = [{ name: 'format', ok: true, detail: `version ${r.version} receipt for request ${w.requestId} (${w.model})` }]
  const add = (name: string, ok: boolean, detail: string) => { checks.push({ name, ok, detail }) }
  add('worker signature', workerSignatureValid(w), `by worker ${w.workerKey}`)
  if (expect.worker) add('worker key', expect.worker.toLowerCase() === w.workerKey, `expected ${expect.worker.toLowerCase()}`)
  const claimed = chargeFor(w.priceNusdPerToken, w.tokensIn, w.tokensOut)
  add('worker charge', claimed === w.chargeNusd, `${w.tokensIn} in × ${w.priceNusdPerToken.input} + ${w.tokensOut} out × ${w.priceNusdPerToken.output} nUSD = ${claimed} nUSD; the worker says ${w.chargeNusd}`)
  if (expect.gateway) add('gateway key', expect.gateway.toLowerCase() === w.gatewayKey, `expected ${expect.gateway.toLowerCase()}`)
  if (!r.gateway) {
    add('gateway countersignature', false, r.disputed ? `refused at settlement: ${r.disputed}` : 'missing')
  } else {
    const { signature: sig, ...bill } = r.gateway
    add('gateway countersignature', hcrypto.verify(encodeBill(w, bill), hex(sig), hex(w.gatewayKey)), `by gateway ${w.gatewayKey}`)
    const billed = chargeFor(w.priceNusdPerToken, bill.tokensIn, bill.tokensOut)
    add('gateway bill', billed === bill.chargeNusd, `${bill.tokensIn} in, ${bill.tokensOut} out at the same price = ${billed} nUSD; billed ${bill.chargeNusd}`)
  }
  return { ok: checks.every((x) => x.ok), checks, receipt: r }
}
