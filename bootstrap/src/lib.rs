//! The DistributeAI bootstrap peer: a long-running libp2p node that only routes, so that new
//! nodes have a stable address to join the mesh through. It is built with the mesh.
