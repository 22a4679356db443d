//! A webrtc-rs PeerConnection with `iceTransportPolicy: relay` reaches the Calls SFU only through
//! Mediaplane TURN: a relay-only publisher pushes an Opus track, a relay-only viewer pulls it,
//! RTP payloads arrive intact, and both peers' selected ICE candidate pair has a relay local
//! candidate on our TURN server. Calls is used through its public service and HTTP API only.

mod common;

use std::{sync::Arc, time::Duration};

use calls::{CallsConfig, CallsService};
use calls_turn::TurnConfig;
use common::Server;
use rtc::{
    interceptor::Registry,
    media_stream::MediaStreamTrack,
    peer_connection::{
        configuration::{
            interceptor_registry::register_default_interceptors,
            media_engine::{MediaEngine, MIME_TYPE_OPUS},
            setting_engine::SettingEngineBuilder,
            RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy,
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
    statistics::{report::RTCStatsReportEntry, StatsSelector},
};
use serde_json::{json, Value};
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

const OPUS_PT: u8 = 111;
const SSRC: u32 = 0x7152_0001;
const PACKETS: u32 = 100;

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

struct Handler {
    runtime: Arc<dyn Runtime>,
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    payloads: mpsc::UnboundedSender<Vec<u8>>,
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
        let payloads = self.payloads.clone();
        self.runtime.spawn(Box::pin(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let _ = payloads.send(p.payload.to_vec());
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        }));
    }
}

