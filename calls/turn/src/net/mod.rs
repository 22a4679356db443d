//! The thin I/O shells around the sans-IO core: a UDP listener, TCP and TLS listeners with
//! RFC 8656 stream framing, one UDP socket and task per relayed address, and the timer task.
//!
//! STUN requests go through [`Shared::on_client`], which locks the core for one `handle_client`
//! call and does the socket write after releasing it. The data path does not touch the core's
//! lock: ChannelData from a client is routed with the allocation's [`Lane`] found in [`Routes`]
//! (a sharded, read-mostly map), and each relay socket's task holds its own lane.

mod relay;
mod stream;
pub mod tls;
mod udp;

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::{Duration, Instant},
};

use tokio::{net::UdpSocket, sync::mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    core::{
        parse_channel_data, ClientAction, FiveTuple, Lane, Now, RelayBinding, StunError, TurnCore,
    },
    credentials::KeyRing,
    stun,
};
pub use relay::RelayPorts;
pub use stream::serve_stream;
pub use udp::serve_udp;

/// The core's handle on a relay socket: the socket and the switch that stops its task.
#[derive(Clone)]
pub struct Relay {
    pub socket: Arc<UdpSocket>,
    pub cancel: CancellationToken,
}

/// Where bytes for a client go: the UDP listener it talks to, or its connection's writer.
#[derive(Clone)]
pub enum ClientSink {
    Udp {
        socket: Arc<UdpSocket>,
        client: SocketAddr,
    },
    Stream(mpsc::Sender<Vec<u8>>),
}

impl ClientSink {
    /// Never waits: a full socket buffer or connection queue drops the packet, as a congested
    /// network would.
    pub fn send(&self, bytes: Vec<u8>) {
        match self {
            ClientSink::Udp { socket, client } => {
                let _ = socket.try_send_to(&bytes, *client);
            }
            ClientSink::Stream(tx) => {
                let _ = tx.try_send(bytes);
            }
        }
    }
}

type RouteShard = HashMap<FiveTuple, Arc<Lane<Relay>>>;

