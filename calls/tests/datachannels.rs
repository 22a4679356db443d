//! DataChannel fan-out end to end with webrtc-rs peers: one session publishes a channel, two
//! sessions subscribe to it, and every message the publisher sends (text and binary) reaches
//! both subscribers in order. A subscriber's own writes are not forwarded (channels are one-way).

mod common;

use std::{sync::Arc, time::Duration};

use common::peer::Peer;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use webrtc::data_channel::{
    DataChannel, DataChannelEvent, RTCDataChannelInit, RTCDataChannelState,
};

/// A connected session whose SDP carries an `m=application` section (a bootstrap channel
/// created before the offer, as the docs tell browsers to do).
async fn connected_session(server: &common::Server, app: &(String, String)) -> (Peer, String) {
    let peer = Peer::new().await;
    peer.pc
        .create_data_channel("bootstrap", None)
        .await
        .expect("bootstrap channel");
    let offer = peer.offer().await;
    let (status, body) = server
        .v1(
            Method::POST,
            app,
            "sessions/new",
            Some(json!({"sessionDescription": {"type": "offer", "sdp": offer}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    peer.set_answer(body["sessionDescription"]["sdp"].as_str().expect("answer"))
        .await;
    peer.wait_connected().await;
    (peer, body["sessionId"].as_str().expect("id").to_owned())
}

async fn open_channel(
    server: &common::Server,
    app: &(String, String),
    session: &str,
    request: Value,
) -> u16 {
    let (status, body) = server
        .v1(
            Method::POST,
            app,
            &format!("sessions/{session}/datachannels/new"),
            Some(json!({ "dataChannels": [request] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["dataChannels"][0]["id"].as_u64().expect("id");
    u16::try_from(id).expect("sctp stream id")
}

async fn negotiated(peer: &Peer, name: &str, id: u16) -> Arc<dyn DataChannel> {
    peer.pc
        .create_data_channel(
            name,
            Some(RTCDataChannelInit {
                negotiated: Some(id),
                ..Default::default()
            }),
        )
        .await
        .expect("negotiated channel")
}

async fn wait_open(dc: &Arc<dyn DataChannel>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dc.ready_state().await.ok() != Some(RTCDataChannelState::Open) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "data channel {} never opened",
            dc.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Forwards every event of `dc` to a channel: `Some(bytes)` per message, `None` once open.
fn events(dc: Arc<dyn DataChannel>) -> mpsc::UnboundedReceiver<Option<(bool, Vec<u8>)>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = dc.poll().await {
            let item = match event {
                DataChannelEvent::OnOpen => None,
                DataChannelEvent::OnMessage(m) => Some((m.is_string, m.data.to_vec())),
                DataChannelEvent::OnClose => break,
                _ => continue,
            };
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx
}

async fn messages(
    rx: &mut mpsc::UnboundedReceiver<Option<(bool, Vec<u8>)>>,
    count: usize,
) -> Vec<(bool, Vec<u8>)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Some(m))) => got.push(m),
            Ok(Some(None)) => {}
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn datachannel_fans_out_to_two_subscribers() {
    let server = common::start(platform::testing::embedded().await).await;
    let app = server.create_app().await;
    let (publisher, pub_session) = connected_session(&server, &app).await;
    let (sub_a, session_a) = connected_session(&server, &app).await;
    let (sub_b, session_b) = connected_session(&server, &app).await;

    let pub_id = open_channel(
        &server,
        &app,
        &pub_session,
        json!({"location": "local", "dataChannelName": "chat"}),
    )
    .await;
    let pub_dc = negotiated(&publisher, "chat", pub_id).await;
    let mut pub_events = events(pub_dc.clone());
    let mut subs = Vec::new();
    for (peer, session) in [(&sub_a, &session_a), (&sub_b, &session_b)] {
        let id = open_channel(
            &server,
            &app,
            session,
            json!({"location": "remote", "sessionId": pub_session, "dataChannelName": "chat"}),
        )
        .await;
        let dc = negotiated(peer, "chat", id).await;
        subs.push((dc.clone(), events(dc)));
    }

    // GET sessions/{id} lists the channels on both sides.
    let (_, body) = server
        .v1(Method::GET, &app, &format!("sessions/{session_a}"), None)
        .await;
    assert_eq!(body["dataChannels"][0]["location"], "remote", "{body}");
    assert_eq!(body["dataChannels"][0]["sessionId"], pub_session, "{body}");
    let (_, body) = server
        .v1(Method::GET, &app, &format!("sessions/{pub_session}"), None)
        .await;
    assert_eq!(body["dataChannels"][0]["dataChannelName"], "chat", "{body}");

    // A channel that nobody publishes is refused.
    let (status, body) = server
        .v1(Method::POST, &app, &format!("sessions/{session_a}/datachannels/new"), Some(json!({"dataChannels": [{"location": "remote", "sessionId": pub_session, "dataChannelName": "nope"}]})))
        .await;
    assert_eq!(status, 404, "{body}");

    wait_open(&pub_dc).await;
    for (dc, _) in &subs {
        wait_open(dc).await;
    }

    // A subscriber writing on its channel reaches nobody (one-way channels).
    subs[0]
        .0
        .send_text("from a subscriber")
        .await
        .expect("subscriber send");

    let mut sent = Vec::new();
    for n in 0..20u32 {
        if n % 5 == 4 {
            let bytes = n.to_be_bytes().repeat(100);
            pub_dc
                .send(bytes::BytesMut::from(&bytes[..]))
                .await
                .expect("send binary");
            sent.push((false, bytes));
        } else {
            let text = format!("message {n}");
            pub_dc.send_text(&text).await.expect("send text");
            sent.push((true, text.into_bytes()));
        }
    }
    for (i, (_, rx)) in subs.iter_mut().enumerate() {
        let got = messages(rx, sent.len()).await;
        assert_eq!(
            got.len(),
            sent.len(),
            "subscriber {i} received every message"
        );
        assert_eq!(
            got, sent,
            "subscriber {i}: same messages, same order, same kinds"
        );
    }
    // Nothing came back to the publisher (its own channel only sends).
    let back: Vec<_> = std::iter::from_fn(|| pub_events.try_recv().ok())
        .flatten()
        .collect();
    assert!(
        back.is_empty(),
        "nothing is forwarded to the publisher: {back:?}"
    );
    for p in [&publisher, &sub_a, &sub_b] {
        p.close().await;
    }
}
