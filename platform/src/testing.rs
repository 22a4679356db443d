//! Throwaway platforms for tests: SQLite + local disk always, PostgreSQL + S3 when the test
//! command provides them (see scripts/test.sh).
//!
//! Environment read here (and only here, only in tests):
//! - `MEDIAPLANE_TEST_POSTGRES_URL`: a server URL; each platform gets its own `mp_test_*` database.
//! - `MEDIAPLANE_TEST_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY`: an S3 server;
//!   each platform gets its own key prefix.
//! - `MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1`: fail instead of skipping when those are missing, so CI
//!   cannot silently test SQLite only.

use std::path::PathBuf;

use crate::{auth, Platform, PlatformConfig};

/// A platform with one account and an all-scopes token.
pub struct TestPlatform {
    pub platform: Platform,
    pub account_id: String,
    pub token: String,
    pub label: &'static str,
    _dir: tempfile::TempDir,
}

impl TestPlatform {
    pub fn config(&self) -> &PlatformConfig {
        &self.platform.config
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The external-backend settings, or `None` when they are not configured.
pub fn external_config(data_dir: PathBuf) -> Option<PlatformConfig> {
    let require = external_required();
    let (Some(pg), Some(endpoint)) = (
        env("MEDIAPLANE_TEST_POSTGRES_URL"),
        env("MEDIAPLANE_TEST_S3_ENDPOINT"),
    ) else {
        assert!(!require, "MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1 but MEDIAPLANE_TEST_POSTGRES_URL / MEDIAPLANE_TEST_S3_ENDPOINT are not set");
        return None;
    };
    let mut config = PlatformConfig::with_data_dir(data_dir);
    config.database_url = Some(pg);
    config.s3_endpoint = Some(endpoint);
    config.s3_bucket =
        Some(env("MEDIAPLANE_TEST_S3_BUCKET").unwrap_or_else(|| "mediaplane-test".into()));
    config.s3_access_key_id = env("MEDIAPLANE_TEST_S3_ACCESS_KEY_ID");
    config.s3_secret_access_key = env("MEDIAPLANE_TEST_S3_SECRET_ACCESS_KEY");
    config.s3_force_path_style = true;
    config.s3_prefix = format!("test-{}", crate::ids::new_uid());
    Some(config)
}

/// Creates a fresh database named `mp_test_<random>` on the server of `server_url` and returns its URL.
pub async fn create_postgres_database(server_url: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("mp_test_{}", crate::ids::new_uid());
    let mut conn = sqlx::AnyConnection::connect(server_url)
        .await
        .expect("connect to test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server_url, String::new()),
    };
    let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
    format!("{base}/{name}{query}")
}

async fn build(
    mut config: PlatformConfig,
    label: &'static str,
    dir: tempfile::TempDir,
) -> TestPlatform {
    if let Some(url) = config
        .database_url
        .clone()
        .filter(|u| u.starts_with("postgres"))
    {
        config.database_url = Some(create_postgres_database(&url).await);
    }
    config.meter_flush_ms = 50;
    let platform = Platform::connect(config).await.expect("platform connects");
    let boot = auth::bootstrap(&platform.db, None)
        .await
        .expect("bootstrap")
        .expect("fresh database bootstraps");
    TestPlatform {
        platform,
        account_id: boot.account_id,
        token: boot.token,
        label,
        _dir: dir,
    }
}

/// SQLite + local disk in a temporary directory.
pub async fn embedded() -> TestPlatform {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PlatformConfig::with_data_dir(dir.path().to_path_buf());
    build(config, "sqlite+disk", dir).await
}

/// PostgreSQL + S3, if configured.
pub async fn external() -> Option<TestPlatform> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = external_config(dir.path().to_path_buf())?;
    Some(build(config, "postgres+s3", dir).await)
}

/// Every configured backend: embedded always, external when available.
pub async fn all_backends() -> Vec<TestPlatform> {
    let mut all = vec![embedded().await];
    all.extend(external().await);
    all
}

/// True when the test command demands every external tool (`MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1`).
pub fn external_required() -> bool {
    env("MEDIAPLANE_TEST_REQUIRE_EXTERNAL").is_some_and(|v| v == "1")
}

/// Skips (prints why) or, under `MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1`, fails: CI must never pass a
/// test that silently did not run.
pub fn skip_or_fail(what: &str) {
    assert!(
        !external_required(),
        "{what} is required (MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1) but not installed"
    );
    eprintln!("skipped: {what} not installed");
}

/// An executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// What a browser test needs: `node`, Debian's Chromium and the npm packages of
/// `tests/browser/package.json` (from `$MEDIAPLANE_TEST_NODE_MODULES`, else the repository's
/// `tests/browser/node_modules`).
pub struct BrowserTools {
    pub node: PathBuf,
    pub chromium: PathBuf,
    pub node_modules: PathBuf,
}

/// The result a browser test script printed: the last stdout line that is a JSON object (scripts
/// log progress before it). Panics with the script's stderr when there is none.
pub fn script_result(output: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no result from the browser script; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    serde_json::from_str(line).expect("the browser script's result is JSON")
}

/// The browser tools, or `None` after [`skip_or_fail`] when one is missing. `packages` are the npm
/// packages the test's script imports.
pub fn browser_tools(packages: &[&str]) -> Option<BrowserTools> {
    let repo_modules =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/node_modules");
    let Some(node_modules) = [
        env("MEDIAPLANE_TEST_NODE_MODULES").map(PathBuf::from),
        Some(repo_modules),
    ]
    .into_iter()
    .flatten()
    .find(|dir| packages.iter().all(|p| dir.join(p).is_dir())) else {
        skip_or_fail(&format!(
            "npm {} (MEDIAPLANE_TEST_NODE_MODULES)",
            packages.join(", ")
        ));
        return None;
    };
    let Some(node) = which("node") else {
        skip_or_fail("node");
        return None;
    };
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !chromium.is_file() {
        skip_or_fail("chromium (/usr/bin/chromium)");
        return None;
    }
    Some(BrowserTools {
        node,
        chromium,
        node_modules,
    })
}
