//! Test harness: a real Calls router on 127.0.0.1 and webrtc-rs peers as clients.
#![allow(dead_code)]

pub mod peer;

use std::net::SocketAddr;

use calls::{CallsConfig, CallsService};
use platform::testing::TestPlatform;
use serde_json::{json, Value};

pub struct Server {
    pub tp: TestPlatform,
    pub calls: CallsService,
    pub base: String,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(tp: TestPlatform) -> Server {
    start_with(tp, CallsConfig::for_tests()).await
}

pub async fn start_with(tp: TestPlatform, config: CallsConfig) -> Server {
    let calls = CallsService::start(tp.platform.clone(), config)
        .await
        .expect("calls starts");
    let app = platform::http::apply_layers(calls.router(), tp.config());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        tp,
        calls,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        task,
    }
}

impl Server {
    /// Creates an app through the management API; returns (app id, secret).
    pub async fn create_app(&self) -> (String, String) {
        let url = format!(
            "{}/client/v4/accounts/{}/calls/apps",
            self.base, self.tp.account_id
        );
        let res = self
            .http
            .post(url)
            .bearer_auth(&self.tp.token)
            .json(&json!({"name": "test app"}))
            .send()
            .await
            .expect("create app");
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        (
            body["result"]["uid"].as_str().expect("uid").to_owned(),
            body["result"]["secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
        )
    }

    /// A call to the sessions API: returns (status, body).
    pub async fn v1(
        &self,
        method: reqwest::Method,
        app: &(String, String),
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/apps/{}/{}", self.base, app.0, path);
        let mut req = self.http.request(method, url).bearer_auth(&app.1);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn new_session(&self, app: &(String, String)) -> String {
        let (status, body) = self
            .v1(reqwest::Method::POST, app, "sessions/new", None)
            .await;
        assert_eq!(status, 201, "{body}");
        body["sessionId"].as_str().expect("sessionId").to_owned()
    }

    /// Publishes every sending transceiver of `peer` as `names[i]` (in m-line order).
    pub async fn push(
        &self,
        app: &(String, String),
        session: &str,
        peer: &peer::Peer,
        names: &[&str],
    ) -> Value {
        let body = self.offer_tracks(app, session, peer, names).await;
        peer.set_answer(
            body["sessionDescription"]["sdp"]
                .as_str()
                .expect("answer sdp"),
        )
        .await;
        body
    }

    /// Offers `peer`'s local tracks (named in m-line order) through `tracks/new` and returns the
    /// response, leaving the answer to the caller.
    pub async fn offer_tracks(
        &self,
        app: &(String, String),
        session: &str,
        peer: &peer::Peer,
        names: &[&str],
    ) -> Value {
        let offer = peer.offer().await;
        let mids = peer::mids(&offer);
        let tracks: Vec<Value> = names
            .iter()
            .zip(&mids)
            .map(|(n, (_, mid))| json!({"location": "local", "trackName": n, "mid": mid}))
            .collect();
        let (status, body) = self
            .v1(reqwest::Method::POST, app, &format!("sessions/{session}/tracks/new"), Some(json!({"sessionDescription": {"type": "offer", "sdp": offer}, "tracks": tracks})))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["requiresImmediateRenegotiation"], false);
        body
    }

    /// Pulls `(session, name)` tracks into `session` and completes the renegotiation.
    pub async fn pull(
        &self,
        app: &(String, String),
        session: &str,
        peer: &peer::Peer,
        remote: &[(&str, &str)],
    ) -> Value {
        let tracks: Vec<Value> = remote
            .iter()
            .map(|(s, n)| json!({"location": "remote", "sessionId": s, "trackName": n}))
            .collect();
        let (status, body) = self
            .v1(
                reqwest::Method::POST,
                app,
                &format!("sessions/{session}/tracks/new"),
                Some(json!({"tracks": tracks})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["requiresImmediateRenegotiation"], true, "{body}");
        let answer = peer
            .answer(
                body["sessionDescription"]["sdp"]
                    .as_str()
                    .expect("offer sdp"),
            )
            .await;
        let (status, reneg) = self
            .v1(
                reqwest::Method::PUT,
                app,
                &format!("sessions/{session}/renegotiate"),
                Some(json!({"sessionDescription": {"type": "answer", "sdp": answer}})),
            )
            .await;
        assert_eq!(status, 200, "{reneg}");
        body
    }
}
