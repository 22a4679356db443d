//! One TURN allocation: its relayed address, lifetime, permissions and channel bindings
//! (RFC 8656 §5, §9, §12). Pure data and rules; the core drives it with times it is given.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use crate::credentials::Owner;

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

pub struct Allocation<R> {
    pub id: u64,
    pub username: String,
    pub owner: Owner,
    pub relay: R,
    /// The address clients are told (the advertised IP with the relay socket's port).
    pub relayed: SocketAddr,
    pub expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, Channel>,
    channel_of_peer: HashMap<SocketAddr, u16>,
    /// Bytes sent to the client not yet handed to the meter.
    pub unmetered_egress: u64,
    /// The transaction id and response of the Allocate that created this, for retransmissions.
    pub allocate_tid: [u8; 12],
    pub allocate_response: Vec<u8>,
}

impl<R> Allocation<R> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        username: String,
        owner: Owner,
        relay: R,
        relayed: SocketAddr,
        expires: Instant,
        allocate_tid: [u8; 12],
    ) -> Self {
        Self {
            id,
            username,
            owner,
            relay,
            relayed,
            expires,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            channel_of_peer: HashMap::new(),
            unmetered_egress: 0,
            allocate_tid,
            allocate_response: Vec::new(),
        }
    }

    pub fn install_permission(&mut self, ip: IpAddr, now: Instant) {
        self.permissions.insert(ip, now + PERMISSION_LIFETIME);
    }

    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .get(&ip)
            .is_some_and(|expires| *expires > now)
    }

    /// Binds or refreshes `number` ↔ `peer`; also refreshes the permission for the peer's IP.
    pub fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<(), BindError> {
        let live = |c: &Channel| c.expires > now;
        if let Some(existing) = self.channels.get(&number).filter(|c| live(c)) {
            if existing.peer != peer {
                return Err(BindError::Conflict);
            }
        }
        if let Some(other) = self.channel_of_peer.get(&peer) {
            if *other != number && self.channels.get(other).is_some_and(live) {
                return Err(BindError::Conflict);
            }
        }
        if let Some(stale) = self.channels.insert(
            number,
            Channel {
                peer,
                expires: now + CHANNEL_LIFETIME,
            },
        ) {
            if stale.peer != peer {
                self.channel_of_peer.remove(&stale.peer);
            }
        }
        self.channel_of_peer.insert(peer, number);
        self.install_permission(peer.ip(), now);
        Ok(())
    }

    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .get(&number)
            .filter(|c| c.expires > now)
            .map(|c| c.peer)
    }

    pub fn channel_for_peer(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let number = *self.channel_of_peer.get(&peer)?;
        self.channels
            .get(&number)
            .filter(|c| c.expires > now && c.peer == peer)
            .map(|_| number)
    }

    /// Drops expired permissions and channels.
    pub fn expire(&mut self, now: Instant) {
        self.permissions.retain(|_, expires| *expires > now);
        self.channels.retain(|_, c| c.expires > now);
        let channels = &self.channels;
        self.channel_of_peer
            .retain(|peer, number| channels.get(number).is_some_and(|c| c.peer == *peer));
    }

    #[cfg(test)]
    pub fn permission_count(&self) -> usize {
        self.permissions.len()
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
            1,
            "u".into(),
            owner,
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
