//! Connected sockets, one per remote address that carries a peer's traffic ("paths").
//!
//! They share the media port with the listening socket (`SO_REUSEPORT`), and the kernel hands a
//! datagram to the socket connected to its exact source ahead of the unconnected one. Once a
//! shard opens a path, that peer's datagrams reach the shard's own thread directly: no receive
//! thread, no hand-off between threads, one wake-up per burst instead of two. New peers (their
//! first STUN requests) and addresses past [`super::shard::PATHS_PER_PEER`] still arrive on the
//! listening socket and are routed by the receive thread. Linux 5.2 or later keeps connected
//! members of a reuseport group out of the group's load balancing; older kernels may misroute.

use std::{
    collections::HashMap,
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use mio::{unix::SourceFd, Interest, Registry, Token};
use socket2::{Domain, Socket, Type};

/// A UDP socket bound to the media port and connected to `remote`.
pub fn connect_path(
    local: SocketAddr,
    remote: SocketAddr,
    buffer_bytes: usize,
) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, None)?;
    socket.set_reuse_port(true)?;
    // Best effort, as for the listening socket: a small buffer only shows up as loss at peaks.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    socket.bind(&local.into())?;
    socket.connect(&remote.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The open paths of one shard, registered with its poller.
pub struct Paths {
    local: SocketAddr,
    buffer_bytes: usize,
    /// Tokens below the first one belong to the shard loop (its waker).
    next_token: usize,
    by_token: HashMap<Token, (SocketAddr, UdpSocket)>,
    by_remote: HashMap<SocketAddr, Token>,
}

impl Paths {
    pub fn new(local: SocketAddr, buffer_bytes: usize, first_token: usize) -> Self {
        Self {
            local,
            buffer_bytes,
            next_token: first_token,
            by_token: HashMap::new(),
            by_remote: HashMap::new(),
        }
    }

    /// Opens a path to `remote`. On failure (another family than the listening socket, an
    /// exhausted descriptor table) the peer stays reachable through the listening socket.
    pub fn open(&mut self, registry: &Registry, remote: SocketAddr) -> io::Result<()> {
        if self.by_remote.contains_key(&remote) {
            return Ok(());
        }
        let socket = connect_path(self.local, remote, self.buffer_bytes)?;
        let token = Token(self.next_token);
        self.next_token += 1;
        registry.register(
            &mut SourceFd(&socket.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        self.by_token.insert(token, (remote, socket));
        self.by_remote.insert(remote, token);
        Ok(())
    }

    pub fn close(&mut self, registry: &Registry, remote: SocketAddr) {
        let Some(token) = self.by_remote.remove(&remote) else {
            return;
        };
        if let Some((_, socket)) = self.by_token.remove(&token) {
            let _ = registry.deregister(&mut SourceFd(&socket.as_raw_fd()));
        }
    }

    pub fn socket(&self, token: Token) -> Option<&UdpSocket> {
        self.by_token.get(&token).map(|(_, s)| s)
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reuseport_listener() -> UdpSocket {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        socket.set_reuse_port(true).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket
    }

    /// The property the shard threads rely on: a path gets its remote's datagrams and nothing
    /// else; every other source still reaches the listening socket.
    #[test]
    fn a_path_receives_only_its_remote() {
        let listener = reuseport_listener();
        let local = listener.local_addr().unwrap();
        let clients: Vec<UdpSocket> = (0..20)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let poll = mio::Poll::new().unwrap();
        let mut paths = Paths::new(local, 1 << 20, 1);
        for c in &clients[..5] {
            paths
                .open(poll.registry(), c.local_addr().unwrap())
                .unwrap();
        }
        assert_eq!(paths.len(), 5);
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8], local).unwrap();
        }
        let mut on_listener = Vec::new();
        let mut buf = [0u8; 8];
        for _ in 5..clients.len() {
            let (_, from) = listener.recv_from(&mut buf).unwrap();
            on_listener.push(from);
        }
        let mut expected: Vec<SocketAddr> = clients[5..]
            .iter()
            .map(|c| c.local_addr().unwrap())
            .collect();
        on_listener.sort();
        expected.sort();
        assert_eq!(on_listener, expected);
        for (i, c) in clients[..5].iter().enumerate() {
            let token = paths.by_remote[&c.local_addr().unwrap()];
            let socket = paths.socket(token).unwrap();
            socket.set_nonblocking(false).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!((n, buf[0], from), (1, i as u8, c.local_addr().unwrap()));
        }
        // Closed paths fall back to the listening socket.
        let first = clients[0].local_addr().unwrap();
        paths.close(poll.registry(), first);
        assert_eq!(paths.len(), 4);
        clients[0].send_to(&[9], local).unwrap();
        let (_, from) = listener.recv_from(&mut buf).unwrap();
        assert_eq!(from, first);
    }
}
