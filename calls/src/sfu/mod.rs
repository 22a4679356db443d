//! The SFU media core: sans-IO shards on str0m ([`shard`]), their pure helpers, and the
//! [`Engine`](engine::Engine) handle that addresses them from async code.

pub mod dtls;
pub mod engine;
pub mod net;
pub mod paths;
pub mod rewrite;
pub mod shard;
pub mod shared;
pub mod stun;
pub mod types;
pub mod udp;
