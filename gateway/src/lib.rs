//! Composition of the Mediaplane products into one application.
//!
//! The binary (`main.rs`) parses configuration and calls [`App::start`]; tests call it too, so
//! the router they exercise is the one the binary serves.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use platform::{http::PlatformState, metering::PriceTable, Platform, PlatformConfig};

/// Every setting of the binary. Each product owns its section; `mediaplane --help` prints all.
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    #[command(flatten)]
    pub platform: PlatformConfig,
    #[command(flatten)]
    pub calls: calls::CallsConfig,
    #[command(flatten)]
    pub turn: calls_turn::TurnConfig,
    #[command(flatten)]
    pub stream: stream::StreamConfig,
    #[command(flatten)]
    pub images: images::ImagesConfig,
}

/// The running application: the shared platform and the three products.
pub struct App {
    pub platform: Platform,
    pub calls: calls::CallsService,
    pub turn: calls_turn::TurnService,
    pub stream: stream::StreamService,
    pub images: images::ImagesService,
    pub router: Router,
}

impl App {
    /// Connects the platform, starts every product and composes their routers under the
    /// gateway's shared layers.
    pub async fn start(
        settings: Settings,
        render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> anyhow::Result<App> {
        let prices = match &settings.platform.prices_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                PriceTable::from_toml(&text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => PriceTable::default(),
        };
        let platform = Platform::connect(settings.platform.clone())
            .await
            .context("starting the platform")?;
        Self::with_platform(platform, settings, prices, render_metrics).await
    }

    /// Like [`App::start`] on an already connected platform (tests use throwaway ones).
    pub async fn with_platform(
        platform: Platform,
        settings: Settings,
        prices: PriceTable,
        render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> anyhow::Result<App> {
        let calls = calls::CallsService::start(platform.clone(), settings.calls)
            .await
            .context("starting calls")?;
        let turn = calls_turn::TurnService::start(platform.clone(), settings.turn)
            .await
            .context("starting turn")?;
        let stream = stream::StreamService::start(platform.clone(), settings.stream, &calls)
            .await
            .context("starting stream")?;
        let images = images::ImagesService::start(platform.clone(), settings.images)
            .await
            .context("starting images")?;
        let state = PlatformState {
            platform: platform.clone(),
            prices: Arc::new(prices),
            render_metrics,
        };
        let composed = Router::new()
            .merge(platform::http::routes(state))
            .merge(calls.router())
            .merge(turn.router())
            .merge(stream.router())
            .merge(images.router());
        let router = platform::http::apply_layers(composed, &platform.config);
        Ok(App {
            platform,
            calls,
            turn,
            stream,
            images,
            router,
        })
    }

    /// Stops products (closing media sockets), then flushes metered usage.
    pub async fn shutdown(&self) {
        self.stream.shutdown().await;
        self.calls.shutdown().await;
        self.turn.shutdown().await;
        self.images.shutdown().await;
        self.platform.shutdown().await;
    }
}

/// Settings with every default (as if no flag or variable were given), for tests and tools.
pub fn default_settings() -> Settings {
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        settings: Settings,
    }
    <Wrapper as clap::Parser>::parse_from(["mediaplane"]).settings
}

/// Defaults with every listener on loopback and an OS-chosen port, so tests run in parallel.
pub fn test_settings() -> Settings {
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        settings: Settings,
    }
    let mut args = vec!["mediaplane"];
    args.extend(
        LOOPBACK_ARGS
            .iter()
            .flat_map(|(flag, value)| [*flag, *value]),
    );
    <Wrapper as clap::Parser>::parse_from(args).settings
}

/// Flags that put every media listener on loopback with an OS-chosen port.
pub const LOOPBACK_ARGS: [(&str, &str); 4] = [
    ("--calls-udp-bind", "127.0.0.1:0"),
    ("--turn-udp-addr", "127.0.0.1:0"),
    ("--turn-tcp-addr", "127.0.0.1:0"),
    ("--turn-tls-addr", "127.0.0.1:0"),
];
