import test from 'brittle'
import crypto from 'node:crypto'
import hcrypto from 'hypercore-crypto'
import { keyPairFromSeed } from '../keys.ts'
import { chargeFor, countersignAll, encodeBill, encodeClaim, signClaims, verifyReceipt, workerSignatureValid, type UsageReceipt, type WorkerClaim } from '../receipt.ts'
import { ReceiptDesk } from '../../services/gateway/receipts.ts'

// Receipts signed in batches: one worker signature covers the receipts of the requests that ended
// together, one gateway countersignature the bills recorded together (a Merkle root each). Every
// receipt of a batch still verifies alone and offline, a proof or claim altered anywhere fails, a
// proof moved to another receipt fails, and receipts signed one by one (version 1) still verify.

const worker = keyPairFromSeed(crypto.randomBytes(32))
const gateway = keyPairFromSeed(crypto.randomBytes(32))
const price = { input: 1000, output: 2000 }
const claim = (i: number): WorkerClaim => ({
  requestId: crypto.randomUUID(), model: 'synthetic', tokensIn: 10 + i, tokensOut: 20, outputSha256: crypto.createHash('sha256').update('text ' + i).digest('hex'),
  gatewayKey: gateway.publicKey.toString('hex'), workerKey: worker.publicKey.toString('hex'), time: new Date().toISOString(), priceNusdPerToken: price, chargeNusd: chargeFor(price, 10 + i, 20)
})
const bill = (c: WorkerClaim) => ({ tokensIn: c.tokensIn, tokensOut: c.tokensOut, chargeNusd: c.chargeNusd, time: new Date().toISOString() })
const json = <T> (v: T): T => JSON.parse(JSON.stringify(v))

test('receipt batches: each receipt of a batch verifies alone; altered or moved proofs fail', (t) => {
  for (const size of [1, 2, 5, 16]) {
    const claims = Array.from({ length: size }, (_, i) => claim(i))
    const signed = signClaims(claims, worker.secretKey)
    t.is(new Set(signed.map((r) => r.signature)).size, 1, `a batch of ${size}: one worker signature`)
    const docs = countersignAll(signed.map((w) => ({ worker: w, bill: bill(w) })), gateway.secretKey)
    t.is(new Set(docs.map((d) => d.gateway!.signature)).size, 1, 'and one countersignature')
    const results = docs.map((d) => verifyReceipt(json(d), { gateway: gateway.publicKey.toString('hex'), worker: worker.publicKey.toString('hex') }))
    const bad = results.find((r) => !r.ok)
    t.ok(!bad, 'every receipt verifies offline on its own' + (bad ? ': ' + JSON.stringify(bad.checks.filter((c) => !c.ok)) : ''))
    t.is(Math.max(...docs.map((d) => d.worker.batch!.path.length)), Math.ceil(Math.log2(size)), 'its proof has a step per level of the tree')
  }
  const docs = countersignAll(signClaims([0, 1, 2, 3, 4].map(claim), worker.secretKey).map((w) => ({ worker: w, bill: bill(w) })), gateway.secretKey)
  const failed = (doc: UsageReceipt) => verifyReceipt(json(doc)).checks.filter((c) => !c.ok).map((c) => c.name)

  const flipped = json(docs[2]!)
  const step = flipped.worker.batch!.path[0]!
  if ('left' in step) step.left = (step.left[0] === '0' ? '1' : '0') + step.left.slice(1)
  else step.right = (step.right[0] === '0' ? '1' : '0') + step.right.slice(1)
  t.alike(failed(flipped), ['worker signature', 'gateway countersignature'], 'a sibling hash altered: both signatures fail')

  const swapped = json(docs[2]!)
  swapped.worker.batch = json(docs[3]!.worker.batch!)
  t.ok(failed(swapped).includes('worker signature'), 'another receipt\'s proof: the worker signature fails')

  const sideways = json(docs[2]!)
  sideways.worker.batch!.path = sideways.worker.batch!.path.map((s) => 'left' in s ? { right: s.left } : { left: s.right })
  t.ok(failed(sideways).includes('worker signature'), 'siblings moved to the other side: fails')

  const dropped = json(docs[2]!)
  dropped.gateway!.batch!.path.pop()
  t.alike(failed(dropped), ['gateway countersignature'], 'a step of the gateway\'s proof dropped: the countersignature fails')

  const more = json(docs[2]!)
  more.worker.tokensOut++
  t.ok(failed(more).includes('worker signature'), 'a claim altered inside a batch: fails')
})

test('receipt batches: the gateway checks a batch\'s signature once and still refuses a forged receipt in it', (t) => {
  const desk = new ReceiptDesk(gateway)
  const signed = signClaims([0, 1, 2, 3].map(claim), worker.secretKey).map((r) => json(r))
  const expect = (r: typeof signed[number]) => ({ requestId: r.requestId, model: r.model, worker: r.workerKey, price, outputSha256: r.outputSha256 })
  t.ok(signed.every((r) => desk.check(r, expect(r))?.ok), 'every receipt of the batch passes')
  // the same signature and a real proof, over a claim the worker never signed
  const forged = { ...signed[1]!, tokensOut: 1, chargeNusd: chargeFor(price, signed[1]!.tokensIn, 1) }
  const verdict = desk.check(forged, expect(forged))
  t.ok(verdict && !verdict.ok && /signature/.test(verdict.reason), 'a claim changed under a checked signature is refused: ' + (verdict && !verdict.ok ? verdict.reason : ''))
  t.ok(workerSignatureValid(signed[2]!, true), 'its neighbours still pass')
})

test('receipt batches: receipts signed one by one (version 1) still verify', (t) => {
  const c = claim(0)
  const w = { ...c, signature: hcrypto.sign(encodeClaim(c), worker.secretKey).toString('hex') }
  const b = bill(c)
  const doc = { version: 1, worker: w, gateway: { ...b, signature: hcrypto.sign(encodeBill(w, b, 1), gateway.secretKey).toString('hex') } }
  t.ok(verifyReceipt(json(doc)).ok, 'a version 1 receipt verifies')
  const altered = json(doc)
  altered.gateway.tokensOut++
  t.alike(verifyReceipt(altered).checks.filter((x) => !x.ok).map((x) => x.name), ['gateway countersignature', 'gateway bill'], 'and an altered one does not')
  const desk = new ReceiptDesk(gateway)
  t.ok(desk.check(json(w), { requestId: c.requestId, model: c.model, worker: c.workerKey, price, outputSha256: c.outputSha256 })?.ok, 'a worker of the previous version is still paid')
})
