import fs from 'node:fs'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { verifyReceipt } from '../../shared/receipt.ts'
import { UsageError } from '../context.ts'
import { Failed, printJson } from '../output.ts'
import { readStdin, type Command } from '../command.ts'

// `receipts show <request id> [--out FILE]` (an API key) fetches one of your requests' usage receipts;
// `receipts verify <file>` checks one with nothing but the file: no mesh, no database. With
// `--gateway` / `--worker`, the signers must also have those keys.

const USAGE = 'receipts show [--key K] [--out FILE] <request id> | receipts verify [--gateway KEY] [--worker KEY] <file | ->'
const KEY = /^[0-9a-f]{64}$/i

export const receipts: Command = {
  usage: USAGE,
  options: { key: { type: 'string' }, out: { type: 'string' }, worker: { type: 'string' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb, arg] = positionals
    if (verb === 'show' && arg) {
      const apiKey = ctx.apiKey(values.key as string | undefined)
      const receipt = await (await ctx.gateway()).call(GatewayProtocol.receipt, { apiKey, id: arg }, ctx.globals.timeout)
      const text = JSON.stringify(receipt, null, 2) + '\n'
      if (typeof values.out === 'string') {
        fs.writeFileSync(values.out, text)
        if (ctx.globals.json) return printJson({ requestId: receipt.worker.requestId, file: values.out })
        console.log(`wrote the receipt of request ${receipt.worker.requestId} to ${values.out}; check it with: hyperinfer receipts verify ${values.out}`)
        return
      }
      process.stdout.write(ctx.globals.json ? JSON.stringify(receipt) + '\n' : text)
      return
    }
    if (verb === 'verify' && arg) {
      const expect = { gateway: ctx.globals.gateway, worker: values.worker as string | undefined }
      for (const [name, k] of Object.entries(expect)) if (k !== undefined && !KEY.test(k)) throw new UsageError(`--${name} must be a 64-character hex key`)
      const raw = arg === '-' ? await readStdin() : readFile(arg)
      let doc: unknown
      try { doc = JSON.parse(raw) } catch { doc = undefined }
      const result = doc === undefined
        ? { ok: false, checks: [{ name: 'format', ok: false, detail: 'not JSON' }], receipt: null }
        : verifyReceipt(doc, { ...(expect.gateway ? { gateway: expect.gateway } : {}), ...(expect.worker ? { worker: expect.worker } : {}) })
      if (ctx.globals.json) printJson({ ok: result.ok, checks: result.checks })
      else {
        for (const c of result.checks) console.log(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`)
        const w = result.receipt?.worker
        const g = result.receipt?.gateway
        console.log(result.ok && w && g
          ? `verified: request ${w.requestId} (${w.model}) served by worker ${w.workerKey.slice(0, 16)}… for ${w.tokensIn} + ${w.tokensOut} tokens; gateway ${w.gatewayKey.slice(0, 16)}… billed ${g.tokensIn} + ${g.tokensOut} tokens, ${g.chargeNusd} nUSD ($${(g.chargeNusd / 1e9).toFixed(9)})`
          : 'NOT verified: this receipt is not what its signers signed')
      }
      if (!result.ok) throw new Failed(1)
      return
    }
    throw new UsageError(`usage: hyperinfer ${USAGE}`)
  }
}

function readFile (file: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}
