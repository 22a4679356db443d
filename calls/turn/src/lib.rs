//! TURN/STUN for Calls: a sans-IO STUN/TURN core ([`core`], [`stun`]) with UDP, TCP and TLS
//! shells ([`net`]), ephemeral credentials minted from per-account TURN keys
//! ([`credentials`], [`api`]), and relayed bytes metered per key's account.

pub mod api;
mod config;
pub mod core;
pub mod credentials;
pub mod net;
mod store;
pub mod stun;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use axum::Router;
use platform::{Metric, Platform};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use config::TurnConfig;
use core::{CoreConfig, Now, Transport, TurnCore};
use credentials::KeyRing;
use net::{lock, RelayPorts, Shared};

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid listen address {0:?}")]
    BadAddress(String),
    #[error("TLS: {0}")]
    Tls(#[from] net::tls::TlsSetupError),
    #[error("loading TURN keys: {0}")]
    Db(#[from] sqlx::Error),
}

/// The addresses the listeners actually bound (port 0 becomes a real port).
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundAddrs {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

pub struct ServiceInner {
    pub platform: Platform,
    config: TurnConfig,
    shared: Arc<Shared>,
    addrs: BoundAddrs,
    public_host: String,
    engine: Arc<tokio::sync::Mutex<Engine>>,
    housekeeping: Mutex<Option<JoinHandle<()>>>,
}

impl ServiceInner {
    /// Applies an API change to the live key ring at once (the periodic reload would catch it
    /// later; this makes it immediate on this instance).
    pub fn shared_keys(&self, change: impl FnOnce(&mut KeyRing)) {
        change(&mut self.shared.keys_mut());
    }

    /// `stun:`, `turn:` and `turns:` URLs of the enabled listeners, Cloudflare's order.
    pub fn ice_urls(&self) -> Vec<String> {
        let host = &self.public_host;
        let mut urls = Vec::new();
        if let Some(udp) = self.addrs.udp {
            urls.push(format!("stun:{host}:{}", udp.port()));
            urls.push(format!("turn:{host}:{}?transport=udp", udp.port()));
        }
        if let Some(tcp) = self.addrs.tcp {
            urls.push(format!("turn:{host}:{}?transport=tcp", tcp.port()));
        }
        if let Some(tls) = self.addrs.tls {
            urls.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
        }
        urls
    }
}

#[derive(Clone)]
pub struct TurnService {
    inner: Arc<ServiceInner>,
}

fn parse_listen(addr: &str) -> Result<Option<SocketAddr>, TurnError> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Ok(None);
    }
    addr.parse()
        .map(Some)
        .map_err(|_| TurnError::BadAddress(addr.to_string()))
}

/// The TURN listeners and core without the platform: what [`TurnService`] runs, and what the
/// bench server runs with a fixed key ring.
pub struct Engine {
    pub shared: Arc<Shared>,
    pub addrs: BoundAddrs,
    pub advertised_ip: Option<IpAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Engine {
    pub async fn start(
        config: &TurnConfig,
        keys: KeyRing,
        public_host: &str,
    ) -> Result<Engine, TurnError> {
        let advertised_ip = config.external_ip.or_else(|| {
            if config.relay_ip.is_unspecified() {
                net::guess_local_ip()
            } else {
                Some(config.relay_ip)
            }
        });
        let core_config = CoreConfig {
            realm: config.realm.clone(),
            max_lifetime: Duration::from_secs(config.max_lifetime_secs.max(60)),
            nonce_lifetime: Duration::from_secs(config.nonce_lifetime_secs.max(10)),
            user_quota: config.user_quota,
            total_quota: config.total_quota,
            peer_policy: core::peer_policy::PeerPolicy {
                allow_loopback: config.allow_loopback_peers,
                allow_private: config.allow_private_peers,
            },
            advertised_ip,
            ..CoreConfig::default()
        };
        let mut nonce_secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce_secret);
        let shared = Arc::new(Shared {
            core: Mutex::new(TurnCore::new(core_config, nonce_secret)),
            keys: RwLock::new(keys),
            routes: net::Routes::default(),
            relay_ports: RelayPorts::new(
                config.relay_ip,
                config.relay_port_min,
                config.relay_port_max,
            ),
            cancel: CancellationToken::new(),
        });
        let mut addrs = BoundAddrs::default();
        let mut tasks = Vec::new();
        if config.enabled {
            if let Some(addr) = parse_listen(&config.udp_addr)? {
                // One socket per core on the same port (SO_REUSEPORT): the kernel spreads
                // clients over them by address hash, so client traffic is read in parallel
                // instead of through one receive loop.
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
                let bind_error = |addr: SocketAddr, source| TurnError::Bind {
                    what: "UDP",
                    addr: addr.to_string(),
                    source,
                };
                let first = net::bind_udp_reuse(addr).map_err(|e| bind_error(addr, e))?;
                let bound = first.local_addr()?;
                addrs.udp = Some(bound);
                let mut sockets = vec![first];
                for _ in 1..workers {
                    sockets.push(net::bind_udp_reuse(bound).map_err(|e| bind_error(bound, e))?);
                }
                for socket in sockets {
                    tasks.push(tokio::spawn(net::serve_udp(
                        shared.clone(),
                        Arc::new(socket),
                    )));
                }
            }
            if let Some(addr) = parse_listen(&config.tcp_addr)? {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| TurnError::Bind {
                        what: "TCP",
                        addr: addr.to_string(),
                        source,
                    })?;
                addrs.tcp = Some(listener.local_addr()?);
                tasks.push(tokio::spawn(accept_tcp(shared.clone(), listener, None)));
            }
            if let Some(addr) = parse_listen(&config.tls_addr)? {
                let names = vec![public_host.to_string(), "localhost".to_string()];
                let tls = net::tls::server_config(
                    config.tls_cert.as_deref(),
                    config.tls_key.as_deref(),
                    &names,
                )?;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| TurnError::Bind {
                        what: "TLS",
                        addr: addr.to_string(),
                        source,
                    })?;
                addrs.tls = Some(listener.local_addr()?);
                tasks.push(tokio::spawn(accept_tcp(
                    shared.clone(),
                    listener,
                    Some(tokio_rustls::TlsAcceptor::from(tls)),
                )));
            }
            tracing::info!(udp = ?addrs.udp, tcp = ?addrs.tcp, tls = ?addrs.tls, advertised = ?advertised_ip, "TURN listening");
        }
        Ok(Engine {
            shared,
            addrs,
            advertised_ip,
            tasks,
        })
    }

    /// One housekeeping step: expiry and revocation; returns relayed bytes per account.
    pub fn tick(&self) -> Vec<(Arc<str>, u64)> {
        let ended = {
            let keys = self.shared.keys();
            self.shared.core().tick(Now::system(), &*keys)
        };
        for relay in ended {
            relay.cancel.cancel();
        }
        self.shared.core().drain_usage()
    }

    /// Stops listeners and relays; returns the last relayed bytes per account.
    pub async fn stop(&mut self) -> Vec<(Arc<str>, u64)> {
        self.shared.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let relays = self.shared.core().clear();
        for relay in relays {
            relay.cancel.cancel();
        }
        self.shared.core().drain_usage()
    }
}

