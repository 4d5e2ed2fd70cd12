import type pg from 'pg'
import type { KeyPair } from 'hyperdht'
import { MeshError } from '../../shared/errors.ts'
import type { KeyIdentity, PublicUser } from '../../shared/protocol/auth.ts'
import type { HandlerBuilder } from '../../shared/mesh/peer.ts'
import { RequestsProtocol, type RequestSummary } from '../../shared/protocol/requests.ts'
import { chargeFor, countersignAll, RECEIPT_VERSION, workerReceipt, workerSignatureValid, type Bill, type TokenPrice, type UsageReceipt, type WorkerReceipt } from '../../shared/receipt.ts'

// Usage receipts at the gateway (the format: shared/receipt.ts). When a worker's answer settles, its
// receipt is checked against what this gateway asked and received: signed by the worker it dialled,
// naming this gateway, this request and model, the price this gateway applied, a charge that is its
// tokens × that price, and a hash of the text that arrived. A receipt that fails any of these is
// refused at settlement: the request is recorded as failed with RECEIPT_DISPUTED and billed nothing,
// the worker's receipt is kept as disputed, and the caller gets the coded error. A good one is
// countersigned with what was billed (the gateway's own clamped counts at the same price). An answer
// whose worker sent no receipt at all is billed as before and has no receipt.
// Receipts reach PostgreSQL with their request's record (recorder.ts), never before the answer.

export type ReceiptVerdict = { ok: true, receipt: WorkerReceipt } | { ok: false, reason: string, receipt: WorkerReceipt | null }

/**
 * What is stored with a request: its receipt document, and whether it was refused. A settled receipt
 * is countersigned when its record goes to PostgreSQL, not before the answer: until then it is the
 * worker's receipt and the bill (`unsigned`), which the settlement log keeps, and from which the same
 * signature (Ed25519 signs deterministically) is made whenever it is made.
 */
export interface StoredReceipt { status: 'settled' | 'disputed', dispute: string | null, doc: UsageReceipt | null, unsigned?: { worker: WorkerReceipt, bill: Bill } }

export interface ReceiptExpectation {
  requestId: string
  model: string
  /** the key of the worker this gateway sent the request to */
  worker: string
  /** the price told to that worker (none: the request was free) */
  price: TokenPrice | undefined
  /** SHA-256 of the text the worker sent, as received */
  outputSha256: string
}

const FREE: TokenPrice = { input: 0, output: 0 }

export class ReceiptDesk {
  private readonly keyPair: KeyPair
  private readonly publicKey: string

  constructor (keyPair: KeyPair) {
    this.keyPair = keyPair
    this.publicKey = keyPair.publicKey.toString('hex')
  }

  /** The worker's receipt checked; null when the worker sent none. */
  check (raw: unknown, expect: ReceiptExpectation): ReceiptVerdict | null {
    if (raw === undefined || raw === null) return null
    const parsed = workerReceipt.safeParse(raw)
    if (!parsed.success) return { ok: false, reason: 'the worker\'s receipt is malformed', receipt: null }
    const w = parsed.data
    const fail = (reason: string): ReceiptVerdict => ({ ok: false, reason, receipt: w })
    const price = expect.price ?? FREE
    const charge = chargeFor(w.priceNusdPerToken, w.tokensIn, w.tokensOut)
    if (w.workerKey !== expect.worker) return fail('the receipt is not signed by the worker that served the request')
    if (!workerSignatureValid(w, true)) return fail('the worker\'s signature does not verify')
    if (w.gatewayKey !== this.publicKey) return fail('the receipt names another gateway')
    if (w.requestId !== expect.requestId || w.model !== expect.model) return fail('the receipt is for another request')
    if (w.priceNusdPerToken.input !== price.input || w.priceNusdPerToken.output !== price.output) {
      return fail(`the receipt states a price (${w.priceNusdPerToken.input}/${w.priceNusdPerToken.output} nUSD a token) other than the one applied (${price.input}/${price.output})`)
    }
    if (w.chargeNusd !== charge) return fail(`the receipt's charge (${w.chargeNusd} nUSD) is not its tokens × price (${charge} nUSD)`)
    if (w.outputSha256 !== expect.outputSha256) return fail('the receipt\'s output hash is not that of the text the worker sent')
    return { ok: true, receipt: w }
  }

  /** The receipt to be countersigned with what was billed, now: complete() signs it. */
  bill (w: WorkerReceipt, billed: { tokensIn: number, tokensOut: number, chargeNusd: number }): StoredReceipt {
    return { status: 'settled', dispute: null, doc: null, unsigned: { worker: w, bill: { ...billed, time: new Date().toISOString() } } }
  }

