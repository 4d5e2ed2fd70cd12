import { z } from 'zod'
import { method } from '../mesh/method.ts'
import { workerKey } from '../registry/schema.ts'
import { modelName, sessionToken } from './common.ts'

// Operators: the accounts workers belong to. An operator drains and resumes its own workers, prices
// the models they serve within an admin's bounds, and reads what it earned; admins set the bounds
// and export every account's payouts. Prices are nano-USD per token (1 USD = 1e9 nUSD).

/** nano-USD per token: up to $10,000 per 1M tokens, like the registry's prices */
export const nusdPerToken = z.number().int().min(0).max(10_000_000)
const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a day as YYYY-MM-DD')

export const drainWorkerRequest = z.object({ token: sessionToken, key: workerKey, drain: z.boolean() }).strict()
export const setPriceRequest = z.object({ token: sessionToken, model: modelName, input: nusdPerToken, output: nusdPerToken }).strict()
export const pricesRequest = z.object({ token: sessionToken }).strict()
export const setPriceBoundsRequest = z.object({
  token: sessionToken, model: modelName, minInput: nusdPerToken, maxInput: nusdPerToken, minOutput: nusdPerToken, maxOutput: nusdPerToken
}).strict().refine((b) => b.minInput <= b.maxInput && b.minOutput <= b.maxOutput, { message: 'a minimum above its maximum', path: ['minInput'] })
export const earningsRequest = z.object({
  token: sessionToken, since: day.optional(), until: day.optional(),
  /** admins: every account's earnings, not only their own */
  all: z.boolean().optional()
}).strict()
export const payoutExportRequest = z.object({ token: sessionToken, since: day.optional(), until: day.optional() }).strict()

export interface TokenPrice { input: number, output: number }
export interface PriceBounds { model: string, minInput: number, maxInput: number, minOutput: number, maxOutput: number }
export interface OperatorPrice extends TokenPrice { model: string, /** the price charged: the set one, held within today's bounds */ effective: TokenPrice }

/** One row of an operator's earnings: per day, worker and model. Amounts are nano-USD. */
export interface EarningsRow {
  day: string
  /** the account's name (an admin's `all` view mixes accounts) */
  account: string
  worker: string
  model: string
  requests: number
  tokensIn: number
  tokensOut: number
  /** what the users paid */
  charged: number
  /** the network's fee out of it */
  fees: number
  /** what the operator was credited: charged - fees */
  earned: number
}

/** One account's payout over a period: what the export lists. Amounts are nano-USD. */
export interface PayoutRow { account: string, accountId: string, email: string, requests: number, charged: number, fees: number, earned: number }

export const OperatorProtocol = {
  /** stop (drain: true) or resume new requests to a worker: its owner's, or an admin's */
  drainWorker: method<z.infer<typeof drainWorkerRequest>, { key: string, drained: boolean }>('drainWorker', { from: ['stranger'], needs: 'session' }, drainWorkerRequest),
  /** an operator's price for a model its workers serve, within the admin's bounds */
  setPrice: method<z.infer<typeof setPriceRequest>, OperatorPrice>('setPrice', { from: ['stranger'], needs: 'session' }, setPriceRequest),
  /** the bounds per model and the caller's own prices */
  prices: method<z.infer<typeof pricesRequest>, { bounds: PriceBounds[], mine: OperatorPrice[], feePct: number }>('prices', { from: ['stranger'], needs: 'session' }, pricesRequest),
  /** admins: the range operators may price a model in */
  setPriceBounds: method<z.infer<typeof setPriceBoundsRequest>, PriceBounds>('setPriceBounds', { from: ['stranger'], needs: 'admin' }, setPriceBoundsRequest),
  /** the caller's earnings by day, worker and model (admins with `all`: everyone's) */
  earnings: method<z.infer<typeof earningsRequest>, { rows: EarningsRow[], total: { charged: number, fees: number, earned: number }, feePct: number }>('earnings', { from: ['stranger'], needs: 'session' }, earningsRequest),
  /** admins: every account's payout over a period, as rows and as CSV */
  payoutExport: method<z.infer<typeof payoutExportRequest>, { rows: PayoutRow[], csv: string }>('payoutExport', { from: ['stranger'], needs: 'admin' }, payoutExportRequest)
}
