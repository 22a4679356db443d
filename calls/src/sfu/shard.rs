//! One shard of the SFU: a set of peers (one str0m `Rtc` each) and the tracks they publish,
//! driven by datagrams, commands and time. No sockets and no clocks here: the shell in
//! `net.rs` feeds inputs and sends what [`Shard::take_transmits`] returns.
//!
//! Peers of one app (or one account, for `calls::media`) always share a shard, so forwarding
//! never crosses threads.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use str0m::{
    change::{SdpAnswer, SdpOffer, SdpPendingOffer},
    channel::{ChannelConfig, ChannelId},
    config::DtlsCert,
    format::PayloadParams,
    media::{Direction, KeyframeRequestKind, Mid, Pt},
    net::{Protocol, Receive},
    rtp::{RtpPacket, RtpWrite, SeqNo},
    stats::{MediaEgressStats, MediaIngressStats, PeerStats},
    Candidate, Event, IceConnectionState, Input, Output, Rtc,
};
use tokio::sync::{mpsc, watch};

use super::{
    rewrite::Rewriter,
    shared::{Directory, PeerEntry, Routes},
    types::*,
};
use crate::media::{Codec, PeerState, TapEvent, TapPacket};

/// Remote addresses per peer reported as [`PathChange::Opened`]; later ones are served through
/// the shared socket only.
pub const PATHS_PER_PEER: usize = 4;

/// Knobs of a shard, from the service config.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The one host candidate every peer advertises (public IP + the socket's port).
    pub candidate_addr: SocketAddr,
    pub max_tracks_per_session: usize,
    pub inactive_after: Duration,
    pub keyframe_interval: Duration,
    /// A peer that has not connected this long after its creation, or has been disconnected
    /// this long, is removed (`None`: never).
    pub idle_timeout: Option<Duration>,
}

struct Track {
    name: String,
    publisher: String,
    mid: Mid,
    kind: Kind,
    subscribers: Vec<(String, Mid)>,
    taps: Vec<mpsc::Sender<TapEvent>>,
    last_packet: Option<Instant>,
    last_keyframe_request: Option<Instant>,
}

/// One outgoing transceiver of a subscriber, fed by one published track.
struct Leg {
    track: String,
    kind: Kind,
    rewriter: Rewriter,
    /// Publisher payload type → ours on this leg (`None`: codec not negotiated here).
    pt_map: HashMap<Pt, Option<(Pt, u32)>>,
}

struct ChannelEntry {
    name: String,
    sctp_id: u16,
    channel: ChannelId,
    /// For a subscribed channel: the publishing session.
    remote: Option<String>,
}

#[derive(Default)]
struct StatsStore {
    peer: Option<PeerStats>,
    ingress: HashMap<Mid, MediaIngressStats>,
    egress: HashMap<Mid, MediaEgressStats>,
}

struct Peer {
    account: String,
    owner: Owner,
    rtc: Rtc,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    state: watch::Sender<PeerState>,
    pending: Option<SdpPendingOffer>,
    published: HashMap<Mid, String>,
    legs: HashMap<Mid, Leg>,
    channels: Vec<ChannelEntry>,
    next_sctp_id: u16,
    timeout: Instant,
    stats: StatsStore,
    dead: bool,
    /// Since when the peer has had no working connection (creation, or the last ICE
    /// disconnect); `None` while connected.
    idle_since: Option<Instant>,
}

impl Peer {
    fn track_count(&self) -> usize {
        self.published.len() + self.legs.len()
    }
}

/// An event of the peer being drained that needs the rest of the shard. The peer is implied
/// (see [`Shard::drain_peer`]): no id is copied per packet. Not boxed: a packet's work item
/// lives only until the peer's drain ends, and a box would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
enum Work {
    Rtp(RtpPacket),
    Keyframe(Mid, KeyframeRequestKind),
    Channel(ChannelId, bool, Vec<u8>),
    SenderReport(Mid, u64, u32),
}

pub struct Shard {
    index: usize,
    config: ShardConfig,
    cert: DtlsCert,
    routes: Arc<Routes>,
    directory: Arc<Directory>,
    peers: HashMap<String, Peer>,
    tracks: HashMap<String, Track>,
    by_name: HashMap<(String, String), String>,
    /// (publisher session, channel name) → subscribers' (session, channel).
    channel_subs: HashMap<(String, String), Vec<(String, ChannelId)>>,
    addr_cache: HashMap<SocketAddr, String>,
    /// Remote addresses that began or stopped carrying a peer's traffic, for the shell (which
    /// gives each a connected socket: see `net.rs`).
    path_changes: Vec<PathChange>,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    usage: HashMap<String, u64>,
    /// Totals since the last take, for Prometheus: counting per datagram through the `metrics`
    /// facade costs a registry lookup each time.
    egress_bytes: u64,
    forwarded_packets: u64,
}

fn bad_sdp(e: impl std::fmt::Display) -> SfuError {
    SfuError::BadSdp(e.to_string())
}

