export { Registry, RegistryReplica, RegistryBase, REGISTRY_CORE_NAME } from './registry.ts'
export type { RegistryOptions, RegistryReplicaOptions, RegistryChange, HistoryEntry, HistoryOptions, RegistryReader } from './registry.ts'
export { replicateOverPeer, replicateOverClient } from './mesh.ts'
export * from './schema.ts'
