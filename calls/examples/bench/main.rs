//! Calls SFU bench: offer→connected time and forwarding cost next to a bare UDP relay.
//!
//! Run with `scripts/bench-calls.sh` (or `cargo run -p calls --example bench -- --help`).
//!
//! 1. **Offer→connected**: a webrtc-rs client with one VP8 track creates a session, POSTs its
//!    complete offer to `tracks/new`, applies the answer and waits for `connected`
//!    (ICE + DTLS + SRTP over loopback). Median, p90 and min over `--connect-iters` runs.
//! 2. **Forwarding**: one webrtc-rs publisher → N webrtc-rs subscribers through the SFU, at
//!    increasing publisher packet rates. CPU is read per thread from `/proc/self/task/*/schedstat`
//!    (nanoseconds; `stat` gives the user/kernel split) for the SFU's own threads only (`calls-udp-rx` + `calls-shard-*`; the clients run on tokio
//!    workers and are not counted), so the figure is what the server spends. All sessions belong
//!    to one app and so to one shard: one core's worth of forwarding.
//! 3. **Bare relay** in the same run, same packet size and rates: one thread `recvmmsg` →
//!    `sendmmsg` to each of N sockets (batched like the SFU's socket I/O), no crypto, no RTP
//!    parsing — the kernel's cost of moving the same datagrams, i.e. the physical limit. Its
//!    receivers are tokio sockets on the clients' runtime (see [`Relay`]).
//!
//! Printed per row: offered and delivered packets/s (out of the server), server CPU share (and
//! the kernel's part of it, "sys"), CPU µs per delivered packet and delivered packets per CPU-second ("per core"); the last column is
//! the SFU's per-core rate as a fraction of the relay's.

mod clients;
#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use calls::sfu::udp;
use clients::{Publisher, Subscriber};
use common::peer::{self, Peer};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;

struct Args {
    connect_iters: usize,
    /// A second offer→connected series with the client's ICE check interval set to this (ms);
    /// 0 skips it.
    check_interval_ms: u64,
    subscribers: Vec<usize>,
    rates: Vec<u64>,
    secs: u64,
    payload: usize,
}

