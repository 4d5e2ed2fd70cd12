import { Pool, type Dispatcher } from 'undici'

// The HTTP client of the benches: undici's pool with one keep-alive connection per concurrent caller,
// driven through its dispatch interface, so the client adds as little as an HTTP client can to what
// is measured (no response stream objects, no fetch machinery; the body is read as one string).

export interface HttpAnswer { status: number, body: string }

export class BenchHttp {
  private readonly pool: Pool

  constructor (origin: string, connections: number) {
    this.pool = new Pool(origin, { connections, pipelining: 1 })
  }

  post (path: string, headers: Record<string, string>, body: string): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      let status = 0
      const chunks: Buffer[] = []
      // undici's core request handler (the interface its own request() is built on)
      const handler: Dispatcher.DispatchHandler = {
        onConnect () {},
        onHeaders (statusCode) { status = statusCode; return true },
        onData (chunk) { chunks.push(chunk); return true },
        onComplete () { resolve({ status, body: chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString() }) },
        onError (err) { reject(err) }
      }
      this.pool.dispatch({ path, method: 'POST', headers, body }, handler)
    })
  }

  close (): Promise<void> { return this.pool.close() }
}
