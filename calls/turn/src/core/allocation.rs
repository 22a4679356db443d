//! One TURN allocation: its relayed address, lifetime, permissions and channel bindings
//! (RFC 8656 §5, §9, §12). Pure data and rules; the core drives it with times it is given, and
//! the shell relays through its [`Lane`].

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    time::{Duration, Instant},
};

use crate::{
    credentials::Owner,
    stun::{self, attr, method, Class, MessageBuilder},
};

pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// RFC 8656 §12 narrows channel numbers to 0x4000–0x4FFF, but RFC 5766 clients (coturn's
/// uclient among them) pick from 0x4000–0x7FFF; the whole older range is accepted.
pub const CHANNEL_MIN: u16 = 0x4000;
pub const CHANNEL_MAX: u16 = 0x7FFF;

#[derive(Debug, Clone, Copy)]
pub struct Channel {
    pub peer: SocketAddr,
    pub expires: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BindError {
    /// The number is bound to another peer, or the peer to another number.
    Conflict,
}

/// Relayed-packet counters shared by the core and every lane.
#[derive(Debug, Default)]
pub struct Counters {
    pub relayed_to_peer: AtomicU64,
    pub relayed_to_client: AtomicU64,
}

/// Permissions and channels: what the data path reads on every packet.
#[derive(Default)]
struct Routes {
    /// False once the core removed the allocation: the relay loop stops on its next packet.
    open: bool,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, Channel>,
    channel_of_peer: HashMap<SocketAddr, u16>,
}

/// The data path of one allocation, shared between the core (which changes permissions and
/// channels on requests and timers) and the I/O shell (which relays packets with it). It has its
/// own read-mostly lock, so relaying ChannelData and peer datagrams never takes the core's lock
/// and allocations never wait for each other — the core is only locked for STUN requests.
pub struct Lane<R> {
    pub id: u64,
    pub relay: R,
    /// Stream transports pad ChannelData to four bytes (RFC 8656 §12.5).
    stream: bool,
    routes: RwLock<Routes>,
    /// Bytes sent to the client not yet handed to the meter.
    egress: AtomicU64,
    counters: Arc<Counters>,
}

/// Poisoning only means a panic elsewhere mid-update; the maps stay usable.
fn read(lock: &RwLock<Routes>) -> RwLockReadGuard<'_, Routes> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write(lock: &RwLock<Routes>) -> RwLockWriteGuard<'_, Routes> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// What the shell does with a datagram that reached a relay socket.
pub enum PeerAction {
    Ignore,
    /// Send to the allocation's client.
    ToClient(Vec<u8>),
    /// The allocation is gone: close the relay socket.
    Gone,
}

/// Splits a ChannelData frame into channel number and payload; `None` when malformed. Over UDP
/// the datagram may carry padding after the payload, so only "never less than `len`" is checked.
pub fn parse_channel_data(data: &[u8]) -> Option<(u16, &[u8])> {
    let header = data.get(..4)?;
    let number = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    Some((number, data.get(4..4 + len)?))
}

impl<R> Lane<R> {
    fn new(id: u64, relay: R, stream: bool, counters: Arc<Counters>) -> Self {
        Self {
            id,
            relay,
            stream,
            routes: RwLock::new(Routes {
                open: true,
                ..Routes::default()
            }),
            egress: AtomicU64::new(0),
            counters,
        }
    }

    /// Where ChannelData on `number` goes: the bound peer, if the channel and the permission for
    /// its IP are live.
    pub fn channel_destination(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        let routes = read(&self.routes);
        let channel = routes
            .channels
            .get(&number)
            .filter(|c| c.expires > now && routes.open)?;
        let peer = channel.peer;
        if !has_permission(&routes, peer.ip(), now) {
            return None;
        }
        self.counters
            .relayed_to_peer
            .fetch_add(1, Ordering::Relaxed);
        Some(peer)
    }

