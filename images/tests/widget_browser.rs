//! The upload widget end to end in headless Chromium (npm playwright-core): a real JPEG is
//! uploaded through the demo page with a publishable widget key; progress reaches 100 %, the
//! `upload-success` event fires and the delivered image loads.
//!
//! Needs `node`, Debian `chromium` and `playwright-core` under `$MEDIAPLANE_TEST_NODE_MODULES`
//! (or `tests/browser/node_modules`); skips when missing unless MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1.

mod common;

use std::path::PathBuf;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn widget_uploads_a_jpeg_in_chromium() {
    let Some(platform::testing::BrowserTools {
        node,
        chromium,
        node_modules: modules,
    }) = platform::testing::browser_tools(&["playwright-core"])
    else {
        return;
    };
    let s = start(platform::testing::embedded().await, test_config()).await;
    let (status, key) = s
        .send_json(
            Method::POST,
            &s.api("/v1/widget_keys"),
            json!({"name": "demo", "allowedOrigins": [s.base.clone()], "uploadsPerMinute": 10}),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    let key_id = key["result"]["id"].as_str().unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, jpeg(1600, 1200)).unwrap();
    let user_data = dir.path().join("chromium");
    let output = tokio::process::Command::new(node)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/widget.cjs"))
        .env("NODE_PATH", &modules)
        .env(
            "DEMO_URL",
            format!("{}/images/widget/demo?key={key_id}", s.base),
        )
        .env("JPEG_PATH", &photo)
        .env("USER_DATA_DIR", &user_data)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let result = platform::testing::script_result(&output);
    assert!(result["error"].is_null(), "{result:#}");
    assert_eq!(result["maxProgress"], 100, "{result:#}");
    assert_eq!(result["progressValue"].as_f64(), Some(100.0));
    assert_eq!(result["role"], "button");
    assert!(result["label"].as_str().unwrap_or("").contains("Enter"));
    let events = result["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "upload-error" && e["detail"]["code"] == "client_check"),
        "client-side type check: {result:#}"
    );
    let success = events
        .iter()
        .find(|e| e["type"] == "upload-success")
        .expect("upload-success event");
    let id = success["detail"]["id"].as_str().unwrap();
    assert_eq!(
        (
            result["delivered"]["width"].as_u64(),
            result["delivered"]["height"].as_u64()
        ),
        (Some(1600), Some(1200))
    );

    // The image really is stored under the account, and the key's origin binding holds.
    let (status, image) = s.get_json(&s.api(&format!("/v1/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(image["result"]["meta"]["source"], "widget");
    let r = s
        .client
        .post(format!("{}/images/widget/direct_upload", s.base))
        .header("x-widget-key", &key_id)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn widget_keys_are_origin_bound_and_rate_limited() {
    for s in servers(test_config).await {
        let (status, key) = s.send_json(Method::POST, &s.api("/v1/widget_keys"), json!({"name": "site", "allowedOrigins": ["https://shop.example"], "uploadsPerMinute": 2})).await;
        assert_eq!(status, 200, "{key}");
        let key_id = key["result"]["id"].as_str().unwrap().to_string();
        assert!(key_id.starts_with("pk_"));
        let mint = |origin: &'static str| {
            s.client
                .post(format!("{}/images/widget/direct_upload", s.base))
                .header("x-widget-key", &key_id)
                .header("origin", origin)
                .send()
        };
        let r = mint("https://shop.example").await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let upload_url = body["result"]["uploadURL"].as_str().unwrap().to_string();
        assert_eq!(mint("https://other.example").await.unwrap().status(), 403);
        assert_eq!(mint("https://shop.example").await.unwrap().status(), 200);
        assert_eq!(
            mint("https://shop.example").await.unwrap().status(),
            429,
            "third in a minute"
        );
        let r = s
            .client
            .post(format!("{}/images/widget/direct_upload", s.base))
            .header("x-widget-key", "pk_unknown")
            .header("origin", "https://shop.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // The minted URL works once, with no account token.
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(jpeg(16, 16)).file_name("w.jpg"),
        );
        assert_eq!(
            s.client
                .post(&upload_url)
                .multipart(form)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        for bad in [
            json!({"name": "x", "allowedOrigins": []}),
            json!({"name": "x", "allowedOrigins": ["*"]}),
            json!({"name": "x", "allowedOrigins": ["https://a.example/path"]}),
        ] {
            assert_eq!(
                s.send_json(Method::POST, &s.api("/v1/widget_keys"), bad.clone())
                    .await
                    .0,
                400,
                "{bad}"
            );
        }
        let (_, list) = s.get_json(&s.api("/v1/widget_keys")).await;
        assert_eq!(list["result"].as_array().unwrap().len(), 1);
        assert_eq!(
            s.send_json(
                Method::DELETE,
                &s.api(&format!("/v1/widget_keys/{key_id}")),
                json!({})
            )
            .await
            .0,
            200
        );
        assert_eq!(
            mint("https://shop.example").await.unwrap().status(),
            403,
            "deleted key"
        );
        // The script and demo page are served.
        let js = s
            .client
            .get(format!("{}/images/widget.js", s.base))
            .send()
            .await
            .unwrap();
        assert!(js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert!(js
            .text()
            .await
            .unwrap()
            .contains("customElements.define(\"mediaplane-uploader\""));
    }
}
