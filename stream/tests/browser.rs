//! Stream in a real browser (headless Debian Chromium driven by npm `playwright-core`):
//! - while ffmpeg 9 publishes over WHIP, hls.js plays the live HLS playlist (currentTime advances,
//!   frames decoded, no fatal hls.js error) and a Chromium WHEP viewer decodes frames;
//! - Chromium publishes its fake camera + microphone over WHIP (H264 by `setCodecPreferences`): the
//!   recording's segments are probed and decoded, a WHEP viewer decodes them, DELETE disconnects;
//! - Chromium's default offer (VP8 first) and VP8-only offers against recorded and unrecorded inputs;
//! - hls.js plays a finished recording (VOD playlist with ENDLIST) to its end.
//!
//! Needs `node`, Debian `chromium`, npm `playwright-core` + `hls.js` under
//! `$MEDIAPLANE_TEST_NODE_MODULES` (or `tests/browser/node_modules`), Debian ffmpeg/ffprobe and
//! imageio-ffmpeg; skips when missing unless MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1.

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use serde_json::{json, Value};
use stream::StreamConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The tests of this file each drive a Chromium and a broadcaster; on a small machine two at once
/// starve each other's encoders, so they take turns.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A page driven by `tests/browser/session.cjs`: one JSON command per line in, one JSON answer out.
struct BrowserSession {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    _profile: tempfile::TempDir,
}

impl BrowserSession {
    async fn start(tools: &platform::testing::BrowserTools, origin: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(&tools.node)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/session.cjs"))
            .env("NODE_PATH", &tools.node_modules)
            .env("ORIGIN", origin)
            .env("HLS_JS", tools.node_modules.join("hls.js/dist/hls.min.js"))
            .env("USER_DATA_DIR", profile.path().join("chromium"))
            .env("CHROMIUM", &tools.chromium)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut session = Self {
            child,
            stdin,
            lines,
            _profile: profile,
        };
        let ready = session.answer().await;
        assert_eq!(ready["ready"], true, "{ready:#}");
        session
    }

    async fn answer(&mut self) -> Value {
        // A bound so a wedged browser fails the test instead of hanging it; every command bounds
        // its own waits well below this.
        let line = tokio::time::timeout(Duration::from_secs(180), self.lines.next_line())
            .await
            .expect("the browser answers")
            .expect("read the browser's stdout")
            .expect("the browser script ended early (see its stderr)");
        let value: Value = serde_json::from_str(&line).expect("one JSON line");
        assert_eq!(value["ok"], true, "{value:#}");
        value
    }

    async fn call(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let answer = self.answer().await;
        eprintln!("{} -> {answer:#}", command["cmd"]);
        answer
    }

