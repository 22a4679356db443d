//! Live inputs, videos and WHIP error handling through the real router, on every backend.

mod common;

use common::*;
use serde_json::{json, Value};
use stream::StreamConfig;

#[tokio::test]
async fn live_inputs_crud_validation_and_publish_errors() {
    for tp in platform::testing::all_backends().await {
        let server = serve(&tp, StreamConfig::default()).await;
        let c = &server.client;

        let response = c
            .post(server.api("/live_inputs"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{}", tp.label);
        for bad in [
            json!({"recording": {"mode": "sometimes"}}),
            json!({"recording": {"timeoutSeconds": -1}}),
            json!({"deleteRecordingAfterDays": 5}),
            json!({"meta": "not an object"}),
            json!({"enabled": "yes"}),
        ] {
            let response = c
                .post(server.api("/live_inputs"))
                .bearer_auth(&server.token)
                .json(&bad)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{bad}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["success"], false);
            assert_eq!(body["errors"][0]["code"], 10400);
        }
        let response = c
            .post(server.api("/live_inputs"))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);

        let input = server
            .create_input(json!({"meta": {"name": "studio"}, "recording": {"mode": "automatic", "timeoutSeconds": 10}, "deleteRecordingAfterDays": 45}))
            .await;
        let uid = input["uid"].as_str().unwrap().to_string();
        assert_eq!(uid.len(), 32);
        assert_eq!(input["recording"]["mode"], "automatic");
        assert_eq!(input["recording"]["timeoutSeconds"], 10);
        assert_eq!(input["deleteRecordingAfterDays"], 45);
        assert_eq!(input["enabled"], true);
        let whip_url = input["webRTC"]["url"].as_str().unwrap().to_string();
        assert!(
            whip_url.ends_with("/webRTC/publish") && !whip_url.contains(&uid),
            "{whip_url}"
        );
        assert!(input["webRTCPlayback"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/stream/{uid}/webRTC/play")));

        let (status, list) = server.get_json(&server.api("/live_inputs")).await;
        assert_eq!(status, 200);
        assert_eq!(list["result"]["liveInputs"].as_array().unwrap().len(), 1);

        // Partial update: only the fields given change; null clears retention.
        let response = c
            .put(server.api(&format!("/live_inputs/{uid}")))
            .bearer_auth(&server.token)
            .json(&json!({"enabled": false, "deleteRecordingAfterDays": null}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let updated: Value = response.json().await.unwrap();
        assert_eq!(updated["result"]["enabled"], false);
        assert_eq!(updated["result"]["deleteRecordingAfterDays"], Value::Null);
        assert_eq!(updated["result"]["recording"]["mode"], "automatic");

        // A disabled input refuses publishers, over the service and over WHIP.
        let (keyframe, _) = counting_keyframes();
        let err = server
            .service
            .begin_broadcast(&uid, true, keyframe.clone())
            .await
            .err()
            .expect("disabled input refuses");
        assert_eq!(err.status, 403);
        let secret_path = whip_url.split("/stream/").nth(1).unwrap().to_string();
        let publish = format!("{}/stream/{secret_path}", server.base);
        let response = c
            .post(&publish)
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);

        c.put(server.api(&format!("/live_inputs/{uid}")))
            .bearer_auth(&server.token)
            .json(&json!({"enabled": true}))
            .send()
            .await
            .unwrap();
        // Garbage SDP, wrong content type, unknown secret, uid with a wrong Bearer secret.
        let response = c
            .post(&publish)
            .header("content-type", "application/sdp")
            .body("garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let response = c
            .post(&publish)
            .header("content-type", "text/plain")
            .body("v=0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415);
        let response = c
            .post(format!("{}/stream/nope/webRTC/publish", server.base))
            .header("content-type", "application/sdp")
            .body("v=0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let by_uid = format!("{}/stream/{uid}/webRTC/publish", server.base);
        let response = c
            .post(&by_uid)
            .bearer_auth("wrong")
            .header("content-type", "application/sdp")
            .body("v=0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        // Browsers preflight WHIP: the gateway's CORS layer answers OPTIONS and allows POST.
        let response = c
            .request(reqwest::Method::OPTIONS, &publish)
            .header("origin", "https://studio.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let methods = response.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(methods.contains("POST"), "{methods}");
        // WHEP on an input that is not live.
        let response = c
            .post(format!("{}/stream/{uid}/webRTC/play", server.base))
            .header("content-type", "application/sdp")
            .body("v=0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409);

        // One publisher at a time.
        let first = server
            .service
            .begin_broadcast(&uid, true, keyframe.clone())
            .await
            .expect("first publisher");
        let second = server
            .service
            .begin_broadcast(&uid, true, keyframe.clone())
            .await
            .err()
            .expect("second publisher refused");
        assert_eq!(second.status, 409);
        let (_, lifecycle) = server
            .get_json(&format!("{}/stream/{uid}/lifecycle", server.base))
            .await;
        assert_eq!(lifecycle["live"], true);
        assert_eq!(lifecycle["videoUID"], first.video_id.as_str());
        let response = c
            .delete(server.api(&format!("/live_inputs/{uid}")))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409, "cannot delete while live");
        drop(first);

        // Rotation changes the WHIP URL; the old secret stops working.
        let response = c
            .post(server.api(&format!("/live_inputs/{uid}/rotate_secret")))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        let rotated: Value = response.json().await.unwrap();
        assert_ne!(
            rotated["result"]["webRTC"]["url"].as_str().unwrap(),
            whip_url
        );
        let response = c
            .post(&publish)
            .header("content-type", "application/sdp")
            .body("v=0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);

        // Another account's token sees nothing; an unknown input is 404.
        let (status, _) = server
            .get_json(&format!(
                "{}/client/v4/accounts/{}/stream/live_inputs",
                server.base,
                "0".repeat(32)
            ))
            .await;
        assert_eq!(status, 403);
        let (status, _) = server
            .get_json(&server.api(&format!("/live_inputs/{}", "f".repeat(32))))
            .await;
        assert_eq!(status, 404);
        // Playback of something unknown is a JSON 404.
        let response = c
            .get(format!(
                "{}/stream/{}/manifest/video.m3u8",
                server.base,
                "e".repeat(32)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        server.stop().await;
    }
}

/// `allowedOrigins` guards browser playback (playlists, segments, clips, WHEP) by `Origin` host;
/// `requireSignedURLs: true` is refused because signed playback tokens are not implemented.
#[tokio::test]
async fn allowed_origins_guard_browser_playback() {
    let tp = platform::testing::embedded().await;
    let server = serve(&tp, StreamConfig::default()).await;
    let c = &server.client;
    for bad in [
        json!({"recording": {"requireSignedURLs": true}}),
        json!({"recording": {"allowedOrigins": ["https://studio.example"]}}),
        json!({"recording": {"allowedOrigins": ["studio.example/path"]}}),
    ] {
        let response = c
            .post(server.api("/live_inputs"))
            .bearer_auth(&server.token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    let input = server
        .create_input(json!({"recording": {"mode": "automatic", "allowedOrigins": ["Studio.example", "*.cdn.example"], "requireSignedURLs": false}}))
        .await;
    assert_eq!(
        input["recording"]["allowedOrigins"],
        json!(["studio.example", "*.cdn.example"])
    );
    let uid = input["uid"].as_str().unwrap().to_string();
    let (keyframe, _) = counting_keyframes();
    let publisher = server
        .service
        .begin_broadcast(&uid, false, keyframe)
        .await
        .unwrap();
    let video = publisher.video_id.clone();
    let get = |url: String, origin: Option<&'static str>| {
        let mut request = c.get(url);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let urls = [
        format!("{}/stream/{uid}/manifest/video.m3u8", server.base),
        format!("{}/stream/{video}/manifest/stream.m3u8", server.base),
        format!("{}/stream/{video}/segments/0.m4s", server.base),
        format!(
            "{}/stream/{video}/clip.mp4?time=0s&duration=1s",
            server.base
        ),
        format!(
            "{}/stream/{video}/manifest/clip.m3u8?time=0s&duration=1s",
            server.base
        ),
    ];
    for url in &urls {
        let r = get(url.clone(), Some("https://evil.example"))
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{url}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], 10403);
        // Allowed hosts and non-browser clients get past the guard (nothing is recorded yet).
        for origin in [
            Some("https://studio.example"),
            Some("https://a.cdn.example:8443"),
            None,
        ] {
            let r = get(url.clone(), origin).await.unwrap();
            assert_ne!(r.status(), 403, "{url} {origin:?}");
        }
    }
    let whep = format!("{}/stream/{uid}/webRTC/play", server.base);
    let r = c
        .post(&whep)
        .header("origin", "https://evil.example")
        .header("content-type", "application/sdp")
        .body(FFMPEG_OFFER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    drop(publisher);
    server.stop().await;
}
