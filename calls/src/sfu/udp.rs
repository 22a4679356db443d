//! Batched UDP I/O for the media socket: `recvmmsg` / `sendmmsg` move up to [`BATCH`]
//! datagrams per system call. At media rates the per-datagram syscall (and on a VM its exit) is
//! a large share of a forwarded packet's cost, and one SFU packet in becomes N packets out.
//!
//! Other targets than Linux fall back to one `recv_from` / `send_to` per datagram.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
};

/// Datagrams per system call. Enough to drain a 10 ms burst of a few hundred kbit/s streams;
/// larger batches only add latency to the first datagram's processing.
pub const BATCH: usize = 32;

/// Largest datagram kept whole; longer ones are dropped (WebRTC stays below the path MTU).
pub const SLOT: usize = 2048;

/// Reusable receive buffers for [`BATCH`] datagrams.
pub struct RecvBatch {
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    count: usize,
    #[cfg(target_os = "linux")]
    names: Vec<libc::sockaddr_storage>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            bufs: vec![0; BATCH * SLOT],
            lens: [0; BATCH],
            sources: [None; BATCH],
            count: 0,
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
            #[cfg(target_os = "linux")]
            names: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    /// Waits for one datagram (up to the socket's read timeout), then takes whatever else is
    /// already queued, without waiting. Returns how many arrived; read them with [`Self::get`].
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        self.count = 0;
        // The headers point into our own buffers, which neither move nor shrink during the call.
        let bufs = self.bufs.as_mut_ptr();
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            // SAFETY: bufs holds BATCH slots of SLOT bytes.
            iov_base: unsafe { bufs.add(i * SLOT) }.cast(),
            iov_len: SLOT,
        });
        let iov = iovs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let mut hdrs: [libc::mmsghdr; BATCH] = std::array::from_fn(|i| {
            // SAFETY: msghdr is plain old data; the fields that matter are set below.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            // SAFETY (both adds): i < BATCH == names.len() == iovs.len().
            h.msg_hdr.msg_name = unsafe { names.add(i) }.cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = unsafe { iov.add(i) };
            h.msg_hdr.msg_iovlen = 1;
            h
        });
        // SAFETY: every header points at a live iovec and name buffer of the advertised size.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, h) in hdrs.iter().take(n as usize).enumerate() {
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lens[i] = if truncated { 0 } else { h.msg_len as usize };
            self.sources[i] = from_storage(&self.names[i]);
        }
        self.count = n as usize;
        Ok(self.count)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.count = 0;
        let (n, source) = socket.recv_from(&mut self.bufs[..SLOT])?;
        self.lens[0] = n;
        self.sources[0] = Some(source);
        self.count = 1;
        Ok(1)
    }

    /// The `i`-th datagram of the last [`Self::recv`]; `None` for a truncated datagram or an
    /// address family we do not serve.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if i >= self.count || self.lens[i] == 0 {
            return None;
        }
        let source = self.sources[i]?;
        Some((source, &self.bufs[i * SLOT..i * SLOT + self.lens[i]]))
    }
}

