//! The thin I/O shell: one UDP socket for every peer, a receive thread that routes each
//! datagram to its shard, and one thread per shard that feeds its sans-IO core and sends what
//! it produces.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use platform::{Meter, Metric};
use socket2::{Domain, Socket, Type};

use super::{
    paths::Paths,
    shard::Shard,
    shared::Routes,
    types::{Command, PathChange},
    udp,
};

/// What a shard thread waits for.
pub enum ShardInput {
    /// Datagrams from one receive batch, in arrival order.
    Datagrams(Vec<(SocketAddr, Vec<u8>)>),
    Command(Command),
    /// Shutdown: close every peer (DTLS close_notify goes out), flush usage and end the thread.
    Stop,
}

/// How often a shard hands its egress byte counts to the meter.
const USAGE_FLUSH: Duration = Duration::from_secs(1);

/// Binds the media socket with raised kernel buffers: at saturation, loss shows up there first.
pub fn bind_socket(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if let Err(e) = socket.set_recv_buffer_size(buffer_bytes) {
        tracing::warn!(error = %e, "could not raise SO_RCVBUF");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer_bytes) {
        tracing::warn!(error = %e, "could not raise SO_SNDBUF");
    }
    // SO_REUSEPORT (below) would let a second process started on this port join it and take a
    // share of its traffic in silence. A plain bind first keeps a taken port an error, as it is
    // without the option; it also resolves port 0.
    let addr = {
        let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
        probe.bind(&addr.into())?;
        probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("the media socket has no IP address"))?
    };
    // Shard threads bind connected sockets to the same port (see `paths`).
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    // Lets the receive thread notice shutdown.
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket)
}

pub fn spawn_receiver(
    socket: Arc<UdpSocket>,
    routes: Arc<Routes>,
    shards: Vec<ShardHandle>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("calls-udp-rx".into())
        .spawn(move || {
            let ingress = metrics::counter!("calls_ingress_datagrams_total");
            let unrouted = metrics::counter!("calls_unrouted_datagrams_total");
            let mut batch = udp::RecvBatch::new();
            // One hand-off per shard per received batch: a channel send (and the wake-up of a
            // sleeping shard) per datagram cost as much as the datagram's own processing.
            let mut per_shard: Vec<Vec<(SocketAddr, Vec<u8>)>> = vec![Vec::new(); shards.len()];
            while !stop.load(Ordering::Relaxed) {
                let n = match batch.recv(&socket) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(e) => {
                        // ICMP errors from a gone peer surface here on some systems; keep serving.
                        tracing::debug!(error = %e, "udp recv error");
                        continue;
                    }
                };
                ingress.increment(n as u64);
                for i in 0..n {
                    let Some((source, data)) = batch.get(i) else {
                        continue;
                    };
                    match routes.shard_for(source, data) {
                        Some(shard) if shard < per_shard.len() => {
                            per_shard[shard].push((source, data.to_vec()))
                        }
                        _ => unrouted.increment(1),
                    }
                }
                for (tx, datagrams) in shards.iter().zip(per_shard.iter_mut()) {
                    if !datagrams.is_empty() {
                        let _ = tx.send(ShardInput::Datagrams(std::mem::take(datagrams)));
                    }
                }
            }
        })
}

/// How a shard thread is reached: its inbox, and the waker that interrupts its poll.
#[derive(Clone)]
pub struct ShardHandle {
    inbox: std_mpsc::Sender<ShardInput>,
    waker: Arc<mio::Waker>,
}

impl ShardHandle {
    pub fn send(&self, input: ShardInput) -> Result<(), std_mpsc::SendError<ShardInput>> {
        self.inbox.send(input)?;
        // A failed wake only delays the input to the shard's next timer (at most 100 ms).
        let _ = self.waker.wake();
        Ok(())
    }
}

const WAKER: mio::Token = mio::Token(0);