fn list<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        connect_iters: 20,
        check_interval_ms: 20,
        subscribers: vec![1, 4],
        rates: vec![1000, 2500, 5000, 10000],
        secs: 4,
        payload: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--connect-iters" => a.connect_iters = value().parse().unwrap_or(a.connect_iters),
            "--check-interval-ms" => {
                a.check_interval_ms = value().parse().unwrap_or(a.check_interval_ms)
            }
            "--subscribers" => a.subscribers = list(&value()),
            "--rates" => a.rates = list(&value()),
            "--secs" => a.secs = value().parse().unwrap_or(a.secs),
            "--payload" => a.payload = value().parse().unwrap_or(a.payload),
            _ => {
                eprintln!(
                    "usage: bench [--connect-iters 20] [--check-interval-ms 20] [--subscribers 1,4] \
                     [--rates 1000,2500,5000,10000] [--secs 4] [--payload 1000]"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

/// CPU time of a set of threads: the total from the scheduler's nanosecond accounting
/// (`/proc/.../schedstat`), and the user/kernel split from the 10 ms ticks of `stat`.
#[derive(Clone, Copy)]
struct Cpu {
    total: Duration,
    user_ticks: u64,
    sys_ticks: u64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, rhs: Cpu) -> Cpu {
        Cpu {
            total: self.total.saturating_sub(rhs.total),
            user_ticks: self.user_ticks.saturating_sub(rhs.user_ticks),
            sys_ticks: self.sys_ticks.saturating_sub(rhs.sys_ticks),
        }
    }
}

/// CPU time of this process's threads whose name starts with one of `prefixes`.
fn thread_cpu(prefixes: &[&str]) -> Cpu {
    let ticks_per_sec = 100; // USER_HZ; Linux reports /proc times in these units.
    let mut cpu = Cpu {
        total: Duration::ZERO,
        user_ticks: 0,
        sys_ticks: 0,
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        // Fields after the name: state is field 3; utime and stime are fields 14 and 15.
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| rest.get(i - 3).and_then(|v| v.parse::<u64>().ok());
        let (user, sys) = (field(14).unwrap_or(0), field(15).unwrap_or(0));
        cpu.user_ticks += user;
        cpu.sys_ticks += sys;
        // schedstat's first field: nanoseconds on a CPU. Without it, fall back to the ticks.
        let ns = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        cpu.total += match ns {
            Some(ns) => Duration::from_nanos(ns),
            None => Duration::from_millis((user + sys) * 1000 / ticks_per_sec),
        };
    }
    cpu
}

struct Row {
    offered: f64,
    delivered: f64,
    cpu_share: f64,
    /// Share of that CPU time spent in the kernel.
    sys_share: f64,
    us_per_packet: f64,
    per_core: f64,
}

impl Row {
    fn new(sent: u64, fanout: usize, delivered: u64, elapsed: Duration, cpu: Cpu) -> Self {
        let secs = elapsed.as_secs_f64();
        let cpu_s = cpu.total.as_secs_f64();
        let ticks = cpu.user_ticks + cpu.sys_ticks;
        Row {
            offered: (sent * fanout as u64) as f64 / secs,
            delivered: delivered as f64 / secs,
            cpu_share: cpu_s / secs,
            sys_share: if ticks > 0 {
                cpu.sys_ticks as f64 / ticks as f64
            } else {
                f64::NAN
            },
            us_per_packet: if delivered > 0 {
                cpu_s * 1e6 / delivered as f64
            } else {
                f64::NAN
            },
            per_core: if cpu_s > 0.0 {
                delivered as f64 / cpu_s
            } else {
                f64::NAN
            },
        }
    }
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), v[0])
}

async fn offer_to_connected(
    server: &common::Server,
    app: &(String, String),
    iters: usize,
    check_interval: Option<Duration>,
) {
    if iters == 0 {
        return;
    }
    let mut times = Vec::new();
    for _ in 0..iters {
        let client = match check_interval {
            Some(interval) => Peer::new_with_check_interval(interval).await,
            None => Peer::new().await,
        };
        client
            .add_track(RtpCodecKind::Video, peer::vp8(), 0xAB)
            .await;
        let session = server.new_session(app).await;
        // The offer (with its gathered candidates) is ready inside `push`; the clock starts just
        // before it goes out, so client-side gathering is excluded.
        let offer = client.offer().await;
        let mids = peer::mids(&offer);
        let start = Instant::now();
        let answer = push_track(server, app, &session, &offer, &mids[0].1).await;
        client.set_answer(&answer).await;
        client.wait_connected().await;
        times.push(start.elapsed());
        client.close().await;
    }
    let (med, p90, min) = median(times);
    let client = match check_interval {
        Some(i) => format!("client ICE check interval {} ms", i.as_millis()),
        None => "webrtc-rs default client, 200 ms ICE check interval".to_owned(),
    };
    println!(
        "offer→connected over loopback ({iters} runs, {client}): median {:.1} ms, p90 {:.1} ms, min {:.1} ms",
        med.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3
    );
}

