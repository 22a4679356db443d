//! Playback in a real browser while ffmpeg 9 publishes over WHIP: hls.js in headless Chromium
//! plays the live HLS playlist (currentTime advances, frames decoded, no fatal hls.js error), and
//! a Chromium WHEP viewer decodes frames from the live input (`getStats().framesDecoded`).
//!
//! Needs `node`, Debian `chromium`, npm `playwright-core` + `hls.js` under
//! `$MEDIAPLANE_TEST_NODE_MODULES` (or `tests/browser/node_modules`) and imageio-ffmpeg; skips
//! when missing unless MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1.

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use serde_json::Value;
use stream::StreamConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_live_hls_with_hlsjs_and_decodes_whep() {
    let Some(platform::testing::BrowserTools {
        node,
        chromium,
        node_modules: modules,
    }) = platform::testing::browser_tools(&["playwright-core", "hls.js"])
    else {
        return;
    };
    let Some(whip) = whip_ffmpeg() else {
        return;
    };
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;
    let input = server.create_input(automatic_input()).await;
    let uid = input["uid"].as_str().unwrap().to_string();
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
    let output = tokio::process::Command::new(node)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/stream_play.cjs"))
        .env("NODE_PATH", &modules)
        .env("ORIGIN", &server.base)
        .env(
            "PLAYLIST_URL",
            format!("{}/stream/{uid}/manifest/video.m3u8", server.base),
        )
        .env(
            "WHEP_URL",
            format!("{}/stream/{uid}/webRTC/play", server.base),
        )
        .env("HLS_JS", modules.join("hls.js/dist/hls.min.js"))
        .env("USER_DATA_DIR", dir.path().join("chromium"))
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no result; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let result: Value = serde_json::from_str(line).unwrap();
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
    server.stop().await;
}
