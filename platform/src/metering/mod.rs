//! Usage metering for billing.
//!
//! Products call [`Meter::record`] on their hot paths: it only adds to an in-memory map keyed by
//! (account, metric, hour). A background task writes the map to `usage_hourly` every flush
//! interval (default 1 s) with an additive upsert, and [`Meter::shutdown`] writes what is left, so
//! at most one interval of usage is lost if the process is killed. Several processes may share one
//! database: the upsert adds, it never overwrites.

mod prices;

use std::{collections::HashMap, sync::Arc, time::Duration};

pub use prices::{Invoice, InvoiceLine, PriceRule, PriceTable};
use sqlx::Row;
use std::sync::Mutex;
use tokio::sync::Notify;

use crate::{db::DbError, time_util::now_ms, Db};

/// Every billable quantity Mediaplane measures. The string names are stored in the database and
/// appear in the usage API; never rename one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Metric {
    /// Bytes the SFU sent to clients.
    #[serde(rename = "calls.egress_bytes")]
    CallsEgressBytes,
    /// Bytes the TURN relay sent to clients (after authentication).
    #[serde(rename = "turn.egress_bytes")]
    TurnEgressBytes,
    /// Minutes of video added to storage by recordings.
    #[serde(rename = "stream.minutes_stored")]
    StreamMinutesStored,
    /// Minutes of video delivered (HLS segments served × duration, WebRTC playback time).
    #[serde(rename = "stream.minutes_delivered")]
    StreamMinutesDelivered,
    /// Unique transformations (distinct image + options in a 30-day window).
    #[serde(rename = "images.transformations")]
    ImagesTransformations,
    /// Images added to storage.
    #[serde(rename = "images.stored")]
    ImagesStored,
    /// Image delivery responses.
    #[serde(rename = "images.delivered")]
    ImagesDelivered,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::CallsEgressBytes,
        Metric::TurnEgressBytes,
        Metric::StreamMinutesStored,
        Metric::StreamMinutesDelivered,
        Metric::ImagesTransformations,
        Metric::ImagesStored,
        Metric::ImagesDelivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::CallsEgressBytes => "calls.egress_bytes",
            Metric::TurnEgressBytes => "turn.egress_bytes",
            Metric::StreamMinutesStored => "stream.minutes_stored",
            Metric::StreamMinutesDelivered => "stream.minutes_delivered",
            Metric::ImagesTransformations => "images.transformations",
            Metric::ImagesStored => "images.stored",
            Metric::ImagesDelivered => "images.delivered",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }

    pub fn product(self) -> &'static str {
        self.as_str().split('.').next().unwrap_or("")
    }
}

pub const HOUR_MS: i64 = 3_600_000;

type Buffer = HashMap<(String, Metric, i64), f64>;

struct Inner {
    db: Db,
    buffer: Mutex<Buffer>,
    /// Held across take + write so `flush()` returns only after every usage recorded before the
    /// call is in the database, even while the background flusher is mid-write.
    flushing: tokio::sync::Mutex<()>,
    stop: Notify,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Cheap-to-clone handle products record usage through.
#[derive(Clone)]
pub struct Meter {
    inner: Arc<Inner>,
}

impl Meter {
    /// Starts the background flusher on the current tokio runtime.
    pub fn start(db: Db, interval: Duration) -> Meter {
        let inner = Arc::new(Inner {
            db,
            buffer: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            stop: Notify::new(),
            flusher: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let Some(inner) = weak.upgrade() else { break };
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = inner.stop.notified() => break,
                }
                if let Err(e) = flush_buffer(&inner).await {
                    tracing::warn!(error = %e, "usage flush failed; will retry");
                }
            }
        });
        *lock(&inner.flusher) = Some(handle);
        Meter { inner }
    }

    /// Adds `quantity` of `metric` for `account_id` now. Never blocks on I/O.
    pub fn record(&self, account_id: &str, metric: Metric, quantity: f64) {
        self.record_at(account_id, metric, quantity, now_ms());
    }

    /// Adds usage at an explicit time (unix ms); for backfills and tests.
    pub fn record_at(&self, account_id: &str, metric: Metric, quantity: f64, at_ms: i64) {
        if !(quantity.is_finite() && quantity > 0.0) {
            return;
        }
        let hour = at_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let mut buffer = lock(&self.inner.buffer);
        *buffer
            .entry((account_id.to_string(), metric, hour))
            .or_insert(0.0) += quantity;
        metrics::counter!("mediaplane_usage_recorded_total", "metric" => metric.as_str())
            .increment(1);
    }

    /// Writes buffered usage now.
    pub async fn flush(&self) -> Result<(), DbError> {
        flush_buffer(&self.inner).await
    }

    /// Stops the flusher and writes what is left.
    pub async fn shutdown(&self) {
        self.inner.stop.notify_one();
        let handle = lock(&self.inner.flusher).take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final usage flush failed");
        }
    }

    /// Hourly totals per metric for `account_id` in `[since_ms, until_ms)` (hours whose start lies
    /// in the range), summed per metric.
    pub async fn totals(
        &self,
        account_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<HashMap<Metric, f64>, DbError> {
        usage_totals(&self.inner.db, account_id, since_ms, until_ms).await
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }
}

