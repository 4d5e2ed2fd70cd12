import type { Usage } from '../../../shared/protocol/inference.ts'

// One cached answer, as both tiers keep it.

export interface CacheEntry {
  /** the account it belongs to (a user id), or '*' when the operator shares entries across accounts */
  scope: string
  key: string
  model: string
  /** the answer as the worker sent it, one string per frame: a streamed hit replays these */
  chunks: string[]
  usage: Usage
  finishReason: 'stop' | 'length'
  /** the request whose answer this is */
  sourceId: string
  createdAt: number
  expiresAt: number
  /** for semantic lookups: the prompt's embedding and the fingerprint of everything else */
  embedding?: number[]
  paramsKey?: string
  /** written by predictive warm-up */
  warm?: boolean
  /** in this gateway's memory because another gateway wrote it (and pushed it), not served here yet */
  pushed?: boolean
}

/** Bytes an entry takes, roughly: its text twice (UTF-16 in memory), its vector, and a fixed overhead. */
export function entryBytes (e: Pick<CacheEntry, 'chunks' | 'embedding'>): number {
  let n = 256
  for (const c of e.chunks) n += c.length * 2 + 16
  return n + (e.embedding?.length ?? 0) * 8
}

export const entryId = (scope: string, key: string) => scope + '\0' + key
