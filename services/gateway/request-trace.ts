import { tracer, type AttributeValue, type Span, type SpanKind } from '../../shared/tracing/index.ts'

// The spans of one request at the gateway: its steps run one after another (authenticate, routing,
// hold, dispatch, settlement), so each `next` ends the step before. They hang off the span the RPC
// layer opened for the call (the caller sent a traceparent), or off a span of their own for a caller
// that sent none (the CLI, the SDK). With tracing off `start` is null and the pipeline's `trace?.…`
// calls cost a null check each.

export class RequestTrace {
  readonly root: Span
  private readonly owned: boolean
  private step: Span | null = null
  private stepName = ''
  private stepStarted = 0

  private constructor (root: Span, owned: boolean) {
    this.root = root
    this.owned = owned
  }

  /** The request's trace, or null when tracing is off. */
  static start (caller: { readonly span?: Span | undefined }, method: string): RequestTrace | null {
    const t = tracer()
    if (!t) return null
    if (caller.span) return new RequestTrace(caller.span, false)
    return new RequestTrace(t.start(method, null, { kind: 'server', attributes: { 'rpc.system': 'hyperswarm', 'rpc.method': method } }), true)
  }

  get traceId (): string { return this.root.traceId }
  /** the current step's traceparent: what a worker's span hangs off */
  get traceparent (): string { return (this.step ?? this.root).traceparent }

  /** End the current step and start `name`. */
  next (name: string, attributes?: Record<string, AttributeValue>, kind: SpanKind = 'internal'): void {
    this.step?.end()
    this.stepName = name
    this.stepStarted = Date.now()
    this.step = this.root.child(name, { kind, ...(attributes ? { attributes } : {}) })
  }

  /** Attributes of the current step. */
  note (attributes: Record<string, AttributeValue | null | undefined>): void {
    for (const [k, v] of Object.entries(attributes)) if (v !== null && v !== undefined) this.step?.set(k, v)
  }

  /** The first token reached the gateway `ms` after the current attempt started: a step of its own under dispatch. */
  firstToken (ms: number): void {
    this.step?.record('first_token', Math.max(this.stepStarted, Date.now() - ms))
  }

  /** Attributes of the whole request. */
  set (key: string, value: AttributeValue): void { this.root.set(key, value) }

  /** The request ended, failed with `error` when given (by the step it was in; settlement only records an outcome decided before). */
  end (error?: unknown): void {
    this.step?.end(this.stepName === 'settlement' ? undefined : error)
    this.step = null
    if (this.owned) this.root.end(error)
  }
}
