//! Track lifecycle over the sessions API: update (switch source), close with and without force,
//! renegotiation, and egress metering.

mod common;

use std::time::Duration;

use common::peer::{self, Peer, VP8_PT};
use reqwest::Method;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use sqlx::Row;

fn tag_of(p: &peer::Received) -> u8 {
    p.payload[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_close_renegotiate_and_meter() {
    let tp = platform::testing::embedded().await;
    let server = common::start(tp).await;
    let app = server.create_app().await;

    let publisher = Peer::new().await;
    let cam = publisher
        .add_track(RtpCodecKind::Video, peer::vp8(), 0xC1)
        .await;
    let screen = publisher
        .add_track(RtpCodecKind::Video, peer::vp8(), 0xC2)
        .await;
    let pub_session = server.new_session(&app).await;
    server
        .push(&app, &pub_session, &publisher, &["cam", "screen"])
        .await;
    publisher.wait_connected().await;

    let viewer = Peer::new().await;
    let session = server.new_session(&app).await;
    let pulled = server
        .pull(&app, &session, &viewer, &[(&pub_session, "cam")])
        .await;
    let mid = pulled["tracks"][0]["mid"].as_str().expect("mid").to_owned();
    viewer.wait_connected().await;

    let a = peer::send_stream(
        cam,
        0xC1,
        VP8_PT,
        0xB1,
        3000,
        Duration::from_millis(10),
        3000,
    );
    let b = peer::send_stream(
        screen,
        0xC2,
        VP8_PT,
        0xB2,
        3000,
        Duration::from_millis(10),
        3000,
    );
    let before = viewer
        .collect(Duration::from_secs(10), |got| got.len() >= 30)
        .await;
    assert!(
        before.len() >= 30 && before.iter().all(|p| tag_of(p) == 0xB1),
        "only cam before the update"
    );

    // Switch the pulled transceiver to the other track.
    let (status, body) = server
        .v1(Method::PUT, &app, &format!("sessions/{session}/tracks/update"), Some(json!({"tracks": [{"location": "remote", "mid": mid, "sessionId": pub_session, "trackName": "screen"}]})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["tracks"][0].get("errorCode").is_none(), "{body}");
    let after = viewer
        .collect(Duration::from_secs(10), |got| {
            got.iter().filter(|p| tag_of(p) == 0xB2).count() >= 30
        })
        .await;
    let switched: Vec<_> = after.iter().filter(|p| tag_of(p) == 0xB2).collect();
    assert!(switched.len() >= 30, "screen arrives after the update");
    assert_eq!(
        switched[0].ssrc, before[0].ssrc,
        "same transceiver, same SSRC"
    );
    let last_cam = after
        .iter()
        .rev()
        .find(|p| tag_of(p) == 0xB1)
        .or(before.last())
        .expect("a cam packet");
    let gap = switched[0].seq.wrapping_sub(last_cam.seq);
    assert!(
        (1..100).contains(&gap),
        "sequence numbers continue across the switch (gap {gap})"
    );
    let (_, status_body) = server
        .v1(Method::GET, &app, &format!("sessions/{session}"), None)
        .await;
    assert_eq!(
        status_body["tracks"][0]["trackName"], "screen",
        "{status_body}"
    );

    // An update to a missing track is a per-track error.
    let (status, body) = server
        .v1(Method::PUT, &app, &format!("sessions/{session}/tracks/update"), Some(json!({"tracks": [{"location": "remote", "mid": mid, "sessionId": pub_session, "trackName": "ghost"}]})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["tracks"][0]["errorCode"], "not_found");

    // Close without force and without an offer: the SFU offers, the client answers.
    let (status, body) = server
        .v1(
            Method::PUT,
            &app,
            &format!("sessions/{session}/tracks/close"),
            Some(json!({"tracks": [{"mid": mid}], "force": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requiresImmediateRenegotiation"], true, "{body}");
    let answer = viewer
        .answer(body["sessionDescription"]["sdp"].as_str().expect("offer"))
        .await;
    let (status, body) = server
        .v1(
            Method::PUT,
            &app,
            &format!("sessions/{session}/renegotiate"),
            Some(json!({"sessionDescription": {"type": "answer", "sdp": answer}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, status_body) = server
        .v1(Method::GET, &app, &format!("sessions/{session}"), None)
        .await;
    assert_eq!(
        status_body["tracks"].as_array().map(Vec::len),
        Some(0),
        "{status_body}"
    );

    // Close with force on the publisher: the track disappears for new pulls.
    let pub_mids = peer::mids(&publisher.pc.local_description().await.expect("local").sdp);
    let (status, body) = server
        .v1(
            Method::PUT,
            &app,
            &format!("sessions/{pub_session}/tracks/close"),
            Some(json!({"tracks": [{"mid": pub_mids[0].1}], "force": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requiresImmediateRenegotiation"], false);
    assert_eq!(body["tracks"][0]["trackName"], "cam");
    let other = server.new_session(&app).await;
    let (_, body) = server.v1(Method::POST, &app, &format!("sessions/{other}/tracks/new"), Some(json!({"tracks": [{"location": "remote", "sessionId": pub_session, "trackName": "cam"}]}))).await;
    assert_eq!(body["tracks"][0]["errorCode"], "not_found", "{body}");

    a.abort();
    b.abort();

    // Egress reached the meter under the app's account.
    let account = server.tp.account_id.clone();
    let mut metered = 0.0;
    for _ in 0..100 {
        let row = sqlx::query("SELECT COALESCE(SUM(quantity), 0.0) FROM usage_hourly WHERE account_id = $1 AND metric = $2")
            .bind(&account)
            .bind("calls.egress_bytes")
            .fetch_one(server.tp.platform.db.pool())
            .await
            .expect("usage query");
        metered = row.get::<f64, _>(0);
        if metered > 10_000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metered > 10_000.0, "egress bytes are metered ({metered})");
    publisher.close().await;
    viewer.close().await;
}

/// Polls `GET sessions/{session}` until the track named `name` reports `want` (generous
/// deadline: the assertion is about the state reached, not about how fast).
async fn wait_status(
    server: &common::Server,
    app: &(String, String),
    session: &str,
    name: &str,
    want: &str,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server
            .v1(Method::GET, app, &format!("sessions/{session}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        let track = body["tracks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["trackName"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no track {name}: {body}"));
        if track["status"] == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "track {name} of {session} never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A published track goes `initializing` → `active` when media arrives → `inactive` after the
/// configured time without media (1 s here; 30 s by default), on the publisher's session and on
/// the subscriber's pulled track alike, and back to `active` when media resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn track_without_media_becomes_inactive() {
    let tp = platform::testing::embedded().await;
    let config = calls::CallsConfig {
        inactive_after_secs: 1,
        ..calls::CallsConfig::for_tests()
    };
    let server = common::start_with(tp, config).await;
    let app = server.create_app().await;

    let publisher = Peer::new().await;
    let cam = publisher
        .add_track(RtpCodecKind::Video, peer::vp8(), 0xD1)
        .await;
    let pub_session = server.new_session(&app).await;
    server.push(&app, &pub_session, &publisher, &["cam"]).await;
    publisher.wait_connected().await;
    let viewer = Peer::new().await;
    let session = server.new_session(&app).await;
    server
        .pull(&app, &session, &viewer, &[(&pub_session, "cam")])
        .await;
    viewer.wait_connected().await;

    // No packet yet: initializing (nothing has been sent, so this cannot race).
    wait_status(&server, &app, &pub_session, "cam", "initializing").await;

    // Media flows for a while: active on both sides.
    let sender = peer::send_stream(
        cam.clone(),
        0xD1,
        VP8_PT,
        0xB1,
        3000,
        Duration::from_millis(20),
        100,
    );
    let got = viewer
        .collect(Duration::from_secs(10), |got| !got.is_empty())
        .await;
    assert!(!got.is_empty(), "media reaches the viewer");
    wait_status(&server, &app, &pub_session, "cam", "active").await;
    wait_status(&server, &app, &session, "cam", "active").await;

    // The sender stops (after its 100 packets): inactive once the timeout has passed.
    sender.await.expect("sender task");
    let body = wait_status(&server, &app, &pub_session, "cam", "inactive").await;
    assert_eq!(body["tracks"][0]["location"], "local", "{body}");
    let body = wait_status(&server, &app, &session, "cam", "inactive").await;
    assert_eq!(body["tracks"][0]["sessionId"], pub_session, "{body}");

    // Media again (sequence numbers continue after the first burst): active again.
    let again = peer::send_stream_from(
        cam,
        0xD1,
        VP8_PT,
        0xB1,
        3000,
        Duration::from_millis(20),
        100..600,
    );
    wait_status(&server, &app, &pub_session, "cam", "active").await;
    again.abort();
    publisher.close().await;
    viewer.close().await;
}

/// Shutdown closes every peer and ends the media threads: the session is gone (404) and a new
/// session cannot be created (503: the shard's inbox is closed because its thread has ended,
/// which `shutdown` waited for).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_peers_and_joins_threads() {
    let server = common::start(platform::testing::embedded().await).await;
    let app = server.create_app().await;
    let publisher = Peer::new().await;
    publisher
        .add_track(RtpCodecKind::Video, peer::vp8(), 0xE1)
        .await;
    let session = server.new_session(&app).await;
    server.push(&app, &session, &publisher, &["cam"]).await;
    publisher.wait_connected().await;

    server.calls.shutdown().await;
    let (status, body) = server
        .v1(Method::GET, &app, &format!("sessions/{session}"), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.v1(Method::POST, &app, "sessions/new", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorCode"], "unavailable", "{body}");
    publisher.close().await;
}

/// Sessions that never get a working connection are closed after the idle timeout (3 s here,
/// 60 s by default): one created without an offer, and one whose client received the SFU's
/// answer but went away before ICE (it never sends a STUN check). A connected session on the
/// same server, older than the timeout by then, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_that_never_connect_are_closed() {
    let tp = platform::testing::embedded().await;
    let config = calls::CallsConfig {
        idle_timeout_secs: 3,
        ..calls::CallsConfig::for_tests()
    };
    let server = common::start_with(tp, config).await;
    let app = server.create_app().await;

    // Connects well within the timeout: checks every 20 ms instead of webrtc-rs's 200 ms.
    let connected = Peer::new_with_check_interval(Duration::from_millis(20)).await;
    connected
        .add_track(RtpCodecKind::Video, peer::vp8(), 0xF1)
        .await;
    let live = server.new_session(&app).await;
    server.push(&app, &live, &connected, &["cam"]).await;
    connected.wait_connected().await;

    let bare = server.new_session(&app).await;

    let gone = Peer::new().await;
    gone.add_track(RtpCodecKind::Video, peer::vp8(), 0xF2).await;
    let offered = server.new_session(&app).await;
    server.offer_tracks(&app, &offered, &gone, &["cam"]).await;
    gone.close().await;

    for session in [&bare, &offered] {
        let (status, body) = server
            .v1(Method::GET, &app, &format!("sessions/{session}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for session in [&bare, &offered] {
        loop {
            let (status, body) = server
                .v1(Method::GET, &app, &format!("sessions/{session}"), None)
                .await;
            if status == 404 {
                assert_eq!(body["errorCode"], "session_not_found", "{body}");
                break;
            }
            assert_eq!(status, 200, "{body}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {session} without a connection was never closed: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The reaped session's track is gone with it; the connected session is untouched.
    let viewer = server.new_session(&app).await;
    let (status, body) = server
        .v1(
            Method::POST,
            &app,
            &format!("sessions/{viewer}/tracks/new"),
            Some(json!({"tracks": [{"location": "remote", "sessionId": offered, "trackName": "cam"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tracks"][0]["errorCode"], "not_found", "{body}");
    let (status, body) = server
        .v1(Method::GET, &app, &format!("sessions/{live}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionState"], "connected", "{body}");
    connected.close().await;
}

/// A client that vanishes without closing (its traffic stops: no DTLS alert, no more ICE
/// checks) is disconnected by ICE and then closed after the idle timeout (3 s here). The client
/// reaches the SFU through a UDP relay that the test stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vanished_client_is_closed_after_disconnect() {
    let tp = platform::testing::embedded().await;
    let config = calls::CallsConfig {
        idle_timeout_secs: 3,
        ..calls::CallsConfig::for_tests()
    };
    let server = common::start_with(tp, config).await;
    let app = server.create_app().await;
    let (relay_addr, relay) = forwarder(server.calls.udp_addr()).await;

    let client = Peer::new_with_check_interval(Duration::from_millis(20)).await;
    client
        .add_track(RtpCodecKind::Video, peer::vp8(), 0xF3)
        .await;
    let session = server.new_session(&app).await;
    let body = server.offer_tracks(&app, &session, &client, &["cam"]).await;
    // Point the client at the relay instead of the SFU's own candidate.
    let sfu = server.calls.udp_addr();
    let answer = body["sessionDescription"]["sdp"]
        .as_str()
        .expect("answer")
        .replace(
            &format!(" {} {} typ host", sfu.ip(), sfu.port()),
            &format!(" {} {} typ host", relay_addr.ip(), relay_addr.port()),
        );
    assert!(answer.contains(&format!(" {} typ host", relay_addr.port())));
    client.set_answer(&answer).await;
    client.wait_connected().await;
    let (status, body) = server
        .v1(Method::GET, &app, &format!("sessions/{session}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionState"], "connected", "{body}");

    relay.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen_disconnected = false;
    loop {
        let (status, body) = server
            .v1(Method::GET, &app, &format!("sessions/{session}"), None)
            .await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        seen_disconnected |= body["connectionState"] == "disconnected";
        assert!(
            tokio::time::Instant::now() < deadline,
            "the vanished client's session was never closed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_disconnected, "the session went through `disconnected`");
    client.close().await;
}

/// A plain UDP relay in front of `sfu` for one client; returns its address and task.
async fn forwarder(
    sfu: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::net::UdpSocket;
    let front = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let back = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = front.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut up, mut down) = (vec![0u8; 2048], vec![0u8; 2048]);
        let mut client = None;
        loop {
            tokio::select! {
                r = front.recv_from(&mut up) => {
                    let Ok((n, from)) = r else { break };
                    client = Some(from);
                    let _ = back.send_to(&up[..n], sfu).await;
                }
                r = back.recv_from(&mut down) => {
                    let Ok((n, _)) = r else { break };
                    if let Some(to) = client {
                        let _ = front.send_to(&down[..n], to).await;
                    }
                }
            }
        }
    });
    (addr, task)
}
