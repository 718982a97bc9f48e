//! The composition root: config, storage, block production, RPC and supervision of a running Agora node.