/// 5-tuple → lane of its allocation, for ChannelData from clients. Sharded so the listeners on
/// different cores rarely touch the same lock; entries are added when an allocation is made and
/// removed when its relay task ends (a lane whose allocation is gone relays nothing meanwhile).
pub struct Routes {
    shards: Box<[RwLock<RouteShard>]>,
    hasher: RandomState,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            shards: (0..16).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Routes {
    fn shard(&self, ft: &FiveTuple) -> &RwLock<RouteShard> {
        let index = self.hasher.hash_one(ft) as usize % self.shards.len();
        &self.shards[index]
    }

    pub fn get(&self, ft: &FiveTuple) -> Option<Arc<Lane<Relay>>> {
        let shard = self.shard(ft).read().unwrap_or_else(|e| e.into_inner());
        shard.get(ft).cloned()
    }

    fn insert(&self, ft: FiveTuple, lane: Arc<Lane<Relay>>) {
        let mut shard = self.shard(&ft).write().unwrap_or_else(|e| e.into_inner());
        shard.insert(ft, lane);
    }

    /// Removes the route of allocation `id` (not a newer allocation on the same 5-tuple).
    fn remove(&self, ft: &FiveTuple, id: u64) {
        let mut shard = self.shard(ft).write().unwrap_or_else(|e| e.into_inner());
        if shard.get(ft).is_some_and(|lane| lane.id == id) {
            shard.remove(ft);
        }
    }
}

pub struct Shared {
    pub core: Mutex<TurnCore<Relay>>,
    pub keys: RwLock<KeyRing>,
    pub routes: Routes,
    pub relay_ports: RelayPorts,
    pub cancel: CancellationToken,
}

/// Poisoning only means another task panicked mid-update; the core's maps stay usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn core(&self) -> MutexGuard<'_, TurnCore<Relay>> {
        lock(&self.core)
    }

    pub fn keys(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn keys_mut(&self) -> std::sync::RwLockWriteGuard<'_, KeyRing> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }

    /// ChannelData on a known allocation: relayed through its lane without locking the core.
    /// `false` when the core has to look at it (no allocation for the 5-tuple, malformed frame).
    fn channel_data_fast(&self, ft: &FiveTuple, data: &[u8]) -> bool {
        let Some(lane) = self.routes.get(ft) else {
            return false;
        };
        let Some((number, payload)) = parse_channel_data(data) else {
            return false;
        };
        if let Some(peer) = lane.channel_destination(number, Instant::now()) {
            let _ = lane.relay.socket.try_send_to(payload, peer);
        }
        true
    }

    /// Runs one client message through the core and carries out what it decides.
    pub fn on_client(self: &Arc<Self>, ft: FiveTuple, data: &[u8], sink: &ClientSink) {
        if data.first().is_some_and(|b| stun::is_channel_data(*b))
            && self.channel_data_fast(&ft, data)
        {
            return;
        }
        let now = Now::system();
        let action = {
            let keys = self.keys();
            let mut core = self.core();
            match core.handle_client(ft, data, now, &*keys) {
                ClientAction::Allocate(mut ticket) => {
                    let binding = match ticket.reserved.take() {
                        Some((relay, local)) => Ok(RelayBinding {
                            relay,
                            local,
                            reserved: None,
                        }),
                        None => self
                            .relay_ports
                            .bind(ticket.ipv6, ticket.even_port, ticket.reserve_next)
                            .map(|(first, second)| {
                                let relay = |(socket, local): (Arc<UdpSocket>, SocketAddr)| {
                                    (
                                        Relay {
                                            socket,
                                            cancel: self.cancel.child_token(),
                                        },
                                        local,
                                    )
                                };
                                let (relay_one, local) = relay(first);
                                RelayBinding {
                                    relay: relay_one,
                                    local,
                                    reserved: second.map(relay),
                                }
                            }),
                    };
                    let relay = binding.map_err(|e| {
                        tracing::warn!(error = %e, client = %ft.client, "no relay port available");
                        StunError::InsufficientCapacity
                    });
                    let (reply, lane) = core.finish_allocate(ticket, relay, now);
                    drop(core);
                    if let Some(lane) = lane {
                        self.routes.insert(ft, lane.clone());
                        relay::spawn(self.clone(), lane, ft, sink.clone());
                    }
                    sink.send(reply);
                    return;
                }
                other => other,
            }
        };
        match action {
            ClientAction::Reply(bytes) => sink.send(bytes),
            ClientAction::Relay { relay, peer, data } => {
                let _ = relay.socket.try_send_to(data, peer);
            }
            ClientAction::Ignore | ClientAction::Allocate(_) => {}
        }
    }

    /// The client's connection ended: end its allocation.
    pub fn on_closed(&self, ft: &FiveTuple) {
        if let Some(relay) = self.core().close_transport(ft) {
            relay.cancel.cancel();
        }
    }
}

/// Sets large kernel buffers: at high packet rates loss shows up first in a full receive buffer.
pub fn tune_buffers(socket: &socket2::Socket, bytes: usize) {
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
}

pub const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with large buffers for use by tokio.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    bind_udp_with(addr, false)
}

/// Like [`bind_udp`], with SO_REUSEPORT so several sockets (one per listener task) share the
/// port. Only sockets of this process's user can join the group.
pub fn bind_udp_reuse(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    bind_udp_with(addr, true)
}

fn bind_udp_with(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(true);
    }
    tune_buffers(&socket, SOCKET_BUFFER);
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The local IP the system would route to the public internet from, found without sending a
/// packet (a connected UDP socket just picks a route). Used when no advertised IP is configured.
pub fn guess_local_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

pub const TICK: Duration = Duration::from_secs(1);
