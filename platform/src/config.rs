//! Typed settings shared by every product.
//!
//! Every setting is a clap argument with a `MEDIAPLANE_*` environment variable, so `mediaplane --help`
//! is the single documentation of what can be set. An optional TOML file fills in whatever the
//! command line and environment left unset (see [`apply_config_file`]): precedence is
//! flag > environment > file > default.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Platform")]
pub struct PlatformConfig {
    /// Address the HTTP API listens on.
    #[arg(long, env = "MEDIAPLANE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Base URL clients reach this server at, used in URLs the API hands out
    /// (default: http://<http_addr>).
    #[arg(long, env = "MEDIAPLANE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Directory for the embedded database and local objects.
    #[arg(long, env = "MEDIAPLANE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Metadata database: `sqlite://path` or `postgres://…` (default: SQLite at <data_dir>/mediaplane.db).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Maximum pooled database connections.
    #[arg(long, env = "MEDIAPLANE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// S3 bucket for objects; when set, objects go to S3 instead of <data_dir>/objects.
    #[arg(long, env = "MEDIAPLANE_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// S3 endpoint URL (for MinIO, SeaweedFS, R2…); default: AWS.
    #[arg(long, env = "MEDIAPLANE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(long, env = "MEDIAPLANE_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 access key id (default: the AWS credential chain).
    #[arg(long, env = "MEDIAPLANE_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "MEDIAPLANE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Use path-style S3 addressing (needed by most self-hosted S3 servers).
    #[arg(long, env = "MEDIAPLANE_S3_FORCE_PATH_STYLE", default_value_t = false)]
    pub s3_force_path_style: bool,

    /// Key prefix inside the bucket, so several deployments can share one bucket.
    #[arg(long, env = "MEDIAPLANE_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// Origins allowed by CORS, comma separated; `*` allows any.
    #[arg(
        long,
        env = "MEDIAPLANE_CORS_ORIGINS",
        default_value = "*",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Largest request body accepted by any route, in bytes (products set smaller per-route limits).
    #[arg(long, env = "MEDIAPLANE_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Default per-request timeout in seconds.
    #[arg(long, env = "MEDIAPLANE_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Token to create for the default account on first start, instead of a random one.
    #[arg(long, env = "MEDIAPLANE_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,

    /// How often buffered usage is written to the database, in milliseconds.
    #[arg(long, env = "MEDIAPLANE_METER_FLUSH_MS", default_value_t = 1000)]
    pub meter_flush_ms: u64,

    /// TOML file overriding the default price table (see docs/operations.md).
    #[arg(long, env = "MEDIAPLANE_PRICES_FILE")]
    pub prices_file: Option<PathBuf>,
}

impl PlatformConfig {
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("mediaplane.db").display()
            ),
        }
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.http_addr),
        }
    }

    pub fn meter_flush_interval(&self) -> Duration {
        Duration::from_millis(self.meter_flush_ms.max(10))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// A configuration for tests and embedding: every default, data under `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: PlatformConfig,
        }
        let mut config = <Wrapper as clap::Parser>::parse_from(["mediaplane"]).config;
        config.data_dir = data_dir;
        config
    }
}

/// Fills unset `MEDIAPLANE_*` environment variables from a TOML file so that clap sees them.
///
/// Tables become name prefixes: `[s3] bucket = "b"` sets `MEDIAPLANE_S3_BUCKET`, and a top-level
/// `http_addr` sets `MEDIAPLANE_HTTP_ADDR`. `database_url` maps to `DATABASE_URL`. Arrays are
/// joined with commas. Variables already present in the environment win. Call this before any
/// thread is spawned (it mutates the process environment).
pub fn apply_config_file(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut pairs = Vec::new();
    flatten_toml("", &table, &mut pairs)?;
    let mut applied = Vec::new();
    for (name, value) in pairs {
        let var = if name == "DATABASE_URL" {
            name
        } else {
            format!("MEDIAPLANE_{name}")
        };
        if std::env::var_os(&var).is_none() {
            // SAFETY: called at startup before the runtime or any thread exists.
            unsafe { std::env::set_var(&var, value) };
            applied.push(var);
        }
    }
    Ok(applied)
}

fn flatten_toml(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = format!("{prefix}{}", key.to_ascii_uppercase().replace('-', "_"));
        let text = match value {
            toml::Value::Table(inner) => {
                flatten_toml(&format!("{name}_"), inner, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    other => Err(format!("{name}: unsupported array item {other}")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            toml::Value::Datetime(d) => d.to_string(),
        };
        out.push((name, text));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_tables_flatten_to_env_names() {
        let table: toml::Table = "http_addr = \"0.0.0.0:9\"\n[s3]\nbucket = \"b\"\nforce_path_style = true\n[images]\nallowed_origins = [\"a\", \"b\"]\n"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        flatten_toml("", &table, &mut out).unwrap();
        out.sort();
        assert_eq!(
            out,
            vec![
                ("HTTP_ADDR".to_string(), "0.0.0.0:9".to_string()),
                ("IMAGES_ALLOWED_ORIGINS".to_string(), "a,b".to_string()),
                ("S3_BUCKET".to_string(), "b".to_string()),
                ("S3_FORCE_PATH_STYLE".to_string(), "true".to_string()),
            ]
        );
    }

    #[test]
    fn default_database_is_sqlite_under_data_dir() {
        let config = PlatformConfig::with_data_dir(PathBuf::from("/tmp/x"));
        assert_eq!(
            config.database_url(),
            "sqlite:///tmp/x/mediaplane.db?mode=rwc"
        );
        assert_eq!(config.public_url(), "http://127.0.0.1:8080");
    }
}
