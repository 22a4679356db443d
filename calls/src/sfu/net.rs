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

use super::{shard::Shard, shared::Routes, types::Command, udp};

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
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    // Lets the receive thread notice shutdown.
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket)
}

pub fn spawn_receiver(
    socket: Arc<UdpSocket>,
    routes: Arc<Routes>,
    shards: Vec<std_mpsc::Sender<ShardInput>>,
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

pub fn spawn_shard(
    mut shard: Shard,
    inbox: std_mpsc::Receiver<ShardInput>,
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    meter: Meter,
    index: usize,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("calls-shard-{index}"))
        .spawn(move || {
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
                let mut stop = false;
                match inbox.recv_timeout(wait) {
                    Ok(input) => {
                        stop |= handle(&mut shard, input, local_addr);
                        // Batch whatever else is already queued before timers and sends.
                        while let Ok(input) = inbox.try_recv() {
                            stop |= handle(&mut shard, input, local_addr);
                        }
                    }
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => stop = true,
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
                if now.saturating_duration_since(last_flush) >= USAGE_FLUSH {
                    last_flush = now;
                    if shard.reap_idle(now) > 0 {
                        send_all(&mut shard, &socket, &mut out);
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
                }
            }
            for (account, bytes) in shard.take_usage() {
                meter.record(&account, Metric::CallsEgressBytes, bytes as f64);
            }
            metrics::counter!("calls_egress_bytes_total").increment(shard.take_egress_bytes());
        })
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
            for (source, data) in datagrams {
                shard.handle_datagram(now, source, local_addr, &data);
            }
        }
        ShardInput::Command(c) => shard.handle_command(now, c),
        ShardInput::Stop => return true,
    }
    false
}
