//! Publish audio+video from one session, pull it from others: RTP arrives with rewritten
//! SSRCs and unchanged payloads.

mod common;

use std::time::Duration;

use common::peer::{self, Peer, Received, OPUS_PT, VP8_PT};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;

const AUDIO_SSRC: u32 = 0x1111_0001;
const VIDEO_SSRC: u32 = 0x2222_0002;

fn check_stream(got: &[Received], kind: RtpCodecKind, tag: u8, publisher_ssrc: u32) -> usize {
    let packets: Vec<&Received> = got.iter().filter(|p| p.kind == kind).collect();
    for p in &packets {
        assert_ne!(p.ssrc, publisher_ssrc, "the SFU must rewrite the SSRC");
        assert_eq!(p.payload.len(), 200);
        assert_eq!(p.payload[0], tag, "payload of another stream");
        let n = u32::from_be_bytes([p.payload[1], p.payload[2], p.payload[3], p.payload[4]]);
        assert_eq!(
            peer::payload(tag, n, 200),
            p.payload,
            "payload changed in transit"
        );
    }
    // Rewritten sequence numbers stay consecutive for consecutive payloads.
    for w in packets.windows(2) {
        let n0 = u32::from_be_bytes([
            w[0].payload[1],
            w[0].payload[2],
            w[0].payload[3],
            w[0].payload[4],
        ]);
        let n1 = u32::from_be_bytes([
            w[1].payload[1],
            w[1].payload[2],
            w[1].payload[3],
            w[1].payload[4],
        ]);
        assert_eq!(
            w[1].seq.wrapping_sub(w[0].seq) as u32,
            n1.wrapping_sub(n0),
            "sequence rewrite keeps gaps"
        );
    }
    packets.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_audio_video_and_pull_from_two_sessions() {
    for tp in platform::testing::all_backends().await {
        let label = tp.label;
        let server = common::start(tp).await;
        let app = server.create_app().await;

        let publisher = Peer::new().await;
        let audio = publisher
            .add_track(RtpCodecKind::Audio, peer::opus(), AUDIO_SSRC)
            .await;
        let video = publisher
            .add_track(RtpCodecKind::Video, peer::vp8(), VIDEO_SSRC)
            .await;
        let pub_session = server.new_session(&app).await;
        let pushed = server
            .push(&app, &pub_session, &publisher, &["mic", "cam"])
            .await;
        assert!(
            pushed["tracks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t.get("errorCode").is_none()),
            "{pushed}"
        );
        publisher.wait_connected().await;

        // Pull before any media flows: must still work once it starts.
        let mut viewers = Vec::new();
        for _ in 0..2 {
            let viewer = Peer::new().await;
            let session = server.new_session(&app).await;
            server
                .pull(
                    &app,
                    &session,
                    &viewer,
                    &[(&pub_session, "mic"), (&pub_session, "cam")],
                )
                .await;
            viewer.wait_connected().await;
            viewers.push((viewer, session));
        }

        let a = peer::send_stream(
            audio,
            AUDIO_SSRC,
            OPUS_PT,
            0xA0,
            960,
            Duration::from_millis(20),
            150,
        );
        let v = peer::send_stream(
            video,
            VIDEO_SSRC,
            VP8_PT,
            0xB0,
            3000,
            Duration::from_millis(20),
            150,
        );

        for (viewer, session) in &viewers {
            let got = viewer
                .collect(Duration::from_secs(10), |got| {
                    got.iter().filter(|p| p.kind == RtpCodecKind::Audio).count() >= 40
                        && got.iter().filter(|p| p.kind == RtpCodecKind::Video).count() >= 40
                })
                .await;
            let audio_n = check_stream(&got, RtpCodecKind::Audio, 0xA0, AUDIO_SSRC);
            let video_n = check_stream(&got, RtpCodecKind::Video, 0xB0, VIDEO_SSRC);
            assert!(
                audio_n >= 40 && video_n >= 40,
                "[{label}] audio {audio_n} video {video_n} packets"
            );
            let pts: std::collections::HashSet<u8> = got.iter().map(|p| p.payload_type).collect();
            assert!(
                pts.iter().all(|pt| *pt == OPUS_PT || *pt == VP8_PT),
                "negotiated payload types only: {pts:?}"
            );

            let (status, body) = server
                .v1(
                    reqwest::Method::GET,
                    &app,
                    &format!("sessions/{session}"),
                    None,
                )
                .await;
            assert_eq!(status, 200);
            let tracks = body["tracks"].as_array().unwrap();
            assert_eq!(tracks.len(), 2, "{body}");
            assert!(
                tracks.iter().all(|t| t["location"] == "remote"
                    && t["status"] == "active"
                    && t["sessionId"] == pub_session.as_str()),
                "{body}"
            );
        }
        let (_, body) = server
            .v1(
                reqwest::Method::GET,
                &app,
                &format!("sessions/{pub_session}"),
                None,
            )
            .await;
        assert!(
            body["tracks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["location"] == "local" && t["status"] == "active"),
            "{body}"
        );

        a.abort();
        v.abort();
        publisher.close().await;
        for (viewer, _) in &viewers {
            viewer.close().await;
        }
        server.calls.shutdown().await;
    }
}
