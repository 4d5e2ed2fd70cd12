import path from 'node:path'

// Where a process keeps its state and finds the DHT: the state dir and the bootstrap list. No
// dependencies, so the CLI reads them without loading the configuration schemas (../config.ts
// re-exports both for the services).

export function stateDir (env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.HYPERINFER_HOME ?? '.hyperinfer')
}

export function bootstrapList (value: string | undefined): Array<{ host: string, port: number }> | undefined {
  if (!value) return undefined
  return value.split(/[\s,]+/).filter(Boolean).map((entry) => {
    const i = entry.lastIndexOf(':')
    const host = i > 0 ? entry.slice(0, i) : '127.0.0.1'
    const p = Number(entry.slice(i + 1))
    if (!Number.isInteger(p) || p <= 0 || p > 65535) throw new Error(`bad bootstrap entry '${entry}', expected host:port`)
    return { host, port: p }
  })
}
