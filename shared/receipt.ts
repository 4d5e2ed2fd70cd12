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
//
// Signatures are made for batches: a worker signs the receipts of the requests it finished in the
// same moment with one signature, and a gateway countersigns the bills it records together with one.
// The signature is then over the root of a Merkle tree (BLAKE2b-256, leaves and inner nodes hashed
// apart) whose leaves are those encodings, and each receipt carries its `batch.path`: the sibling
// hashes from its own leaf up to that root. A batch of one has an empty path. Version 1 receipts,
// signed one by one (no `batch`), still verify.

export const RECEIPT_VERSION = 2
const WORKER_TAG = 'hyperinfer usage receipt/worker'
const GATEWAY_TAG = 'hyperinfer usage receipt/gateway'
const WORKER_BATCH_TAG = 'hyperinfer usage receipt/worker batch'
const GATEWAY_BATCH_TAG = 'hyperinfer usage receipt/gateway batch'

const key = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters')
const signature = z.string().regex(/^[0-9a-f]{128}$/, 'must be 128 lowercase hex characters')
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
/** a time as the receipt carries it: ISO 8601 UTC with milliseconds, exactly as Date prints it (one spelling per instant) */
const time = z.string().max(30).refine((s) => { const ms = Date.parse(s); return Number.isFinite(ms) && ms >= 0 && new Date(ms).toISOString() === s }, 'must be an ISO 8601 UTC time such as 2025-01-31T12:00:00.000Z')

const digest = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters')
/** the way from a receipt's leaf to the root its batch signature covers: each sibling, on its side */
export const batchProof = z.object({ path: z.array(z.union([z.object({ left: digest }).strict(), z.object({ right: digest }).strict()])).max(32) }).strict()
export type BatchProof = z.infer<typeof batchProof>

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
export const workerReceipt = workerClaim.extend({ signature, batch: batchProof.optional() }).strict()
export type WorkerReceipt = z.infer<typeof workerReceipt>

/** What the gateway billed, countersigned over the worker's receipt (signature included). */
export const gatewayBill = z.object({ tokensIn: count, tokensOut: count, chargeNusd: count, time, signature, batch: batchProof.optional() }).strict()
export type GatewayBill = z.infer<typeof gatewayBill>

