//! The `/calls/demo` page end to end in headless Chromium (npm playwright-core, Debian chromium):
//! one page publishes its fake camera and microphone through the sessions HTTP API, a second page
//! pulls both tracks from the first page's session, and the subscriber's
//! `getStats()` `inbound-rtp` video `framesDecoded` must grow. The server side is checked too:
//! both sessions are connected and the SFU's own stats show the video it forwarded.
//!
//! Needs `node`, Debian `chromium` and `playwright-core` under `$MEDIAPLANE_TEST_NODE_MODULES`
//! (or `tests/browser/node_modules`); skips when missing unless MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1,
//! where it fails instead.

mod common;

use std::path::PathBuf;

use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_and_pulls_through_the_demo_page() {
    let Some(platform::testing::BrowserTools {
        node,
        chromium,
        node_modules: modules,
    }) = platform::testing::browser_tools(&["playwright-core"])
    else {
        return;
    };
    let server = common::start(platform::testing::embedded().await).await;
    let app = server.create_app().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let output = tokio::process::Command::new(node)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/calls_demo.cjs"))
        .env("NODE_PATH", &modules)
        .env(
            "DEMO_URL",
            format!("{}/calls/demo?app={}", server.base, app.0),
        )
        .env("APP_SECRET", &app.1)
        .env("USER_DATA_DIR", dir.path().join("chromium"))
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let result = platform::testing::script_result(&output);
    println!("browser result: {result:#}");
    assert!(result["error"].is_null(), "{result:#}");

    // The proof that media flowed end to end: decoded frames grow between samples.
    let decoded: Vec<u64> = result["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| s["framesDecoded"].as_u64())
        .collect();
    let first = decoded.iter().copied().find(|&n| n > 0);
    let last = decoded.last().copied().unwrap_or(0);
    assert!(
        first.is_some_and(|f| last > f),
        "framesDecoded must grow: {decoded:?}\n{result:#}"
    );
    let codec = result["codec"].as_str().unwrap_or_default();
    assert!(codec.starts_with("video/"), "{result:#}");

    // The server agrees: the pulled video leg forwarded packets to the subscriber.
    let publisher = result["publisher"].as_str().expect("publisher session");
    let subscriber = result["subscriber"].as_str().expect("subscriber session");
    let (status, body) = server
        .v1(Method::GET, &app, &format!("sessions/{publisher}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .filter_map(|t| t["trackName"].as_str())
        .collect();
    assert!(
        names.contains(&"video") && names.contains(&"audio"),
        "{body}"
    );
    let (status, stats) = server
        .v1(
            Method::GET,
            &app,
            &format!("sessions/{subscriber}/stats"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    let sent: u64 = stats["outbound"]
        .as_array()
        .expect("outbound")
        .iter()
        .filter(|s| s["trackName"] == "video")
        .filter_map(|s| s["packetsSent"].as_u64())
        .sum();
    assert!(sent > 0, "the SFU sent video to the subscriber: {stats}");
    println!("chromium: {codec}, framesDecoded {decoded:?}, SFU sent {sent} video packets");
}
