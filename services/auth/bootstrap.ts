import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'

// The first admin. While no account is an admin, auth keeps a one-time setup code in a file in its
// state dir, readable only by the operator (mode 0600). Registering with that code
// (`hyperinfer register … --setup-code <code>`) makes the new account an admin; the code is then
// gone for good. Codes are compared as SHA-256 digests with timingSafeEqual, so timing reveals
// nothing of the code.

export const SETUP_CODE_FILE = 'admin-setup-code'

export function setupCodeFile (home: string): string {
  return path.join(home, SETUP_CODE_FILE)
}

const digest = (s: string): Buffer => crypto.createHash('sha256').update(s).digest()

export class AdminSetupCode {
  readonly file: string
  private expected: Buffer | null
  private claimed = false
  private readonly log: Logger | undefined

  private constructor (file: string, code: string | null, log?: Logger) {
    this.file = file
    this.expected = code === null ? null : digest(code)
    this.log = log
  }

  /** No code: every setup code is refused. */
  static none (): AdminSetupCode {
    return new AdminSetupCode('', null)
  }

  /**
   * While no account is an admin: the code from the file (made now if there is none). Once there is
   * an admin, the file is removed and no code is accepted.
   */
  static async prepare (pool: pg.Pool, home: string, log?: Logger): Promise<AdminSetupCode> {
    const file = setupCodeFile(home)
    const { rows } = await pool.query("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1")
    if (rows.length > 0) {
      fs.rmSync(file, { force: true })
      return new AdminSetupCode(file, null, log)
    }
    let code = ''
    try { code = fs.readFileSync(file, 'utf8').trim() } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    if (!/^[A-Za-z0-9_-]{32}$/.test(code)) {
      code = crypto.randomBytes(24).toString('base64url')
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
      fs.rmSync(file, { force: true })
      fs.writeFileSync(file, code + '\n', { mode: 0o600, flag: 'wx' })
    }
    fs.chmodSync(file, 0o600)
    log?.info({ file }, 'no admin yet: register with the setup code in this file to become one')
    return new AdminSetupCode(file, code, log)
  }

  /**
   * Take the code for one registration, or throw FORBIDDEN. The caller reports back: `used` once the
   * account exists (the code is gone for good), else the code is available again.
   */
  claim (code: string): (used: boolean) => void {
    const ok = this.expected !== null && crypto.timingSafeEqual(digest(code), this.expected)
    if (!ok || this.claimed) throw MeshError.FORBIDDEN('that setup code is wrong or was already used')
    this.claimed = true
    return (used) => {
      this.claimed = false
      if (!used) return
      this.expected = null
      try { fs.rmSync(this.file, { force: true }) } catch (err) {
        this.log?.warn({ err: (err as Error).message, file: this.file }, 'could not remove the used setup code file; it is no longer accepted')
      }
    }
  }
}