/// A relay-only webrtc-rs peer: its only ICE server is our TURN over UDP.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    payloads: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Peer {
    async fn relay_only(turn_url: &str, username: &str, credential: &str) -> Peer {
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
        let registry =
            register_default_interceptors(Registry::new(), &mut media).expect("interceptors");
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(vec![RTCIceServer {
                urls: vec![turn_url.to_owned()],
                username: username.to_owned(),
                credential: credential.to_owned(),
            }])
            .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
            .build();
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (payloads_tx, payloads) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler {
            runtime: runtime.clone(),
            gathered: gathered_tx,
            state: state_tx,
            payloads: payloads_tx,
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
        Peer {
            pc: Arc::new(pc),
            gathered,
            state,
            payloads,
        }
    }

    async fn wait_gathered(&self) {
        let mut gathered = self.gathered.clone();
        tokio::time::timeout(Duration::from_secs(10), gathered.wait_for(|done| *done))
            .await
            .expect("ICE gathering (TURN allocation) finishes")
            .expect("gathering");
    }

    async fn offer(&self) -> String {
        let offer = self.pc.create_offer(None).await.expect("create offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set offer");
        self.wait_gathered().await;
        self.pc.local_description().await.expect("offer").sdp
    }

    async fn answer(&self, offer: &str) -> String {
        let offer = RTCSessionDescription::offer(offer.to_owned()).expect("offer");
        self.pc
            .set_remote_description(offer)
            .await
            .expect("set offer");
        let answer = self.pc.create_answer(None).await.expect("create answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("set answer");
        self.wait_gathered().await;
        self.pc.local_description().await.expect("answer").sdp
    }

    async fn wait_connected(&self) {
        let mut state = self.state.clone();
        tokio::time::timeout(
            Duration::from_secs(15),
            state.wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("peer connects through the relay")
        .expect("state");
    }

    /// The selected candidate pair from getStats(): its bytes sent and received, and its local
    /// candidate's stats when the report carries them (webrtc-rs 0.21 does not register
    /// candidates gathered through TURN there).
    async fn selected_pair(&self) -> (u64, u64, Option<Value>) {
        let report = self
            .pc
            .get_stats(std::time::Instant::now(), StatsSelector::None)
            .await;
        let transport = report.transport().expect("transport stats");
        let pair = report
            .candidate_pairs()
            .find(|p| p.stats.id == transport.selected_candidate_pair_id)
            .unwrap_or_else(|| panic!("selected pair {:?}", transport.selected_candidate_pair_id));
        let local = report.iter().find_map(|entry| match entry {
            RTCStatsReportEntry::LocalCandidate(c) if c.stats.id == pair.local_candidate_id => {
                Some(serde_json::to_value(c).expect("candidate stats"))
            }
            _ => None,
        });
        (pair.bytes_sent, pair.bytes_received, local)
    }
}

fn payload(n: u32) -> Vec<u8> {
    let mut p = vec![0xA5; 160];
    p[1..5].copy_from_slice(&n.to_be_bytes());
    p
}

async fn v1(server: &Server, app: &(String, String), path: &str, body: Option<Value>) -> Value {
    let method = if path.ends_with("renegotiate") {
        reqwest::Method::PUT
    } else {
        reqwest::Method::POST
    };
    let mut request = server
        .http
        .request(method, format!("{}/v1/apps/{}/{path}", server.base, app.0))
        .bearer_auth(&app.1);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sessions API");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_only_peers_reach_the_sfu_through_turn() {
    let tp = platform::testing::embedded().await;
    let calls = CallsService::start(tp.platform.clone(), CallsConfig::for_tests())
        .await
        .expect("calls starts");
    let server = Server::start_with(tp, TurnConfig::for_tests(), calls.router()).await;

    let (key_id, secret) = server.create_key("webrtc").await;
    let (username, credential) = server.generate(&key_id, &secret, 3600).await;
    let turn_url = format!(
        "turn:127.0.0.1:{}?transport=udp",
        server.turn.addrs().udp.unwrap().port()
    );

    let created: Value = server
        .http
        .post(format!(
            "{}/client/v4/accounts/{}/calls/apps",
            server.base, server.tp.account_id
        ))
        .bearer_auth(&server.tp.token)
        .json(&json!({"name": "turn relay"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = (
        created["result"]["uid"].as_str().unwrap().to_owned(),
        created["result"]["secret"].as_str().unwrap().to_owned(),
    );

    // Publisher: relay-only, one Opus track.
    let publisher = Peer::relay_only(&turn_url, &username, &credential).await;
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "stream".to_owned(),
        "mic".to_owned(),
        "mic".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(SSRC),
                ..Default::default()
            },
            codec: opus(),
            ..Default::default()
        }],
    )));
    publisher
        .pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .expect("add track");
    let offer = publisher.offer().await;
    assert!(
        offer.contains("typ relay") && !offer.contains("typ host"),
        "relay policy offers relay candidates only:\n{offer}"
    );
    let mid = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .expect("mid")
        .trim()
        .to_owned();
    let pub_session = v1(&server, &app, "sessions/new", None).await["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let pushed = v1(
        &server,
        &app,
        &format!("sessions/{pub_session}/tracks/new"),
        Some(
            json!({"sessionDescription": {"type": "offer", "sdp": offer},
               "tracks": [{"location": "local", "trackName": "mic", "mid": mid}]}),
        ),
    )
    .await;
    let answer = RTCSessionDescription::answer(
        pushed["sessionDescription"]["sdp"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
    .unwrap();
    publisher.pc.set_remote_description(answer).await.unwrap();
    publisher.wait_connected().await;

    // Viewer: relay-only too, pulls the publisher's track.
    let mut viewer = Peer::relay_only(&turn_url, &username, &credential).await;
    viewer
        .pc
        .add_transceiver_from_kind(
            RtpCodecKind::Audio,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let view_session = v1(&server, &app, "sessions/new", None).await["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let pulled = v1(
        &server,
        &app,
        &format!("sessions/{view_session}/tracks/new"),
        Some(json!({"tracks": [{"location": "remote", "sessionId": pub_session, "trackName": "mic"}]})),
    )
    .await;
    let answer = viewer
        .answer(pulled["sessionDescription"]["sdp"].as_str().unwrap())
        .await;
    v1(
        &server,
        &app,
        &format!("sessions/{view_session}/renegotiate"),
        Some(json!({"sessionDescription": {"type": "answer", "sdp": answer}})),
    )
    .await;
    viewer.wait_connected().await;

    // Media: numbered payloads from the publisher come out of the viewer unchanged.
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for n in 0..PACKETS {
            tick.tick().await;
            let packet = rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: OPUS_PT,
                    sequence_number: n as u16,
                    timestamp: n * 480,
                    ssrc: SSRC,
                    marker: true,
                    ..Default::default()
                },
                payload: bytes::Bytes::from(payload(n)),
            };
            if track.write_rtp(packet).await.is_err() {
                break;
            }
        }
    });
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.len() < (PACKETS / 2) as usize {
        match tokio::time::timeout_at(deadline, viewer.payloads.recv()).await {
            Ok(Some(p)) => received.push(p),
            _ => break,
        }
    }
    sender.abort();
    assert!(
        received.len() >= (PACKETS / 2) as usize,
        "viewer got {} of {PACKETS} packets through two relays",
        received.len()
    );
    for p in &received {
        let n = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        assert_eq!(*p, payload(n), "payload changed in transit");
    }

    // Relay-only peers can only have relay local candidates (checked in their SDP: our TURN's
    // relayed addresses), and each has a selected pair that carried traffic.
    let viewer_sdp = viewer.pc.local_description().await.expect("answer").sdp;
    assert!(
        viewer_sdp.contains("typ relay") && !viewer_sdp.contains("typ host"),
        "{viewer_sdp}"
    );
    for (who, peer) in [("publisher", &publisher), ("viewer", &viewer)] {
        let (sent, received, local) = peer.selected_pair().await;
        assert!(sent > 0 && received > 0, "{who}: selected pair idle");
        if let Some(local) = local {
            assert_eq!(local["candidateType"], "relay", "{who}: {local}");
            assert_eq!(local["address"], "127.0.0.1", "{who}: {local}");
        }
    }
    let stats = server.turn.stats();
    assert!(stats.allocations >= 2, "{stats:?}");
    assert!(stats.relayed_to_peer > u64::from(PACKETS / 2), "{stats:?}");
    assert!(
        stats.relayed_to_client > u64::from(PACKETS / 2),
        "{stats:?}"
    );

    publisher.pc.close().await.ok();
    viewer.pc.close().await.ok();
    server.stop().await;
}
