//! The shared platform under every Mediaplane product.
//!
//! It owns what all products need and nothing product-specific: typed configuration, the metadata
//! database (SQLite or PostgreSQL through sqlx), object storage (local disk or S3), accounts and
//! scoped API tokens, the usage meter, and the one JSON error shape. Products receive a cloned
//! [`Platform`] handle and never read environment variables or open connections on their own.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod ids;
pub mod metering;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time_util;

use std::sync::Arc;

pub use config::PlatformConfig;
pub use db::Db;
pub use error::ApiError;
pub use metering::{Meter, Metric};
pub use storage::{ObjectKey, Storage};

/// Cheap-to-clone handle to everything shared. Products keep one in their router state and
/// implement `FromRef` so the auth extractor can find it.
#[derive(Clone)]
pub struct Platform {
    pub config: Arc<PlatformConfig>,
    pub db: Db,
    pub storage: Storage,
    pub meter: Meter,
}

impl Platform {
    /// Connects the database (running migrations), opens object storage and starts the meter's
    /// background flusher. Call [`Platform::shutdown`] to flush usage before exiting.
    pub async fn connect(config: PlatformConfig) -> Result<Self, PlatformError> {
        let db = Db::connect(&config.database_url(), config.db_max_connections).await?;
        db.migrate().await?;
        let storage = storage::open(&config).await?;
        let meter = Meter::start(db.clone(), config.meter_flush_interval());
        Ok(Self {
            config: Arc::new(config),
            db,
            storage,
            meter,
        })
    }

    /// Base URL that responses use when they hand out absolute URLs (WHIP endpoints, upload URLs).
    pub fn public_url(&self) -> String {
        self.config.public_url()
    }

    /// Flushes buffered usage; the database and storage close when the last handle drops.
    pub async fn shutdown(&self) {
        self.meter.shutdown().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("database: {0}")]
    Db(#[from] db::DbError),
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("config: {0}")]
    Config(String),
}