impl TurnService {
    pub async fn start(platform: Platform, config: TurnConfig) -> Result<Self, TurnError> {
        let keys = store::load_keyring(&platform.db).await?;
        let public_host = config
            .public_host
            .clone()
            .unwrap_or_else(|| host_of(&platform.public_url()));
        let engine = Engine::start(&config, keys, &public_host).await?;
        let shared = engine.shared.clone();
        let addrs = engine.addrs;
        let engine = Arc::new(tokio::sync::Mutex::new(engine));
        let housekeeping = tokio::spawn(housekeeping(
            engine.clone(),
            shared.clone(),
            platform.clone(),
            Duration::from_millis(config.key_reload_ms.max(100)),
        ));
        let inner = Arc::new(ServiceInner {
            platform,
            config,
            shared,
            addrs,
            public_host,
            engine,
            housekeeping: Mutex::new(Some(housekeeping)),
        });
        Ok(Self { inner })
    }

    pub fn router(&self) -> Router {
        api::routes(api::ApiState {
            inner: self.inner.clone(),
        })
    }

    /// Where the listeners are (tests bind port 0).
    pub fn addrs(&self) -> BoundAddrs {
        self.inner.addrs
    }

    pub fn config(&self) -> &TurnConfig {
        &self.inner.config
    }

    /// Counters of the core (allocations, malformed input, relayed packets).
    pub fn stats(&self) -> core::Stats {
        self.inner.shared.core().stats()
    }

    /// Stops the listeners and relays and meters what was relayed.
    pub async fn shutdown(&self) {
        self.inner.shared.cancel.cancel();
        let housekeeping = lock(&self.inner.housekeeping).take();
        if let Some(task) = housekeeping {
            let _ = task.await;
        }
        let usage = self.inner.engine.lock().await.stop().await;
        record_usage(&self.inner.platform, usage);
    }
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return format!("[{}]", v6.split(']').next().unwrap_or(v6));
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
        .to_string()
}

/// Accepts TCP (or, with an acceptor, TLS) connections until shutdown.
async fn accept_tcp(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let Ok(server) = listener.local_addr() else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, client)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        match tls.clone() {
            None => {
                tokio::spawn(net::serve_stream(
                    shared,
                    stream,
                    client,
                    server,
                    Transport::Tcp,
                ));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            net::serve_stream(shared, tls_stream, client, server, Transport::Tls)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Expires state every second, meters relayed bytes, and reloads keys from the database.
async fn housekeeping(
    engine: Arc<tokio::sync::Mutex<Engine>>,
    shared: Arc<Shared>,
    platform: Platform,
    reload_every: Duration,
) {
    let mut tick = tokio::time::interval(net::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reload = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let usage = engine.lock().await.tick();
        record_usage(&platform, usage);
        if last_reload.elapsed() >= reload_every {
            last_reload = tokio::time::Instant::now();
            match store::load_keyring(&platform.db).await {
                Ok(ring) => *shared.keys_mut() = ring,
                Err(e) => {
                    tracing::warn!(error = %e, "reloading TURN keys failed; keeping the current ones")
                }
            }
        }
    }
}

fn record_usage(platform: &Platform, usage: Vec<(Arc<str>, u64)>) {
    for (account, bytes) in usage {
        platform
            .meter
            .record(&account, Metric::TurnEgressBytes, bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_is_taken_from_the_public_url() {
        assert_eq!(host_of("https://media.example.com"), "media.example.com");
        assert_eq!(host_of("http://127.0.0.1:8080/x"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:8080"), "[::1]");
    }
}
