//! WHIP with a real broadcaster: ffmpeg 9's `-f whip` muxer (PyPI imageio-ffmpeg) publishes
//! H264 baseline + Opus through the Calls media core; the recording is then validated with
//! Debian ffprobe/ffmpeg.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use stream::StreamConfig;

/// The input's latest video once it is `ready` (the broadcast ended and was finalized).
async fn ready_video(server: &Server, input_uid: &str) -> Value {
    for _ in 0..1200 {
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{input_uid}/lifecycle", server.base))
            .await;
        if lifecycle["live"] == false && lifecycle["videoUID"].is_string() {
            let id = lifecycle["videoUID"].as_str().unwrap().to_string();
            let (_, v) = server.get_json(&server.api(&format!("/{id}"))).await;
            if v["result"]["status"]["state"] == "ready" {
                return v["result"].clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the broadcast of {input_uid} never became a ready video");
}

async fn text(server: &Server, url: &str) -> String {
    server
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_whip_broadcast_is_recorded_as_hls() {
    let (Some(whip), Some(ffmpeg), Some(ffprobe)) =
        (whip_ffmpeg(), tool("ffmpeg"), tool("ffprobe"))
    else {
        return;
    };
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;
    let input = server.create_input(automatic_input()).await;
    let uid = input["uid"].as_str().unwrap().to_string();
    let publish = server.whip_url(&input);
    let out = whip_publish(&whip, &publish, 6, "error")
        .output()
        .await
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg WHIP publish failed: {log}");
    // ffmpeg 9 logs "Failed to read response from DELETE" whatever the server answers: it never
    // parses the DELETE response (docs/stream.md; our response is checked in
    // whip_resource_patch_and_delete). Any other error line is a failure.
    let unexpected: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("Failed to read response from DELETE"))
        .collect();
    assert!(unexpected.is_empty(), "ffmpeg errors: {log}");
    // ffmpeg sends DELETE at the end; the broadcast then finalizes (timeoutSeconds 0).
    let video = ready_video(&server, &uid).await;
    let duration = video["duration"]
        .as_f64()
        .expect("the WHIP broadcast was recorded");
    assert!(duration > 3.0, "recorded {duration}s of a 6 s broadcast");
    let master = format!("{}/stream/{uid}/manifest/video.m3u8", server.base);
    let out = std::process::Command::new(&ffprobe)
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,profile,width,height",
            "-of",
            "compact",
            &master,
        ])
        .output()
        .unwrap();
    let streams = String::from_utf8_lossy(&out.stdout);
    assert!(
        streams.contains("codec_name=h264") && streams.contains("width=640"),
        "{streams}"
    );
    assert!(streams.contains("codec_name=opus"), "{streams}");
    let out = std::process::Command::new(&ffmpeg)
        .args(["-v", "error", "-i", &master, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    server.stop().await;
}

/// Offers that cannot become a broadcast are refused before any media session is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refuses_oversized_and_codecless_offers() {
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;
    let input = server.create_input(automatic_input()).await;
    let uid = input["uid"].as_str().unwrap().to_string();
    let url = server.whip_url(&input);

    // Over 64 KiB: 413 before anything is parsed.
    let padded = format!(
        "{FFMPEG_OFFER}{}",
        "a=x-padding:0123456789abcdef\r\n".repeat(2300)
    );
    assert!(padded.len() > 64 * 1024);
    let response = post_sdp(&server.client, &url, &padded).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);

    // A well-formed offer whose only codecs are PCMU and MPEG-4 Part 2: 415 naming what we take.
    let codecless = FFMPEG_OFFER
        .replace("opus/48000/2", "PCMU/8000")
        .replace("H264/90000", "MP4V-ES/90000")
        .replace(
            "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001e\r\n",
            "",
        );
    let response = post_sdp(&server.client, &url, &codecless).await;
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("H264"), "{body}");

    // VP8 video: a recorded input refuses it (the recorder muxes H264 only), naming the codec;
    // with recording off it is accepted for WHEP viewers.
    let vp8 = FFMPEG_OFFER.replace("H264/90000", "VP8/90000").replace(
        "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001e\r\n",
        "",
    );
    let response = post_sdp(&server.client, &url, &vp8).await;
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("VP8"),
        "{body}"
    );
    let unrecorded = server
        .create_input(json!({"recording": {"mode": "off", "timeoutSeconds": 0}}))
        .await;
    let response = post_sdp(&server.client, &server.whip_url(&unrecorded), &vp8).await;
    assert_eq!(response.status(), 201);
    let resource = format!(
        "{}{}",
        server.base,
        response.headers()["location"].to_str().unwrap()
    );
    assert_eq!(
        server
            .client
            .delete(&resource)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Truncated SDP (the offer cut mid-line) is a 400, not a publish.
    let response = post_sdp(&server.client, &url, &FFMPEG_OFFER[..200]).await;
    assert_eq!(response.status(), 400, "{}", response.text().await.unwrap());

    // A wrong secret of the right shape: 404; the right uid with a wrong Bearer: 401.
    let wrong = format!("{}/stream/{}/webRTC/publish", server.base, "ab".repeat(24));
    assert_eq!(
        post_sdp(&server.client, &wrong, FFMPEG_OFFER)
            .await
            .status(),
        404
    );
    let response = server
        .client
        .post(format!("{}/stream/{uid}/webRTC/publish", server.base))
        .bearer_auth("ab".repeat(24))
        .header("content-type", "application/sdp")
        .body(FFMPEG_OFFER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // None of these started a broadcast.
    let (_, lifecycle) = server
        .get_json(&format!("{}/stream/{uid}/lifecycle", server.base))
        .await;
    assert_eq!(lifecycle["live"], false);
    assert_eq!(lifecycle["videoUID"], Value::Null);
    server.stop().await;
}

/// The WHIP resource per RFC 9725: 201 + Location + ETag; PATCH trickle 204, ICE restart 405,
/// stale If-Match 412, wrong content type 415; DELETE 200 with an empty, complete body; then 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_resource_patch_and_delete() {
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;
    let input = server
        .create_input(json!({"recording": {"mode": "off", "timeoutSeconds": 0}}))
        .await;
    let response = post_sdp(&server.client, &server.whip_url(&input), FFMPEG_OFFER).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let answer = response.text().await.unwrap();
    assert!(
        answer.contains("a=setup:passive") || answer.contains("a=setup:active"),
        "{answer}"
    );
    assert!(answer.contains("a=ice-lite"), "{answer}");
    let resource = format!("{}{location}", server.base);
    let patch = |content_type: &'static str, if_match: Option<&str>, body: &str| {
        let mut request = server
            .client
            .patch(&resource)
            .header("content-type", content_type)
            .body(body.to_string());
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    let trickle = "a=ice-ufrag:ad26f770\r\na=ice-pwd:89d1f1552ae2c2bd93513f48f5fbdf11\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n";
    let r = patch("application/trickle-ice-sdpfrag", Some(&etag), trickle)
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let restart = trickle.replace("ad26f770", "feedbeef");
    let r = patch("application/trickle-ice-sdpfrag", Some("*"), &restart)
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = patch(
        "application/trickle-ice-sdpfrag",
        Some("\"stale\""),
        trickle,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 412);
    let r = patch("application/sdp", None, trickle).await.unwrap();
    assert_eq!(r.status(), 415);

    let r = server.client.delete(&resource).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "0", "{:?}", r.headers());
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(
        server
            .client
            .delete(&resource)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        patch("application/trickle-ice-sdpfrag", None, trickle)
            .await
            .unwrap()
            .status(),
        404
    );
    server.stop().await;
}