/// RFC 3550 NTP timestamp (seconds since 1900 in the high 32 bits) of a wall-clock time.
fn ntp64(t: std::time::SystemTime) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    ((d.as_secs() + UNIX_TO_NTP) << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

pub fn codec_of(params: &PayloadParams) -> Codec {
    let spec = params.spec();
    let name = match spec.codec {
        str0m::format::Codec::Opus => "opus".to_owned(),
        other => other.to_string().to_uppercase(),
    };
    let fmtp = spec.format.to_string();
    Codec {
        name,
        clock_rate: spec.clock_rate.get(),
        fmtp: (!fmtp.is_empty()).then_some(fmtp),
    }
}

impl Shard {
    pub fn new(
        index: usize,
        config: ShardConfig,
        cert: DtlsCert,
        routes: Arc<Routes>,
        directory: Arc<Directory>,
    ) -> Self {
        Self {
            index,
            config,
            cert,
            routes,
            directory,
            peers: HashMap::new(),
            tracks: HashMap::new(),
            by_name: HashMap::new(),
            channel_subs: HashMap::new(),
            addr_cache: HashMap::new(),
            path_changes: Vec::new(),
            transmits: Vec::new(),
            usage: HashMap::new(),
            egress_bytes: 0,
            forwarded_packets: 0,
        }
    }

    /// Datagrams to send, as (destination, bytes).
    pub fn take_transmits(&mut self) -> std::vec::Drain<'_, (SocketAddr, Vec<u8>)> {
        self.transmits.drain(..)
    }

    /// Remote addresses that began or stopped belonging to one of this shard's peers.
    pub fn take_path_changes(&mut self) -> std::vec::Drain<'_, PathChange> {
        self.path_changes.drain(..)
    }

    /// Egress bytes per account since the last call.
    pub fn take_usage(&mut self) -> Vec<(String, u64)> {
        self.usage.drain().filter(|(_, b)| *b > 0).collect()
    }

    /// RTP packets forwarded since the last call (for Prometheus).
    pub fn take_forwarded(&mut self) -> u64 {
        std::mem::take(&mut self.forwarded_packets)
    }

    /// Bytes sent to clients since the last call, all accounts together (for Prometheus).
    pub fn take_egress_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.egress_bytes)
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().map(|p| p.timeout).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.timeout <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            if let Some(peer) = self.peers.get_mut(id) {
                if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(peer = %id, error = %e, "timeout input failed");
                }
            }
        }
        self.run(now, due);
    }

    /// Disconnects and removes the peers that have been without a connection for longer than
    /// the idle timeout (never connected after their creation, or ICE-disconnected): clients
    /// that went away without closing their session. Returns how many were removed.
    pub fn reap_idle(&mut self, now: Instant) -> usize {
        let Some(limit) = self.config.idle_timeout else {
            return 0;
        };
        let idle: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.idle_since
                    .is_some_and(|at| now.saturating_duration_since(at) >= limit)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &idle {
            tracing::info!(peer = %id, "closing a session without a connection (idle timeout)");
            if let Some(p) = self.peers.get_mut(id) {
                p.rtc.disconnect();
            }
        }
        self.run(now, idle.clone());
        for id in &idle {
            self.remove_peer(id);
        }
        idle.len()
    }

    /// Disconnects and removes every peer (on shutdown): subscribers' taps see `Ended`, watchers
    /// see `Closed`, and the DTLS close alerts are left in the transmit queue.
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        for id in &ids {
            if let Some(p) = self.peers.get_mut(id) {
                p.rtc.disconnect();
            }
        }
        self.run(now, ids.clone());
        for id in &ids {
            self.remove_peer(id);
        }
    }

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.handle_datagrams(now, destination, std::iter::once((source, data)));
    }

    /// Feeds a batch of datagrams. Each receiving peer is drained right after its input (str0m
    /// expects its outputs polled after every input); the peers its packets were forwarded to
    /// are drained once for the whole batch, so a subscriber's packets of one batch are
    /// encrypted and queued in one pass instead of one `poll_output` round per packet.
    pub fn handle_datagrams<'a>(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        let mut touched = Vec::new();
        for (source, data) in datagrams {
            if let Some(owner) = self.receive(now, source, destination, data) {
                self.drain_peer(now, &owner, &mut touched);
            }
        }
        self.run(now, touched);
    }

    /// Hands one datagram to the peer it belongs to; returns that peer.
    fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> Option<String> {
        let contents = data.try_into().ok()?;
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let cached = self
            .addr_cache
            .get(&source)
            .filter(|id| self.peers.get(*id).is_some_and(|p| p.rtc.accepts(&input)));
        let owner = match cached {
            Some(id) => id.clone(),
            None => self
                .peers
                .iter()
                .find(|(_, p)| p.rtc.accepts(&input))?
                .0
                .clone(),
        };
        let peer = self.peers.get_mut(&owner)?;
        if !peer.addrs.contains(&source) {
            peer.addrs.push(source);
            self.addr_cache.insert(source, owner.clone());
            // Candidate pairs that ICE tries and drops also show up here; the first few are
            // enough to cover the one that carries the media.
            if peer.addrs.len() <= PATHS_PER_PEER {
                self.path_changes.push(PathChange::Opened(source));
            }
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(peer = %owner, error = %e, "datagram rejected");
        }
        Some(owner)
    }

    pub fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::CreatePeer {
                peer,
                account,
                owner,
                offer,
                state,
                reply,
            } => {
                let result = self
                    .create_peer(now, &peer, account, owner, state)
                    .and_then(|()| match offer {
                        Some(offer) => self.accept_offer(now, &peer, &offer).map(Some),
                        None => Ok(None),
                    });
                if result.is_err() {
                    self.remove_peer(&peer);
                }
                let _ = reply.send(result);
            }
            Command::PushTracks {
                peer,
                offer,
                tracks,
                reply,
            } => {
                let _ = reply.send(self.push_tracks(now, &peer, &offer, tracks));
            }
            Command::PullTracks {
                peer,
                tracks,
                reply,
            } => {
                let _ = reply.send(self.pull_tracks(now, &peer, tracks));
            }
            Command::Renegotiate {
                peer,
                answer,
                reply,
            } => {
                let _ = reply.send(self.renegotiate(now, &peer, &answer));
            }
            Command::CloseTracks {
                peer,
                mids,
                offer,
                force,
                reply,
            } => {
                let _ = reply.send(self.close_tracks(now, &peer, mids, offer, force));
            }
            Command::UpdateTracks {
                peer,
                updates,
                reply,
            } => {
                let _ = reply.send(self.update_tracks(now, &peer, updates));
            }
            Command::OpenChannels {
                peer,
                channels,
                reply,
            } => {
                let _ = reply.send(self.open_channels(now, &peer, channels));
            }
            Command::Status { peer, reply } => {
                let _ = reply.send(self.status(now, &peer));
            }
            Command::Stats { peer, reply } => {
                let _ = reply.send(self.stats(&peer));
            }
            Command::ClosePeer { peer, reply } => {
                let found = self.peers.contains_key(&peer);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rtc.disconnect();
                }
                self.run(now, vec![peer.clone()]);
                self.remove_peer(&peer);
                let _ = reply.send(if found {
                    Ok(())
                } else {
                    Err(SfuError::NotFound("session"))
                });
            }
            Command::Publish { peer, offer, reply } => {
                let _ = reply.send(self.publish_all(now, &peer, &offer));
            }
            Command::Subscribe {
                peer,
                offer,
                tracks,
                reply,
            } => {
                let _ = reply.send(self.subscribe(now, &peer, &offer, tracks));
            }
            Command::Tap { track, tx } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.taps.push(tx);
                }
            }
            Command::RequestKeyframe { track } => {
                self.request_keyframe(now, &track, KeyframeRequestKind::Pli, true);
            }
        }
    }

    // ---------------------------------------------------------------- peers

    fn create_peer(
        &mut self,
        now: Instant,
        id: &str,
        account: String,
        owner: Owner,
        state: watch::Sender<PeerState>,
    ) -> Result<(), SfuError> {
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .set_crypto_provider(super::dtls::crypto_provider())
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        let candidate = Candidate::host(self.config.candidate_addr, "udp")
            .map_err(|e| SfuError::BadSdp(format!("candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        self.routes.add_ufrag(&ufrag, self.index);
        self.directory.add_peer(
            id,
            PeerEntry {
                shard: self.index,
                owner: owner.clone(),
                account: account.clone(),
                state: state.subscribe(),
            },
        );
        self.peers.insert(
            id.to_owned(),
            Peer {
                account,
                owner,
                rtc,
                ufrag,
                addrs: Vec::new(),
                state,
                pending: None,
                published: HashMap::new(),
                legs: HashMap::new(),
                channels: Vec::new(),
                next_sctp_id: 1,
                timeout: now,
                stats: StatsStore::default(),
                dead: false,
                idle_since: Some(now),
            },
        );
        tracing::info!(peer = %id, shard = self.index, "peer created");
        Ok(())
    }

    fn peer_mut(&mut self, id: &str) -> Result<&mut Peer, SfuError> {
        self.peers.get_mut(id).ok_or(SfuError::NotFound("session"))
    }

    /// Accepts a client offer and returns our answer.
    fn accept_offer(&mut self, now: Instant, id: &str, offer: &str) -> Result<String, SfuError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(bad_sdp)?;
        let peer = self.peer_mut(id)?;
        if peer.pending.is_some() {
            return Err(SfuError::AlreadyPending);
        }
        let answer = peer.rtc.sdp_api().accept_offer(offer).map_err(bad_sdp)?;
        self.run(now, vec![id.to_owned()]);
        Ok(answer.to_sdp_string())
    }

    fn remove_peer(&mut self, id: &str) {
        let Some(peer) = self.peers.remove(id) else {
            return;
        };
        for track_id in peer.published.values() {
            self.unpublish(track_id);
        }
        for leg in peer.legs.values() {
            if let Some(t) = self.tracks.get_mut(&leg.track) {
                t.subscribers.retain(|(s, _)| s != id);
            }
        }
        self.channel_subs
            .retain(|(publisher, _), _| publisher != id);
        for subs in self.channel_subs.values_mut() {
            subs.retain(|(s, _)| s != id);
        }
        for addr in &peer.addrs {
            self.addr_cache.remove(addr);
        }
        self.path_changes.extend(
            peer.addrs
                .iter()
                .take(PATHS_PER_PEER)
                .map(|a| PathChange::Closed(*a)),
        );
        self.routes.remove_peer(&peer.ufrag, &peer.addrs);
        self.directory.remove_peer(id);
        let _ = peer.state.send(PeerState::Closed);
        tracing::info!(peer = %id, "peer removed");
    }

    fn unpublish(&mut self, track_id: &str) {
        if let Some(track) = self.tracks.remove(track_id) {
            for tap in &track.taps {
                let _ = tap.try_send(TapEvent::Ended);
            }
            self.by_name
                .remove(&(track.publisher.clone(), track.name.clone()));
            self.directory.remove_track(track_id);
        }
    }

    // ---------------------------------------------------------------- driving

    /// Drains the outputs of `start` peers and everything their events touch.
    fn run(&mut self, now: Instant, start: Vec<String>) {
        // Few peers are touched at a time: a Vec beats a HashSet (and its extra String clones).
        let mut queue: Vec<String> = Vec::with_capacity(start.len());
        for id in start {
            if !queue.contains(&id) {
                queue.push(id);
            }
        }
        let mut touched = Vec::new();
        while let Some(id) = queue.pop() {
            self.drain_peer(now, &id, &mut touched);
            for t in touched.drain(..) {
                if !queue.contains(&t) {
                    queue.push(t);
                }
            }
        }
        if self.peers.values().any(|p| p.dead) {
            let dead: Vec<String> = self
                .peers
                .iter()
                .filter(|(_, p)| p.dead)
                .map(|(id, _)| id.clone())
                .collect();
            for id in dead {
                self.remove_peer(&id);
            }
        }
    }

    /// Polls one peer's outputs and applies its events; peers they touch are added to `touched`.
    fn drain_peer(&mut self, now: Instant, id: &str, touched: &mut Vec<String>) {
        let mut work = Vec::new();
        self.poll_peer(now, id, &mut work);
        for w in work {
            self.apply(now, id, w, touched);
        }
    }

    fn poll_peer(&mut self, now: Instant, id: &str, work: &mut Vec<Work>) {
        let Shard {
            peers,
            transmits,
            usage,
            egress_bytes,
            ..
        } = self;
        let Some(peer) = peers.get_mut(id) else {
            return;
        };
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    peer.timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    let bytes = t.contents.len() as u64;
                    *egress_bytes += bytes;
                    match usage.get_mut(&peer.account) {
                        Some(total) => *total += bytes,
                        None => {
                            usage.insert(peer.account.clone(), bytes);
                        }
                    }
                    transmits.push((t.destination, t.contents.into()));
                }
                Ok(Output::Event(event)) => match event {
                    Event::Connected => {
                        tracing::info!(peer = %id, "connected");
                        peer.idle_since = None;
                        let _ = peer.state.send(PeerState::Connected);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        peer.idle_since.get_or_insert(now);
                        let _ = peer.state.send(PeerState::Disconnected);
                    }
                    // ICE-lite never gives up on a pair: a disconnected client may come back.
                    Event::IceConnectionStateChange(
                        IceConnectionState::Connected | IceConnectionState::Completed,
                    ) if *peer.state.borrow() == PeerState::Disconnected => {
                        peer.idle_since = None;
                        let _ = peer.state.send(PeerState::Connected);
                    }
                    Event::RtpPacket(packet) => work.push(Work::Rtp(packet)),
                    Event::KeyframeRequest(r) => work.push(Work::Keyframe(r.mid, r.kind)),
                    Event::ChannelData(d) => work.push(Work::Channel(d.id, d.binary, d.data)),
                    Event::SenderFeedback(f) => work.push(Work::SenderReport(
                        f.mid,
                        ntp64(f.sender_info.ntp_time),
                        f.sender_info.rtp_time.numer() as u32,
                    )),
                    Event::PeerStats(s) => peer.stats.peer = Some(s),
                    Event::MediaIngressStats(s) => {
                        peer.stats.ingress.insert(s.mid, s);
                    }
                    Event::MediaEgressStats(s) => {
                        peer.stats.egress.insert(s.mid, s);
                    }
                    Event::Closed => peer.dead = true,
                    _ => {}
                },
                Err(e) => {
                    tracing::warn!(peer = %id, error = %e, "peer failed");
                    peer.dead = true;
                    break;
                }
            }
        }
        if !peer.rtc.is_alive() {
            peer.dead = true;
        }
    }

    /// Applies one event of peer `id`.
    fn apply(&mut self, now: Instant, id: &str, work: Work, touched: &mut Vec<String>) {
        match work {
            Work::Rtp(packet) => self.forward(now, id, packet, touched),
            Work::Keyframe(mid, kind) => {
                let track = self
                    .peers
                    .get(id)
                    .and_then(|p| p.legs.get(&mid))
                    .map(|l| l.track.clone());
                if let Some(track) = track {
                    if let Some(publisher) = self.request_keyframe(now, &track, kind, false) {
                        touched.push(publisher);
                    }
                }
            }
            Work::Channel(channel, binary, data) => {
                let name = self
                    .peers
                    .get(id)
                    .and_then(|p| {
                        p.channels
                            .iter()
                            .find(|c| c.channel == channel && c.remote.is_none())
                    })
                    .map(|c| c.name.clone());
                let Some(name) = name else { return };
                let subs = self
                    .channel_subs
                    .get(&(id.to_owned(), name))
                    .cloned()
                    .unwrap_or_default();
                for (sub, sub_channel) in subs {
                    if let Some(mut ch) = self
                        .peers
                        .get_mut(&sub)
                        .and_then(|p| p.rtc.channel(sub_channel))
                    {
                        if let Err(e) = ch.write(binary, &data) {
                            tracing::debug!(peer = %sub, error = %e, "data channel write failed");
                        }
                        touched.push(sub);
                    }
                }
            }
            Work::SenderReport(mid, ntp_time, rtp_time) => {
                let track = self
                    .peers
                    .get(id)
                    .and_then(|p| p.published.get(&mid))
                    .cloned();
                if let Some(t) = track.and_then(|t| self.tracks.get_mut(&t)) {
                    t.taps.retain(|tap| {
                        !matches!(
                            tap.try_send(TapEvent::SenderReport { ntp_time, rtp_time }),
                            Err(mpsc::error::TrySendError::Closed(_))
                        )
                    });
                }
            }
        }
    }

    fn forward(
        &mut self,
        now: Instant,
        publisher: &str,
        packet: RtpPacket,
        touched: &mut Vec<String>,
    ) {
        let Some(pub_peer) = self.peers.get_mut(publisher) else {
            return;
        };
        let mid = pub_peer
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| s.mid());
        let Some(track_id) = mid.and_then(|m| pub_peer.published.get(&m)).cloned() else {
            return;
        };
        let pt = packet.header.payload_type;
        let pub_params = pub_peer.rtc.codec_config().find(|p| p.pt() == pt).cloned();
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        track.last_packet = Some(now);
        if !track.taps.is_empty() {
            let tap = TapPacket {
                seq: packet.seq_no.as_u16(),
                timestamp: packet.header.timestamp,
                marker: packet.header.marker,
                payload_type: *pt,
                payload: bytes::Bytes::copy_from_slice(&packet.payload),
                received: packet.timestamp,
            };
            track.taps.retain(|t| {
                !matches!(
                    t.try_send(TapEvent::Rtp(tap.clone())),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            });
        }
        let mut ext = packet.header.ext_vals.clone();
        // mid/rid belong to the publisher's leg; str0m writes the subscriber's own.
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        let in_seq: u64 = *packet.seq_no;
        // Shared: every leg's write holds a reference, none copies it.
        let payload = packet.payload;
        for (sub, sub_mid) in &track.subscribers {
            let Some(sp) = self.peers.get_mut(sub) else {
                continue;
            };
            let Peer { legs, rtc, .. } = sp;
            let Some(leg) = legs.get_mut(sub_mid) else {
                continue;
            };
            let mapped = *leg.pt_map.entry(pt).or_insert_with(|| {
                let params = pub_params?;
                rtc.codec_config()
                    .match_params(params)
                    .map(|p| (p.pt(), p.spec().clock_rate.get()))
            });
            let Some((out_pt, clock_rate)) = mapped else {
                continue;
            };
            let Some((seq, ts)) =
                leg.rewriter
                    .rewrite(in_seq, packet.header.timestamp, now, clock_rate)
            else {
                continue;
            };
            let nackable = leg.kind == Kind::Video;
            let mut api = rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(*sub_mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    SeqNo::from(seq),
                    ts,
                    packet.timestamp,
                    payload.clone(),
                )
                .marker(packet.header.marker)
                .ext_vals(ext.clone())
                .nackable(nackable),
            );
            self.forwarded_packets += 1;
            // A batch forwards many packets to the same subscribers: one entry each.
            if !touched.contains(sub) {
                touched.push(sub.clone());
            }
        }
    }

    /// Sends a PLI/FIR to a track's publisher unless one went out within the keyframe interval
    /// (`force` skips the limit, for a new subscriber). Returns the publisher to drive.
    fn request_keyframe(
        &mut self,
        now: Instant,
        track_id: &str,
        kind: KeyframeRequestKind,
        force: bool,
    ) -> Option<String> {
        let track = self.tracks.get_mut(track_id)?;
        if track.kind != Kind::Video {
            return None;
        }
        if !force
            && track
                .last_keyframe_request
                .is_some_and(|at| now.saturating_duration_since(at) < self.config.keyframe_interval)
        {
            return None;
        }
        track.last_keyframe_request = Some(now);
        let (publisher, mid) = (track.publisher.clone(), track.mid);
        let peer = self.peers.get_mut(&publisher)?;
        let mut api = peer.rtc.direct_api();
        api.stream_rx_by_mid(mid, None)?.request_keyframe(kind);
        metrics::counter!("calls_keyframe_requests_total").increment(1);
        Some(publisher)
    }

    // ---------------------------------------------------------------- sessions API

    fn push_tracks(
        &mut self,
        now: Instant,
        id: &str,
        offer: &str,
        requests: Vec<PushRequest>,
    ) -> Result<NegotiationOutcome, SfuError> {
        let peer = self.peer_mut(id)?;
        if peer.track_count() + requests.len() > self.config.max_tracks_per_session {
            return Err(SfuError::Limit(format!(
                "at most {} tracks per session",
                self.config.max_tracks_per_session
            )));
        }
        let answer = self.accept_offer(now, id, offer)?;
        let mut results = Vec::new();
        for req in requests {
            let result = TrackResult {
                location: "local",
                name: req.name.clone(),
                mid: req.mid.clone(),
                session_id: None,
                error_code: None,
                error_description: None,
            };
            results.push(
                match self.publish_one(id, &req.name, req.mid.as_deref(), now) {
                    Ok(_) => result,
                    Err((code, msg)) => result.failed(code, msg),
                },
            );
        }
        Ok(NegotiationOutcome {
            sdp: Some((SdpKind::Answer, answer)),
            tracks: results,
        })
    }

    /// Publishes the transceiver `mid` of peer `id` as `name`; returns the new track id.
    fn publish_one(
        &mut self,
        id: &str,
        name: &str,
        mid: Option<&str>,
        now: Instant,
    ) -> Result<String, (&'static str, String)> {
        let _ = now;
        let Some(mid) = mid else {
            return Err((
                "invalid_request",
                "a local track needs the mid of its transceiver".into(),
            ));
        };
        if self.by_name.contains_key(&(id.to_owned(), name.to_owned())) {
            return Err((
                "duplicate_track_name",
                format!("this session already publishes a track named {name:?}"),
            ));
        }
        let peer = self
            .peers
            .get_mut(id)
            .ok_or(("not_found", "session not found".to_owned()))?;
        let mid = Mid::from(mid);
        let Some(media) = peer.rtc.media(mid) else {
            return Err((
                "invalid_mid",
                format!("the offer has no transceiver with mid {mid}"),
            ));
        };
        if !media.direction().is_receiving() {
            return Err((
                "invalid_mid",
                format!("transceiver {mid} does not send media to us"),
            ));
        }
        if peer.published.contains_key(&mid) {
            return Err((
                "invalid_mid",
                format!("transceiver {mid} is already published"),
            ));
        }
        let kind: Kind = media.kind().into();
        let track_id = platform::ids::new_uid();
        peer.published.insert(mid, track_id.clone());
        self.tracks.insert(
            track_id.clone(),
            Track {
                name: name.to_owned(),
                publisher: id.to_owned(),
                mid,
                kind,
                subscribers: Vec::new(),
                taps: Vec::new(),
                last_packet: None,
                last_keyframe_request: None,
            },
        );
        self.by_name
            .insert((id.to_owned(), name.to_owned()), track_id.clone());
        self.directory.add_track(&track_id, self.index);
        Ok(track_id)
    }

    /// Finds the track `name` of session `session`, visible to peers of `owner` only.
    fn find_track(&self, owner: &Owner, session: &str, name: &str) -> Option<String> {
        let publisher = self.peers.get(session)?;
        if &publisher.owner != owner {
            return None;
        }
        self.by_name
            .get(&(session.to_owned(), name.to_owned()))
            .cloned()
    }

    fn pull_tracks(
        &mut self,
        now: Instant,
        id: &str,
        requests: Vec<PullRequest>,
    ) -> Result<NegotiationOutcome, SfuError> {
        let peer = self.peers.get(id).ok_or(SfuError::NotFound("session"))?;
        if peer.pending.is_some() {
            return Err(SfuError::AlreadyPending);
        }
        if peer.track_count() + requests.len() > self.config.max_tracks_per_session {
            return Err(SfuError::Limit(format!(
                "at most {} tracks per session",
                self.config.max_tracks_per_session
            )));
        }
        let owner = peer.owner.clone();
        let mut results = Vec::new();
        let mut found = Vec::new();
        for req in requests {
            let result = TrackResult {
                location: "remote",
                name: req.name.clone(),
                mid: None,
                session_id: Some(req.session.clone()),
                error_code: None,
                error_description: None,
            };
            match self.find_track(&owner, &req.session, &req.name) {
                Some(track_id) => {
                    found.push((results.len(), track_id));
                    results.push(result);
                }
                None => results.push(result.failed(
                    "not_found",
                    format!(
                        "session {} publishes no track named {:?}",
                        req.session, req.name
                    ),
                )),
            }
        }
        if found.is_empty() {
            return Ok(NegotiationOutcome {
                sdp: None,
                tracks: results,
            });
        }
        let kinds: Vec<(usize, String, Kind, String)> = found
            .into_iter()
            .filter_map(|(i, t)| {
                self.tracks
                    .get(&t)
                    .map(|tr| (i, t.clone(), tr.kind, tr.publisher.clone()))
            })
            .collect();
        let peer = self
            .peers
            .get_mut(id)
            .ok_or(SfuError::NotFound("session"))?;
        let mut change = peer.rtc.sdp_api();
        let mut added = Vec::new();
        for (i, track_id, kind, publisher) in kinds {
            let mid = change.add_media(
                kind.into(),
                Direction::SendOnly,
                Some(publisher),
                Some(results[i].name.clone()),
                None,
            );
            added.push((i, track_id, kind, mid));
        }
        let Some((offer, pending)) = change.apply() else {
            return Ok(NegotiationOutcome {
                sdp: None,
                tracks: results,
            });
        };
        peer.pending = Some(pending);
        for (i, track_id, kind, mid) in added {
            results[i].mid = Some(mid.to_string());
            peer.legs.insert(
                mid,
                Leg {
                    track: track_id.clone(),
                    kind,
                    rewriter: Rewriter::new(),
                    pt_map: HashMap::new(),
                },
            );
            if let Some(t) = self.tracks.get_mut(&track_id) {
                t.subscribers.push((id.to_owned(), mid));
            }
        }
        self.run(now, vec![id.to_owned()]);
        Ok(NegotiationOutcome {
            sdp: Some((SdpKind::Offer, offer.to_sdp_string())),
            tracks: results,
        })
    }

    fn renegotiate(&mut self, now: Instant, id: &str, answer: &str) -> Result<(), SfuError> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(bad_sdp)?;
        let peer = self.peer_mut(id)?;
        let pending = peer.pending.take().ok_or(SfuError::NothingPending)?;
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(bad_sdp)?;
        let tracks: Vec<String> = peer.legs.values().map(|l| l.track.clone()).collect();
        let mut touched = vec![id.to_owned()];
        for t in tracks {
            touched.extend(self.request_keyframe(now, &t, KeyframeRequestKind::Pli, true));
        }
        self.run(now, touched);
        Ok(())
    }

    fn close_tracks(
        &mut self,
        now: Instant,
        id: &str,
        mids: Vec<String>,
        offer: Option<String>,
        force: bool,
    ) -> Result<NegotiationOutcome, SfuError> {
        let peer = self.peers.get(id).ok_or(SfuError::NotFound("session"))?;
        if offer.is_some() && peer.pending.is_some() {
            return Err(SfuError::AlreadyPending);
        }
        let mut results = Vec::new();
        let mut closed_legs = Vec::new();
        for mid_text in mids {
            let mid = Mid::from(mid_text.as_str());
            let peer = self
                .peers
                .get_mut(id)
                .ok_or(SfuError::NotFound("session"))?;
            let base = TrackResult {
                location: "local",
                name: String::new(),
                mid: Some(mid_text.clone()),
                session_id: None,
                error_code: None,
                error_description: None,
            };
            if let Some(track_id) = peer.published.remove(&mid) {
                let name = self
                    .tracks
                    .get(&track_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                self.unpublish(&track_id);
                results.push(TrackResult { name, ..base });
            } else if let Some(leg) = peer.legs.remove(&mid) {
                let (name, publisher) =
                    self.tracks
                        .get_mut(&leg.track)
                        .map_or((String::new(), None), |t| {
                            t.subscribers.retain(|(s, m)| !(s == id && *m == mid));
                            (t.name.clone(), Some(t.publisher.clone()))
                        });
                closed_legs.push(mid);
                results.push(TrackResult {
                    location: "remote",
                    name,
                    session_id: publisher,
                    ..base
                });
            } else {
                results.push(base.failed(
                    "close_track_error",
                    format!("no open track with mid {mid_text}"),
                ));
            }
        }
        let sdp = match offer {
            Some(offer) => Some((SdpKind::Answer, self.accept_offer(now, id, &offer)?)),
            None if !force && !closed_legs.is_empty() => {
                // We send on these transceivers: stopping them needs our offer.
                let peer = self.peer_mut(id)?;
                if peer.pending.is_some() {
                    return Err(SfuError::AlreadyPending);
                }
                let mut change = peer.rtc.sdp_api();
                for mid in &closed_legs {
                    change.set_direction(*mid, Direction::Inactive);
                }
                match change.apply() {
                    Some((offer, pending)) => {
                        peer.pending = Some(pending);
                        Some((SdpKind::Offer, offer.to_sdp_string()))
                    }
                    None => None,
                }
            }
            None => None,
        };
        self.run(now, vec![id.to_owned()]);
        Ok(NegotiationOutcome {
            sdp,
            tracks: results,
        })
    }

    fn update_tracks(
        &mut self,
        now: Instant,
        id: &str,
        updates: Vec<(String, PullRequest)>,
    ) -> Result<Vec<TrackResult>, SfuError> {
        let owner = self
            .peers
            .get(id)
            .ok_or(SfuError::NotFound("session"))?
            .owner
            .clone();
        let mut results = Vec::new();
        let mut touched = vec![id.to_owned()];
        for (mid_text, req) in updates {
            let mid = Mid::from(mid_text.as_str());
            let result = TrackResult {
                location: "remote",
                name: req.name.clone(),
                mid: Some(mid_text.clone()),
                session_id: Some(req.session.clone()),
                error_code: None,
                error_description: None,
            };
            let Some(new_track) = self.find_track(&owner, &req.session, &req.name) else {
                results.push(result.failed(
                    "not_found",
                    format!(
                        "session {} publishes no track named {:?}",
                        req.session, req.name
                    ),
                ));
                continue;
            };
            let new_kind = self.tracks.get(&new_track).map(|t| t.kind);
            let Some(leg) = self.peers.get_mut(id).and_then(|p| p.legs.get_mut(&mid)) else {
                results.push(result.failed(
                    "invalid_mid",
                    format!("no pulled track with mid {mid_text}"),
                ));
                continue;
            };
            if Some(leg.kind) != new_kind {
                results.push(result.failed(
                    "kind_mismatch",
                    "the new track is of another kind than the transceiver",
                ));
                continue;
            }
            let old = std::mem::replace(&mut leg.track, new_track.clone());
            leg.rewriter.rebase();
            leg.pt_map.clear();
            if let Some(t) = self.tracks.get_mut(&old) {
                t.subscribers.retain(|(s, m)| !(s == id && *m == mid));
            }
            if let Some(t) = self.tracks.get_mut(&new_track) {
                t.subscribers.push((id.to_owned(), mid));
            }
            touched.extend(self.request_keyframe(now, &new_track, KeyframeRequestKind::Pli, true));
            results.push(result);
        }
        self.run(now, touched);
        Ok(results)
    }

    fn open_channels(
        &mut self,
        now: Instant,
        id: &str,
        requests: Vec<ChannelRequest>,
    ) -> Result<Vec<ChannelStatus>, SfuError> {
        let owner = self
            .peers
            .get(id)
            .ok_or(SfuError::NotFound("session"))?
            .owner
            .clone();
        let mut out = Vec::new();
        for req in requests {
            if let Some(remote) = &req.remote_session {
                let publishes = self
                    .peers
                    .get(remote)
                    .filter(|p| p.owner == owner)
                    .is_some_and(|p| {
                        p.channels
                            .iter()
                            .any(|c| c.remote.is_none() && c.name == req.name)
                    });
                if !publishes {
                    return Err(SfuError::NotFound("remote data channel"));
                }
            }
            let peer = self.peer_mut(id)?;
            if peer
                .channels
                .iter()
                .any(|c| c.name == req.name && c.remote == req.remote_session)
            {
                return Err(SfuError::Limit(format!(
                    "data channel {:?} is already open",
                    req.name
                )));
            }
            let sctp_id = peer.next_sctp_id;
            peer.next_sctp_id = peer
                .next_sctp_id
                .checked_add(1)
                .ok_or_else(|| SfuError::Limit("too many data channels".into()))?;
            let channel = peer.rtc.direct_api().create_data_channel(ChannelConfig {
                label: req.name.clone(),
                negotiated: Some(sctp_id),
                ..Default::default()
            });
            peer.channels.push(ChannelEntry {
                name: req.name.clone(),
                sctp_id,
                channel,
                remote: req.remote_session.clone(),
            });
            if let Some(remote) = &req.remote_session {
                self.channel_subs
                    .entry((remote.clone(), req.name.clone()))
                    .or_default()
                    .push((id.to_owned(), channel));
            }
            out.push(ChannelStatus {
                location: if req.remote_session.is_some() {
                    "remote"
                } else {
                    "local"
                },
                name: req.name,
                id: sctp_id,
                session_id: req.remote_session,
                status: "active",
            });
        }
        self.run(now, vec![id.to_owned()]);
        Ok(out)
    }

    fn status(&self, now: Instant, id: &str) -> Result<SessionStatus, SfuError> {
        let peer = self.peers.get(id).ok_or(SfuError::NotFound("session"))?;
        let status_of = |track: Option<&Track>| match track {
            Some(t) => track_status(t.last_packet, now, self.config.inactive_after),
            None => "inactive",
        };
        let mut tracks = Vec::new();
        for (mid, track_id) in &peer.published {
            let t = self.tracks.get(track_id);
            tracks.push(TrackStatus {
                location: "local",
                mid: mid.to_string(),
                name: t.map(|t| t.name.clone()).unwrap_or_default(),
                session_id: None,
                kind: t.map_or(Kind::Audio, |t| t.kind),
                status: status_of(t),
            });
        }
        for (mid, leg) in &peer.legs {
            let t = self.tracks.get(&leg.track);
            tracks.push(TrackStatus {
                location: "remote",
                mid: mid.to_string(),
                name: t.map(|t| t.name.clone()).unwrap_or_default(),
                session_id: t.map(|t| t.publisher.clone()),
                kind: leg.kind,
                status: status_of(t),
            });
        }
        tracks.sort_by(|a, b| a.mid.cmp(&b.mid));
        let data_channels = peer
            .channels
            .iter()
            .map(|c| ChannelStatus {
                location: if c.remote.is_some() {
                    "remote"
                } else {
                    "local"
                },
                name: c.name.clone(),
                id: c.sctp_id,
                session_id: c.remote.clone(),
                status: "active",
            })
            .collect();
        Ok(SessionStatus {
            tracks,
            data_channels,
            connection_state: *peer.state.borrow(),
        })
    }

    /// Server-side statistics in W3C getStats vocabulary (from the server's point of view:
    /// `inbound-rtp` is what the client sent us).
    fn stats(&self, id: &str) -> Result<serde_json::Value, SfuError> {
        use serde_json::json;
        let peer = self.peers.get(id).ok_or(SfuError::NotFound("session"))?;
        let name_of = |mid: &Mid| {
            peer.published
                .get(mid)
                .or_else(|| peer.legs.get(mid).map(|l| &l.track))
                .and_then(|t| self.tracks.get(t))
                .map(|t| t.name.clone())
        };
        let inbound: Vec<_> = peer
            .stats
            .ingress
            .values()
            .map(|s| {
                json!({
                    "type": "inbound-rtp", "mid": s.mid.to_string(), "trackName": name_of(&s.mid),
                    "packetsReceived": s.packets, "bytesReceived": s.bytes,
                    "packetsLost": s.loss.map(|l| (f64::from(l) * s.packets as f64).round() as u64),
                    "fractionLost": s.loss, "nackCount": s.nacks, "pliCount": s.plis, "firCount": s.firs,
                    "jitter": s.jitter, "roundTripTime": s.rtt.map(|d| d.as_secs_f64()),
                })
            })
            .collect();
        let outbound: Vec<_> = peer
            .stats
            .egress
            .values()
            .map(|s| {
                json!({
                    "type": "outbound-rtp", "mid": s.mid.to_string(), "trackName": name_of(&s.mid),
                    "packetsSent": s.packets, "bytesSent": s.bytes, "nackCount": s.nacks,
                    "pliCount": s.plis, "firCount": s.firs, "roundTripTime": s.rtt.map(|d| d.as_secs_f64()),
                    "fractionLost": s.loss, "remoteJitter": s.remote.as_ref().map(|r| r.jitter),
                })
            })
            .collect();
        let transport = peer.stats.peer.as_ref().map(|p| {
            json!({
                "type": "transport", "bytesSent": p.peer_bytes_tx, "bytesReceived": p.peer_bytes_rx,
                "mediaBytesSent": p.bytes_tx, "mediaBytesReceived": p.bytes_rx,
                "currentRoundTripTime": p.rtt.map(|d| d.as_secs_f64()),
            })
        });
        Ok(json!({ "inbound": inbound, "outbound": outbound, "transport": transport }))
    }

    // ---------------------------------------------------------------- calls::media

    fn publish_all(
        &mut self,
        now: Instant,
        id: &str,
        offer: &str,
    ) -> Result<(String, Vec<PublishedInfo>), SfuError> {
        let answer = self.accept_offer(now, id, offer)?;
        let mut published = Vec::new();
        for mid in offer_mids(offer) {
            let peer = self.peer_mut(id)?;
            let Some(kind) = peer.rtc.media(mid).map(|m| Kind::from(m.kind())) else {
                continue;
            };
            // Our side's direction (the event's is not reliable for that).
            if !peer
                .rtc
                .media(mid)
                .is_some_and(|m| m.direction().is_receiving())
            {
                continue;
            }
            let codec = peer.rtc.media(mid).and_then(|m| {
                let pts = m.remote_pts().to_vec();
                peer.rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| pts.contains(&p.pt()))
                    .map(codec_of)
            });
            if codec.is_none() {
                continue;
            }
            if let Ok(track_id) =
                self.publish_one(id, &mid.to_string(), Some(&mid.to_string()), now)
            {
                published.push(PublishedInfo {
                    track_id,
                    mid: mid.to_string(),
                    kind,
                    codec,
                });
            }
        }
        if published.is_empty() {
            return Err(SfuError::NoCodec);
        }
        Ok((answer, published))
    }

    fn subscribe(
        &mut self,
        now: Instant,
        id: &str,
        offer: &str,
        tracks: Vec<String>,
    ) -> Result<String, SfuError> {
        let mut wanted = Vec::new();
        for t in &tracks {
            let track = self.tracks.get(t).ok_or(SfuError::NotFound("track"))?;
            wanted.push((t.clone(), track.kind));
        }
        let answer = self.accept_offer(now, id, offer)?;
        let peer = self.peer_mut(id)?;
        let mut added: Vec<(Mid, Kind)> = offer_mids(offer)
            .into_iter()
            .filter_map(|m| peer.rtc.media(m).map(|media| (m, Kind::from(media.kind()))))
            .collect();
        let mut touched = vec![id.to_owned()];
        for (track_id, kind) in wanted {
            let peer = self.peer_mut(id)?;
            let Some(pos) = added.iter().position(|(m, k)| {
                *k == kind
                    && peer
                        .rtc
                        .media(*m)
                        .is_some_and(|m| m.direction().is_sending())
            }) else {
                return Err(SfuError::BadSdp(format!(
                    "the offer has no receiving {kind:?} transceiver left for track {track_id}"
                )));
            };
            let (mid, _) = added.remove(pos);
            peer.legs.insert(
                mid,
                Leg {
                    track: track_id.clone(),
                    kind,
                    rewriter: Rewriter::new(),
                    pt_map: HashMap::new(),
                },
            );
            if let Some(t) = self.tracks.get_mut(&track_id) {
                t.subscribers.push((id.to_owned(), mid));
            }
            touched.extend(self.request_keyframe(now, &track_id, KeyframeRequestKind::Pli, true));
        }
        self.run(now, touched);
        Ok(answer)
    }
}

