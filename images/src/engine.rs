//! The derivative engine: a bounded CPU pool (spawn_blocking behind a semaphore, so the async
//! runtime never runs a decode and at most N transforms run at once), single-flight per derivative
//! key (concurrent identical requests compute once; the others wait and read the stored result),
//! and the derivative cache in object storage.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use platform::{ApiError, ObjectKey, Storage};
use tokio::sync::Semaphore;

use crate::ImagesConfig;

pub struct Engine {
    permits: Arc<Semaphore>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    computed: AtomicU64,
    /// Transform keys already counted in this process, with the start of their window, so the
    /// hot path skips the database once a key was seen.
    counted: Mutex<HashMap<String, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many transforms run at once for a configured `transform_workers` (0 = one per CPU).
pub fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    }
}

impl Engine {
    pub fn new(config: &ImagesConfig) -> Self {
        let workers = worker_count(config.transform_workers);
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            inflight: Mutex::new(HashMap::new()),
            computed: AtomicU64::new(0),
            counted: Mutex::new(HashMap::new()),
        }
    }

    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Runs CPU-heavy `work` on the blocking pool, at most `workers` at a time.
    pub async fn cpu<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("shutting down"))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(ApiError::internal)
    }

    /// The stored derivative at `key`, computing and storing it once if missing. Returns the bytes
    /// and whether this call computed them.
    pub async fn derivative<F, Fut, E>(
        &self,
        storage: &Storage,
        key: &ObjectKey,
        compute: F,
    ) -> Result<(Bytes, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: From<ApiError>,
    {
        let lookup = || async {
            storage
                .get(key)
                .await
                .map_err(|e| E::from(ApiError::from(e)))
        };
        self.single_flight(key.as_str(), lookup, || async {
            let bytes = compute().await?;
            self.computed.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = storage.put(key, bytes.clone()).await {
                // Serving still works; the next request recomputes.
                tracing::warn!(key = %key, error = %e, "storing a derivative failed");
            }
            Ok(bytes)
        })
        .await
    }

    /// `lookup()`'s value, or `compute()`'s when there is none, computed at most once at a time per
    /// `name` in this process: concurrent callers wait for the first and then look up its result
    /// (`compute` must make it visible to `lookup`). Returns the value and whether this call computed it.
    pub async fn single_flight<T, L, LF, C, CF, E>(
        &self,
        name: &str,
        lookup: L,
        compute: C,
    ) -> Result<(T, bool), E>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<Option<T>, E>>,
        C: FnOnce() -> CF,
        CF: Future<Output = Result<T, E>>,
    {
        if let Some(hit) = lookup().await? {
            return Ok((hit, false));
        }
        let gate = lock(&self.inflight)
            .entry(name.to_string())
            .or_default()
            .clone();
        let result = async {
            let _turn = gate.lock().await;
            // Someone else may have finished while we waited.
            if let Some(hit) = lookup().await? {
                return Ok((hit, false));
            }
            Ok((compute().await?, true))
        }
        .await;
        let mut inflight = lock(&self.inflight);
        if Arc::strong_count(&gate) <= 2 {
            inflight.remove(name);
        }
        result
    }

    /// True when `transform_key` was checked against the database within the last hour. The
    /// database owns the 30-day window; this only spares it a write per cached hit (a new window
    /// is therefore noticed at most an hour late).
    pub fn recently_counted(&self, transform_key: &str, now: i64) -> bool {
        lock(&self.counted)
            .get(transform_key)
            .is_some_and(|seen| now - seen < 3_600_000)
    }

    pub fn remember_counted(&self, transform_key: &str, now: i64) {
        let mut counted = lock(&self.counted);
        if counted.len() > 100_000 {
            counted.clear();
        }
        counted.insert(transform_key.to_string(), now);
    }
}
