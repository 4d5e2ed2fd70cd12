import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type Corestore from 'corestore'
import type Hypercore from 'hypercore'
import type { HypercoreDownload } from 'hypercore'
import { MeshError } from '../errors.ts'
import { RegistryBase, type RegistryBaseOptions } from './base.ts'

// A read-only copy of someone's registry, kept current over `replicate(stream)`. It has the base's
// reads and change events and nothing else: there is no write method to call, so a write can only
// go to the writer (the gateway that owns the registry).

export interface RegistryReplicaOptions extends RegistryBaseOptions {
  /** the writer's registry key (hex, or a Buffer) */
  key: string | Buffer
  /** Corestore directory; a fresh temporary one (removed on close) when left out */
  storage?: string
  /** a read that needs a block not yet downloaded fails after this many ms (default 10 000) */
  readTimeoutMs?: number
}

export class RegistryReplica extends RegistryBase {
  private readonly registryKey: Buffer
  private readonly storage: string | null
  private tmpDir: string | null = null
  private download: HypercoreDownload | null = null

  constructor (opts: RegistryReplicaOptions) {
    super(opts)
    const key = typeof opts.key === 'string' ? opts.key : opts.key.toString('hex')
    if (!/^[0-9a-fA-F]{64}$/.test(key)) throw MeshError.BAD_REQUEST('registry key must be 64 hex characters')
    this.registryKey = Buffer.from(key, 'hex')
    this.storage = opts.storage ?? null
    // reads never wait for a round-trip to ask for a newer length: the live download below brings
    // every append as it happens; a read of a block still on its way waits at most readTimeoutMs
    this.readOptions = { update: false, timeout: opts.readTimeoutMs ?? 10_000 }
  }

  protected storageDir (): string {
    if (this.storage) {
      fs.mkdirSync(this.storage, { recursive: true })
      return this.storage
    }
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-registry-replica-'))
    return this.tmpDir
  }

  protected openCore (store: Corestore): Hypercore {
    return store.get({ key: this.registryKey })
  }

  protected async afterOpen (): Promise<void> {
    // keep the whole log local, following the writer live (end: -1): the registry is small, and
    // change events and reads then never wait on the network
    this.download = this.requireCore().download({ start: 0, end: -1 })
  }

  protected async beforeClose (): Promise<void> {
    this.download?.destroy()
  }

  protected async afterClose (): Promise<void> {
    if (this.tmpDir) fs.rmSync(this.tmpDir, { recursive: true, force: true })
  }
}