  /** Billed receipts with their countersignature, one signature for all of them; any other as it is. */
  completeAll (rs: StoredReceipt[]): StoredReceipt[] {
    const billed = rs.flatMap((r) => r.unsigned ? [r.unsigned] : [])
    const docs = countersignAll(billed, this.keyPair.secretKey)
    let i = 0
    return rs.map((r) => r.unsigned ? { status: r.status, dispute: r.dispute, doc: docs[i++]! } : r)
  }

  static disputed (reason: string, w: WorkerReceipt | null): StoredReceipt {
    return { status: 'disputed', dispute: reason, doc: w ? { version: RECEIPT_VERSION, worker: w, disputed: reason } : null }
  }
}

/**
 * The records of a batch that carry a receipt, into request_receipts (migrations/019, 026), in their
 * requests' transaction; a request already there is left as it is, and an account no longer there
 * gets none (its request row has no user either).
 */
export async function storeReceipts (db: Pick<pg.PoolClient, 'query'>, records: Array<{ id: string, user: string, rc?: StoredReceipt }>): Promise<void> {
  const with_ = records.filter((r) => r.rc)
  if (with_.length === 0) return
  // the documents go as one JSON array (one string to write, none to escape into an array literal)
  await db.query({
    name: 'hi_receipts',
    text: `INSERT INTO request_receipts (request_id, user_id, status, dispute, receipt)
           SELECT x.id, x.user_id, x.status, x.dispute, CASE WHEN json_typeof(d.doc) = 'null' THEN NULL ELSE d.doc END
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY x(id, user_id, status, dispute, n)
           JOIN json_array_elements($5::json) WITH ORDINALITY d(doc, n) ON d.n = x.n
           WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = x.user_id) ON CONFLICT (request_id) DO NOTHING`,
    values: [with_.map((r) => r.id), with_.map((r) => r.user), with_.map((r) => r.rc!.status), with_.map((r) => r.rc!.dispute), JSON.stringify(with_.map((r) => r.rc!.doc))]
  })
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export interface ReceiptReadsDeps {
  pool: pg.Pool
  /** resolves once this gateway's answered requests are in PostgreSQL */
  settled?: () => Promise<void>
}

/** A user's own receipts, by the gateway's request id, and their requests with them; anyone else's is not found. */
export class ReceiptReads {
  constructor (private readonly deps: ReceiptReadsDeps) {}

  /** The session methods: `user` turns a session token into its account. */
  mount (table: HandlerBuilder, user: (token: string) => Promise<PublicUser>): HandlerBuilder {
    return table
      .on(RequestsProtocol.requestReceipt, async (req) => this.get({ userId: (await user(req.token)).id }, req.id))
      .on(RequestsProtocol.recentRequests, async (req) => ({ requests: await this.recent((await user(req.token)).id, req.limit ?? 50, req.before) }))
  }

  /** The account's requests, newest first (before `before` when given), each with its receipt. */
  async recent (userId: string, limit: number, before?: string): Promise<RequestSummary[]> {
    await this.deps.settled?.()
    const { rows } = await this.deps.pool.query<{
      id: string, created_at: Date, kind: string, model_used: string, status: RequestSummary['status'], error_code: string | null,
      tokens_in: number, tokens_out: number, cost_nusd: string, worker: string | null, r_status: 'settled' | 'disputed' | null, dispute: string | null, receipt: UsageReceipt | null
    }>({
      name: 'hi_recent_requests',
      text: `SELECT l.id, l.created_at, l.kind, l.model_used, l.status, l.error_code, l.tokens_in, l.tokens_out, l.cost_nusd, l.worker,
                    r.status AS r_status, r.dispute, r.receipt
             FROM request_logs l LEFT JOIN request_receipts r ON r.request_id = l.id
             WHERE l.user_id = $1 AND ($2::timestamptz IS NULL OR l.created_at < $2)
             ORDER BY l.created_at DESC LIMIT $3`,
      values: [userId, before ?? null, limit]
    })
    return rows.map((r) => ({
      id: r.id, createdAt: r.created_at.toISOString(), kind: r.kind, model: r.model_used, status: r.status, errorCode: r.error_code,
      tokensIn: r.tokens_in, tokensOut: r.tokens_out, costNusd: Number(r.cost_nusd), worker: r.worker?.trim() || null,
      receipt: r.r_status ? { status: r.r_status, dispute: r.dispute, doc: r.receipt } : null
    }))
  }

  async get (identity: Pick<KeyIdentity, 'userId'>, id: string): Promise<UsageReceipt> {
    const missing = () => MeshError.NOT_FOUND(`no receipt for a request '${id}' of yours`)
    if (!UUID.test(id)) throw missing()
    const requestId = id.toLowerCase()
    await this.deps.settled?.()
    const { rows } = await this.deps.pool.query<{ receipt: UsageReceipt | null }>(
      'SELECT receipt FROM request_receipts WHERE request_id = $1 AND user_id = $2', [requestId, identity.userId])
    if (!rows[0]?.receipt) throw missing()
    return rows[0].receipt
  }
}