    /// A datagram from `peer` reached the relay socket: the ChannelData frame or Data indication
    /// to send to the client, if the peer has a permission.
    pub fn from_peer(&self, peer: SocketAddr, data: &[u8], now: Instant) -> PeerAction {
        let routes = read(&self.routes);
        if !routes.open {
            return PeerAction::Gone;
        }
        if !has_permission(&routes, peer.ip(), now) || data.len() > usize::from(u16::MAX) - 64 {
            return PeerAction::Ignore;
        }
        let channel = routes.channel_of_peer.get(&peer).copied().filter(|n| {
            routes
                .channels
                .get(n)
                .is_some_and(|c| c.expires > now && c.peer == peer)
        });
        let out = match channel {
            Some(number) => {
                let total = if self.stream {
                    stun::padded(4 + data.len())
                } else {
                    4 + data.len()
                };
                let mut out = Vec::with_capacity(total);
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                out.extend_from_slice(data);
                out.resize(total, 0);
                out
            }
            None => {
                let mut tid = [0u8; 12];
                rand::Rng::fill(&mut rand::rng(), &mut tid[..]);
                MessageBuilder::with_capacity(Class::Indication, method::DATA, tid, data.len())
                    .xor_address(attr::XOR_PEER_ADDRESS, peer)
                    .bytes(attr::DATA, data)
                    .finish()
            }
        };
        // Counted while the read lock is held: once `close` (a writer) ran, nothing more is added
        // behind the meter's back.
        self.egress.fetch_add(out.len() as u64, Ordering::Relaxed);
        self.counters
            .relayed_to_client
            .fetch_add(1, Ordering::Relaxed);
        PeerAction::ToClient(out)
    }

    /// Egress bytes since the last call.
    pub(crate) fn take_egress(&self) -> u64 {
        self.egress.swap(0, Ordering::Relaxed)
    }

    /// The allocation ended: relay loops stop; returns the last unmetered bytes.
    fn close(&self) -> u64 {
        write(&self.routes).open = false;
        self.take_egress()
    }
}

fn has_permission(routes: &Routes, ip: IpAddr, now: Instant) -> bool {
    routes
        .permissions
        .get(&ip)
        .is_some_and(|expires| *expires > now)
}

pub struct Allocation<R> {
    pub id: u64,
    pub username: String,
    pub owner: Owner,
    pub lane: Arc<Lane<R>>,
    /// The address clients are told (the advertised IP with the relay socket's port).
    pub relayed: SocketAddr,
    pub expires: Instant,
    /// The transaction id and response of the Allocate that created this, for retransmissions.
    pub allocate_tid: [u8; 12],
    pub allocate_response: Vec<u8>,
}

/// Who an allocation is for and what it relays through.
pub struct Identity {
    pub id: u64,
    pub username: String,
    pub owner: Owner,
    pub stream: bool,
    pub counters: Arc<Counters>,
}

impl<R> Allocation<R> {
    pub fn new(
        identity: Identity,
        relay: R,
        relayed: SocketAddr,
        expires: Instant,
        allocate_tid: [u8; 12],
    ) -> Self {
        let Identity {
            id,
            username,
            owner,
            stream,
            counters,
        } = identity;
        Self {
            id,
            username,
            owner,
            lane: Arc::new(Lane::new(id, relay, stream, counters)),
            relayed,
            expires,
            allocate_tid,
            allocate_response: Vec::new(),
        }
    }

    pub fn relay(&self) -> &R {
        &self.lane.relay
    }

    pub fn install_permission(&mut self, ip: IpAddr, now: Instant) {
        write(&self.lane.routes)
            .permissions
            .insert(ip, now + PERMISSION_LIFETIME);
    }

    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        has_permission(&read(&self.lane.routes), ip, now)
    }

