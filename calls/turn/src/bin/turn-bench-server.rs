//! The Mediaplane TURN engine without the platform, for `scripts/bench-turn.sh`: one fixed key
//! (`--key-id`/`--secret`), so coturn's `turnutils_uclient -u <key-id> -W <secret>` can mint
//! credentials the same way it does for coturn's `--use-auth-secret`.

use calls_turn::{credentials::KeyRing, Engine, TurnConfig};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    turn: TurnConfig,
    /// Key id accepted in usernames (`<expiry>:<key-id>`).
    #[arg(long, default_value = "bench")]
    key_id: String,
    /// Shared secret for the ephemeral credentials.
    #[arg(long)]
    secret: String,
    /// Worker threads (the bench pins both servers to the same count).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut keys = KeyRing::new();
        keys.insert_key(&args.key_id, "bench", &args.secret);
        let host = args
            .turn
            .public_host
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into());
        let mut engine = Engine::start(&args.turn, keys, &host).await?;
        println!(
            "udp={:?} tcp={:?} tls={:?}",
            engine.addrs.udp, engine.addrs.tcp, engine.addrs.tls
        );
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut total: u64 = 0;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tick.tick() => total += engine.tick().iter().map(|(_, b)| b).sum::<u64>(),
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        total += engine.stop().await.iter().map(|(_, b)| b).sum::<u64>();
        println!("relayed_to_clients_bytes={total}");
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
