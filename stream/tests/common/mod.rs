//! Shared test helpers: serve the real router, find external tools, create inputs.
#![allow(dead_code)]

pub mod rtp_source;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use platform::testing::TestPlatform;
use serde_json::{json, Value};
use stream::{StreamConfig, StreamService};

pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    pub service: StreamService,
    pub calls: calls::CallsService,
    pub client: reqwest::Client,
    pub token: String,
    pub account_id: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn calls_config() -> calls::CallsConfig {
    calls::CallsConfig::for_tests()
}

pub async fn serve(tp: &TestPlatform, config: StreamConfig) -> Server {
    let calls = calls::CallsService::start(tp.platform.clone(), calls_config())
        .await
        .expect("calls starts");
    let service = StreamService::start(tp.platform.clone(), config, &calls)
        .await
        .expect("stream starts");
    let app = platform::http::apply_layers(service.router(), tp.config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Server {
        addr,
        base: format!("http://{addr}"),
        service,
        calls,
        client: reqwest::Client::new(),
        token: tp.token.clone(),
        account_id: tp.account_id.clone(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl Server {
    pub fn api(&self, path: &str) -> String {
        format!(
            "{}/client/v4/accounts/{}/stream{}",
            self.base, self.account_id, path
        )
    }

    pub async fn create_input(&self, body: Value) -> Value {
        let response = self
            .client
            .post(self.api("/live_inputs"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["result"].clone()
    }

    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn stop(mut self) {
        self.service.shutdown().await;
        self.calls.shutdown().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

pub fn automatic_input() -> Value {
    json!({ "meta": { "name": "test" }, "recording": { "mode": "automatic", "timeoutSeconds": 0 } })
}

/// A tool from PATH or the test venv; `None` (after printing why) when missing and not required.
pub fn tool(name: &str) -> Option<PathBuf> {
    if let Ok(venv) = std::env::var("MEDIAPLANE_TEST_VENV") {
        let candidate = PathBuf::from(venv).join("bin").join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if std::env::var("MEDIAPLANE_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
        panic!("{name} is required (MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1) but not installed");
    }
    eprintln!("skipped: {name} not installed");
    None
}

/// Keyframe requests counted by tests.
pub fn counting_keyframes() -> (
    stream::KeyframeRequester,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    (
        Arc::new(move || {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }),
        count,
    )
}

/// ffmpeg with the WHIP muxer (ffmpeg 9 from the test venv's PyPI imageio-ffmpeg; Debian's has none).
pub fn whip_ffmpeg() -> Option<PathBuf> {
    let python = std::env::var("MEDIAPLANE_TEST_VENV")
        .ok()
        .map(|v| PathBuf::from(v).join("bin/python"));
    let found = python.filter(|p| p.is_file()).and_then(|python| {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import imageio_ffmpeg as m; print(m.get_ffmpeg_exe())",
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    });
    if found.is_none() {
        if std::env::var("MEDIAPLANE_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
            panic!("imageio-ffmpeg (ffmpeg with -f whip) is required but missing from MEDIAPLANE_TEST_VENV");
        }
        eprintln!("skipped: imageio-ffmpeg not installed (set MEDIAPLANE_TEST_VENV)");
    }
    found
}

impl Server {
    /// The input's WHIP URL on this test server (the public URL names another host).
    pub fn whip_url(&self, input: &Value) -> String {
        let url = input["webRTC"]["url"].as_str().expect("webRTC.url");
        let path = url.split_once("/stream/").map(|(_, p)| p).expect("path");
        format!("{}/stream/{path}", self.base)
    }
}

/// An ffmpeg 9 WHIP publish of `seconds` of testsrc2 640x360@30 (H264 baseline, GOP 30, no
/// B-frames) + 440 Hz Opus stereo, in real time, the way OBS would send it.
pub fn whip_publish(
    whip: &std::path::Path,
    url: &str,
    seconds: u32,
    log_level: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(whip);
    command
        .args(["-hide_banner", "-v", log_level, "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "libopus",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-b:a",
            "64k",
        ])
        .args(["-f", "whip", url])
        .kill_on_drop(true);
    command
}

/// The SDP offer ffmpeg 9's WHIP muxer sent (captured once): Opus + H264 constrained baseline
/// with RTX, `a=setup:passive`, no candidates.
pub const FFMPEG_OFFER: &str = include_str!("ffmpeg9_offer.sdp");

/// POSTs an SDP body to a WHIP/WHEP URL.
pub async fn post_sdp(client: &reqwest::Client, url: &str, sdp: &str) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/sdp")
        .body(sdp.to_string())
        .send()
        .await
        .expect("request")
}

/// Fetches every segment a media playlist lists, each with the init its `EXT-X-MAP` names, and
/// checks that each starts with a video keyframe and decodes cleanly on its own (Debian
/// ffprobe/ffmpeg). Returns how many segments were checked.
/// Whether the video of the (init + segment) file at `path` starts with a keyframe, by ffprobe's
/// packet flags; also returns the flags, for messages.
pub fn starts_with_keyframe(ffprobe: &std::path::Path, path: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(ffprobe)
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let flags = String::from_utf8_lossy(&out.stdout).into_owned();
    let keyframe = flags.lines().next().is_some_and(|f| f.starts_with('K'));
    (keyframe, flags)
}

pub async fn check_listed_segments(
    server: &Server,
    ffmpeg: &std::path::Path,
    ffprobe: &std::path::Path,
    video_id: &str,
    playlist: &str,
) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let fetch = |name: String| async move {
        let response = server
            .client
            .get(format!("{}/stream/{video_id}/segments/{name}", server.base))
            .send()
            .await
            .expect("segment request");
        assert_eq!(response.status(), 200, "{name}");
        response.bytes().await.expect("segment body")
    };
    let mut init = None;
    let mut checked = 0;
    for line in playlist.lines() {
        if let Some(uri) = line
            .strip_prefix("#EXT-X-MAP:URI=\"")
            .and_then(|rest| rest.split('"').next())
        {
            let name = uri.trim_start_matches("../segments/").to_string();
            init = Some(fetch(name).await);
            continue;
        }
        if !line.ends_with(".m4s") {
            continue;
        }
        let name = line.trim_start_matches("../segments/").to_string();
        let mut file = init
            .clone()
            .expect("EXT-X-MAP before the first segment")
            .to_vec();
        file.extend_from_slice(&fetch(name.clone()).await);
        let path = dir.path().join(format!("{name}.mp4"));
        std::fs::write(&path, &file).expect("write segment");
        let (keyframe, flags) = starts_with_keyframe(ffprobe, &path);
        assert!(keyframe, "{name} starts with a keyframe: {flags}");
        let out = std::process::Command::new(ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // ffmpeg's own output side rescales timestamps to the null encoder's 1/frame-rate time
        // base; two frames of a browser's variable-rate capture less than a frame apart then
        // collide there ("non monotonically increasing dts to muxer"). That is about ffmpeg's
        // output, not our segment: any decoding error is still a failure.
        let decode_errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("non monotonically increasing dts to muxer"))
            .collect();
        assert!(
            out.status.success() && decode_errors.is_empty(),
            "{name}: {stderr}"
        );
        checked += 1;
    }
    checked
}
