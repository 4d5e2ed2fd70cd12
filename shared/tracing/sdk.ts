import { ROOT_CONTEXT, SpanKind as OtelKind, SpanStatusCode, TraceFlags, trace, type Context, type Span as OtelSpan, type Tracer as OtelTracer } from '@opentelemetry/api'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, BatchSpanProcessor, RandomIdGenerator, type IdGenerator } from '@opentelemetry/sdk-trace-base'
import { VERSION } from '../mesh/service.ts'
import { formatTraceparent, isTraceId, parseTraceparent } from './context.ts'
import type { AttributeValue, Span, SpanKind, SpanOptions, Tracer } from './index.ts'

// The OpenTelemetry SDK behind shared/tracing: loaded only when an OTLP endpoint is configured. One
// provider per process, spans batched and sent over OTLP/HTTP protobuf by the official exporter
// (which reads OTEL_EXPORTER_OTLP_* itself: endpoint, headers, timeout). Parents are passed
// explicitly (no context manager): a request's spans hang off the span its handler was given.

const KINDS: Record<SpanKind, OtelKind> = { server: OtelKind.SERVER, client: OtelKind.CLIENT, internal: OtelKind.INTERNAL }
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/

/** An error's code (MeshError, or a code given as is): what a failed span records, never a message. */
function errorCode (error: unknown): string {
  const code = typeof error === 'string' ? error : (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && CODE.test(code) ? code : 'INTERNAL'
}

/**
 * Random ids, except that the next trace id can be set beforehand: the HTTP edge starts a trace
 * under the request id it already sent back as x-request-id, so the two are the same.
 */
class PresetIdGenerator implements IdGenerator {
  next: string | null = null
  private readonly random = new RandomIdGenerator()
  generateTraceId (): string {
    const id = this.next
    this.next = null
    return id ?? this.random.generateTraceId()
  }

  generateSpanId (): string { return this.random.generateSpanId() }
}

class SdkSpan implements Span {
  readonly otel: OtelSpan
  private readonly tracer: SdkTracer

  constructor (tracer: SdkTracer, otel: OtelSpan) {
    this.tracer = tracer
    this.otel = otel
  }

  get traceId (): string { return this.otel.spanContext().traceId }
  get traceparent (): string {
    const c = this.otel.spanContext()
    return formatTraceparent(c.traceId, c.spanId, (c.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED)
  }

  set (key: string, value: AttributeValue): void { this.otel.setAttribute(key, value) }
  child (name: string, opts?: SpanOptions): Span { return this.tracer.start(name, this, opts) }
  record (name: string, startTime: number, attributes?: Record<string, AttributeValue>): void {
    this.tracer.start(name, this, { startTime, ...(attributes ? { attributes } : {}) }).end()
  }

  end (error?: unknown): void {
    if (error !== undefined && error !== null) {
      const code = errorCode(error)
      this.otel.setAttribute('error.type', code)
      this.otel.setStatus({ code: SpanStatusCode.ERROR, message: code })
    }
    this.otel.end()
  }
}

class SdkTracer implements Tracer {
  private readonly otel: OtelTracer
  private readonly ids: PresetIdGenerator

  constructor (otel: OtelTracer, ids: PresetIdGenerator) {
    this.otel = otel
    this.ids = ids
  }

  start (name: string, parent: Span | string | null | undefined, opts: SpanOptions = {}): Span {
    let ctx: Context = ROOT_CONTEXT
    if (parent instanceof SdkSpan) {
      ctx = trace.setSpan(ROOT_CONTEXT, parent.otel)
    } else if (typeof parent === 'string') {
      const remote = parseTraceparent(parent)
      if (remote) ctx = trace.setSpanContext(ROOT_CONTEXT, { traceId: remote.traceId, spanId: remote.spanId, traceFlags: remote.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true })
    }
    // a new trace takes the id asked for; the generator is read synchronously inside startSpan
    if (ctx === ROOT_CONTEXT && isTraceId(opts.traceId)) this.ids.next = opts.traceId
    const span = this.otel.startSpan(name, {
      kind: KINDS[opts.kind ?? 'internal'],
      ...(opts.startTime !== undefined ? { startTime: opts.startTime } : {}),
      ...(opts.attributes ? { attributes: opts.attributes } : {})
    }, ctx)
    this.ids.next = null
    return new SdkSpan(this, span)
  }
}

export function createTracer (service: string, instance: string): { tracer: Tracer, shutdown: () => Promise<void> } {
  const ids = new PresetIdGenerator()
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service, 'service.namespace': 'hyperinfer', 'service.version': VERSION, 'service.instance.id': instance, 'process.pid': process.pid }),
    idGenerator: ids,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())]
  })
  return {
    tracer: new SdkTracer(provider.getTracer('hyperinfer', VERSION), ids),
    shutdown: () => provider.shutdown()
  }
}
