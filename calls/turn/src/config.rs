//! `MEDIAPLANE_TURN_*` settings (printed by `mediaplane --help` under "TURN").

use std::{net::IpAddr, path::PathBuf};

#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "TURN")]
pub struct TurnConfig {
    /// Run the TURN/STUN listeners (the keys API is served either way).
    #[arg(id = "turn_enabled", long = "turn-enabled", env = "MEDIAPLANE_TURN_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// STUN/TURN over UDP listen address; empty disables it.
    #[arg(
        id = "turn_udp_addr",
        long = "turn-udp-addr",
        env = "MEDIAPLANE_TURN_UDP_ADDR",
        default_value = "0.0.0.0:3478"
    )]
    pub udp_addr: String,

    /// TURN over TCP listen address; empty disables it.
    #[arg(
        id = "turn_tcp_addr",
        long = "turn-tcp-addr",
        env = "MEDIAPLANE_TURN_TCP_ADDR",
        default_value = "0.0.0.0:3478"
    )]
    pub tcp_addr: String,

    /// TURN over TLS listen address; empty disables it.
    #[arg(
        id = "turn_tls_addr",
        long = "turn-tls-addr",
        env = "MEDIAPLANE_TURN_TLS_ADDR",
        default_value = "0.0.0.0:5349"
    )]
    pub tls_addr: String,

    /// PEM certificate chain for TURN over TLS (default: a self-signed certificate made at start).
    #[arg(
        id = "turn_tls_cert",
        long = "turn-tls-cert",
        env = "MEDIAPLANE_TURN_TLS_CERT",
        requires = "turn_tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for `--turn-tls-cert`.
    #[arg(
        id = "turn_tls_key",
        long = "turn-tls-key",
        env = "MEDIAPLANE_TURN_TLS_KEY",
        requires = "turn_tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Local IP relay sockets bind to.
    #[arg(
        id = "turn_relay_ip",
        long = "turn-relay-ip",
        env = "MEDIAPLANE_TURN_RELAY_IP",
        default_value = "0.0.0.0"
    )]
    pub relay_ip: IpAddr,

    /// IP announced to clients as the relayed address (the public IP behind NAT). Default: the
    /// relay IP, or the host's primary IP when the relay IP is a wildcard.
    #[arg(
        id = "turn_external_ip",
        long = "turn-external-ip",
        env = "MEDIAPLANE_TURN_EXTERNAL_IP"
    )]
    pub external_ip: Option<IpAddr>,

    /// Lowest relay port.
    #[arg(
        id = "turn_relay_port_min",
        long = "turn-relay-port-min",
        env = "MEDIAPLANE_TURN_RELAY_PORT_MIN",
        default_value_t = 49152
    )]
    pub relay_port_min: u16,

    /// Highest relay port.
    #[arg(
        id = "turn_relay_port_max",
        long = "turn-relay-port-max",
        env = "MEDIAPLANE_TURN_RELAY_PORT_MAX",
        default_value_t = 65535
    )]
    pub relay_port_max: u16,

    /// Realm of the long-term credentials.
    #[arg(
        id = "turn_realm",
        long = "turn-realm",
        env = "MEDIAPLANE_TURN_REALM",
        default_value = "mediaplane"
    )]
    pub realm: String,

    /// Host name put in the `stun:`/`turn:`/`turns:` URLs the credentials API returns
    /// (default: the host of the public URL).
    #[arg(
        id = "turn_public_host",
        long = "turn-public-host",
        env = "MEDIAPLANE_TURN_PUBLIC_HOST"
    )]
    pub public_host: Option<String>,

    /// Let relays reach loopback peers (127.0.0.0/8, ::1). Only for tests and single-host setups.
    #[arg(id = "turn_allow_loopback_peers", long = "turn-allow-loopback-peers", env = "MEDIAPLANE_TURN_ALLOW_LOOPBACK_PEERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_loopback_peers: bool,

    /// Let relays reach private and link-local peers (10/8, 172.16/12, 192.168/16, 169.254/16,
    /// 100.64/10, fc00::/7, fe80::/10).
    #[arg(id = "turn_allow_private_peers", long = "turn-allow-private-peers", env = "MEDIAPLANE_TURN_ALLOW_PRIVATE_PEERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_peers: bool,

    /// Allocations one username may hold at once.
    #[arg(
        id = "turn_user_quota",
        long = "turn-user-quota",
        env = "MEDIAPLANE_TURN_USER_QUOTA",
        default_value_t = 10
    )]
    pub user_quota: usize,

    /// Allocations the server holds at most.
    #[arg(
        id = "turn_total_quota",
        long = "turn-total-quota",
        env = "MEDIAPLANE_TURN_TOTAL_QUOTA",
        default_value_t = 10_000
    )]
    pub total_quota: usize,

    /// Longest allocation lifetime a client may request, in seconds.
    #[arg(
        id = "turn_max_lifetime_secs",
        long = "turn-max-lifetime-secs",
        env = "MEDIAPLANE_TURN_MAX_LIFETIME_SECS",
        default_value_t = 3600
    )]
    pub max_lifetime_secs: u64,

    /// How long a nonce stays valid, in seconds (then clients get 438 and retry).
    #[arg(
        id = "turn_nonce_lifetime_secs",
        long = "turn-nonce-lifetime-secs",
        env = "MEDIAPLANE_TURN_NONCE_LIFETIME_SECS",
        default_value_t = 600
    )]
    pub nonce_lifetime_secs: u64,

    /// How often keys and revocations are reloaded from the database (other instances' changes), ms.
    #[arg(
        id = "turn_key_reload_ms",
        long = "turn-key-reload-ms",
        env = "MEDIAPLANE_TURN_KEY_RELOAD_MS",
        default_value_t = 5000
    )]
    pub key_reload_ms: u64,
}

impl TurnConfig {
    /// Defaults for tests and tools: every listener on an ephemeral loopback port, loopback peers
    /// allowed.
    pub fn for_tests() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: TurnConfig,
        }
        let mut config = <Wrapper as clap::Parser>::parse_from(["turn"]).config;
        config.udp_addr = "127.0.0.1:0".into();
        config.tcp_addr = "127.0.0.1:0".into();
        config.tls_addr = "127.0.0.1:0".into();
        config.relay_ip = "127.0.0.1".parse().expect("literal IP");
        config.allow_loopback_peers = true;
        config.public_host = Some("127.0.0.1".into());
        config
    }
}
