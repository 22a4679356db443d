//! `mediaplane`: one binary for Calls, Stream and Images.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::{App, Settings};
use platform::{auth, Db};

#[derive(Parser, Debug)]
#[command(
    name = "mediaplane",
    version,
    about = "Self-hostable media platform: WebRTC SFU + TURN, live streaming, images"
)]
struct Cli {
    /// TOML file with settings; `[section] key = v` maps to MEDIAPLANE_SECTION_KEY (flags and environment win).
    #[arg(long, env = "MEDIAPLANE_CONFIG", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print every setting as a Markdown table (README's configuration section is made with it).
    #[command(hide = true)]
    ConfigTable,
}

#[derive(Subcommand, Debug)]
enum AccountAction {
    /// Create an account and an admin token for it; prints both.
    Create { name: String },
}

#[derive(Subcommand, Debug)]
enum TokenAction {
    /// Create a token; prints its secret once.
    Create {
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Comma separated: calls:read, calls:write, stream:read, stream:write, images:read, images:write, billing:read, admin.
        #[arg(long)]
        scopes: String,
    },
    /// List an account's tokens.
    List {
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke a token by id.
    Revoke {
        #[arg(long)]
        account: Option<String>,
        token_id: String,
    },
}

fn config_path_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    for (i, arg) in args.iter().enumerate() {
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if arg == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::var_os("MEDIAPLANE_CONFIG").map(PathBuf::from)
}

fn main() -> anyhow::Result<()> {
    // The config file only fills unset environment variables, before clap reads them and before
    // any thread exists.
    let applied = match config_path_from_args() {
        Some(path) => platform::config::apply_config_file(&path).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,aws=warn,hyper=warn".into()),
        )
        .init();
    if let Some(path) = &cli.config {
        tracing::info!(file = %path.display(), settings = applied.len(), "loaded config file");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.settings).await,
        Command::Migrate => {
            let db = connect_db(&cli.settings).await?;
            db.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Account {
            action: AccountAction::Create { name },
        } => {
            let db = connect_db(&cli.settings).await?;
            let account = auth::create_account(&db, &name).await?;
            let (_, token) =
                auth::create_token(&db, &account, "admin", &auth::Scope::ALL, None).await?;
            println!("account: {account}\ntoken:   {token}");
            Ok(())
        }
        Command::Token { action } => token_command(&cli.settings, action).await,
        Command::ConfigTable => {
            print!("{}", config_table());
            Ok(())
        }
    }
}

/// One Markdown row per setting: variable, flag, default, description, grouped by product.
fn config_table() -> String {
    use clap::CommandFactory;
    let command = Cli::command();
    let mut out = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    let mut heading = None;
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if arg.get_help_heading() != heading {
            heading = arg.get_help_heading();
            out.push_str(&format!("| **{}** | | | |\n", heading.unwrap_or("General")));
        }
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let help = arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('|', "\\|")
            .replace('\n', " ");
        let default = if default.is_empty() {
            "—".to_string()
        } else {
            format!("`{default}`")
        };
        out.push_str(&format!(
            "| `{}` | `--{long}` | {default} | {help} |\n",
            env.to_string_lossy()
        ));
    }
    out
}

async fn connect_db(settings: &Settings) -> anyhow::Result<Db> {
    let config = &settings.platform;
    let db = Db::connect(&config.database_url(), 2)
        .await
        .context("connecting to the database")?;
    db.migrate().await?;
    Ok(db)
}

async fn account_or_default(db: &Db, account: Option<String>) -> anyhow::Result<String> {
    match account {
        Some(account) => Ok(account),
        None => auth::default_account(db)
            .await?
            .context("no --account given and no default account exists yet"),
    }
}

async fn token_command(settings: &Settings, action: TokenAction) -> anyhow::Result<()> {
    let db = connect_db(settings).await?;
    match action {
        TokenAction::Create {
            account,
            name,
            scopes,
        } => {
            let account = account_or_default(&db, account).await?;
            let scopes = auth::parse_scopes(&scopes).map_err(anyhow::Error::msg)?;
            let (id, secret) = auth::create_token(&db, &account, &name, &scopes, None).await?;
            println!("id:    {id}\ntoken: {secret}");
        }
        TokenAction::List { account } => {
            let account = account_or_default(&db, account).await?;
            for token in auth::list_tokens(&db, &account).await? {
                let state = if token.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}",
                    token.id,
                    state,
                    token.name,
                    token.scopes.join(",")
                );
            }
        }
        TokenAction::Revoke { account, token_id } => {
            let account = account_or_default(&db, account).await?;
            anyhow::ensure!(
                auth::revoke_token(&db, &account, &token_id).await?,
                "no active token {token_id} in account {account}"
            );
            println!("revoked {token_id}");
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let render = Arc::new(move || recorder.render());
    let addr = settings.platform.http_addr;
    let bootstrap_token = settings.platform.bootstrap_token.clone();
    // Bound first: a taken port fails start-up before the database is bootstrapped or any product
    // listener (TURN, Calls) takes an ephemeral port.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let app = App::start(settings, render).await?;
    if let Some(boot) = auth::bootstrap(&app.platform.db, bootstrap_token.as_deref()).await? {
        // Printed once, on stdout, so scripts can capture it; it is never logged.
        println!("Created default account {}", boot.account_id);
        if bootstrap_token.is_some() {
            println!("API token: the one given in MEDIAPLANE_BOOTSTRAP_TOKEN");
        } else {
            println!("API token (shown once): {}", boot.token);
        }
    }
    tracing::info!(%addr, storage = app.platform.storage.backend(), database = ?app.platform.db.kind(), "mediaplane listening");
    println!("Mediaplane listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.router.clone())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    app.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