/** The document a user gets: countersigned, or (refused at settlement) the worker's receipt and why it was refused. */
export const usageReceipt = z.object({
  version: z.union([z.literal(1), z.literal(RECEIPT_VERSION)]),
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

/** the version inside a claim's encoding: unchanged since version 1 receipts, whose signatures cover it */
const CLAIM_ENCODING = 1

/** The bytes of a claim (a worker's leaf, or what a version 1 worker signed): its fields in a fixed order, behind the tag and version. */
export function encodeClaim (w: WorkerClaim): Buffer {
  return encodeFields([
    [c.string, WORKER_TAG], [c.uint, CLAIM_ENCODING], [c.string, w.requestId], [c.string, w.model], [c.uint, w.tokensIn], [c.uint, w.tokensOut],
    [c.fixed32, hex(w.outputSha256)], [c.fixed32, hex(w.gatewayKey)], [c.fixed32, hex(w.workerKey)], [c.uint, Date.parse(w.time)],
    [c.uint, w.priceNusdPerToken.input], [c.uint, w.priceNusdPerToken.output], [c.uint, w.chargeNusd]
  ])
}

/** the claim bytes of a receipt just checked, for its countersignature (encoding them costs as much as hashing them) */
const checkedClaims = new WeakMap<WorkerReceipt, Buffer>()

function claimBytes (w: WorkerReceipt): Buffer {
  return checkedClaims.get(w) ?? encodeClaim(claimOf(w))
}

/** What a bill states, without its signature and proof. */
export type Bill = Omit<GatewayBill, 'signature' | 'batch'>

/** The bytes a gateway signs: the worker's claim, signature and proof, then what it billed. */
export function encodeBill (w: WorkerReceipt, b: Bill, version: number = RECEIPT_VERSION): Buffer {
  return encodeFields([
    [c.string, GATEWAY_TAG], [c.uint, version], [c.buffer, claimBytes(w)], [c.fixed64, hex(w.signature)],
    ...(version >= 2 ? [[c.buffer, encodeProof(w.batch)] as Field] : []),
    [c.uint, b.tokensIn], [c.uint, b.tokensOut], [c.uint, b.chargeNusd], [c.uint, Date.parse(b.time)]
  ])
}

/** a proof as bytes: its steps in order, each a side (0 left, 1 right) and a hash */
function encodeProof (p: BatchProof | undefined): Buffer {
  const steps = p?.path ?? []
  const fields: Field[] = [[c.uint, steps.length]]
  for (const s of steps) fields.push([c.uint, 'left' in s ? 0 : 1], [c.fixed32, hex('left' in s ? s.left : s.right)])
  return encodeFields(fields)
}

function claimOf (w: WorkerReceipt): WorkerClaim {
  const { signature: _, batch: _b, ...claim } = w
  return claim
}

const LEAF = Buffer.from([0])
const NODE = Buffer.from([1])
const leafHash = (bytes: Buffer): Buffer => hcrypto.hash([LEAF, bytes])
const nodeHash = (left: Buffer, right: Buffer): Buffer => hcrypto.hash([NODE, left, right])

/** A Merkle tree over `leaves` (already hashed): its root, and each leaf's path to it. An odd node out goes up a level as it is. */
function merkle (leaves: Buffer[]): { root: Buffer, paths: BatchProof['path'][] } {
  const paths: BatchProof['path'][] = leaves.map(() => [])
  let level = leaves.map((h, i) => ({ h, under: [i] }))
  while (level.length > 1) {
    const up: typeof level = []
    for (let j = 0; j < level.length; j += 2) {
      const a = level[j]!
      const b = level[j + 1]
      if (!b) { up.push(a); continue }
      const ah = a.h.toString('hex')
      const bh = b.h.toString('hex')
      for (const i of a.under) paths[i]!.push({ right: bh })
      for (const i of b.under) paths[i]!.push({ left: ah })
      up.push({ h: nodeHash(a.h, b.h), under: a.under.concat(b.under) })
    }
    level = up
  }
  return { root: level[0]!.h, paths }
}

/** the root a leaf and its proof lead to */
function rootOf (leaf: Buffer, p: BatchProof): Buffer {
  let h = leaf
  for (const s of p.path) h = 'left' in s ? nodeHash(hex(s.left), h) : nodeHash(h, hex(s.right))
  return h
}

const encodeRoot = (tag: string, root: Buffer) => encodeFields([[c.string, tag], [c.uint, RECEIPT_VERSION], [c.fixed32, root]])

/** Sign many claims with one signature over their tree's root; each receipt carries its proof. */
export function signClaims (claims: WorkerClaim[], secretKey: Buffer): WorkerReceipt[] {
  if (claims.length === 0) return []
  const { root, paths } = merkle(claims.map((claim) => leafHash(encodeClaim(claim))))
  const signature = hcrypto.sign(encodeRoot(WORKER_BATCH_TAG, root), secretKey).toString('hex')
  return claims.map((claim, i) => ({ ...claim, signature, batch: { path: paths[i]! } }))
}

/** One claim signed alone (a batch of one). */
export function signClaim (claim: WorkerClaim, secretKey: Buffer): WorkerReceipt {
  return signClaims([claim], secretKey)[0]!
}

/**
 * Batch signatures a gateway has verified, by signer, signature and root: the receipts of one batch
 * reach it together, and the signature over their root is checked once for all of them. Offline
 * checks (verifyReceipt) do not use it.
 */
const verifiedRoots = new Map<string, true>()
const VERIFIED_ROOTS_KEPT = 1024

function batchSignatureValid (tag: string, root: Buffer, signature: string, publicKey: string, remember = false): boolean {
  const id = publicKey + signature + root.toString('hex')
  if (remember && verifiedRoots.has(id)) return true
  if (!hcrypto.verify(encodeRoot(tag, root), hex(signature), hex(publicKey))) return false
  if (!remember) return true
  if (verifiedRoots.size >= VERIFIED_ROOTS_KEPT) verifiedRoots.delete(verifiedRoots.keys().next().value!)
  verifiedRoots.set(id, true)
  return true
}

/** The worker's signature over its receipt; `remember`: a batch signature checked once is not checked again (the gateway). */
export function workerSignatureValid (w: WorkerReceipt, remember = false): boolean {
  const claim = encodeClaim(claimOf(w))
  const ok = w.batch
    ? batchSignatureValid(WORKER_BATCH_TAG, rootOf(leafHash(claim), w.batch), w.signature, w.workerKey, remember)
    : hcrypto.verify(claim, hex(w.signature), hex(w.workerKey))
  if (ok) checkedClaims.set(w, claim)
  return ok
}

/** Countersign many bills with one signature over their tree's root. */
export function countersignAll (bills: Array<{ worker: WorkerReceipt, bill: Bill }>, secretKey: Buffer): UsageReceipt[] {
  if (bills.length === 0) return []
  const { root, paths } = merkle(bills.map((b) => leafHash(encodeBill(b.worker, b.bill))))
  const signature = hcrypto.sign(encodeRoot(GATEWAY_BATCH_TAG, root), secretKey).toString('hex')
  return bills.map((b, i) => ({ version: RECEIPT_VERSION, worker: b.worker, gateway: { ...b.bill, signature, batch: { path: paths[i]! } } }))
}

/** The gateway's countersignature of a receipt, as its version made it. */
function gatewaySignatureValid (r: UsageReceipt, g: GatewayBill): boolean {
  const { signature: sig, batch, ...bill } = g
  const w = r.worker
  if (batch) return batchSignatureValid(GATEWAY_BATCH_TAG, rootOf(leafHash(encodeBill(w, bill, r.version)), batch), sig, w.gatewayKey)
  return hcrypto.verify(encodeBill(w, bill, r.version), hex(sig), hex(w.gatewayKey))
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
    const { signature: _, batch: _b, ...bill } = r.gateway
    add('gateway countersignature', gatewaySignatureValid(r, r.gateway), `by gateway ${w.gatewayKey}`)
    const billed = chargeFor(w.priceNusdPerToken, bill.tokensIn, bill.tokensOut)
    add('gateway bill', billed === bill.chargeNusd, `${bill.tokensIn} in, ${bill.tokensOut} out at the same price = ${billed} nUSD; billed ${bill.chargeNusd}`)
  }
  return { ok: checks.every((x) => x.ok), checks, receipt: r }
}