    async fn exit(mut self) {
        let _ = self.stdin.write_all(b"{\"cmd\":\"exit\"}\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// What every test here starts from: the browser tools, its turn at the browser, an embedded
/// platform and a Stream server on it.
struct Stage {
    tools: platform::testing::BrowserTools,
    server: Server,
    _platform: platform::testing::TestPlatform,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Stage {
    /// `None` (skipped, or failed under MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1) when node, Chromium or
    /// one of the npm `packages` is missing.
    async fn new(packages: &[&str]) -> Option<Self> {
        let tools = platform::testing::browser_tools(packages)?;
        let turn = ONE_BROWSER_AT_A_TIME.lock().await;
        let tp = platform::testing::embedded().await;
        let server = serve(&tp, StreamConfig::default()).await;
        Some(Self {
            tools,
            server,
            _platform: tp,
            _turn: turn,
        })
    }

    /// A new live input and its uid.
    async fn input(&self, body: Value) -> (Value, String) {
        let input = self.server.create_input(body).await;
        let uid = input["uid"].as_str().expect("uid").to_string();
        (input, uid)
    }

    async fn browser(&self) -> BrowserSession {
        BrowserSession::start(&self.tools, &self.server.base).await
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

fn input_with(recording_mode: &str, timeout_seconds: u32) -> Value {
    json!({ "meta": { "name": "browser" }, "recording": { "mode": recording_mode, "timeoutSeconds": timeout_seconds } })
}

/// The live input's status from the management API (`null` when no broadcast exists).
async fn input_state(server: &Server, uid: &str) -> Value {
    let (status, body) = server
        .get_json(&server.api(&format!("/live_inputs/{uid}")))
        .await;
    assert_eq!(status, 200);
    body["result"]["status"]["current"]["state"].clone()
}

/// Polls until the input reports `disconnected` (bounded).
async fn wait_disconnected(server: &Server, uid: &str) {
    for _ in 0..100 {
        if input_state(server, uid).await == "disconnected" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "input {uid} did not report disconnected: {}",
        input_state(server, uid).await
    );
}

/// The current video's media playlist once it lists `segments` segments (bounded).
async fn wait_for_segments(server: &Server, input_uid: &str, segments: usize) -> (String, String) {
    let mut last = String::new();
    for _ in 0..600 {
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{input_uid}/lifecycle", server.base))
            .await;
        if let Some(video) = lifecycle["videoUID"].as_str() {
            last = server
                .client
                .get(format!(
                    "{}/stream/{video}/manifest/stream.m3u8",
                    server.base
                ))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if last.matches(".m4s").count() >= segments {
                return (video.to_string(), last);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{segments} segments were never listed; last playlist: {last}");
}

/// The input's latest video once it is `ready` (bounded).
async fn ready_video(server: &Server, input_uid: &str) -> Value {
    for _ in 0..600 {
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{input_uid}/lifecycle", server.base))
            .await;
        if let (false, Some(id)) = (
            lifecycle["live"].as_bool().unwrap_or(true),
            lifecycle["videoUID"].as_str(),
        ) {
            let (_, v) = server.get_json(&server.api(&format!("/{id}"))).await;
            if v["result"]["status"]["state"] == "ready" {
                return v["result"].clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the broadcast of {input_uid} never became a ready video");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_live_hls_with_hlsjs_and_decodes_whep() {
    let Some(whip) = whip_ffmpeg() else {
        return;
    };
    let Some(stage) = Stage::new(&["playwright-core", "hls.js"]).await else {
        return;
    };
    let (server, tools) = (&stage.server, &stage.tools);
    let (input, uid) = stage.input(automatic_input()).await;
    let mut publish = whip_publish(&whip, &server.whip_url(&input), 40, "error")
        .spawn()
        .expect("ffmpeg starts");

    // Wait for a live playlist with two segments before a player opens it.
    let mut ready = false;
    for _ in 0..300 {
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{uid}/lifecycle", server.base))
            .await;
        if let Some(video) = lifecycle["videoUID"].as_str() {
            let playlist = server
                .client
                .get(format!(
                    "{}/stream/{video}/manifest/stream.m3u8",
                    server.base
                ))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if playlist.matches(".m4s").count() >= 2 {
                ready = true;
                break;
            }
        }
        if let Ok(Some(status)) = publish.try_wait() {
            panic!("ffmpeg WHIP publish ended early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the live playlist never had two segments");

    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(&tools.node)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/stream_play.cjs"))
        .env("NODE_PATH", &tools.node_modules)
        .env("ORIGIN", &server.base)
        .env(
            "PLAYLIST_URL",
            format!("{}/stream/{uid}/manifest/video.m3u8", server.base),
        )
        .env(
            "WHEP_URL",
            format!("{}/stream/{uid}/webRTC/play", server.base),
        )
        .env("HLS_JS", tools.node_modules.join("hls.js/dist/hls.min.js"))
        .env("USER_DATA_DIR", dir.path().join("chromium"))
        .env("CHROMIUM", &tools.chromium)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let result = platform::testing::script_result(&output);
    eprintln!("{result:#}");
    assert!(result["error"].is_null(), "{result:#}");

    let hls = &result["hls"];
    assert_eq!(hls["supported"], true, "MSE in Chromium");
    assert_eq!(hls["manifestParsed"], true, "{hls:#}");
    assert_eq!(hls["live"], true, "a live playlist (no ENDLIST)");
    let fatal: Vec<&Value> = hls["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fatal"] == true)
        .collect();
    assert!(fatal.is_empty(), "fatal hls.js errors: {hls:#}");
    let first = hls["firstTime"].as_f64().expect("playback started");
    let now = hls["currentTime"].as_f64().unwrap();
    assert!(now - first >= 3.0, "currentTime advanced 3 s: {hls:#}");
    assert!(hls["decodedFrames"].as_u64().unwrap() >= 60, "{hls:#}");
    assert_eq!(
        (hls["width"].as_u64(), hls["height"].as_u64()),
        (Some(640), Some(360))
    );

    let whep = &result["whep"];
    assert_eq!(whep["status"], 201, "{whep:#}");
    assert!(
        whep["video"]["framesDecoded"].as_u64().unwrap_or(0) >= 60,
        "{whep:#}"
    );
    assert_eq!(whep["video"]["frameWidth"], 640, "{whep:#}");
    assert_eq!(whep["video"]["codec"], "video/H264", "{whep:#}");
    assert!(
        whep["audio"]["packetsReceived"].as_u64().unwrap_or(0) > 50,
        "{whep:#}"
    );
    assert_eq!(whep["deleteStatus"], 200, "{whep:#}");

    let _ = publish.kill().await;
    stage.stop().await;
}

/// Chromium publishes its fake camera and microphone over WHIP with H264 preferred: the recorded
/// input's live playlist gets segments (Chromium's encoder sends keyframes only when asked, so
/// this also proves the recorder asks at each segment boundary), ffprobe finds H264 + Opus, every
/// segment starts with a keyframe and decodes, a WHEP viewer decodes the picture, and after the
/// publisher's DELETE the input reports disconnected and the recording is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_fake_camera_h264_over_whip() {
    let (Some(ffmpeg), Some(ffprobe)) = (tool("ffmpeg"), tool("ffprobe")) else {
        return;
    };
    let Some(stage) = Stage::new(&["playwright-core"]).await else {
        return;
    };
    let server = &stage.server;
    // A few seconds of timeout so the disconnected state is observable before finalizing.
    let (input, uid) = stage.input(input_with("automatic", 3)).await;
    let mut browser = stage.browser().await;

    let published = browser
        .call(json!({"cmd": "publish", "url": server.whip_url(&input), "codecs": "h264"}))
        .await;
    let capabilities: Vec<&str> = published["senderVideoCodecs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        capabilities
            .iter()
            .any(|c| c.starts_with("video/H264") && c.contains("packetization-mode=1")),
        "Debian's Chromium can send H264: {capabilities:?}"
    );
    assert_eq!(published["status"], 201, "{published:#}");
    assert_eq!(published["offerVideoCodecs"][0], "H264", "{published:#}");
    assert_eq!(published["answerVideoCodecs"][0], "H264", "{published:#}");
    let stats = &published["stats"];
    assert_eq!(stats["connectionState"], "connected", "{published:#}");
    assert_eq!(stats["video"]["codec"], "video/H264", "{published:#}");
    assert_eq!(stats["audio"]["codec"], "audio/opus", "{published:#}");
    assert_eq!(input_state(server, &uid).await, "connected");

    // Three whole segments of a 2 s target: more keyframes than the one Chromium starts with.
    let (video_id, playlist) = wait_for_segments(server, &uid, 3).await;
    let stats = browser.call(json!({"cmd": "stats"})).await;
    assert!(
        stats["video"]["keyFramesEncoded"].as_u64().unwrap_or(0) >= 3
            && stats["video"]["pliCount"].as_u64().unwrap_or(0) >= 2,
        "segments were cut on keyframes the recorder asked for: {stats:#}"
    );
    let master = format!("{}/stream/{uid}/manifest/video.m3u8", server.base);
    let out = std::process::Command::new(&ffprobe)
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,profile,width,height,sample_rate",
            "-of",
            "compact",
            &master,
        ])
        .output()
        .unwrap();
    let streams = String::from_utf8_lossy(&out.stdout);
    assert!(
        streams.contains("codec_name=h264")
            && streams.contains("width=640")
            && streams.contains("height=480"),
        "{streams}"
    );
    assert!(
        streams.contains("codec_name=opus") && streams.contains("sample_rate=48000"),
        "{streams}"
    );
    let checked = check_listed_segments(server, &ffmpeg, &ffprobe, &video_id, &playlist).await;
    assert!(checked >= 3, "{playlist}");
    for extinf in playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
    {
        // A segment closes at the first keyframe at or after the 2 s target.
        assert!(extinf >= 2.0, "{playlist}");
    }

    let whep = browser
        .call(json!({"cmd": "whep", "url": format!("{}/stream/{uid}/webRTC/play", server.base), "frames": 40}))
        .await;
    assert_eq!(whep["status"], 201, "{whep:#}");
    assert_eq!(whep["video"]["codec"], "video/H264", "{whep:#}");
    assert!(
        whep["video"]["framesDecoded"].as_u64().unwrap_or(0) >= 40,
        "{whep:#}"
    );
    assert_eq!(whep["video"]["frameWidth"], 640, "{whep:#}");
    assert!(
        whep["audio"]["packetsReceived"].as_u64().unwrap_or(0) > 50,
        "{whep:#}"
    );
    assert_eq!(whep["deleteStatus"], 200, "{whep:#}");

    let stopped = browser.call(json!({"cmd": "unpublish"})).await;
    assert_eq!(stopped["deleteStatus"], 200, "{stopped:#}");
    wait_disconnected(server, &uid).await;
    let video = ready_video(server, &uid).await;
    assert_eq!(video["uid"], video_id.as_str());
    assert!(
        video["duration"].as_f64().unwrap_or(0.0) >= 6.0,
        "{video:#}"
    );
    let vod = format!("{}/stream/{video_id}/manifest/stream.m3u8", server.base);
    let playlist = server
        .client
        .get(&vod)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let out = std::process::Command::new(&ffmpeg)
        .args(["-v", "error", "-i", &vod, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    browser.exit().await;
    stage.stop().await;
}

/// What Chromium's other offers get: its default offer (VP8 listed first, H264 after) is answered
/// with H264 on a recorded input; a VP8-only offer is refused there with the documented 415; with
/// recording off VP8 is taken and a WHEP viewer decodes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_default_and_vp8_offers() {
    let Some(stage) = Stage::new(&["playwright-core"]).await else {
        return;
    };
    let server = &stage.server;
    let (recorded, recorded_uid) = stage.input(input_with("automatic", 0)).await;
    let (unrecorded, unrecorded_uid) = stage.input(input_with("off", 2)).await;
    let mut browser = stage.browser().await;

    let refused = browser
        .call(json!({"cmd": "publish", "url": server.whip_url(&recorded), "codecs": "vp8"}))
        .await;
    assert_eq!(refused["offerVideoCodecs"][0], "VP8", "{refused:#}");
    assert_eq!(refused["status"], 415, "{refused:#}");
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("recording needs H264") && message.contains("VP8"),
        "{body:#}"
    );
    assert!(input_state(server, &recorded_uid).await.is_null());

    let default = browser
        .call(json!({"cmd": "publish", "url": server.whip_url(&recorded), "codecs": "default"}))
        .await;
    assert_eq!(default["offerVideoCodecs"][0], "VP8", "{default:#}");
    assert_eq!(default["status"], 201, "{default:#}");
    assert_eq!(default["answerVideoCodecs"][0], "H264", "{default:#}");
    assert_eq!(
        default["stats"]["video"]["codec"], "video/H264",
        "{default:#}"
    );
    wait_for_segments(server, &recorded_uid, 1).await;
    let stopped = browser.call(json!({"cmd": "unpublish"})).await;
    assert_eq!(stopped["deleteStatus"], 200, "{stopped:#}");
    ready_video(server, &recorded_uid).await;

    let vp8 = browser
        .call(json!({"cmd": "publish", "url": server.whip_url(&unrecorded), "codecs": "vp8"}))
        .await;
    assert_eq!(vp8["status"], 201, "{vp8:#}");
    assert_eq!(vp8["stats"]["video"]["codec"], "video/VP8", "{vp8:#}");
    assert_eq!(input_state(server, &unrecorded_uid).await, "connected");
    let whep = browser
        .call(json!({"cmd": "whep", "url": format!("{}/stream/{unrecorded_uid}/webRTC/play", server.base), "frames": 40}))
        .await;
    assert_eq!(whep["status"], 201, "{whep:#}");
    assert_eq!(whep["video"]["codec"], "video/VP8", "{whep:#}");
    assert!(
        whep["video"]["framesDecoded"].as_u64().unwrap_or(0) >= 40,
        "{whep:#}"
    );
    assert_eq!(whep["video"]["frameWidth"], 640, "{whep:#}");
    let stopped = browser.call(json!({"cmd": "unpublish"})).await;
    assert_eq!(stopped["deleteStatus"], 200, "{stopped:#}");
    wait_disconnected(server, &unrecorded_uid).await;
    browser.exit().await;
    stage.stop().await;
}

/// hls.js in Chromium plays a finished recording (VOD playlist with ENDLIST, after the publisher
/// stopped) to its end: `ended` fires, the whole duration was played and its frames decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_plays_a_finished_recording_to_the_end() {
    let Some(whip) = whip_ffmpeg() else {
        return;
    };
    let Some(stage) = Stage::new(&["playwright-core", "hls.js"]).await else {
        return;
    };
    let server = &stage.server;
    let (input, uid) = stage.input(automatic_input()).await;
    let out = whip_publish(&whip, &server.whip_url(&input), 8, "error")
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg WHIP publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let video = ready_video(server, &uid).await;
    let video_id = video["uid"].as_str().unwrap().to_string();
    let duration = video["duration"].as_f64().expect("recorded");
    assert!(duration >= 6.0, "{video:#}");
    // The videos API names the playlist under the public URL; play the same path on this server.
    let listed = video["playback"]["hls"].as_str().unwrap();
    let path = listed.split_once("/stream/").map(|(_, p)| p).unwrap();
    let url = format!("{}/stream/{path}", server.base);
    assert_eq!(
        url,
        format!("{}/stream/{video_id}/manifest/video.m3u8", server.base)
    );

    let mut browser = stage.browser().await;
    let played = browser.call(json!({"cmd": "play_vod", "url": url})).await;
    browser.exit().await;
    assert_eq!(played["supported"], true, "MSE in Chromium");
    assert_eq!(played["manifestParsed"], true, "{played:#}");
    assert_eq!(played["live"], false, "a VOD playlist: {played:#}");
    let fatal: Vec<&Value> = played["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fatal"] == true)
        .collect();
    assert!(fatal.is_empty(), "fatal hls.js errors: {played:#}");
    assert_eq!(played["ended"], true, "played to the end: {played:#}");
    let playlist_duration = played["playlistDuration"].as_f64().unwrap();
    assert!(
        (playlist_duration - duration).abs() < 0.1,
        "playlist {playlist_duration} s vs video {duration} s"
    );
    let end = played["currentTime"].as_f64().unwrap();
    assert!(
        (end - played["duration"].as_f64().unwrap()).abs() < 0.1 && end >= duration - 0.5,
        "{played:#}"
    );
    // ffmpeg sent 30 fps; everything but a partial first/last frame interval was decoded.
    let frames = played["decodedFrames"].as_u64().unwrap();
    assert!(
        frames as f64 >= (duration - 0.5) * 30.0,
        "{frames} frames for {duration} s: {played:#}"
    );
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(640), Some(360))
    );
    stage.stop().await;
}