    /// Binds or refreshes `number` ↔ `peer`; also refreshes the permission for the peer's IP.
    pub fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<(), BindError> {
        let mut routes = write(&self.lane.routes);
        let live = |c: &Channel| c.expires > now;
        if let Some(existing) = routes.channels.get(&number).filter(|c| live(c)) {
            if existing.peer != peer {
                return Err(BindError::Conflict);
            }
        }
        if let Some(other) = routes.channel_of_peer.get(&peer) {
            if *other != number && routes.channels.get(other).is_some_and(live) {
                return Err(BindError::Conflict);
            }
        }
        if let Some(stale) = routes.channels.insert(
            number,
            Channel {
                peer,
                expires: now + CHANNEL_LIFETIME,
            },
        ) {
            if stale.peer != peer {
                routes.channel_of_peer.remove(&stale.peer);
            }
        }
        routes.channel_of_peer.insert(peer, number);
        routes
            .permissions
            .insert(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(())
    }

    #[cfg(test)]
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        read(&self.lane.routes)
            .channels
            .get(&number)
            .filter(|c| c.expires > now)
            .map(|c| c.peer)
    }

    #[cfg(test)]
    pub fn channel_for_peer(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let routes = read(&self.lane.routes);
        let number = *routes.channel_of_peer.get(&peer)?;
        routes
            .channels
            .get(&number)
            .filter(|c| c.expires > now && c.peer == peer)
            .map(|_| number)
    }

    /// Drops expired permissions and channels.
    pub fn expire(&mut self, now: Instant) {
        let mut routes = write(&self.lane.routes);
        let routes = &mut *routes;
        routes.permissions.retain(|_, expires| *expires > now);
        routes.channels.retain(|_, c| c.expires > now);
        let channels = &routes.channels;
        routes
            .channel_of_peer
            .retain(|peer, number| channels.get(number).is_some_and(|c| c.peer == *peer));
    }

    /// The allocation is being removed: stops its lane; returns its last unmetered bytes.
    pub fn close(&self) -> u64 {
        self.lane.close()
    }

    #[cfg(test)]
    pub fn permission_count(&self) -> usize {
        read(&self.lane.routes).permissions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(now: Instant) -> Allocation<()> {
        let owner = Owner {
            key_id: "k".into(),
            account_id: "a".into(),
        };
        Allocation::new(
            Identity {
                id: 1,
                username: "u".into(),
                owner,
                stream: false,
                counters: Arc::default(),
            },
            (),
            "192.0.2.1:50000".parse().unwrap(),
            now + Duration::from_secs(600),
            [0; 12],
        )
    }

    #[test]
    fn permissions_expire_after_five_minutes() {
        let now = Instant::now();
        let mut a = allocation(now);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(!a.has_permission(ip, now));
        a.install_permission(ip, now);
        assert!(a.has_permission(ip, now + Duration::from_secs(299)));
        assert!(!a.has_permission(ip, now + Duration::from_secs(300)));
        a.expire(now + Duration::from_secs(301));
        assert_eq!(a.permission_count(), 0);
    }

    #[test]
    fn channels_bind_one_to_one_and_expire() {
        let now = Instant::now();
        let mut a = allocation(now);
        let p1: SocketAddr = "198.51.100.1:1000".parse().unwrap();
        let p2: SocketAddr = "198.51.100.2:1000".parse().unwrap();
        a.bind_channel(0x4000, p1, now).unwrap();
        assert!(a.has_permission(p1.ip(), now));
        a.bind_channel(0x4000, p1, now).unwrap();
        assert_eq!(a.bind_channel(0x4000, p2, now), Err(BindError::Conflict));
        assert_eq!(a.bind_channel(0x4001, p1, now), Err(BindError::Conflict));
        assert_eq!(a.channel_peer(0x4000, now), Some(p1));
        assert_eq!(a.channel_for_peer(p1, now), Some(0x4000));
        let later = now + CHANNEL_LIFETIME;
        assert_eq!(a.channel_peer(0x4000, later), None);
        a.bind_channel(0x4000, p2, later).unwrap();
        assert_eq!(a.channel_for_peer(p1, later), None);
        assert_eq!(a.channel_for_peer(p2, later), Some(0x4000));
    }
}
