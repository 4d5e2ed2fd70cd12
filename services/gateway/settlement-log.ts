import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from '../../shared/log.ts'

// The gateway's durable record of what it admitted and how each request ended, in its state dir
// (accounting/<instance>/NNNNNNNN.log): append-only segments of one JSON object a line.
//
// A request's end is appended with appendDurable(). With `sync: 'write'` (the default) it resolves once
// the kernel has the line, which survives the process being killed, and the log is fdatasync'd at
// most FLUSH_MS later, so a power cut can lose only the ends answered in the last FLUSH_MS. With
// 'fsync' it resolves after fdatasync (a power cut loses nothing answered, and each answer waits on
// the disk: 1–6 ms on a virtual disk). Everything appended while one write (and sync) is under way
// goes in the next: one write and one sync for many requests under load.
// Ends that arrive in one turn of the event loop go out in one write at its end (setImmediate), so a
// burst of answers costs one system call, and a lone answer waits for nothing but its own write.
// Admissions are appended without waiting (a crash before their line is written loses only a
// request nobody was answered for); they ride with the next write, at most a few ms later. A request
// that ends before its admission was written needs no admission line: its end says all of it.
//
// Segments: a new one at every start and past `maxSegmentBytes`. Each counts the lines in it that
// still matter (an admission not yet ended, an end not yet recorded in PostgreSQL); an old segment
// whose count reaches zero is deleted. At start, open() hands back every line of the segments a
// previous process left; the caller records them (exactly once: PostgreSQL ignores a request id it
// has) and then calls dropRecovered(). A torn last line (the process died mid-write) is skipped:
// it was never acknowledged.

/** Where a line went: its segment, known once it is written (-1 until then). */
export interface Ticket { seg: number }

/** A line waiting for the next write: its record is turned into text only then, and not at all once superseded. */
interface Pending { record: unknown, ticket: Ticket, superseded: boolean }

export interface LogOptions { sync?: 'fsync' | 'write', maxSegmentBytes?: number, log?: Logger }

const ADMIT_DELAY_MS = 2
/** with sync 'write': the longest a written line waits for fdatasync */
const FLUSH_MS = 10

const datasync = (fd: number) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => err ? reject(err) : resolve()))

export class SettlementLog {
  private readonly dir: string
  private readonly sync: 'fsync' | 'write'
  private readonly maxSegmentBytes: number
  private readonly log?: Logger
  private fd: number | null = null
  private seg = 0
  private size = 0
  private readonly live = new Map<number, number>()
  private recovered: string[] = []
  private buf: Pending[] = []
  /** admissions waiting in `buf`, by ticket: an end that comes first supersedes its admission's line */
  private readonly waitingAdmissions = new Map<Ticket, Pending>()
  private waiters: Array<{ resolve: () => void, reject: (e: unknown) => void }> = []
  private writing = false
  private timer: NodeJS.Timeout | null = null
  private immediate: NodeJS.Immediate | null = null
  private flushTimer: NodeJS.Timeout | null = null
  private failed: Error | null = null

  constructor (dir: string, opts: LogOptions = {}) {
    this.dir = dir
    this.sync = opts.sync ?? 'write'
    this.maxSegmentBytes = opts.maxSegmentBytes ?? 16 * 1024 * 1024
    this.log = opts.log
  }

