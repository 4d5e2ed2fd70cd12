import { z } from 'zod'
import { method } from '../mesh/method.ts'
import type { UsageReceipt } from '../receipt.ts'
import { sessionToken } from './common.ts'

// A session's own requests, newest first, each with its usage receipt when its worker signed one:
// what the dashboard's requests page lists, links and checks. Amounts are nano-USD.

export const MAX_REQUESTS_LISTED = 200

export interface RequestReceipt {
  status: 'settled' | 'disputed'
  /** why the gateway refused it at settlement (disputed only) */
  dispute: string | null
  /** the document `hyperinfer receipts verify` checks (null: a disputed receipt that could not be read) */
  doc: UsageReceipt | null
}

export interface RequestSummary {
  id: string
  createdAt: string
  kind: string
  model: string
  status: 'processing' | 'success' | 'failed' | 'cancelled'
  errorCode: string | null
  tokensIn: number
  tokensOut: number
  costNusd: number
  /** the worker that served it (null: answered from the cache, or never dispatched) */
  worker: string | null
  receipt: RequestReceipt | null
}

const requestId = z.string().regex(/^[\x21-\x7e]{1,100}$/, 'printable ASCII, no spaces')

export const recentRequestsRequest = z.object({
  token: sessionToken,
  limit: z.number().int().min(1).max(MAX_REQUESTS_LISTED).optional(),
  /** the page before this time (ISO 8601): the next page of a long list */
  before: z.string().datetime().optional()
}).strict()

export const RequestsProtocol = {
  /** the session's account's requests, newest first, with their receipts */
  recentRequests: method<z.infer<typeof recentRequestsRequest>, { requests: RequestSummary[] }>('recentRequests', { from: ['stranger'], needs: 'session' }, recentRequestsRequest),
  /** one of the session's account's receipts by request id; another account's is NOT_FOUND */
  requestReceipt: method<{ token: string, id: string }, UsageReceipt>('requestReceipt', { from: ['stranger'], needs: 'session' }, z.object({ token: sessionToken, id: requestId }).strict())
}
