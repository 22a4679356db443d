//! A webrtc-rs (0.21) peer: the browser-like client of the tests.

use std::{sync::Arc, time::Duration};

use rtc::{
    interceptor::Registry,
    media_stream::MediaStreamTrack,
    peer_connection::{
        configuration::{
            interceptor_registry::register_default_interceptors,
            media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8},
            setting_engine::SettingEngineBuilder,
            RTCConfiguration, RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy,
        },
        sdp::RTCSessionDescription,
    },
    rtp_transceiver::{
        rtp_sender::{
            RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
            RtpCodecKind,
        },
        RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
    },
};
use tokio::sync::{mpsc, watch};
use webrtc::{
    media_stream::{
        track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
        RTCPeerConnectionState,
    },
    runtime::{default_runtime, Runtime},
};

pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;

pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// An RTP packet received on a remote track.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: RtpCodecKind,
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    pub payload: Vec<u8>,
}

struct Handler {
    runtime: Arc<dyn Runtime>,
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    received: mpsc::UnboundedSender<Received>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        self.runtime.spawn(Box::pin(async move {
            let kind = track.kind().await;
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let _ = received.send(Received {
                            kind,
                            ssrc: p.header.ssrc,
                            seq: p.header.sequence_number,
                            timestamp: p.header.timestamp,
                            payload_type: p.header.payload_type,
                            payload: p.payload.to_vec(),
                        });
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        }));
    }
}

pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub received: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
}

impl Peer {
    pub async fn new() -> Self {
        Self::build(false, None, RTCConfiguration::default()).await
    }

    /// A peer that also negotiates RTX (`video/rtx`, apt=96) for VP8.
    pub async fn new_with_rtx() -> Self {
        Self::build(true, None, RTCConfiguration::default()).await
    }

    /// A peer whose ICE agent runs its connectivity checks every `interval` instead of
    /// webrtc-rs's 200 ms. As the controlling agent it nominates a pair only on the check tick
    /// after that pair's first successful check, so the interval bounds how fast it connects.
    pub async fn new_with_check_interval(interval: std::time::Duration) -> Self {
        Self::build(false, Some(interval), RTCConfiguration::default()).await
    }

    /// A peer whose only ICE server is the TURN server at `turn_url`, with
    /// `iceTransportPolicy: relay`: every candidate it offers is a relayed address.
    pub async fn relay_only(turn_url: &str, username: &str, credential: &str) -> Self {
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(vec![RTCIceServer {
                urls: vec![turn_url.to_owned()],
                username: username.to_owned(),
                credential: credential.to_owned(),
            }])
            .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
            .build();
        Self::build(false, None, configuration).await
    }

    async fn build(
        rtx: bool,
        check_interval: Option<std::time::Duration>,
        configuration: RTCConfiguration,
    ) -> Self {
        let runtime = default_runtime().expect("tokio runtime");
        let mut media = MediaEngine::default();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus(),
                    payload_type: OPUS_PT,
                },
                RtpCodecKind::Audio,
            )
            .expect("opus");
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: vp8(),
                    payload_type: VP8_PT,
                },
                RtpCodecKind::Video,
            )
            .expect("vp8");
        if rtx {
            let codec = RTCRtpCodec {
                mime_type: "video/rtx".to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: format!("apt={VP8_PT}"),
                rtcp_feedback: vec![],
            };
            media
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: codec,
                        payload_type: 97,
                    },
                    RtpCodecKind::Video,
                )
                .expect("rtx");
        }
        let registry =
            register_default_interceptors(Registry::new(), &mut media).expect("interceptors");
        let mut settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled);
        if check_interval.is_some() {
            settings = settings.with_ice_connection_attempts(check_interval, None);
        }
        let settings = settings.build();
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (received_tx, received) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler {
            runtime: runtime.clone(),
            gathered: gathered_tx,
            state: state_tx,
            received: received_tx,
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_runtime(runtime)
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("peer connection");
        Self {
            pc: Arc::new(pc),
            gathered,
            state,
            received: tokio::sync::Mutex::new(received),
        }
    }

    /// Adds a sending track with a fixed SSRC.
    pub async fn add_track(
        &self,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        ssrc: u32,
    ) -> Arc<TrackLocalStaticRTP> {
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("stream-{ssrc}"),
            format!("track-{ssrc}"),
            format!("label-{ssrc}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        self.pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add track");
        track
    }

    pub async fn add_recvonly(&self, kind: RtpCodecKind) {
        self.pc
            .add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await
            .expect("transceiver");
    }

    async fn wait_gathered(&self) {
        let mut g = self.gathered.clone();
        tokio::time::timeout(Duration::from_secs(10), g.wait_for(|done| *done))
            .await
            .expect("ICE gathering finishes")
            .expect("gathering");
    }

    /// A complete (non-trickle) offer.
    pub async fn offer(&self) -> String {
        let offer = self.pc.create_offer(None).await.expect("create offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set local offer");
        self.wait_gathered().await;
        self.pc
            .local_description()
            .await
            .expect("local description")
            .sdp
    }

    pub async fn set_answer(&self, sdp: &str) {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp.to_owned()).expect("answer"))
            .await
            .expect("set remote answer");
    }

    /// Answers a remote offer; returns the complete answer.
    pub async fn answer(&self, offer: &str) -> String {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer.to_owned()).expect("offer"))
            .await
            .expect("set remote offer");
        let answer = self.pc.create_answer(None).await.expect("create answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("set local answer");
        self.wait_gathered().await;
        self.pc
            .local_description()
            .await
            .expect("local description")
            .sdp
    }

    pub async fn wait_connected(&self) {
        let mut s = self.state.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            s.wait_for(|st| *st == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("peer connects within 10 s")
        .expect("state");
    }

    /// Received packets until `enough` says stop or `limit` passes.
    pub async fn collect(
        &self,
        limit: Duration,
        mut enough: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let mut rx = self.received.lock().await;
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while !enough(&got) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => got.push(p),
                _ => break,
            }
        }
        got
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// `(kind, mid)` of each m-line of an SDP, in order.
pub fn mids(sdp: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut kind = None;
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("m=") {
            kind = rest.split(' ').next().map(str::to_owned);
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if let Some(k) = kind.take() {
                out.push((k, mid.trim().to_owned()));
            }
        }
    }
    out
}

/// A recognisable payload: marker byte, then the packet number.
pub fn payload(tag: u8, n: u32, len: usize) -> Vec<u8> {
    let mut p = vec![tag; len.max(5)];
    p[1..5].copy_from_slice(&n.to_be_bytes());
    p
}

/// Sends `count` packets on `track` every `every`, from a background task.
pub fn send_stream(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    tag: u8,
    ts_step: u32,
    every: Duration,
    count: u32,
) -> tokio::task::JoinHandle<()> {
    send_stream_from(track, ssrc, pt, tag, ts_step, every, 0..count)
}

/// Like [`send_stream`] for packet numbers `numbers` (a later burst continues the sequence
/// numbers and timestamps of an earlier one, so SRTP replay protection keeps accepting them).
pub fn send_stream_from(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    tag: u8,
    ts_step: u32,
    every: Duration,
    numbers: std::ops::Range<u32>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        for n in numbers {
            tick.tick().await;
            let packet = rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: pt,
                    sequence_number: (1000 + n) as u16,
                    timestamp: 5000u32.wrapping_add(n.wrapping_mul(ts_step)),
                    ssrc,
                    marker: true,
                    ..Default::default()
                },
                payload: bytes::Bytes::from(payload(tag, n, 200)),
            };
            if track.write_rtp(packet).await.is_err() {
                break;
            }
        }
    })
}