  /** Open a fresh segment; returns the records the segments of earlier processes hold, oldest first. */
  async open (): Promise<unknown[]> {
    await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 })
    const names = (await fs.promises.readdir(this.dir)).filter((n) => /^\d{8}\.log$/.test(n)).sort()
    const records: unknown[] = []
    let torn = 0
    for (const name of names) {
      const text = await fs.promises.readFile(path.join(this.dir, name), 'utf8')
      for (const line of text.split('\n')) {
        if (line.length === 0) continue
        try { records.push(JSON.parse(line)) } catch { torn++ } // a line cut short by a crash: never acknowledged
      }
    }
    if (torn > 0) this.log?.warn({ lines: torn }, 'settlement log: skipped lines cut short by a crash')
    this.recovered = names
    this.seg = names.length > 0 ? Number(names.at(-1)!.slice(0, 8)) + 1 : 1
    await this.openSegment()
    return records
  }

  /** The recovered records are in PostgreSQL: delete the segments they came from. */
  async dropRecovered (): Promise<void> {
    for (const name of this.recovered.splice(0)) await fs.promises.rm(path.join(this.dir, name), { force: true })
  }

  /** Append an admission; pass its ticket to appendDurable when the request ends. */
  append (record: unknown): Ticket {
    const ticket = { seg: -1 }
    const pending = { record, ticket, superseded: false }
    this.buf.push(pending)
    this.waitingAdmissions.set(ticket, pending)
    if (!this.writing && !this.timer && !this.immediate) this.timer = setTimeout(() => { this.timer = null; this.kick() }, ADMIT_DELAY_MS)
    return ticket
  }

  /**
   * Append a request's end; resolves with its ticket once it is durable. `admitted`: its admission's
   * ticket, whose line no longer needs keeping then.
   */
  appendDurable (record: unknown, admitted: Ticket | null): Promise<Ticket> {
    if (this.failed) return Promise.reject(this.failed)
    const ticket = { seg: -1 }
    // the admission not written yet is not written at all: this end takes its place
    const admission = admitted ? this.waitingAdmissions.get(admitted) : undefined
    if (admission) { admission.superseded = true; this.waitingAdmissions.delete(admitted!) }
    return new Promise<Ticket>((resolve, reject) => {
      this.buf.push({ record, ticket, superseded: false })
      this.waiters.push({ resolve: () => { if (admitted && admitted.seg >= 0) this.release(admitted.seg); resolve(ticket) }, reject })
      this.kickSoon()
    })
  }

  /** A record of segment `seg` is in PostgreSQL (or an admission of it ended): it no longer needs keeping. */
  release (seg: number): void {
    const n = (this.live.get(seg) ?? 0) - 1
    if (n > 0 || seg === this.seg) { this.live.set(seg, Math.max(0, n)); return }
    this.live.delete(seg)
    fs.promises.rm(this.file(seg), { force: true }).catch((err) => this.log?.warn({ err: (err as Error).message }, 'settlement log: could not delete a segment'))
  }

  async close (): Promise<void> {
    while (this.writing || this.buf.length > 0) {
      this.kick()
      await new Promise((resolve) => setTimeout(resolve, 5))
      if (this.failed) break
    }
    if (this.timer) clearTimeout(this.timer)
    if (this.immediate) clearImmediate(this.immediate)
    if (this.flushTimer) { clearTimeout(this.flushTimer); this.flushTimer = null }
    if (this.fd !== null) {
      try {
        fs.fdatasyncSync(this.fd)
      } catch (err) {
        this.log?.error({ err: (err as Error).message }, 'settlement log: last sync failed')
      }
      fs.closeSync(this.fd)
    }
    this.fd = null
  }

  private file (seg: number): string { return path.join(this.dir, String(seg).padStart(8, '0') + '.log') }

  private async openSegment (): Promise<void> {
    this.fd = fs.openSync(this.file(this.seg), 'a', 0o600)
    this.size = 0
    // the new file's name must survive a crash too
    const dir = await fs.promises.open(this.dir, 'r')
    try { await dir.sync() } finally { await dir.close() }
  }

  /** write at the end of this turn of the event loop, with whatever else ends in it */
  private kickSoon (): void {
    if (this.immediate || this.writing) return
    if (this.timer) { clearTimeout(this.timer); this.timer = null }
    this.immediate = setImmediate(() => { this.immediate = null; this.kick() })
  }

  private kick (): void {
    if (this.writing || this.buf.length === 0 || this.fd === null) return
    if (this.timer) { clearTimeout(this.timer); this.timer = null }
    if (this.immediate) { clearImmediate(this.immediate); this.immediate = null }
    this.writing = true
    void this.drain()
  }

  /** with sync 'write': fdatasync what was written, FLUSH_MS from the first write since the last sync */
  private flushSoon (): void {
    if (this.flushTimer) return
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null
      const fd = this.fd
      if (fd === null) return
      datasync(fd).catch((err) => this.log?.error({ err: (err as Error).message }, 'settlement log: sync failed'))
    }, FLUSH_MS)
  }

  private async drain (): Promise<void> {
    try {
      while (this.buf.length > 0) {
        const lines = this.buf
        const waiters = this.waiters
        this.buf = []
        this.waiters = []
        let chunk = ''
        let written = 0
        for (const l of lines) {
          if (l.superseded) continue
          chunk += JSON.stringify(l.record) + '\n'
          l.ticket.seg = this.seg
          this.waitingAdmissions.delete(l.ticket)
          written++
        }
        this.live.set(this.seg, (this.live.get(this.seg) ?? 0) + written)
        try {
          // the write itself goes to the page cache at once (no thread hop); only the sync waits on the disk
          if (written > 0) fs.writeSync(this.fd!, chunk)
          if (waiters.length > 0 && this.sync === 'fsync') await datasync(this.fd!)
          else this.flushSoon()
        } catch (err) {
          this.failed = err as Error
          this.log?.error({ err: (err as Error).message }, 'settlement log: write failed')
          for (const w of waiters) w.reject(err)
          continue
        }
        this.size += Buffer.byteLength(chunk)
        for (const w of waiters) w.resolve()
        if (this.size > this.maxSegmentBytes) {
          const old = this.seg
          fs.fdatasyncSync(this.fd!)
          fs.closeSync(this.fd!)
          this.seg++
          await this.openSegment()
          if ((this.live.get(old) ?? 0) === 0) { this.live.set(old, 1); this.release(old) }
        }
      }
    } finally {
      this.writing = false
    }
  }
}
