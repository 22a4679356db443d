//! WHIP with a real broadcaster: ffmpeg 9's `-f whip` muxer (PyPI imageio-ffmpeg) publishes
//! H264 baseline + Opus through the Calls media core; the recording is then validated with
//! Debian ffprobe/ffmpeg.

mod common;

use std::time::Duration;

use common::*;
use stream::StreamConfig;

/// ffmpeg with the WHIP muxer, from the test venv's imageio-ffmpeg.
fn whip_ffmpeg() -> Option<std::path::PathBuf> {
    let python = std::env::var("MEDIAPLANE_TEST_VENV")
        .ok()
        .map(|v| std::path::PathBuf::from(v).join("bin/python"));
    let found = python.filter(|p| p.is_file()).and_then(|python| {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import imageio_ffmpeg as m; print(m.get_ffmpeg_exe())",
            ])
            .output()
            .ok()?;
        out.status.success().then(|| {
            std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
    });
    if found.is_none() {
        if std::env::var("MEDIAPLANE_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
            panic!("imageio-ffmpeg (ffmpeg with -f whip) is required but missing from MEDIAPLANE_TEST_VENV");
        }
        eprintln!("skipped: imageio-ffmpeg not installed (set MEDIAPLANE_TEST_VENV)");
    }
    found
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
    let url = input["webRTC"]["url"].as_str().unwrap().to_string();
    // The public URL is not this test server's address: keep the path, use our address.
    let path = url.split_once("/stream/").map(|(_, p)| p).unwrap();
    let publish = format!("{}/stream/{path}", server.base);
    let status = tokio::process::Command::new(&whip)
        .args(["-hide_banner", "-v", "error", "-re"])
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
        .args([
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "libopus", "-ar", "48000",
            "-ac", "2", "-b:a", "64k",
        ])
        .args(["-f", "whip", &publish])
        .kill_on_drop(true)
        .status()
        .await
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg WHIP publish failed");
    // ffmpeg sends DELETE at the end; the broadcast then finalizes (timeoutSeconds 0).
    let mut video = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{uid}/lifecycle", server.base))
            .await;
        if lifecycle["live"] == false && lifecycle["videoUID"].is_string() {
            let id = lifecycle["videoUID"].as_str().unwrap().to_string();
            let (_, v) = server.get_json(&server.api(&format!("/{id}"))).await;
            if v["result"]["status"]["state"] == "ready" {
                video = v["result"].clone();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