async fn flush_buffer(inner: &Inner) -> Result<(), DbError> {
    let _writing = inner.flushing.lock().await;
    let pending: Buffer = std::mem::take(&mut *lock(&inner.buffer));
    if pending.is_empty() {
        return Ok(());
    }
    let result = write_rows(&inner.db, &pending).await;
    if result.is_err() {
        // Put the usage back so the next flush retries it; nothing recorded is dropped.
        let mut buffer = lock(&inner.buffer);
        for (key, quantity) in pending {
            *buffer.entry(key).or_insert(0.0) += quantity;
        }
    }
    result
}

async fn write_rows(db: &Db, rows: &Buffer) -> Result<(), DbError> {
    let mut tx = db.pool().begin().await?;
    for ((account, metric, hour), quantity) in rows {
        sqlx::query(
            "INSERT INTO usage_hourly (account_id, metric, hour_start, quantity) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, metric, hour_start) DO UPDATE SET quantity = usage_hourly.quantity + excluded.quantity",
        )
        .bind(account)
        .bind(metric.as_str())
        .bind(*hour)
        .bind(*quantity)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn usage_totals(
    db: &Db,
    account_id: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<HashMap<Metric, f64>, DbError> {
    let rows = sqlx::query(
        "SELECT metric, SUM(quantity) FROM usage_hourly WHERE account_id = $1 AND hour_start >= $2 AND hour_start < $3 GROUP BY metric",
    )
    .bind(account_id)
    .bind(since_ms)
    .bind(until_ms)
    .fetch_all(db.pool())
    .await?;
    let mut totals = HashMap::new();
    for row in rows {
        let name: String = row.get(0);
        let sum: f64 = row.get(1);
        if let Some(metric) = Metric::parse(&name) {
            totals.insert(metric, sum);
        }
    }
    Ok(totals)
}

/// Locks ignoring poisoning: the guarded data stays consistent across a panicking holder.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recorded_usage_is_flushed_and_summed_per_hour() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(
            &format!("sqlite://{}/m.db?mode=rwc", dir.path().display()),
            4,
        )
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let meter = Meter::start(db.clone(), Duration::from_secs(3600));
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS;
        meter.record_at("a", Metric::ImagesDelivered, 2.0, t0 + 5);
        meter.record_at("a", Metric::ImagesDelivered, 3.0, t0 + 10);
        meter.record_at("a", Metric::ImagesDelivered, 7.0, t0 + HOUR_MS);
        meter.record_at("b", Metric::ImagesDelivered, 100.0, t0);
        meter.record_at("a", Metric::ImagesDelivered, f64::NAN, t0);
        meter.flush().await.unwrap();
        meter.record_at("a", Metric::ImagesDelivered, 1.0, t0);
        meter.shutdown().await;
        let first_hour = meter.totals("a", t0, t0 + HOUR_MS).await.unwrap();
        assert_eq!(first_hour.get(&Metric::ImagesDelivered), Some(&6.0));
        let both = meter.totals("a", t0, t0 + 2 * HOUR_MS).await.unwrap();
        assert_eq!(both.get(&Metric::ImagesDelivered), Some(&13.0));
    }

    #[test]
    fn metric_names_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.as_str()), Some(metric));
            assert_eq!(serde_json::to_value(metric).unwrap(), metric.as_str());
        }
        assert_eq!(Metric::TurnEgressBytes.product(), "turn");
    }
}