/// The mids of an SDP's media sections, in order.
pub fn offer_mids(sdp: &str) -> Vec<Mid> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .filter(|m| !m.is_empty() && m.len() <= 16)
        .map(Mid::from)
        .collect()
}

/// `initializing` until the first packet, `active` while media flows, `inactive` after
/// `inactive_after` without any.
pub fn track_status(
    last_packet: Option<Instant>,
    now: Instant,
    inactive_after: Duration,
) -> &'static str {
    match last_packet {
        None => "initializing",
        Some(at) if now.saturating_duration_since(at) > inactive_after => "inactive",
        Some(_) => "active",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_status_follows_media() {
        let t = Instant::now();
        let after = Duration::from_secs(30);
        assert_eq!(track_status(None, t, after), "initializing");
        assert_eq!(
            track_status(Some(t), t + Duration::from_secs(5), after),
            "active"
        );
        assert_eq!(
            track_status(Some(t), t + Duration::from_secs(31), after),
            "inactive"
        );
    }

    #[test]
    fn mids_in_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\n";
        assert_eq!(offer_mids(sdp), vec![Mid::from("0"), Mid::from("v1")]);
        assert!(offer_mids("garbage").is_empty());
    }

    fn shard(idle_timeout: Option<Duration>) -> Shard {
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("certificate");
        let config = ShardConfig {
            candidate_addr: SocketAddr::from(([127, 0, 0, 1], 3480)),
            max_tracks_per_session: 8,
            inactive_after: Duration::from_secs(30),
            keyframe_interval: Duration::from_millis(500),
            idle_timeout,
        };
        Shard::new(
            0,
            config,
            cert,
            Arc::new(Routes::default()),
            Arc::new(Directory::default()),
        )
    }

    fn create(shard: &mut Shard, now: Instant, id: &str) -> watch::Receiver<PeerState> {
        let (state, watcher) = watch::channel(PeerState::Connecting);
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        shard.handle_command(
            now,
            Command::CreatePeer {
                peer: id.to_owned(),
                account: "acct".to_owned(),
                owner: Owner::App("app".to_owned()),
                offer: None,
                state,
                reply,
            },
        );
        assert!(matches!(answer.try_recv(), Ok(Ok(None))));
        watcher
    }

    #[test]
    fn peers_without_a_connection_are_reaped_after_the_idle_timeout() {
        let mut shard = shard(Some(Duration::from_secs(5)));
        let t0 = Instant::now();
        let first = create(&mut shard, t0, "first");
        let second = create(&mut shard, t0 + Duration::from_secs(2), "second");
        assert_eq!(shard.reap_idle(t0 + Duration::from_millis(4999)), 0);
        assert_eq!(shard.reap_idle(t0 + Duration::from_secs(5)), 1);
        assert_eq!(shard.peer_count(), 1);
        assert!(shard.directory.peer("first").is_none());
        assert_eq!(*first.borrow(), PeerState::Closed);
        assert_eq!(*second.borrow(), PeerState::Connecting);
        assert_eq!(shard.reap_idle(t0 + Duration::from_secs(7)), 1);
        assert_eq!(shard.peer_count(), 0);
    }

    #[test]
    fn no_idle_timeout_keeps_peers() {
        let mut shard = shard(None);
        let t0 = Instant::now();
        create(&mut shard, t0, "p");
        assert_eq!(shard.reap_idle(t0 + Duration::from_secs(86_400)), 0);
        assert_eq!(shard.peer_count(), 1);
    }

    #[test]
    fn ntp_time_has_1900_epoch() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(ntp64(t) >> 32, 2_208_988_801);
        assert_eq!(ntp64(t) & 0xFFFF_FFFF, 1 << 31);
    }
}
