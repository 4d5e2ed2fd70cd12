import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { LocalMesh, type LocalMeshOptions } from '../../scripts/lib/localmesh.ts'
import { startEmbeddedPostgres } from '../../scripts/lib/embedded-pg.ts'

// A mesh with a PostgreSQL of its own (embedded in its state dir) that a test can stop and start
// again on the same port, as an operator's database outage looks to the services.

export interface OwnDbMesh {
  mesh: LocalMesh
  /** a superuser query on the mesh's database (fails while it is stopped) */
  query: <T extends pg.QueryResultRow = any>(sql: string, params?: unknown[]) => Promise<pg.QueryResult<T>>
  stopDb: () => Promise<void>
  startDb: () => Promise<void>
}

export async function startOwnDbMesh (t: { teardown: (fn: () => unknown, o?: { order?: number }) => void }, opts: Partial<LocalMeshOptions> = {}): Promise<OwnDbMesh> {
  const home = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'mesh-'))
  const mesh = new LocalMesh({ home, webPort: 0, metricsPort: 0, ...opts, databaseUrl: undefined })
  t.teardown(async () => {
    await mesh.stop()
    fs.rmSync(home, { recursive: true, force: true })
  }, { order: 1 })
  await mesh.start()
  const port = mesh.db!.port
  const query = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => {
    const c = new pg.Client({ connectionString: mesh.databaseUrl })
    c.on('error', () => {})
    await c.connect()
    try { return await c.query<T>(sql, params) } finally { await c.end().catch(() => {}) }
  }
  return {
    mesh,
    query,
    stopDb: async () => { await mesh.db!.stop() },
    startDb: async () => {
      const db = await startEmbeddedPostgres(path.join(home, 'pg'), { port })
      if (db.port !== port) throw new Error(`PostgreSQL came back on port ${db.port}, not ${port}`)
      mesh.db = db
    }
  }
}
