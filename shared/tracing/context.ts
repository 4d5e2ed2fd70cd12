import crypto from 'node:crypto'

// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` value that carries a
// trace from one process to the next, over HTTP and over the mesh's RPC. These helpers load nothing
// and allocate nothing beyond their result, so the HTTP edge uses them whether tracing is on or off.

/** version-traceid-parentid-flags; a version other than 00 may add fields, which we ignore */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

export interface RemoteParent { traceId: string, spanId: string, sampled: boolean }

/** A traceparent's fields, or null for anything malformed (which W3C says to ignore, never to refuse). */
export function parseTraceparent (value: unknown): RemoteParent | null {
  if (typeof value !== 'string' || value.length < 55 || value.length > 256) return null
  const m = TRACEPARENT.exec(value)
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5])) return null
  if (m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return null
  return { traceId: m[2]!, spanId: m[3]!, sampled: (parseInt(m[4]!, 16) & 1) === 1 }
}

export function formatTraceparent (traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`
}

/** A W3C trace id: 32 lowercase hex digits, not all zero. */
export function isTraceId (value: unknown): value is string {
  return typeof value === 'string' && value.length === 32 && /^[0-9a-f]{32}$/.test(value) && value !== ZERO_TRACE
}

/** A fresh random trace id (a UUID's 122 random bits, as 32 hex digits). */
export function newTraceId (): string {
  return crypto.randomUUID().replace(/-/g, '')
}

const SANE_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/**
 * The id of an HTTP request, which the response's x-request-id and request_logs.trace_id carry and
 * which is the trace id when tracing is on: the trace id of a valid incoming traceparent; else a sane
 * x-request-id the client sent; else a fresh trace id.
 */
export function requestIdOf (headers: Record<string, string | string[] | undefined>): string {
  const parent = headers.traceparent === undefined ? null : parseTraceparent(headers.traceparent)
  if (parent) return parent.traceId
  const given = headers['x-request-id']
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : newTraceId()
}
