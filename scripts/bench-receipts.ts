// What a signed usage receipt costs per request, in process: the worker signing its receipt, the
// gateway checking it (signature, keys, price, charge, hash) and countersigning it, and an offline
// `receipts verify` of the result. CPU time only: none of it waits on a disk or a database.
// Standalone: `npm run build && node dist/scripts/bench-receipts.js` (BENCH_SCALE=0.2 shortens it).
import crypto from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { keyPairFromSeed } from '../shared/keys.ts'
import { chargeFor, signClaim, verifyReceipt, type WorkerClaim } from '../shared/receipt.ts'
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
  const times: Record<string, number[]> = { 'worker: sign': [], 'gateway: check': [], 'gateway: countersign': [], 'offline verify': [] }
  const lap = (name: string, since: bigint) => { times[name]!.push(Number(process.hrtime.bigint() - since) / 1000) }
  for (let i = 0; i < n; i++) {
    const c = claim(i)
    let t = process.hrtime.bigint()
    const signed = signClaim(c, worker.secretKey)
    lap('worker: sign', t)
    t = process.hrtime.bigint()
    const verdict = desk.check(signed, { requestId: c.requestId, model: c.model, worker: c.workerKey, price, outputSha256: c.outputSha256 })
    lap('gateway: check', t)
    if (!verdict?.ok) throw new Error('a good receipt was refused')
    t = process.hrtime.bigint()
    const stored = desk.complete(desk.bill(verdict.receipt, { tokensIn: c.tokensIn, tokensOut: c.tokensOut, chargeNusd: c.chargeNusd }))
    lap('gateway: countersign', t)
    t = process.hrtime.bigint()
    const ok = verifyReceipt(JSON.parse(JSON.stringify(stored.doc))).ok
    lap('offline verify', t)
    if (!ok) throw new Error('a countersigned receipt did not verify')
  }
  return Object.entries(times).map(([step, us]) => {
    const sorted = us.sort((a, b) => a - b)
    return { step, receipts: n, 'p50 µs': percentile(sorted, 0.5).toFixed(0), 'p99 µs': percentile(sorted, 0.99).toFixed(0) }
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-receipts', 'signing, checking and verifying usage receipts', 'CPU time per receipt, in process', benchReceipts)
}
