//! Apps management and the sessions API's answers to bad input, on every backend.

mod common;

use calls::CallsConfig;
use reqwest::Method;
use serde_json::{json, Value};

fn error_code(body: &Value) -> &str {
    body["errorCode"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_crud_and_secret_shown_once() {
    for tp in platform::testing::all_backends().await {
        let server = common::start(tp).await;
        let base = format!(
            "{}/client/v4/accounts/{}/calls/apps",
            server.base, server.tp.account_id
        );
        let token = server.tp.token.clone();
        let (app_id, secret) = server.create_app().await;
        assert!(secret.len() >= 40);

        let list: Value = server
            .http
            .get(&base)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let apps = list["result"].as_array().unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0]["uid"], app_id.as_str());
        assert!(
            apps[0].get("secret").is_none(),
            "secret is shown only on create"
        );

        let res = server
            .http
            .put(format!("{base}/{app_id}"))
            .bearer_auth(&token)
            .json(&json!({"name": "renamed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let got: Value = server
            .http
            .get(format!("{base}/{app_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["result"]["name"], "renamed");
        assert!(got["result"].get("secret").is_none());

        // Bad input and auth.
        let res = server
            .http
            .post(&base)
            .bearer_auth(&token)
            .json(&json!({"name": ""}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let res = server
            .http
            .post(&base)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let res = server.http.get(&base).send().await.unwrap();
        assert_eq!(res.status(), 401);
        let other = format!(
            "{}/client/v4/accounts/{}/calls/apps",
            server.base,
            "0".repeat(32)
        );
        let res = server
            .http
            .get(&other)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        let res = server
            .http
            .get(format!("{base}/nope"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);

        // The secret works on /v1 until the app is deleted.
        let app = (app_id.clone(), secret.clone());
        let (status, _) = server.v1(Method::POST, &app, "sessions/new", None).await;
        assert_eq!(status, 201);
        let res = server
            .http
            .delete(format!("{base}/{app_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let (status, body) = server.v1(Method::POST, &app, "sessions/new", None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(error_code(&body), "invalid_app_secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_api_rejects_bad_input_clearly() {
    let tp = platform::testing::embedded().await;
    let mut config = CallsConfig::for_tests();
    config.max_sdp_bytes = 4096;
    config.max_tracks_per_session = 2;
    let server = common::start_with(tp, config).await;
    let app = server.create_app().await;

    // Wrong secret, unknown app.
    let wrong = (app.0.clone(), "not-the-secret".to_owned());
    let (status, body) = server.v1(Method::POST, &wrong, "sessions/new", None).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_app_secret"));
    assert_eq!(body["success"], false);
    let unknown = ("f".repeat(32), app.1.clone());
    let (status, _) = server
        .v1(Method::POST, &unknown, "sessions/new", None)
        .await;
    assert_eq!(status, 401);

    // Bad SDP in sessions/new: 400 and no session left behind.
    let (status, body) = server
        .v1(
            Method::POST,
            &app,
            "sessions/new",
            Some(json!({"sessionDescription": {"type": "offer", "sdp": "hello"}})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_sdp"), "{body}");
    let (status, body) = server
        .v1(
            Method::POST,
            &app,
            "sessions/new",
            Some(json!({"sessionDescription": {"type": "answer", "sdp": "v=0"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let big = "a".repeat(5000);
    let (status, body) = server
        .v1(
            Method::POST,
            &app,
            "sessions/new",
            Some(json!({"sessionDescription": {"type": "offer", "sdp": big}})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (413, "sdp_too_large"));

    // Unknown session.
    let (status, body) = server
        .v1(
            Method::GET,
            &app,
            &format!("sessions/{}", "0".repeat(32)),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (404, "session_not_found"));

    let session = server.new_session(&app).await;
    // A session of another app is invisible.
    let other_app = server.create_app().await;
    let (status, _) = server
        .v1(
            Method::GET,
            &other_app,
            &format!("sessions/{session}"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Unknown remote track: a per-track error, no renegotiation.
    let (status, body) = server
        .v1(Method::POST, &app, &format!("sessions/{session}/tracks/new"), Some(json!({"tracks": [{"location": "remote", "sessionId": session, "trackName": "ghost"}]})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requiresImmediateRenegotiation"], false);
    assert_eq!(body["tracks"][0]["errorCode"], "not_found");

    // Malformed track lists.
    let (status, body) = server
        .v1(
            Method::POST,
            &app,
            &format!("sessions/{session}/tracks/new"),
            Some(json!({"tracks": [{"location": "sideways", "trackName": "x"}]})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_request"));
    let (status, _) = server
        .v1(
            Method::POST,
            &app,
            &format!("sessions/{session}/tracks/new"),
            Some(json!({"tracks": [{"location": "local", "trackName": "x", "mid": "0"}]})),
        )
        .await;
    assert_eq!(status, 400, "pushing needs an offer");
    let (status, body) = server
        .v1(Method::POST, &app, &format!("sessions/{session}/tracks/new"), Some(json!({"sessionDescription": {"type": "offer", "sdp": "junk"}, "tracks": [{"location": "local", "trackName": "x", "mid": "0"}]})))
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_sdp"));

    // Too many tracks at once.
    let three: Vec<Value> = (0..3)
        .map(|i| json!({"location": "remote", "sessionId": session, "trackName": format!("t{i}")}))
        .collect();
    let (status, body) = server
        .v1(
            Method::POST,
            &app,
            &format!("sessions/{session}/tracks/new"),
            Some(json!({"tracks": three})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (413, "limit_exceeded"),
        "{body}"
    );

    // Renegotiate with nothing pending, close an unknown mid.
    let (status, body) = server
        .v1(
            Method::PUT,
            &app,
            &format!("sessions/{session}/renegotiate"),
            Some(json!({"sessionDescription": {"type": "answer", "sdp": "v=0\r\n"}})),
        )
        .await;
    assert!(status == 400 || status == 409, "{status} {body}");
    let (status, body) = server
        .v1(
            Method::PUT,
            &app,
            &format!("sessions/{session}/tracks/close"),
            Some(json!({"tracks": [{"mid": "9"}], "force": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["tracks"][0]["errorCode"], "close_track_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_api_rate_limits_per_session() {
    let tp = platform::testing::embedded().await;
    let mut config = CallsConfig::for_tests();
    config.api_calls_per_second = 3;
    let server = common::start_with(tp, config).await;
    let app = server.create_app().await;
    let session = server.new_session(&app).await;
    // 3 calls per second per session; 30 local calls cannot all land in separate seconds.
    let mut limited = false;
    for _ in 0..30 {
        let (status, body) = server
            .v1(Method::GET, &app, &format!("sessions/{session}"), None)
            .await;
        if status == 429 {
            assert_eq!(error_code(&body), "rate_limited");
            limited = true;
            break;
        }
        assert_eq!(status, 200);
    }
    assert!(limited, "the per-session rate limit applies");
    // Another session has its own budget.
    let other = server.new_session(&app).await;
    let (status, _) = server
        .v1(Method::GET, &app, &format!("sessions/{other}"), None)
        .await;
    assert_eq!(status, 200);
}
