//! coturn's own test clients (`turnutils_uclient` against `turnutils_peer`, Debian `coturn`)
//! relaying through Mediaplane over UDP, TCP and TLS. Skipped when coturn is not installed,
//! unless MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1.

mod common;

use std::{process::Stdio, time::Duration};

use calls_turn::TurnConfig;
use common::{tool, Server};
use tokio::process::Command;

/// The figures `turnutils_uclient` prints at the end of a run.
#[derive(Debug, Default)]
struct Report {
    sent: u64,
    received: u64,
    lost: Option<u64>,
}

fn parse_report(output: &str) -> Report {
    let mut report = Report::default();
    for line in output.lines() {
        if let Some(rest) = line.split("start_mclient: tot_send_msgs=").nth(1) {
            let mut parts = rest.split(", tot_recv_msgs=");
            report.sent = parts
                .next()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            report.received = parts
                .next()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
        }
        if let Some(rest) = line.split("Total lost packets ").nth(1) {
            report.lost = rest.split_whitespace().next().and_then(|s| s.parse().ok());
        }
    }
    report
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs one uclient load through the server with `flags`; returns its parsed report.
async fn run_uclient(port: u16, auth: &[&str], flags: &[&str]) -> Option<Report> {
    let uclient = tool("turnutils_uclient")?;
    let peer_bin = tool("turnutils_peer")?;
    let peer_port = free_udp_port();
    let mut peer = Command::new(peer_bin)
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_peer starts");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let peer_port = peer_port.to_string();
    let port = port.to_string();
    let mut args: Vec<&str> = auth.to_vec();
    args.extend(flags);
    args.extend([
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port,
        "-m",
        "4",
        "-n",
        "100",
        "-l",
        "400",
        "-z",
        "5",
        "-p",
        &port,
        "127.0.0.1",
    ]);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(uclient)
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("uclient finishes")
    .expect("uclient runs");
    let _ = peer.kill().await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = parse_report(&text);
    assert!(report.sent > 0, "uclient sent nothing; output:\n{text}");
    Some(report)
}

async fn server() -> Server {
    let mut config = TurnConfig::for_tests();
    // uclient opens an RTP and an RTCP allocation per client.
    config.user_quota = 64;
    Server::start(platform::testing::embedded().await, config).await
}

fn assert_clean(report: &Report, what: &str) {
    assert_eq!(
        report.received, report.sent,
        "{what}: every echoed packet came back: {report:?}"
    );
    assert_eq!(report.lost, Some(0), "{what}: {report:?}");
}

#[tokio::test]
async fn uclient_over_udp_with_channels_and_send_indications() {
    let server = server().await;
    let (key_id, secret) = server.create_key("uclient").await;
    let (username, credential) = server.generate(&key_id, &secret, 3600).await;
    let port = server.turn.addrs().udp.unwrap().port();
    let auth = ["-u", username.as_str(), "-w", credential.as_str()];
    if let Some(report) = run_uclient(port, &auth, &[]).await {
        assert_clean(&report, "UDP channels");
        let report = run_uclient(port, &auth, &["-s"]).await.unwrap();
        assert_clean(&report, "UDP send indications");
        // Relayed bytes reached the meter under the key's account.
        server.turn.shutdown().await;
        server.tp.platform.meter.flush().await.unwrap();
        let metered: f64 = sqlx::query_scalar("SELECT COALESCE(SUM(quantity), 0.0) FROM usage_hourly WHERE account_id = $1 AND metric = 'turn.egress_bytes'")
            .bind(&server.tp.account_id)
            .fetch_one(server.tp.platform.db.pool())
            .await
            .unwrap();
        // 2 runs × 4 clients × 2 allocations… at least the payload of every echoed packet.
        assert!(
            metered >= (2 * report.received * 400) as f64,
            "metered {metered} bytes"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn uclient_with_rest_api_secret_over_tcp() {
    let server = server().await;
    let (key_id, secret) = server.create_key("rest").await;
    let port = server.turn.addrs().tcp.unwrap().port();
    // -W makes uclient mint `<expiry>:<user>` credentials itself from the shared secret.
    let auth = ["-u", key_id.as_str(), "-W", secret.as_str()];
    if let Some(report) = run_uclient(port, &auth, &["-t"]).await {
        assert_clean(&report, "TCP");
    }
    server.stop().await;
}

#[tokio::test]
async fn uclient_over_tls() {
    let server = server().await;
    let (key_id, secret) = server.create_key("tls").await;
    let (username, credential) = server.generate(&key_id, &secret, 3600).await;
    let port = server.turn.addrs().tls.unwrap().port();
    let auth = ["-u", username.as_str(), "-w", credential.as_str()];
    if let Some(report) = run_uclient(port, &auth, &["-t", "-S"]).await {
        assert_clean(&report, "TLS");
    }
    server.stop().await;
}

#[tokio::test]
async fn stunclient_gets_its_reflexive_address() {
    let server = server().await;
    let Some(stunclient) = tool("turnutils_stunclient") else {
        return server.stop().await;
    };
    let port = server.turn.addrs().udp.unwrap().port().to_string();
    let output = Command::new(stunclient)
        .args(["-p", &port, "127.0.0.1"])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(output.status.success(), "{text}");
    server.stop().await;
}
