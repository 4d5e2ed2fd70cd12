import type { MeshClient } from '../mesh/client.ts'
import type { Peer } from '../mesh/peer.ts'
import type { RegistryBase } from './base.ts'

// Registry replication over the mesh's own connections. @hyperswarm/rpc puts its Protomux on the
// NoiseSecretStream (`stream.userData = rpc.mux`, "for Hypercore replication"), so Corestore adds a
// 'hypercore/alpha' channel next to the RPC channel on the same encrypted connection: no second
// connection, no second handshake, and it comes back by itself whenever the RPC connection does.

/** Replicate over one mesh connection (either side): the writer in MeshService.onPeer, a replica on MeshClient 'open'. */
export function replicateOverPeer (registry: RegistryBase, peer: Peer): void {
  if (peer.isClosed || !registry.opened) return
  registry.replicate(peer.channel.stream)
}

/**
 * Keep a registry replicating over a long-lived MeshClient: its current connection and every
 * reconnect. Returns the function that stops attaching to new connections.
 */
export function replicateOverClient (registry: RegistryBase, client: MeshClient): () => void {
  const onOpen = (peer: Peer) => {
    // replicate() throws only once the registry is closed, and a closed registry has nothing to share
    try { replicateOverPeer(registry, peer) } catch {}
  }
  client.on('open', onOpen)
  // a connection that drops before it opens is no loss: the 'open' listener catches the next one
  if (client.connected) client.waitOpen(0).then(onOpen, () => {})
  return () => { client.off('open', onOpen) }
}
