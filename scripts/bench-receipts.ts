// What a signed usage receipt costs per request, in process: the worker signing its receipt, the
// gateway checking it (signature, keys, price, charge, hash) and countersigning it, and an offline
// `receipts verify` of the result, for a batch of one and for 16 receipts sharing each signature.
// CPU time only: none of it waits on a disk or a database.
// Standalone: `npm run build && node dist/scripts/bench-receipts.js` (BENCH_SCALE=0.2 shortens it).
import crypto from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { keyPairFromSeed } from '../shared/keys.ts'
import { chargeFor, signClaims, verifyReceipt, type WorkerClaim } from '../shared/receipt.ts'
import { ReceiptDesk } from '../services/gateway/receipts.ts'
import { percentile, runStandalone, type Row } from './bench-lib.ts'

export async function benchReceipts (scale: number): Promise<Row[]> {
  const n = Math.max(500, Math.round(5000 * scale))
  const worker = keyPairFromSeed(crypto.randomBytes(32))
  const gateway = keyPairFromSeed(crypto.randomBytes(32))
  const desk = new ReceiptDesk(gateway)
  const price = { input: 1000, output: 2000 }
  const text = 'lorem ipsum '.repeat(200)
  const claim = (i: number): WorkerClaim => ({
    requestId: crypto.randomUUID(), model: 'synthetic', tokensIn: 40 + i % 7, tokensOut: 200, outputSha256: crypto.createHash('sha256').update(text).digest('hex'),
    gatewayKey: gateway.publicKey.toString('hex'), workerKey: worker.publicKey.toString('hex'), time: new Date().toISOString(), priceNusdPerToken: price, chargeNusd: chargeFor(price, 40 + i % 7, 200)
  })
  // per receipt, in batches of one (a lone request) and of 16 (requests that end together share a signature)
  const rows: Row[] = []
  for (const size of [1, 16]) {
    const times: Record<string, number[]> = { 'worker: sign': [], 'gateway: check': [], 'gateway: countersign': [], 'offline verify': [] }
    const lap = (name: string, since: bigint, count: number) => { times[name]!.push(Number(process.hrtime.bigint() - since) / 1000 / count) }
    for (let i = 0; i < n; i += size) {
      const claims = Array.from({ length: size }, (_, k) => claim(i + k))
      let t = process.hrtime.bigint()
      const signed = signClaims(claims, worker.secretKey)
      lap('worker: sign', t, size)
      t = process.hrtime.bigint()
      const verdicts = signed.map((r, k) => desk.check(r, { requestId: claims[k]!.requestId, model: r.model, worker: r.workerKey, price, outputSha256: r.outputSha256 }))
      lap('gateway: check', t, size)
      if (!verdicts.every((v) => v?.ok)) throw new Error('a good receipt was refused')
      t = process.hrtime.bigint()
      const stored = desk.completeAll(signed.map((r) => desk.bill(r, { tokensIn: r.tokensIn, tokensOut: r.tokensOut, chargeNusd: r.chargeNusd })))
      lap('gateway: countersign', t, size)
      // offline, one document at a time (a fresh checker: what `hyperinfer receipts verify` does)
      t = process.hrtime.bigint()
      const ok = verifyReceipt(JSON.parse(JSON.stringify(stored[0]!.doc))).ok
      lap('offline verify', t, 1)
      if (!ok) throw new Error('a countersigned receipt did not verify')
    }
    for (const [step, us] of Object.entries(times)) {
      const sorted = us.sort((a, b) => a - b)
      rows.push({ step, batch: size, receipts: n, 'p50 µs per receipt': percentile(sorted, 0.5).toFixed(0), 'p99 µs per receipt': percentile(sorted, 0.99).toFixed(0) })
    }
  }
  return rows
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-receipts', 'signing, checking and verifying usage receipts', 'CPU time per receipt, in process', benchReceipts)
}