/// POSTs `request` to the session's `tracks/new`; returns the SDP of the response (the SFU's
/// answer to a push, its offer for a pull).
async fn tracks_new(
    server: &common::Server,
    app: &(String, String),
    session: &str,
    request: serde_json::Value,
) -> String {
    let (status, body) = server
        .v1(
            reqwest::Method::POST,
            app,
            &format!("sessions/{session}/tracks/new"),
            Some(request),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["sessionDescription"]["sdp"]
        .as_str()
        .expect("sessionDescription")
        .to_owned()
}

/// Publishes the track of `mid` in `offer` as "v"; returns the answer.
async fn push_track(
    server: &common::Server,
    app: &(String, String),
    session: &str,
    offer: &str,
    mid: &str,
) -> String {
    let request = serde_json::json!({
        "sessionDescription": {"type": "offer", "sdp": offer},
        "tracks": [{"location": "local", "trackName": "v", "mid": mid}],
    });
    tracks_new(server, app, session, request).await
}

struct SfuRig {
    publisher: Option<Publisher>,
    received: Arc<AtomicU64>,
    /// Held for their threads: dropping the rig stops them.
    _subscribers: Vec<Subscriber>,
}

async fn sfu_rig(server: &common::Server, app: &(String, String), fanout: usize) -> SfuRig {
    let (mut publisher, offer, mid) = Publisher::new();
    let pub_session = server.new_session(app).await;
    let answer = push_track(server, app, &pub_session, &offer, &mid).await;
    publisher.accept_answer(&answer);
    let publisher = tokio::task::spawn_blocking(move || {
        publisher.connect(Duration::from_secs(10));
        publisher
    })
    .await
    .expect("publisher thread");
    let received = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::new();
    for _ in 0..fanout {
        let session = server.new_session(app).await;
        let request = serde_json::json!({
            "tracks": [{"location": "remote", "sessionId": pub_session, "trackName": "v"}],
        });
        let offer = tracks_new(server, app, &session, request).await;
        let (subscriber, answer) = Subscriber::start(&offer, received.clone());
        let (status, body) = server
            .v1(
                reqwest::Method::PUT,
                app,
                &format!("sessions/{session}/renegotiate"),
                Some(serde_json::json!({"sessionDescription": {"type": "answer", "sdp": answer}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !subscriber.is_connected() {
            assert!(Instant::now() < deadline, "subscriber did not connect");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        subscribers.push(subscriber);
    }
    SfuRig {
        publisher: Some(publisher),
        received,
        _subscribers: subscribers,
    }
}

/// One SFU row; also returns the size of the publisher's media datagrams, for the relay's row.
async fn sfu_step(
    rig: &mut SfuRig,
    fanout: usize,
    rate: u64,
    secs: u64,
    payload: usize,
) -> (Row, usize) {
    // Let the previous step drain, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let threads = ["calls-udp-rx", "calls-shard"];
    let before = (rig.received.load(Ordering::Relaxed), thread_cpu(&threads));
    let start = Instant::now();
    let mut publisher = rig.publisher.take().expect("publisher");
    let (publisher, sent, size) = tokio::task::spawn_blocking(move || {
        let body = vec![0x5Au8; payload];
        let (sent, size) = clients::send_paced(rate, secs, &mut (&mut publisher, &body[..]));
        (publisher, sent, size)
    })
    .await
    .expect("publisher thread");
    rig.publisher = Some(publisher);
    // Packets in flight when sending stopped still count (and cost CPU).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elapsed = start.elapsed();
    let delivered = rig.received.load(Ordering::Relaxed) - before.0;
    let row = Row::new(
        sent,
        fanout,
        delivered,
        elapsed,
        thread_cpu(&threads) - before.1,
    );
    (row, size)
}

/// A bare relay: one thread, `recvmmsg` up to a batch, then one `sendmmsg` of every datagram
/// to each of `fanout` receivers — the same batched calls (`calls::sfu::udp`) the SFU uses.
/// Its receivers are [`clients::sink`]s, the same blocking socket loop as the SFU's subscribers:
/// on loopback the sender's thread pays for delivering each datagram, including waking its
/// receiver, so both sides must deliver to the same kind of receiver.
struct Relay {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    input: SocketAddr,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn relay(fanout: usize) -> Relay {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let mut outs = Vec::new();
    for _ in 0..fanout {
        let (addr, thread) = clients::sink(received.clone(), stop.clone());
        outs.push(addr);
        threads.push(thread);
    }
    let sock = calls::sfu::net::bind_socket("127.0.0.1:0".parse().expect("addr"), 4 << 20)
        .expect("bind relay");
    let input = sock.local_addr().expect("addr");
    let stop2 = stop.clone();
    threads.push(
        std::thread::Builder::new()
            .name("bare-relay".into())
            .spawn(move || {
                let mut batch = udp::RecvBatch::new();
                while !stop2.load(Ordering::Relaxed) {
                    let Ok(n) = batch.recv(&sock) else {
                        continue;
                    };
                    let mut out = Vec::with_capacity(n * outs.len());
                    for i in 0..n {
                        if let Some((_, data)) = batch.get(i) {
                            out.extend(outs.iter().map(|o| (*o, data)));
                        }
                    }
                    udp::send_batch(&sock, &out, |_, _| {});
                }
            })
            .expect("spawn relay"),
    );
    Relay {
        stop,
        received,
        input,
        threads,
    }
}

/// One relay row: the same pacing and datagram size as the SFU's publisher (see `publisher`).
async fn relay_step(r: &Relay, fanout: usize, rate: u64, secs: u64, size: usize) -> Row {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut source = clients::Copies::new(r.input, size);
    let before = (
        r.received.load(Ordering::Relaxed),
        thread_cpu(&["bare-relay"]),
    );
    let start = Instant::now();
    let (sent, _) =
        tokio::task::spawn_blocking(move || clients::send_paced(rate, secs, &mut source))
            .await
            .expect("sender thread");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elapsed = start.elapsed();
    let delivered = r.received.load(Ordering::Relaxed) - before.0;
    Row::new(
        sent,
        fanout,
        delivered,
        elapsed,
        thread_cpu(&["bare-relay"]) - before.1,
    )
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let tp = platform::testing::embedded().await;
    let config = calls::CallsConfig {
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        api_calls_per_second: 10_000,
        ..calls::CallsConfig::for_tests()
    };
    let server = common::start_with(tp, config).await;
    let app = server.create_app().await;
    println!(
        "calls bench: {} CPUs, payload {} bytes, {} s per step",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.payload,
        args.secs
    );
    offer_to_connected(&server, &app, args.connect_iters, None).await;
    if args.check_interval_ms > 0 {
        let interval = Duration::from_millis(args.check_interval_ms);
        offer_to_connected(&server, &app, args.connect_iters, Some(interval)).await;
    }
    println!();
    println!(
        "{:>4} {:>7} | {:>9} {:>9} {:>5} {:>4} {:>7} {:>9} | {:>9} {:>9} {:>5} {:>4} {:>7} {:>9} | {:>5}",
        "subs",
        "in/s",
        "SFU out",
        "deliv/s",
        "CPU",
        "sys",
        "µs/pkt",
        "pkt/core",
        "relay out",
        "deliv/s",
        "CPU",
        "sys",
        "µs/pkt",
        "pkt/core",
        "ratio"
    );
    for &fanout in &args.subscribers {
        let mut rig = sfu_rig(&server, &app, fanout).await;
        let bare = relay(fanout);
        for &rate in &args.rates {
            let (s, size) = sfu_step(&mut rig, fanout, rate, args.secs, args.payload).await;
            let r = relay_step(&bare, fanout, rate, args.secs, size).await;
            println!(
                "{:>4} {:>7} | {:>9.0} {:>9.0} {:>4.0}% {:>3.0}% {:>7.1} {:>9.0} | {:>9.0} {:>9.0} {:>4.0}% {:>3.0}% {:>7.1} {:>9.0} | {:>5.2}",
                fanout,
                rate,
                s.offered,
                s.delivered,
                s.cpu_share * 100.0,
                s.sys_share * 100.0,
                s.us_per_packet,
                s.per_core,
                r.offered,
                r.delivered,
                r.cpu_share * 100.0,
                r.sys_share * 100.0,
                r.us_per_packet,
                r.per_core,
                s.per_core / r.per_core
            );
        }
        bare.stop.store(true, Ordering::Relaxed);
        for t in bare.threads {
            let _ = t.join();
        }
        drop(rig);
    }
    server.calls.shutdown().await;
}
