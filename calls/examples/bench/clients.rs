//! The forwarding bench's clients: WebRTC peers made of str0m (full ICE, DTLS, SRTP) on plain
//! UDP sockets, so that the SFU and the bare relay get the same input and deliver to the same
//! kind of receiver.
//!
//! - [`Publisher`]: str0m produces a real, negotiated SRTP stream, and [`send_paced`] — the
//!   loop that also feeds the relay — sends it in bursts of back-to-back datagrams every 10 ms.
//!   (A webrtc-rs publisher spread each burst over its async SRTP pipeline while the relay's
//!   plain sender did not: the relay got ~20 datagrams per `recvmmsg` against the SFU's ~3.5.)
//! - [`Subscriber`]: one thread blocking on its socket, like the relay's [`sink`]s. (webrtc-rs
//!   subscribers on the default 208 KiB socket buffer dropped packets above ~10k/s on this
//!   machine: the client, not the SFU, set the delivered rate.)

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use str0m::{
    change::{SdpAnswer, SdpPendingOffer},
    format::Codec,
    media::{Direction, MediaKind, Mid, Pt},
    net::{Protocol, Receive},
    rtp::{RtpWrite, SeqNo},
    Candidate, Event, Input, Output, Rtc,
};

pub type Datagram = (SocketAddr, Vec<u8>);

pub struct Publisher {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    pending: Option<SdpPendingOffer>,
    pt: Option<Pt>,
    seq: u64,
    connected: bool,
}

impl Publisher {
    /// A client with one send-only VP8-capable video m-line; returns it and its offer.
    pub fn new() -> (Self, String, String) {
        let (mut rtc, socket, local) = client();
        // Never waits: service runs between bursts and must not stall the pacing.
        socket.set_nonblocking(true).expect("nonblocking");
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().expect("offer");
        let publisher = Self {
            rtc,
            socket,
            local,
            mid,
            pending: Some(pending),
            pt: None,
            seq: 0,
            connected: false,
        };
        (publisher, offer.to_sdp_string(), mid.to_string())
    }

