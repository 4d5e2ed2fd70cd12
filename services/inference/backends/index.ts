import type { Backend } from './types.ts'
import { SyntheticBackend, type SyntheticOptions } from './synthetic.ts'

export interface BackendConfig {
  synthetic?: SyntheticOptions | false
  ollamaUrl?: string
  openai?: { baseURL: string, apiKey: string, models?: string[] }
}

/** The backends a worker runs, from its configuration. */
export function createBackends (cfg: BackendConfig): Backend[] {
  const out: Backend[] = []
  if (cfg.synthetic !== false) out.push(new SyntheticBackend(cfg.synthetic ?? {}))
  return out
}
