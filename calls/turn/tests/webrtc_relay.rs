//! A webrtc-rs PeerConnection with `iceTransportPolicy: relay` reaches the Calls SFU only through
//! Mediaplane TURN: a relay-only publisher pushes an Opus track, a relay-only viewer pulls it,
//! RTP payloads arrive intact, and both peers' selected ICE candidate pair has a relay local
//! candidate on our TURN server. Calls is used through its public service and HTTP API only.

mod common;
// The webrtc-rs test client of the Calls tests, with its relay-only constructor.
#[allow(dead_code)]
#[path = "../../tests/common/peer.rs"]
mod peer;

use std::time::Duration;

use calls::{CallsConfig, CallsService};
use calls_turn::TurnConfig;
use common::Server;
use peer::{Peer, OPUS_PT};
use rtc::{
    rtp_transceiver::rtp_sender::RtpCodecKind,
    statistics::{report::RTCStatsReportEntry, StatsSelector},
};
use serde_json::{json, Value};
use webrtc::{media_stream::track_local::TrackLocal, peer_connection::RTCPeerConnectionState};

const SSRC: u32 = 0x7152_0001;
const PACKETS: u32 = 100;

/// Relay-only peers allocate on our TURN first, so they get longer than the Calls tests' 10 s.
async fn wait_connected(peer: &Peer) {
    let mut state = peer.state.clone();
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
async fn selected_pair(peer: &Peer) -> (u64, u64, Option<Value>) {
    let report = peer
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
    let track = publisher
        .add_track(RtpCodecKind::Audio, peer::opus(), SSRC)
        .await;
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
    publisher
        .set_answer(pushed["sessionDescription"]["sdp"].as_str().unwrap())
        .await;
    wait_connected(&publisher).await;

    // Viewer: relay-only too, pulls the publisher's track.
    let viewer = Peer::relay_only(&turn_url, &username, &credential).await;
    viewer.add_recvonly(RtpCodecKind::Audio).await;
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
    wait_connected(&viewer).await;

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
    let received: Vec<Vec<u8>> = viewer
        .collect(Duration::from_secs(10), |got| {
            got.len() >= (PACKETS / 2) as usize
        })
        .await
        .into_iter()
        .map(|p| p.payload)
        .collect();
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
        let (sent, received, local) = selected_pair(peer).await;
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
