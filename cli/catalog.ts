import type { Command } from './command.ts'

// Every command by name, with the one line `hyperinfer --help` shows, and how to load its code. A
// command's module (and what it needs: the SDK, the protocol schemas, the DHT) loads only when that
// command runs, so help and light commands start as fast as node does.

export interface CatalogEntry { name: string, summary: string, load (): Promise<Command> }

export const CATALOG: CatalogEntry[] = [
  { name: 'register', summary: 'create an account (with --setup-code: the first admin)', load: async () => (await import('./commands/account.ts')).register },
  { name: 'login', summary: 'log in and keep the session token in the state dir', load: async () => (await import('./commands/account.ts')).login },
  { name: 'logout', summary: 'log out: the session is refused everywhere from now on, and its file is removed', load: async () => (await import('./commands/account.ts')).logout },
  { name: 'keys', summary: 'create, list, revoke and set API keys; resume a suspended key (admins)', load: async () => (await import('./commands/keys.ts')).keys },
  { name: 'safety', summary: "your account's safety policy (off, flag, redact, block): show it, or set it", load: async () => (await import('./commands/keys.ts')).safety },
  { name: 'infer', summary: 'run a prompt and stream the answer (prompt from stdin when no argument)', load: async () => (await import('./commands/infer.ts')).infer },
  { name: 'compare', summary: 'run one prompt on several models at once, side by side, with latency and cost per model', load: async () => (await import('./commands/compare.ts')).compare },
  { name: 'models', summary: 'models the gateway routes to; admins: models add|set|remove', load: async () => (await import('./commands/registry.ts')).models },
  { name: 'status', summary: 'gateway health (auth, database, workers, models) and, with a metrics URL, every mesh member', load: async () => (await import('./commands/info.ts')).status },
  { name: 'quota', summary: "your API key's limits, what is left of each, and your credits", load: async () => (await import('./commands/info.ts')).quota },
  { name: 'usage', summary: 'your requests, tokens and cost per day and per model', load: async () => (await import('./commands/account.ts')).usage },
  { name: 'credits', summary: 'your credit balance and ledger; admins: credits grant <user> <usd>', load: async () => (await import('./commands/account.ts')).credits },
  { name: 'registry', summary: 'the model registry: its key and (admins) its change history', load: async () => (await import('./commands/registry.ts')).registry },
  { name: 'workers', summary: 'workers with their owners (operators: your own), drain or resume one; admins: approve, revoke, reject, join tokens', load: async () => (await import('./commands/registry.ts')).workers },
  { name: 'prices', summary: "operators: your workers' prices per model (nano-USD per token); admins: prices bounds <model>", load: async () => (await import('./commands/operators.ts')).prices },
  { name: 'earnings', summary: 'operators: what your workers earned by day, worker and model; admins: earnings export --csv', load: async () => (await import('./commands/operators.ts')).earnings },
  { name: 'gateways', summary: 'gateways the registry vouches for (workers serve only these); admins: gateways add|remove', load: async () => (await import('./commands/registry.ts')).gateways },
  { name: 'worker-token', summary: "print this machine's network worker token; admins: worker-token rotate", load: async () => (await import('./commands/info.ts')).workerToken },
  { name: 'worker', summary: 'run an inference worker here and join it to a gateway (Ctrl-C drains and stops it)', load: async () => (await import('./commands/worker.ts')).worker },
  { name: 'cache', summary: 'response cache: stats, purge, and semantic lookups per key', load: async () => (await import('./commands/cache.ts')).cache },
  { name: 'receipts', summary: 'your requests\' signed usage receipts: show one (JSON), or verify a receipt file offline', load: async () => (await import('./commands/receipts.ts')).receipts },
  { name: 'feedback', summary: 'score an answer (0 bad … 1 good); learned routing learns from it', load: async () => (await import('./commands/cache.ts')).feedback }
]
