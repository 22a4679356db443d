//! Starts the real `mediaplane` binary for end-to-end tests.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The bootstrap token if this start created the default account.
    pub token: Option<String>,
    pub account_id: Option<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Environment that keeps every listener of the binary on loopback and on free ports.
pub fn loopback_env(data_dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "MEDIAPLANE_HTTP_ADDR".into(),
            format!("127.0.0.1:{}", free_port()),
        ),
        ("MEDIAPLANE_DATA_DIR".into(), data_dir.display().to_string()),
        ("MEDIAPLANE_CALLS_UDP_BIND".into(), "127.0.0.1:0".into()),
        ("MEDIAPLANE_TURN_UDP_ADDR".into(), "127.0.0.1:0".into()),
        ("MEDIAPLANE_TURN_TCP_ADDR".into(), "127.0.0.1:0".into()),
        ("MEDIAPLANE_TURN_TLS_ADDR".into(), "127.0.0.1:0".into()),
        ("RUST_LOG".into(), "warn".into()),
    ]
}

impl Server {
    /// Starts the binary with `env` and waits until it listens. `free_port` only finds a port that
    /// was free a moment ago: another binary started by a parallel test can take it (as an
    /// ephemeral port of one of its own listeners) before this one binds it. When the binary exits
    /// before listening and its HTTP port came from `loopback_env`, it is started again on a fresh
    /// port (at most twice).
    pub fn start(env: &[(String, String)]) -> Server {
        let mut env = env.to_vec();
        for _ in 0..2 {
            match Self::try_start(&env) {
                Ok(server) => return server,
                Err(exit) => {
                    let Some(addr) = env.iter_mut().find(|(k, _)| k == "MEDIAPLANE_HTTP_ADDR")
                    else {
                        panic!("mediaplane exited before listening: {exit}");
                    };
                    eprintln!(
                        "mediaplane exited before listening ({exit}); retrying on a fresh port"
                    );
                    addr.1 = format!("127.0.0.1:{}", free_port());
                }
            }
        }
        Self::try_start(&env)
            .unwrap_or_else(|exit| panic!("mediaplane exited before listening: {exit}"))
    }

    /// Starts the binary; `Err` with its exit status when it ends before reporting that it listens.
    fn try_start(env: &[(String, String)]) -> Result<Server, std::process::ExitStatus> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mediaplane"));
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("MEDIAPLANE_") || key == "DATABASE_URL" {
                command.env_remove(key);
            }
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start mediaplane");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut token, mut account_id, mut base) = (None, None, None);
        while base.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => line,
                // stdout closed: the process ended.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(child.wait().expect("wait for mediaplane"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("mediaplane did not report listening within 120 s");
                }
            };
            if let Some(rest) = line.strip_prefix("API token (shown once): ") {
                token = Some(rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("Created default account ") {
                account_id = Some(rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("Mediaplane listening on ") {
                base = Some(rest.trim().to_string());
            }
        }
        Ok(Server {
            child,
            base: base.unwrap(),
            token,
            account_id,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
