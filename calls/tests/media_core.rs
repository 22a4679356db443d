//! The `calls::media` interface Stream builds on: WHIP-style publish, tap, WHEP-style subscribe.

mod common;

use std::time::Duration;

use calls::media::{MediaError, MediaKind, PeerState, TapEvent};
use common::peer::{self, Peer, OPUS_PT, VP8_PT};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_tap_subscribe_close() {
    let tp = platform::testing::embedded().await;
    let account = tp.account_id.clone();
    let server = common::start(tp).await;
    let media = server.calls.media();

    let publisher = Peer::new().await;
    let audio = publisher
        .add_track(RtpCodecKind::Audio, peer::opus(), 0xAA)
        .await;
    let video = publisher
        .add_track(RtpCodecKind::Video, peer::vp8(), 0xBB)
        .await;
    let offer = publisher.offer().await;
    let published = media.publish(&account, &offer).await.expect("publish");
    assert!(
        published.answer_sdp.contains("a=ice-lite"),
        "ICE-lite answer"
    );
    assert!(
        published.answer_sdp.contains("a=setup:passive"),
        "passive DTLS role"
    );
    assert_eq!(published.tracks.len(), 2);
    let video_track = published
        .tracks
        .iter()
        .find(|t| t.kind == MediaKind::Video)
        .expect("video track")
        .clone();
    let audio_track = published
        .tracks
        .iter()
        .find(|t| t.kind == MediaKind::Audio)
        .expect("audio track")
        .clone();
    assert_eq!(video_track.codec.name, "VP8");
    assert_eq!(video_track.codec.clock_rate, 90_000);
    assert_eq!(audio_track.codec.name, "opus");
    assert_eq!(audio_track.codec.clock_rate, 48_000);

    let mut tap = media.tap(&video_track.id).expect("tap");
    let mut state = media.peer_state(&published.peer).expect("state");
    publisher.set_answer(&published.answer_sdp).await;
    publisher.wait_connected().await;
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == PeerState::Connected),
    )
    .await
    .expect("server sees connected")
    .expect("state");

    // A viewer subscribes before media flows.
    let viewer = Peer::new().await;
    viewer.add_recvonly(RtpCodecKind::Audio).await;
    viewer.add_recvonly(RtpCodecKind::Video).await;
    let viewer_offer = viewer.offer().await;
    let subscribed = media
        .subscribe(
            &account,
            &viewer_offer,
            &[audio_track.id.clone(), video_track.id.clone()],
        )
        .await
        .expect("subscribe");
    viewer.set_answer(&subscribed.answer_sdp).await;
    viewer.wait_connected().await;

    let a = peer::send_stream(
        audio,
        0xAA,
        OPUS_PT,
        0xA0,
        960,
        Duration::from_millis(20),
        100,
    );
    let v = peer::send_stream(
        video,
        0xBB,
        VP8_PT,
        0xB0,
        3000,
        Duration::from_millis(20),
        100,
    );

    // The tap sees the publisher's own numbering and payloads.
    let mut seqs = Vec::new();
    while seqs.len() < 30 {
        match tokio::time::timeout(Duration::from_secs(10), tap.recv())
            .await
            .expect("tap delivers")
            .expect("tap open")
        {
            TapEvent::Rtp(p) => {
                assert_eq!(p.payload_type, VP8_PT);
                let n =
                    u32::from_be_bytes([p.payload[1], p.payload[2], p.payload[3], p.payload[4]]);
                assert_eq!(p.payload.as_ref(), peer::payload(0xB0, n, 200).as_slice());
                assert_eq!(
                    p.seq,
                    (1000 + n) as u16,
                    "tap keeps the publisher's sequence numbers"
                );
                seqs.push(p.seq);
            }
            TapEvent::SenderReport { .. } => {}
            TapEvent::Ended => panic!("ended early"),
        }
    }

    let got = viewer
        .collect(Duration::from_secs(10), |got| {
            got.iter().filter(|p| p.kind == RtpCodecKind::Video).count() >= 30
                && got.iter().any(|p| p.kind == RtpCodecKind::Audio)
        })
        .await;
    assert!(
        got.iter().filter(|p| p.kind == RtpCodecKind::Video).count() >= 30,
        "viewer got {} packets",
        got.len()
    );
    assert!(
        got.iter().all(|p| p.ssrc != 0xAA && p.ssrc != 0xBB),
        "SSRCs rewritten"
    );

    // Unknown ids are clear errors.
    assert_eq!(
        media
            .tap(&calls::media::TrackId("nope".into()))
            .unwrap_err(),
        MediaError::UnknownTrack
    );
    let err = media
        .subscribe(
            &account,
            &viewer_offer,
            &[calls::media::TrackId("nope".into())],
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), 404);
    let err = media.publish(&account, "v=0 garbage").await.unwrap_err();
    assert!(matches!(err, MediaError::BadSdp(_)), "{err:?}");
    assert_eq!(err.status(), 400);

    // Closing the publisher ends the tap.
    media.close(&published.peer).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = tap.recv().await {
            if matches!(e, TapEvent::Ended) {
                return true;
            }
        }
        false
    })
    .await
    .expect("tap finishes");
    assert!(ended, "tap gets Ended");
    assert_eq!(*state.borrow(), PeerState::Closed);

    a.abort();
    v.abort();
    publisher.close().await;
    viewer.close().await;
}
