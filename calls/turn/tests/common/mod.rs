//! Shared test harness: a throwaway platform, the TURN service on ephemeral loopback ports, its
//! router served over HTTP, and a minimal STUN client built from the crate's own codec.
#![allow(dead_code)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use calls_turn::{
    credentials::long_term_key,
    stun::{attr, decode_xor_address, method, Class, Message, MessageBuilder},
    TurnConfig, TurnService,
};
use platform::testing::TestPlatform;
use serde_json::Value;
use tokio::net::UdpSocket;

pub struct Server {
    pub tp: TestPlatform,
    pub turn: TurnService,
    pub base: String,
    pub http: reqwest::Client,
    http_task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(tp: TestPlatform, config: TurnConfig) -> Server {
        Self::start_with(tp, config, axum::Router::new()).await
    }

    /// TURN plus another product's routes on the same HTTP server (e.g. the Calls API).
    pub async fn start_with(tp: TestPlatform, config: TurnConfig, other: axum::Router) -> Server {
        let turn = TurnService::start(tp.platform.clone(), config)
            .await
            .expect("TURN starts");
        let app = platform::http::apply_layers(turn.router().merge(other), tp.config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            tp,
            turn,
            base,
            http: reqwest::Client::new(),
            http_task,
        }
    }

    pub async fn stop(self) {
        self.turn.shutdown().await;
        self.http_task.abort();
        self.tp.platform.shutdown().await;
    }

    pub fn accounts_url(&self, rest: &str) -> String {
        format!(
            "{}/client/v4/accounts/{}/calls/{rest}",
            self.base, self.tp.account_id
        )
    }

    /// Creates a TURN key; returns (key id, secret).
    pub async fn create_key(&self, name: &str) -> (String, String) {
        let response = self
            .http
            .post(self.accounts_url("turn_keys"))
            .bearer_auth(&self.tp.token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (
            body["result"]["uid"].as_str().unwrap().to_string(),
            body["result"]["key"].as_str().unwrap().to_string(),
        )
    }

    /// Mints credentials through the credentials API; returns (username, credential).
    pub async fn generate(&self, key_id: &str, secret: &str, ttl: u64) -> (String, String) {
        let response = self
            .http
            .post(format!(
                "{}/v1/turn/keys/{key_id}/credentials/generate",
                self.base
            ))
            .bearer_auth(secret)
            .json(&serde_json::json!({ "ttl": ttl }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        let servers = &body["iceServers"];
        (
            servers["username"].as_str().unwrap().to_string(),
            servers["credential"].as_str().unwrap().to_string(),
        )
    }
}

/// An external tool on PATH (or in the test venv), `None` when missing and allowed to skip.
pub fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var("MEDIAPLANE_TEST_VENV")
        .ok()
        .map(|v| PathBuf::from(v).join("bin"));
    let paths = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = venv
        .into_iter()
        .chain(paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("MEDIAPLANE_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
        assert!(!required, "MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1 but {name} is not installed (Debian package coturn)");
        eprintln!("skipped: {name} not installed");
    }
    found
}

/// What the server answered to an Allocate.
#[derive(Debug)]
pub enum AllocateOutcome {
    Relayed(SocketAddr),
    Error(u16),
}

fn error_code(message: &Message<'_>) -> Option<u16> {
    let v = message.get(attr::ERROR_CODE)?;
    Some(u16::from(v[2]) * 100 + u16::from(v[3]))
}

pub async fn exchange(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
    socket.send(request).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("STUN response")
        .unwrap();
    buf.truncate(n);
    buf
}

/// A long-term-credential Allocate over UDP (challenge, then signed request).
pub async fn allocate(
    server: SocketAddr,
    username: &str,
    password: &str,
    realm: &str,
) -> (UdpSocket, AllocateOutcome) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    let first = MessageBuilder::new(Class::Request, method::ALLOCATE, rand::random())
        .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
        .fingerprint();
    let challenge = exchange(&socket, &first).await;
    let challenge = Message::parse(&challenge).unwrap();
    assert_eq!(error_code(&challenge), Some(401));
    let nonce = challenge.get(attr::NONCE).unwrap().to_vec();
    let tid: [u8; 12] = rand::random();
    let key = long_term_key(username, realm, password);
    let request = MessageBuilder::new(Class::Request, method::ALLOCATE, tid)
        .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
        .bytes(attr::USERNAME, username.as_bytes())
        .bytes(attr::REALM, realm.as_bytes())
        .bytes(attr::NONCE, &nonce)
        .integrity(&key)
        .fingerprint();
    let reply = exchange(&socket, &request).await;
    let reply = Message::parse(&reply).unwrap();
    let outcome = match error_code(&reply) {
        Some(code) => AllocateOutcome::Error(code),
        None => {
            assert!(reply.verify_integrity(&key), "success responses are signed");
            AllocateOutcome::Relayed(
                decode_xor_address(reply.get(attr::XOR_RELAYED_ADDRESS).unwrap(), &tid).unwrap(),
            )
        }
    };
    (socket, outcome)
}

/// A Python interpreter (the test venv's, else `python3`) that can import `module`; `None` when
/// missing and allowed to skip. Install with `scripts/test.sh` (scripts/deps/pip.txt).
pub fn python_with(module: &str) -> Option<PathBuf> {
    let python = std::env::var("MEDIAPLANE_TEST_VENV")
        .ok()
        .map(|v| PathBuf::from(v).join("bin/python"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let importable = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if importable {
        return Some(python);
    }
    let required = std::env::var("MEDIAPLANE_TEST_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1 but Python module {module} is not importable from {} (PyPI {module}, scripts/deps/pip.txt; set MEDIAPLANE_TEST_VENV)",
        python.display()
    );
    eprintln!("skipped: Python module {module} not installed (set MEDIAPLANE_TEST_VENV)");
    None
}