/// ffmpeg is killed (no DELETE) in the middle of a segment while a second publisher is refused:
/// the broadcast ends when the peer is lost, every listed segment is whole and decodes, each
/// starts with a keyframe, and the recording is a VOD playlist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_vanishing_mid_segment_leaves_only_whole_segments() {
    let (Some(whip), Some(ffmpeg), Some(ffprobe)) =
        (whip_ffmpeg(), tool("ffmpeg"), tool("ffprobe"))
    else {
        return;
    };
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;
    let input = server.create_input(automatic_input()).await;
    let uid = input["uid"].as_str().unwrap().to_string();
    let url = server.whip_url(&input);
    let mut child = whip_publish(&whip, &url, 30, "error")
        .spawn()
        .expect("ffmpeg starts");
    // Wait for two listed segments, then 1 s more: the open segment is half done (2 s target).
    let mut video_id = None;
    for _ in 0..300 {
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{uid}/lifecycle", server.base))
            .await;
        if let Some(id) = lifecycle["videoUID"].as_str() {
            let playlist = text(
                &server,
                &format!("{}/stream/{id}/manifest/stream.m3u8", server.base),
            )
            .await;
            if playlist.matches(".m4s").count() >= 2 {
                video_id = Some(id.to_string());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let video_id = video_id.expect("two segments listed");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // A second publisher while the first is live: 409, and the first is unaffected.
    let response = post_sdp(&server.client, &url, FFMPEG_OFFER).await;
    assert_eq!(response.status(), 409);
    assert!(
        child.try_wait().unwrap().is_none(),
        "ffmpeg still publishing"
    );

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let video = ready_video(&server, &uid).await;
    assert_eq!(video["uid"], video_id.as_str(), "the same broadcast ended");
    let playlist = text(
        &server,
        &format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base),
    )
    .await;
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let listed: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".m4s")).collect();
    assert!(listed.len() >= 3, "{playlist}");
    let extinf: f64 = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    let duration = video["duration"].as_f64().unwrap();
    assert!(
        (extinf - duration).abs() < 0.05,
        "EXTINF sum {extinf} vs {duration}"
    );

    assert_eq!(
        check_listed_segments(&server, &ffmpeg, &ffprobe, &video_id, &playlist).await,
        listed.len()
    );
    let master = format!("{}/stream/{video_id}/manifest/video.m3u8", server.base);
    let out = std::process::Command::new(&ffmpeg)
        .args(["-v", "error", "-i", &master, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}

/// A publisher that comes back within `timeoutSeconds` continues the same video: one recording
/// covering both sessions, the second marked discontinuous, clips across the join work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_within_timeout_continues_the_same_video() {
    let (Some(whip), Some(ffmpeg)) = (whip_ffmpeg(), tool("ffmpeg")) else {
        return;
    };
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;
    let input = server
        .create_input(json!({"recording": {"mode": "automatic", "timeoutSeconds": 5}}))
        .await;
    let uid = input["uid"].as_str().unwrap().to_string();
    let url = server.whip_url(&input);
    for _ in 0..2 {
        let out = whip_publish(&whip, &url, 4, "error")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let video = ready_video(&server, &uid).await;
    let (_, videos) = server
        .get_json(&server.api(&format!("/live_inputs/{uid}/videos")))
        .await;
    assert_eq!(videos["result"].as_array().unwrap().len(), 1, "{videos}");
    let video_id = video["uid"].as_str().unwrap();
    let duration = video["duration"].as_f64().unwrap();
    assert!(duration > 6.0, "both sessions recorded: {duration}");
    let playlist = text(
        &server,
        &format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base),
    )
    .await;
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{playlist}"
    );
    let master = format!("{}/stream/{video_id}/manifest/video.m3u8", server.base);
    let out = std::process::Command::new(&ffmpeg)
        .args(["-v", "error", "-i", &master, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}