#[cfg(target_os = "linux")]
fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET; storage is large and aligned.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends every datagram, [`BATCH`] per system call. A datagram the kernel refuses (e.g. an
/// unreachable destination) is reported to `on_error` and skipped; the rest still go out.
/// Returns how many were sent.
#[cfg(target_os = "linux")]
pub fn send_batch<B: AsRef<[u8]>>(
    socket: &UdpSocket,
    datagrams: &[(SocketAddr, B)],
    mut on_error: impl FnMut(SocketAddr, io::Error),
) -> usize {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let mut sent = 0;
    let mut at = 0;
    while at < datagrams.len() {
        let chunk = &datagrams[at..(at + BATCH).min(datagrams.len())];
        let names: Vec<socket2::SockAddr> = chunk
            .iter()
            .map(|(dest, _)| socket2::SockAddr::from(*dest))
            .collect();
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(_, bytes)| libc::iovec {
                // sendmmsg only reads through iov_base; the cast to *mut is what iovec requires.
                iov_base: bytes.as_ref().as_ptr() as *mut libc::c_void,
                iov_len: bytes.as_ref().len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = names
            .iter()
            .zip(iovs.iter_mut())
            .map(|(name, iov)| {
                // SAFETY: msghdr is plain old data; the fields that matter are set below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = name.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = name.len();
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: the headers point at names and iovecs that live until the end of this loop
        // iteration, and the iovecs at the caller's byte slices.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first datagram of the chunk failed: report it and go on with the next.
            on_error(chunk[0].0, e);
            at += 1;
        } else {
            sent += n as usize;
            at += n as usize;
        }
    }
    sent
}

#[cfg(not(target_os = "linux"))]
pub fn send_batch<B: AsRef<[u8]>>(
    socket: &UdpSocket,
    datagrams: &[(SocketAddr, B)],
    mut on_error: impl FnMut(SocketAddr, io::Error),
) -> usize {
    let mut sent = 0;
    for (dest, bytes) in datagrams {
        match socket.send_to(bytes.as_ref(), dest) {
            Ok(_) => sent += 1,
            Err(e) => on_error(*dest, e),
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }

    #[test]
    fn batches_round_trip_in_order_with_sources() {
        let (a, b, c) = (socket(), socket(), socket());
        let (to_b, to_c) = (b.local_addr().unwrap(), c.local_addr().unwrap());
        // More than one batch, to two destinations, with distinct sizes and contents.
        let datagrams: Vec<(SocketAddr, Vec<u8>)> = (0..BATCH + 7)
            .map(|i| {
                let dest = if i % 2 == 0 { to_b } else { to_c };
                (dest, vec![i as u8; 10 + i])
            })
            .collect();
        let sent = send_batch(&a, &datagrams, |_, e| panic!("send failed: {e}"));
        assert_eq!(sent, datagrams.len());

        for (sock, parity) in [(&b, 0), (&c, 1)] {
            let want: Vec<&Vec<u8>> = datagrams
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == parity)
                .map(|(_, (_, d))| d)
                .collect();
            let mut got = Vec::new();
            let mut batch = RecvBatch::new();
            while got.len() < want.len() {
                let n = batch.recv(sock).expect("recv");
                for i in 0..n {
                    let (source, data) = batch.get(i).expect("datagram");
                    assert_eq!(source, a.local_addr().unwrap());
                    got.push(data.to_vec());
                }
            }
            assert_eq!(got.iter().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn oversized_datagram_is_dropped_not_truncated() {
        let (a, b) = (socket(), socket());
        let to_b = b.local_addr().unwrap();
        let big = vec![1u8; SLOT + 1];
        let small = vec![2u8; 5];
        send_batch(&a, &[(to_b, &big[..]), (to_b, &small[..])], |_, e| {
            panic!("send failed: {e}")
        });
        let mut batch = RecvBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let n = batch.recv(&b).expect("recv");
            for i in 0..n {
                seen.push(batch.get(i).map(|(_, d)| d.to_vec()));
            }
        }
        #[cfg(target_os = "linux")]
        assert_eq!(seen, vec![None, Some(small)]);
    }

    #[test]
    fn a_failing_destination_does_not_stop_the_rest() {
        let (a, b) = (socket(), socket());
        let to_b = b.local_addr().unwrap();
        // An IPv6 destination on an IPv4 socket fails with EAFNOSUPPORT / EINVAL.
        let bad: SocketAddr = "[::1]:9".parse().unwrap();
        let mut errors = Vec::new();
        let sent = send_batch(
            &a,
            &[(to_b, &b"one"[..]), (bad, &b"x"[..]), (to_b, &b"two"[..])],
            |dest, _| errors.push(dest),
        );
        assert_eq!(sent, 2);
        assert_eq!(errors, vec![bad]);
        let mut batch = RecvBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let n = batch.recv(&b).expect("recv");
            for i in 0..n {
                seen.push(batch.get(i).expect("datagram").1.to_vec());
            }
        }
        assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec()]);
    }
}
