// Distributed tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// is set. Off, nothing of OpenTelemetry is loaded and `tracer()` is null: every call site reads
// `tracer()?.…` or `span?.…`, so a request allocates no span and pays one null check per step.
// On, sdk.ts (loaded only then) exports the spans over OTLP/HTTP (protobuf) in batches.
//
// A span here is our own small interface over an OpenTelemetry span, so the rest of the code never
// imports the SDK. Attributes are ids, names, counts and codes only: never a prompt, key or token.

export type AttributeValue = string | number | boolean
export type SpanKind = 'server' | 'client' | 'internal'

export interface SpanOptions {
  kind?: SpanKind
  /** ms epoch; default now */
  startTime?: number
  /** for a new trace (no parent): use this trace id, when it is a valid one */
  traceId?: string
  attributes?: Record<string, AttributeValue>
}

export interface Span {
  readonly traceId: string
  /** the W3C traceparent naming this span, to hand to the next process */
  readonly traceparent: string
  set (key: string, value: AttributeValue): void
  /** a child span, started now (or at opts.startTime) */
  child (name: string, opts?: SpanOptions): Span
  /** a finished child span from `startTime` (ms epoch) to now: a step measured after the fact */
  record (name: string, startTime: number, attributes?: Record<string, AttributeValue>): void
  /** end the span; an error (or an error code) marks it failed with that code, never its message */
  end (error?: unknown): void
}

export interface Tracer {
  /** a span under `parent`: one of ours, a W3C traceparent from another process, or none (a new trace) */
  start (name: string, parent: Span | string | null | undefined, opts?: SpanOptions): Span
}

let active: Tracer | null = null
let shutdown: (() => Promise<void>) | null = null

/** The process's tracer, or null when tracing is off. */
export function tracer (): Tracer | null { return active }

/** The OTLP endpoint tracing exports to, or null: tracing is off. */
export function tracingEndpoint (env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.OTEL_SDK_DISABLED === 'true' || env.OTEL_TRACES_EXPORTER === 'none') return null
  return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT || null
}

/**
 * Turn tracing on for this process when an endpoint is configured (a no-op otherwise): its spans
 * carry `service` (gateway, inference, web, …) and `instance` (gateway-2, inference-3, …).
 */
export async function startTracing (service: string, instance = service, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (active || !tracingEndpoint(env)) return active !== null
  const sdk = await import('./sdk.ts')
  const made = sdk.createTracer(service, instance)
  active = made.tracer
  shutdown = made.shutdown
  return true
}

/** Export what is buffered and stop; tracing is off afterwards. */
export async function stopTracing (): Promise<void> {
  const stop = shutdown
  active = null
  shutdown = null
  if (stop) await stop()
}

export { formatTraceparent, isTraceId, newTraceId, parseTraceparent, requestIdOf } from './context.ts'
