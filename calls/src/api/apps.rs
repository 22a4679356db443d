//! Management API for Calls apps: `/client/v4/accounts/{account_id}/calls/apps[/{app_id}]`.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    Json,
};
use platform::{
    auth::{Caller, Scope},
    error::{envelope, ApiResult},
    time_util::{now_ms, rfc3339_from_ms},
    ApiError, Db,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::ApiState;

const MAX_NAME: usize = 256;

#[derive(Debug, Clone)]
pub struct App {
    pub uid: String,
    pub account_id: String,
    pub name: String,
    pub secret_sha256: String,
    pub created_at: i64,
    pub modified_at: i64,
}

impl App {
    fn json(&self) -> serde_json::Value {
        json!({
            "uid": self.uid,
            "name": self.name,
            "created": rfc3339_from_ms(self.created_at),
            "modified": rfc3339_from_ms(self.modified_at),
        })
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two equal-length hex digests without an early exit.
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn row_to_app(row: sqlx::any::AnyRow) -> App {
    App {
        uid: row.get(0),
        account_id: row.get(1),
        name: row.get(2),
        secret_sha256: row.get(3),
        created_at: row.get(4),
        modified_at: row.get(5),
    }
}

const COLUMNS: &str = "uid, account_id, name, secret_sha256, created_at, modified_at";

pub async fn find_app(db: &Db, uid: &str) -> Result<Option<App>, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM calls_apps WHERE uid = $1"))
        .bind(uid)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(row_to_app))
}

async fn find_owned(db: &Db, account_id: &str, uid: &str) -> ApiResult<App> {
    find_app(db, uid)
        .await?
        .filter(|a| a.account_id == account_id)
        .ok_or_else(|| ApiError::not_found("app"))
}

#[derive(Deserialize)]
pub struct AppBody {
    name: Option<String>,
}

fn checked_name(name: Option<String>) -> ApiResult<String> {
    let name = name.unwrap_or_default();
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_NAME {
        return Err(ApiError::bad_request(format!(
            "name must be 1-{MAX_NAME} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&account_id, Scope::CallsRead)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM calls_apps WHERE account_id = $1 ORDER BY created_at, uid"
    ))
    .bind(&account_id)
    .fetch_all(state.platform.db.pool())
    .await?;
    let apps: Vec<_> = rows.into_iter().map(|r| row_to_app(r).json()).collect();
    Ok(envelope(apps))
}

pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(account_id): Path<String>,
    body: Result<Json<AppBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&account_id, Scope::CallsWrite)?;
    let Json(body) = body?;
    let name = checked_name(body.name)?;
    let uid = platform::ids::new_uid();
    let secret = platform::ids::new_secret(32);
    let now = now_ms();
    sqlx::query("INSERT INTO calls_apps (uid, account_id, name, secret_sha256, created_at, modified_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&uid)
        .bind(&account_id)
        .bind(&name)
        .bind(hash_secret(&secret))
        .bind(now)
        .bind(now)
        .execute(state.platform.db.pool())
        .await?;
    tracing::info!(app = %uid, account = %account_id, "calls app created");
    let app = App {
        uid,
        account_id,
        name,
        secret_sha256: String::new(),
        created_at: now,
        modified_at: now,
    };
    let mut result = app.json();
    result["secret"] = json!(secret);
    Ok((StatusCode::CREATED, envelope(result)))
}

pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path((account_id, app_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&account_id, Scope::CallsRead)?;
    Ok(envelope(
        find_owned(&state.platform.db, &account_id, &app_id)
            .await?
            .json(),
    ))
}

pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((account_id, app_id)): Path<(String, String)>,
    body: Result<Json<AppBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&account_id, Scope::CallsWrite)?;
    let Json(body) = body?;
    let name = checked_name(body.name)?;
    let mut app = find_owned(&state.platform.db, &account_id, &app_id).await?;
    let now = now_ms();
    sqlx::query(
        "UPDATE calls_apps SET name = $1, modified_at = $2 WHERE uid = $3 AND account_id = $4",
    )
    .bind(&name)
    .bind(now)
    .bind(&app_id)
    .bind(&account_id)
    .execute(state.platform.db.pool())
    .await?;
    app.name = name;
    app.modified_at = now;
    Ok(envelope(app.json()))
}

pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((account_id, app_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&account_id, Scope::CallsWrite)?;
    let app = find_owned(&state.platform.db, &account_id, &app_id).await?;
    sqlx::query("DELETE FROM calls_apps WHERE uid = $1 AND account_id = $2")
        .bind(&app.uid)
        .bind(&account_id)
        .execute(state.platform.db.pool())
        .await?;
    tracing::info!(app = %app.uid, "calls app deleted");
    Ok(envelope(json!({ "uid": app.uid })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_compare() {
        let h = hash_secret("s3cret");
        assert_eq!(h.len(), 64);
        assert!(digests_equal(&h, &hash_secret("s3cret")));
        assert!(!digests_equal(&h, &hash_secret("s3creT")));
        assert!(!digests_equal(&h, "abc"));
    }
}
