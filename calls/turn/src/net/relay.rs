//! Relay sockets: binding one in the configured port range, and its receive loop.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::net::UdpSocket;

use super::{bind_udp, lock, ClientSink, Relay, Shared};
use crate::core::{FiveTuple, Lane, PeerAction};

pub struct RelayPorts {
    ipv4: IpAddr,
    ipv6: Option<IpAddr>,
    min: u16,
    max: u16,
    next: Mutex<u16>,
}

/// How many ports to try before answering 508: enough to get past a busy stretch of the range
/// without scanning tens of thousands of ports under the core's lock.
const BIND_ATTEMPTS: usize = 64;

impl RelayPorts {
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let span = u32::from(max - min) + 1;
        let start = min + (rand::random::<u32>() % span) as u16;
        let (ipv4, ipv6) = match ip {
            IpAddr::V4(_) => (ip, Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED))),
            IpAddr::V6(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), Some(ip)),
        };
        Self {
            ipv4,
            ipv6,
            min,
            max,
            next: Mutex::new(start),
        }
    }

    fn next_port(&self, even: bool) -> u16 {
        let mut next = lock(&self.next);
        let mut port = *next;
        if even && port % 2 == 1 {
            port = if port >= self.max { self.min } else { port + 1 };
        }
        *next = if port >= self.max { self.min } else { port + 1 };
        port
    }

    /// Binds the next free port of the range (an even one when asked; with `pair`, also the odd
    /// port after it, for a reservation).
    pub fn bind(
        &self,
        ipv6: bool,
        even: bool,
        pair: bool,
    ) -> std::io::Result<(Bound, Option<Bound>)> {
        let ip = if ipv6 {
            self.ipv6
                .ok_or_else(|| std::io::Error::other("IPv6 relaying not configured"))?
        } else {
            self.ipv4
        };
        let even = even || pair;
        let mut last_error = std::io::Error::other("relay port range exhausted");
        for _ in 0..BIND_ATTEMPTS {
            let port = self.next_port(even);
            if (even && port % 2 == 1) || (pair && port >= self.max) {
                continue;
            }
            let first = match bind_udp(SocketAddr::new(ip, port)) {
                Ok(socket) => socket,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            let second = if pair {
                match bind_udp(SocketAddr::new(ip, port + 1)) {
                    Ok(socket) => Some(socket),
                    Err(e) => {
                        last_error = e;
                        continue;
                    }
                }
            } else {
                None
            };
            let wrap = |socket: UdpSocket| -> std::io::Result<Bound> {
                let local = socket.local_addr()?;
                Ok((Arc::new(socket), local))
            };
            return Ok((wrap(first)?, second.map(wrap).transpose()?));
        }
        Err(last_error)
    }
}

/// A bound relay socket and its local address.
pub type Bound = (Arc<UdpSocket>, SocketAddr);

/// Receives from peers on one relay socket until the allocation ends, relaying through the
/// allocation's lane (never the core's lock).
pub fn spawn(shared: Arc<Shared>, lane: Arc<Lane<Relay>>, ft: FiveTuple, sink: ClientSink) {
    tokio::spawn(async move {
        let relay = &lane.relay;
        let mut buf = vec![0u8; 65_536];
        loop {
            let received = tokio::select! {
                _ = relay.cancel.cancelled() => break,
                received = relay.socket.recv_from(&mut buf) => received,
            };
            let (len, peer) = match received {
                Ok(received) => received,
                // ICMP errors from earlier sends surface here on Linux; they end nothing.
                Err(_) => continue,
            };
            match lane.from_peer(peer, &buf[..len], Instant::now()) {
                PeerAction::ToClient(bytes) => sink.send(bytes),
                PeerAction::Ignore => {}
                PeerAction::Gone => break,
            }
        }
        shared.routes.remove(&ft, lane.id);
        tracing::trace!(allocation = lane.id, "relay task ended");
    });
}
