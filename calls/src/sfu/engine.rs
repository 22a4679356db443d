//! The async handle to the shards: starts the socket and threads, and turns method calls into
//! shard commands with replies.

use std::{
    hash::{Hash, Hasher},
    net::{SocketAddr, UdpSocket},
    sync::{atomic::AtomicBool, Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use platform::Meter;
use tokio::sync::{oneshot, watch};

use super::{
    net::{self, ShardHandle, ShardInput},
    shard::{Shard, ShardConfig},
    shared::{Directory, PeerEntry, Routes},
    types::{Command, Owner, SfuError},
};
use crate::media::PeerState;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub bind: SocketAddr,
    /// The IP put in our ICE candidate; `None` uses the bound address.
    pub public_ip: Option<std::net::IpAddr>,
    pub workers: usize,
    pub socket_buffer_bytes: usize,
    pub max_tracks_per_session: usize,
    pub inactive_after: Duration,
    /// See [`ShardConfig::idle_timeout`].
    pub idle_timeout: Option<Duration>,
}

struct Inner {
    shards: Vec<ShardHandle>,
    directory: Arc<Directory>,
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Cheap-to-clone handle to the running media engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn start(config: &EngineConfig, meter: Meter) -> std::io::Result<Self> {
        let socket: Arc<UdpSocket> =
            Arc::new(net::bind_socket(config.bind, config.socket_buffer_bytes)?);
        let local_addr = socket.local_addr()?;
        let ip = config.public_ip.unwrap_or_else(|| local_addr.ip());
        if ip.is_unspecified() {
            tracing::warn!("calls: the UDP socket is bound to a wildcard address and no public IP is set; clients will not reach the SFU");
        }
        let candidate_addr = SocketAddr::new(ip, local_addr.port());
        let routes = Arc::new(Routes::default());
        let directory = Arc::new(Directory::default());
        let stop = Arc::new(AtomicBool::new(false));
        // One DTLS certificate for all peers: generating one costs 150-250 ms.
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("cannot generate the DTLS certificate"))?;
        let workers = config.workers.max(1);
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..workers {
            let shard_config = ShardConfig {
                candidate_addr,
                max_tracks_per_session: config.max_tracks_per_session,
                inactive_after: config.inactive_after,
                keyframe_interval: Duration::from_millis(500),
                idle_timeout: config.idle_timeout,
            };
            let shard = Shard::new(
                index,
                shard_config,
                cert.clone(),
                routes.clone(),
                directory.clone(),
            );
            let (thread, handle) = net::spawn_shard(
                shard,
                socket.clone(),
                candidate_addr,
                config.socket_buffer_bytes,
                meter.clone(),
                index,
            )?;
            threads.push(thread);
            senders.push(handle);
        }
        threads.push(net::spawn_receiver(
            socket,
            routes,
            senders.clone(),
            stop.clone(),
        )?);
        tracing::info!(%local_addr, %candidate_addr, workers, "calls media engine started");
        Ok(Self {
            inner: Arc::new(Inner {
                shards: senders,
                directory,
                local_addr,
                stop,
                threads: Mutex::new(threads),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// The shard for a new peer: all peers of one app (or account) share one.
    pub fn shard_for_key(&self, key: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.inner.shards.len() as u64) as usize
    }

    pub fn peer(&self, id: &str) -> Option<PeerEntry> {
        self.inner.directory.peer(id)
    }

    pub fn send(&self, shard: usize, command: Command) -> Result<(), SfuError> {
        self.inner
            .shards
            .get(shard)
            .ok_or(SfuError::ShuttingDown)?
            .send(ShardInput::Command(command))
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// Sends a command built around a reply channel and waits for the answer.
    pub async fn call<T>(
        &self,
        shard: usize,
        build: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.send(shard, build(tx))?;
        rx.await.map_err(|_| SfuError::ShuttingDown)?
    }

    /// Creates a peer on the shard of `shard_key`, optionally answering `offer`.
    pub async fn create_peer(
        &self,
        shard_key: &str,
        account: &str,
        owner: Owner,
        offer: Option<String>,
    ) -> Result<(String, Option<String>), SfuError> {
        let id = platform::ids::new_uid();
        let shard = self.shard_for_key(shard_key);
        let (state, _) = watch::channel(PeerState::Connecting);
        let answer = self
            .call(shard, |reply| Command::CreatePeer {
                peer: id.clone(),
                account: account.to_owned(),
                owner,
                offer,
                state,
                reply,
            })
            .await?;
        Ok((id, answer))
    }

    /// Sends a command to the shard of an existing peer.
    pub async fn call_peer<T>(
        &self,
        peer: &str,
        build: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let entry = self.peer(peer).ok_or(SfuError::NotFound("session"))?;
        self.call(entry.shard, build).await
    }

    /// Stops the receive thread and every shard (each closes its peers first) and waits for the
    /// threads to end. Blocking: the receive thread notices within its 200 ms read timeout.
    /// Commands sent afterwards fail with [`SfuError::ShuttingDown`].
    pub fn shutdown(&self) {
        self.inner
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for shard in &self.inner.shards {
            let _ = shard.send(ShardInput::Stop);
        }
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let name = t.thread().name().unwrap_or("calls").to_owned();
            if t.join().is_err() {
                tracing::error!(thread = %name, "calls media thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Shard threads end when their senders (ours and the receiver's) are gone.
        let _ = self.threads.lock().map(|mut t| t.clear());
    }
}
