import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import zlib from 'node:zlib'

// An OTLP/HTTP trace receiver for tests and benchmarks: what an OpenTelemetry Collector's otlp
// receiver does with POST /v1/traces (protobuf), decoded with the protobufjs definitions that
// @opentelemetry/otlp-transformer generated from the official opentelemetry-proto files (a dev
// dependency, under the name otlp-transformer-protobuf). It keeps every span it is sent, flattened.

interface AnyValue { stringValue?: string, boolValue?: boolean, intValue?: string | number, doubleValue?: number }
interface KeyValue { key: string, value?: AnyValue }
interface DecodedSpan {
  traceId: Uint8Array, spanId: Uint8Array, parentSpanId?: Uint8Array, name: string, kind?: number,
  startTimeUnixNano: string, endTimeUnixNano: string, attributes?: KeyValue[], status?: { code?: number, message?: string }
}
interface DecodedRequest { resourceSpans?: Array<{ resource?: { attributes?: KeyValue[] }, scopeSpans?: Array<{ spans?: DecodedSpan[] }> }> }
interface MessageType<T> { decode (buf: Uint8Array): unknown, toObject (m: unknown, o: { longs: StringConstructor }): T, encode (m: object): { finish (): Uint8Array } }
interface OtlpRoot { opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: MessageType<DecodedRequest>, ExportTraceServiceResponse: MessageType<object> } } } } } }

const root = createRequire(import.meta.url)('otlp-transformer-protobuf/build/src/generated/root.js') as OtlpRoot
const { ExportTraceServiceRequest, ExportTraceServiceResponse } = root.opentelemetry.proto.collector.trace.v1

export const SPAN_KIND = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const

export interface ReceivedSpan {
  service: string
  instance: string
  traceId: string
  spanId: string
  /** '' for a root span */
  parentSpanId: string
  name: string
  kind: typeof SPAN_KIND[number]
  startNs: bigint
  endNs: bigint
  durationMs: number
  attributes: Record<string, string | number | boolean>
  /** 0 unset, 1 ok, 2 error */
  statusCode: number
  statusMessage: string
}

const hex = (b: Uint8Array | undefined) => b ? Buffer.from(b).toString('hex') : ''

function attributes (kvs: KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const { key, value } of kvs ?? []) {
    if (!value) continue
    if (value.stringValue !== undefined) out[key] = value.stringValue
    else if (value.boolValue !== undefined) out[key] = value.boolValue
    else if (value.intValue !== undefined) out[key] = Number(value.intValue)
    else if (value.doubleValue !== undefined) out[key] = value.doubleValue
  }
  return out
}

/** Decode one ExportTraceServiceRequest body into flat spans. */
export function decodeTraces (body: Uint8Array): ReceivedSpan[] {
  const req = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: String })
  const out: ReceivedSpan[] = []
  for (const rs of req.resourceSpans ?? []) {
    const res = attributes(rs.resource?.attributes)
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const startNs = BigInt(s.startTimeUnixNano)
        const endNs = BigInt(s.endTimeUnixNano)
        out.push({
          service: String(res['service.name'] ?? ''), instance: String(res['service.instance.id'] ?? ''),
          traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId), name: s.name,
          kind: SPAN_KIND[s.kind ?? 0] ?? 'unspecified', startNs, endNs, durationMs: Number(endNs - startNs) / 1e6,
          attributes: attributes(s.attributes), statusCode: s.status?.code ?? 0, statusMessage: s.status?.message ?? ''
        })
      }
    }
  }
  return out
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = []
  /** requests refused (not protobuf, not decodable) */
  refused = 0
  private server: http.Server | null = null

  get endpoint (): string {
    const addr = this.server?.address() as AddressInfo | null
    if (!addr) throw new Error('receiver is not listening')
    return `http://127.0.0.1:${addr.port}`
  }

  async listen (): Promise<string> {
    this.server = http.createServer((req, res) => this.handle(req, res))
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve))
    return this.endpoint
  }

  private handle (req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = []
    req.on('data', (d: Buffer) => chunks.push(d))
    req.on('end', () => {
      try {
        if (req.method !== 'POST' || req.url !== '/v1/traces') { res.writeHead(404).end(); return }
        if (!/^application\/x-protobuf/.test(req.headers['content-type'] ?? '')) { this.refused++; res.writeHead(415).end(); return }
        let body = Buffer.concat(chunks)
        if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body)
        this.spans.push(...decodeTraces(body))
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.from(ExportTraceServiceResponse.encode({}).finish()))
      } catch (err) {
        this.refused++
        res.writeHead(400, { 'content-type': 'text/plain' }).end((err as Error).message)
      }
    })
  }

  /** The spans of one trace. */
  trace (traceId: string): ReceivedSpan[] { return this.spans.filter((s) => s.traceId === traceId) }

  async close (): Promise<void> {
    const server = this.server
    this.server = null
    if (server) await new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
