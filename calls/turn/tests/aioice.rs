//! PyPI `aioice` as an independent TURN client (tests/aioice_client.py): it allocates on
//! Mediaplane with credentials minted by the API, binds a channel to a UDP echo peer on loopback
//! and relays numbered datagrams there and back, over UDP, TCP and TLS. A forged credential is
//! refused. Skipped when aioice is missing, unless MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1.

mod common;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use calls_turn::TurnConfig;
use common::{python_with, Server};
use serde_json::Value;
use tokio::{net::UdpSocket, process::Command};

const COUNT: usize = 50;

/// A UDP echo peer: sends every datagram back to where it came from and records the sources.
async fn echo_peer() -> (
    SocketAddr,
    Arc<Mutex<BTreeSet<SocketAddr>>>,
    tokio::task::JoinHandle<()>,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let sources = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = sources.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            seen.lock().unwrap().insert(from);
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (addr, sources, task)
}

async fn run_client(
    python: &PathBuf,
    server: SocketAddr,
    transport: &str,
    username: &str,
    password: &str,
    peer: SocketAddr,
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aioice_client.py");
    let output = Command::new(python)
        .arg(script)
        .args([
            &server.ip().to_string(),
            &server.port().to_string(),
            transport,
            username,
            password,
            &peer.ip().to_string(),
            &peer.port().to_string(),
            &COUNT.to_string(),
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "aioice client failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("aioice client output is not JSON ({e}):\n{stdout}\n{stderr}"))
}

async fn relays_over(transport: &str) {
    let Some(python) = python_with("aioice") else {
        return;
    };
    let server = Server::start(platform::testing::embedded().await, TurnConfig::for_tests()).await;
    let (key_id, secret) = server.create_key("aioice").await;
    let (username, credential) = server.generate(&key_id, &secret, 3600).await;
    let addrs = server.turn.addrs();
    let listener = match transport {
        "udp" => addrs.udp,
        "tcp" => addrs.tcp,
        _ => addrs.tls,
    }
    .unwrap();
    let (peer, sources, echo) = echo_peer().await;
    let report = run_client(&python, listener, transport, &username, &credential, peer).await;
    assert_eq!(report["allocated"], true, "{transport}: {report}");
    assert_eq!(report["sent"], COUNT, "{transport}: {report}");
    assert_eq!(
        report["echoed_intact"], COUNT,
        "{transport}: every datagram came back byte for byte: {report}"
    );
    assert_eq!(report["unexpected"], 0, "{transport}: {report}");
    // The peer only ever heard from the relayed address, and the client only from the peer.
    let relayed: SocketAddr = report["relayed"].as_str().unwrap().parse().unwrap();
    assert_eq!(relayed.ip(), listener.ip(), "advertised relay IP");
    assert_eq!(
        *sources.lock().unwrap(),
        BTreeSet::from([relayed]),
        "{transport}: peer saw only the relay"
    );
    assert_eq!(report["sources"], serde_json::json!([peer.to_string()]));
    let stats = server.turn.stats();
    assert!(stats.relayed_to_peer >= COUNT as u64, "{stats:?}");
    assert!(stats.relayed_to_client >= COUNT as u64, "{stats:?}");
    echo.abort();
    server.stop().await;
}

#[tokio::test]
async fn aioice_relays_over_udp() {
    relays_over("udp").await;
}

#[tokio::test]
async fn aioice_relays_over_tcp() {
    relays_over("tcp").await;
}

#[tokio::test]
async fn aioice_relays_over_tls() {
    relays_over("tls").await;
}

#[tokio::test]
async fn aioice_with_a_forged_credential_is_refused() {
    let Some(python) = python_with("aioice") else {
        return;
    };
    let server = Server::start(platform::testing::embedded().await, TurnConfig::for_tests()).await;
    let (key_id, secret) = server.create_key("aioice").await;
    let (username, credential) = server.generate(&key_id, &secret, 3600).await;
    // Same username, credential signed with another secret.
    let forged = calls_turn::credentials::credential_for("not-the-secret", &username);
    assert_ne!(forged, credential);
    let (peer, sources, echo) = echo_peer().await;
    let listener = server.turn.addrs().udp.unwrap();
    let report = run_client(&python, listener, "udp", &username, &forged, peer).await;
    assert_eq!(report["allocated"], false, "{report}");
    assert_eq!(report["error_code"], 401, "{report}");
    assert_eq!(server.turn.stats().allocations, 0);
    assert!(sources.lock().unwrap().is_empty());
    echo.abort();
    server.stop().await;
}