    pub fn accept_answer(&mut self, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("answer sdp");
        let pending = self.pending.take().expect("one offer");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("accept answer");
        let media = self.rtc.media(self.mid).expect("negotiated m-line");
        let remote = media.remote_pts().to_vec();
        self.pt = self
            .rtc
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == Codec::Vp8 && remote.contains(&p.pt()))
            .map(|p| p.pt());
        assert!(self.pt.is_some(), "the SFU did not accept VP8");
    }

    /// Runs ICE and DTLS until str0m reports the connection (blocking; call off the runtime).
    pub fn connect(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while !self.connected {
            assert!(Instant::now() < deadline, "publisher did not connect");
            self.service(&mut out);
            self.flush(&mut out);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Feeds what arrived on the socket and the clock to str0m and collects what it sends.
    fn service(&mut self, out: &mut Vec<Datagram>) {
        let mut buf = [0u8; 2048];
        while let Ok((n, source)) = self.socket.recv_from(&mut buf) {
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            let _ = self.rtc.handle_input(input);
        }
        let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<Datagram>) {
        while let Ok(output) = self.rtc.poll_output() {
            match output {
                Output::Timeout(_) => break,
                Output::Transmit(t) => out.push((t.destination, t.contents.into())),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(_) => {}
            }
        }
    }

    fn flush(&self, out: &mut Vec<Datagram>) {
        for (dest, data) in out.drain(..) {
            let _ = self.socket.send_to(&data, dest);
        }
    }

    /// `n` RTP packets with `payload`, SRTP-protected, plus whatever else str0m has to send now
    /// (STUN consent checks, RTCP), in the order str0m produced them.
    fn burst(&mut self, n: usize, payload: &[u8], out: &mut Vec<Datagram>) {
        self.service(out);
        let pt = self.pt.expect("answer accepted");
        let now = Instant::now();
        for _ in 0..n {
            let seq = self.seq;
            self.seq += 1;
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(self.mid, None) else {
                return;
            };
            tx.write_rtp(
                RtpWrite::new(
                    pt,
                    SeqNo::from(seq),
                    (seq * 90) as u32,
                    now,
                    payload.to_vec(),
                )
                .marker(seq % 10 == 9)
                .nackable(false),
            );
            self.drain(out);
        }
    }
}

/// A str0m client in RTP mode on a loopback socket with the SFU's buffer size.
fn client() -> (Rtc, UdpSocket, SocketAddr) {
    let socket = bound();
    let local = socket.local_addr().expect("addr");
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
    (rtc, socket, local)
}

/// A loopback socket with 4 MiB buffers (as the SFU's) and a 10 ms read timeout.
fn bound() -> UdpSocket {
    let socket = calls::sfu::net::bind_socket("127.0.0.1:0".parse().expect("addr"), 4 << 20)
        .expect("bind client");
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    socket
}

/// A receiving peer: answers the SFU's offer, then one thread reads its socket, hands each
/// datagram to str0m and counts the RTP packets that come out decrypted.
pub struct Subscriber {
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Answers `offer` (the SFU's, from a pull) and starts the client thread, which adds each
    /// RTP packet it decrypts to `received`. Returns the client and its answer.
    pub fn start(offer: &str, received: Arc<AtomicU64>) -> (Self, String) {
        let (mut rtc, socket, local) = client();
        let offer = str0m::change::SdpOffer::from_sdp_string(offer).expect("offer sdp");
        let answer = rtc.sdp_api().accept_offer(offer).expect("answer");
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (up, halt) = (connected.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bench-subscriber".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                let mut next_timeout = Instant::now();
                while !halt.load(Ordering::Relaxed) {
                    if let Ok((n, source)) = socket.recv_from(&mut buf) {
                        if let Ok(contents) = buf[..n].try_into() {
                            let _ = rtc.handle_input(Input::Receive(
                                Instant::now(),
                                Receive {
                                    proto: Protocol::Udp,
                                    source,
                                    destination: local,
                                    contents,
                                },
                            ));
                        }
                    }
                    let now = Instant::now();
                    if now >= next_timeout {
                        let _ = rtc.handle_input(Input::Timeout(now));
                    }
                    while let Ok(output) = rtc.poll_output() {
                        match output {
                            Output::Timeout(t) => {
                                next_timeout = t;
                                break;
                            }
                            Output::Transmit(t) => {
                                let _ = socket.send_to(&t.contents, t.destination);
                            }
                            Output::Event(Event::RtpPacket(_)) => {
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                            Output::Event(Event::Connected) => up.store(true, Ordering::Relaxed),
                            Output::Event(_) => {}
                        }
                    }
                }
            })
            .expect("spawn subscriber");
        let subscriber = Self {
            connected,
            stop,
            thread: Some(thread),
        };
        (subscriber, answer.to_sdp_string())
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The relay's receiver: the same blocking socket loop as a [`Subscriber`], minus str0m.
pub fn sink(received: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> (SocketAddr, JoinHandle<()>) {
    let socket = bound();
    let addr = socket.local_addr().expect("addr");
    let thread = std::thread::Builder::new()
        .name("bench-sink".into())
        .spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if socket.recv_from(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .expect("spawn sink");
    (addr, thread)
}

/// What a paced sender sends each 10 ms tick.
pub trait Source {
    /// Appends the datagrams of one tick carrying `n` media packets; returns how many of them
    /// are media packets (the rest are control traffic).
    fn tick(&mut self, n: usize, out: &mut Vec<Datagram>) -> usize;
    fn socket(&self) -> &UdpSocket;
}

impl Source for (&mut Publisher, &[u8]) {
    fn tick(&mut self, n: usize, out: &mut Vec<Datagram>) -> usize {
        let before = self.0.seq;
        self.0.burst(n, self.1, out);
        (self.0.seq - before) as usize
    }
    fn socket(&self) -> &UdpSocket {
        &self.0.socket
    }
}

/// The relay's input: the same number of datagrams per tick, of the SFU stream's size.
pub struct Copies {
    socket: UdpSocket,
    to: SocketAddr,
    datagram: Vec<u8>,
}

impl Copies {
    pub fn new(to: SocketAddr, size: usize) -> Self {
        Self {
            socket: bound(),
            to,
            datagram: vec![0x5A; size],
        }
    }
}

impl Source for Copies {
    fn tick(&mut self, n: usize, out: &mut Vec<Datagram>) -> usize {
        out.extend((0..n).map(|_| (self.to, self.datagram.clone())));
        n
    }
    fn socket(&self) -> &UdpSocket {
        &self.socket
    }
}

/// Offers `rate` media packets/s for `secs`: every 10 ms the source builds its tick's datagrams,
/// then they go out back to back, one `send_to` each. Returns how many media packets were sent
/// and the largest datagram's size.
pub fn send_paced(rate: u64, secs: u64, source: &mut impl Source) -> (u64, usize) {
    let per_tick = (rate / 100).max(1) as usize;
    let start = Instant::now();
    let mut sent = 0;
    let mut size = 0;
    let mut out = Vec::with_capacity(per_tick + 8);
    for tick in 1..=secs * 100 {
        let media = source.tick(per_tick, &mut out);
        for (dest, data) in out.drain(..) {
            if source.socket().send_to(&data, dest).is_ok() {
                size = size.max(data.len());
            }
        }
        sent += media as u64;
        let next = start + Duration::from_millis(tick * 10);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    (sent, size)
}