/// Starts a shard thread. It waits on its inbox (through a waker) and on the connected sockets
/// of its peers' paths ([`Paths`]) at once, so datagrams on an open path are read and handled
/// on this thread with no hand-off.
pub fn spawn_shard(
    mut shard: Shard,
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    socket_buffer_bytes: usize,
    meter: Meter,
    index: usize,
) -> std::io::Result<(JoinHandle<()>, ShardHandle)> {
    let mut poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let (tx, inbox) = std_mpsc::channel();
    let bound = socket.local_addr()?;
    let thread = std::thread::Builder::new()
        .name(format!("calls-shard-{index}"))
        .spawn(move || {
            let mut paths = Paths::new(bound, socket_buffer_bytes, WAKER.0 + 1);
            let mut events = mio::Events::with_capacity(256);
            let mut batch = udp::RecvBatch::new();
            // Resolved once: the macro looks the counter up in the registry on every use.
            let ingress = metrics::counter!("calls_ingress_datagrams_total");
            let mut last_flush = Instant::now();
            let mut out = Vec::new();
            loop {
                let now = Instant::now();
                let wait = shard
                    .poll_timeout()
                    .map_or(Duration::from_millis(100), |t| {
                        t.saturating_duration_since(now)
                    })
                    .min(Duration::from_millis(100));
                if let Err(e) = poll.poll(&mut events, Some(wait)) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        tracing::error!(error = %e, shard = index, "poll failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    continue;
                }
                let now = Instant::now();
                for event in events.iter() {
                    if let Some(path) = paths.socket(event.token()) {
                        read_path(&mut shard, path, &mut batch, &ingress, now, local_addr);
                    }
                }
                // Wake-ups can coalesce: look at the inbox every round, not only on WAKER.
                let mut stop = false;
                loop {
                    match inbox.try_recv() {
                        Ok(input) => stop |= handle(&mut shard, input, local_addr),
                        Err(std_mpsc::TryRecvError::Empty) => break,
                        Err(std_mpsc::TryRecvError::Disconnected) => {
                            stop = true;
                            break;
                        }
                    }
                }
                if stop {
                    shard.close_all(Instant::now());
                    send_all(&mut shard, &socket, &mut out);
                    break;
                }
                let now = Instant::now();
                if shard.poll_timeout().is_some_and(|t| t <= now) {
                    shard.handle_timeout(now);
                }
                send_all(&mut shard, &socket, &mut out);
                update_paths(&mut shard, &mut paths, poll.registry(), index);
                if now.saturating_duration_since(last_flush) >= USAGE_FLUSH {
                    last_flush = now;
                    if shard.reap_idle(now) > 0 {
                        send_all(&mut shard, &socket, &mut out);
                        update_paths(&mut shard, &mut paths, poll.registry(), index);
                    }
                    for (account, bytes) in shard.take_usage() {
                        meter.record(&account, Metric::CallsEgressBytes, bytes as f64);
                    }
                    metrics::counter!("calls_forwarded_packets_total")
                        .increment(shard.take_forwarded());
                    metrics::counter!("calls_egress_bytes_total")
                        .increment(shard.take_egress_bytes());
                    metrics::gauge!("calls_peers", "shard" => index.to_string())
                        .set(shard.peer_count() as f64);
                    metrics::gauge!("calls_connected_paths", "shard" => index.to_string())
                        .set(paths.len() as f64);
                }
            }
            for (account, bytes) in shard.take_usage() {
                meter.record(&account, Metric::CallsEgressBytes, bytes as f64);
            }
            metrics::counter!("calls_egress_bytes_total").increment(shard.take_egress_bytes());
        })?;
    Ok((thread, ShardHandle { inbox: tx, waker }))
}

/// Reads a path's socket until it is empty (the poller is edge-triggered) and feeds the shard.
fn read_path(
    shard: &mut Shard,
    path: &UdpSocket,
    batch: &mut udp::RecvBatch,
    ingress: &metrics::Counter,
    now: Instant,
    local_addr: SocketAddr,
) {
    // A socket error (an ICMP "unreachable" for a connected socket, after the peer went away)
    // is reported once, by the read that consumes it; datagrams may still be queued behind it.
    let mut errors = 0;
    loop {
        match batch.recv(path) {
            Ok(n) => {
                ingress.increment(n as u64);
                shard.handle_datagrams(now, local_addr, (0..n).filter_map(|i| batch.get(i)));
                // Fewer than a full batch: the queue was empty when the kernel stopped copying.
                if n < udp::BATCH {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) if errors < 4 => errors += 1,
            Err(_) => return,
        }
    }
}

/// Opens and closes connected sockets as the shard's peers gain and lose remote addresses.
fn update_paths(shard: &mut Shard, paths: &mut Paths, registry: &mio::Registry, index: usize) {
    for change in shard.take_path_changes() {
        match change {
            PathChange::Opened(remote) => {
                if let Err(e) = paths.open(registry, remote) {
                    tracing::debug!(error = %e, %remote, shard = index, "path not opened; the listening socket serves it");
                }
            }
            PathChange::Closed(remote) => paths.close(registry, remote),
        }
    }
}

/// Sends everything the shard produced since the last call, batched (`sendmmsg`).
fn send_all(shard: &mut Shard, socket: &UdpSocket, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
    out.extend(shard.take_transmits());
    if out.is_empty() {
        return;
    }
    udp::send_batch(socket, out, |dest, e| {
        tracing::debug!(error = %e, %dest, "udp send failed");
    });
    out.clear();
}

/// Feeds one input to the shard; true when it asks the thread to stop.
fn handle(shard: &mut Shard, input: ShardInput, local_addr: SocketAddr) -> bool {
    let now = Instant::now();
    match input {
        ShardInput::Datagrams(datagrams) => {
            shard.handle_datagrams(now, local_addr, datagrams.iter().map(|(s, d)| (*s, &d[..])));
        }
        ShardInput::Command(c) => shard.handle_command(now, c),
        ShardInput::Stop => return true,
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_port_in_use_is_an_error_despite_reuseport() {
        let first = bind_socket("127.0.0.1:0".parse().unwrap(), 1 << 16).expect("first bind");
        let taken = first.local_addr().unwrap();
        let second = bind_socket(taken, 1 << 16);
        assert_eq!(
            second.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
        // Paths (connected sockets of this process) still share the port.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        super::super::paths::connect_path(taken, client.local_addr().unwrap(), 1 << 16)
            .expect("a path on the media port");
    }
}
