//! HTTP APIs: TURN key management (`/client/v4/accounts/{account_id}/calls/turn_keys`) and the
//! credentials API (`/v1/turn/keys/{key_id}/credentials/…`) that apps call with the key's secret
//! as bearer token, as Cloudflare's does.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{FromRef, Path, State},
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use platform::{
    auth::{Caller, Scope},
    error::{envelope, ApiResult},
    time_util::{now_ms, rfc3339_from_ms},
    ApiError, Platform,
};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    credentials::{credential_for, parse_username},
    store::{self, TurnKey},
    ServiceInner,
};

/// Cloudflare's limit on credential lifetime.
pub const MAX_TTL_SECS: u64 = 48 * 3600;
const DEFAULT_TTL_SECS: u64 = 86_400;
const MAX_NAME_LEN: usize = 256;

#[derive(Clone)]
pub struct ApiState {
    pub inner: Arc<ServiceInner>,
}

impl FromRef<ApiState> for Platform {
    fn from_ref(state: &ApiState) -> Platform {
        state.inner.platform.clone()
    }
}

pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route(
            "/client/v4/accounts/{account_id}/calls/turn_keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/client/v4/accounts/{account_id}/calls/turn_keys/{key_id}",
            get(get_key).put(update_key).delete(delete_key),
        )
        .route(
            "/v1/turn/keys/{key_id}/credentials/generate",
            post(generate),
        )
        .route(
            "/v1/turn/keys/{key_id}/credentials/generate-ice-servers",
            post(generate_ice_servers),
        )
        .route(
            "/v1/turn/keys/{key_id}/credentials/{username}/revoke",
            post(revoke),
        )
        .with_state(state)
}

fn key_json(key: &TurnKey) -> Value {
    json!({
        "uid": key.id,
        "name": key.name,
        "created": rfc3339_from_ms(key.created_at),
        "modified": rfc3339_from_ms(key.modified_at),
    })
}

#[derive(Deserialize, Default)]
struct KeyBody {
    name: Option<String>,
}

/// Parses an optional JSON body: empty is the default, anything else must be a JSON object.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn checked_name(name: Option<String>) -> ApiResult<String> {
    let name = name.unwrap_or_default();
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "name may have at most {MAX_NAME_LEN} characters"
        )));
    }
    Ok(name)
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        16404,
        "turn_key_not_found",
        "TURN key not found",
    )
}

async fn list_keys(
    State(state): State<ApiState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::CallsRead)?;
    let keys = store::list_keys(&state.inner.platform.db, &account_id).await?;
    Ok(envelope(keys.iter().map(key_json).collect::<Vec<_>>()))
}

async fn create_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(account_id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require(&account_id, Scope::CallsWrite)?;
    let body: KeyBody = optional_json(&body)?;
    let now = now_ms();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = TurnKey {
        id: platform::ids::new_uid(),
        account_id: account_id.clone(),
        name: checked_name(body.name)?,
        secret: hex::encode(secret),
        created_at: now,
        modified_at: now,
    };
    store::insert_key(&state.inner.platform.db, &key).await?;
    state
        .inner
        .shared_keys(|ring| ring.insert_key(&key.id, &key.account_id, &key.secret));
    tracing::info!(key_id = %key.id, %account_id, "TURN key created");
    let mut result = key_json(&key);
    // The only time the secret leaves the server.
    result["key"] = json!(key.secret);
    Ok((StatusCode::CREATED, envelope(result)).into_response())
}

async fn get_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path((account_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::CallsRead)?;
    let key = store::get_key(&state.inner.platform.db, &key_id)
        .await?
        .filter(|k| k.account_id == account_id)
        .ok_or_else(not_found)?;
    Ok(envelope(key_json(&key)))
}

async fn update_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path((account_id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::CallsWrite)?;
    let body: KeyBody = optional_json(&body)?;
    let name = checked_name(body.name)?;
    if !store::rename_key(&state.inner.platform.db, &account_id, &key_id, &name).await? {
        return Err(not_found());
    }
    let key = store::get_key(&state.inner.platform.db, &key_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(envelope(key_json(&key)))
}

async fn delete_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path((account_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&account_id, Scope::CallsWrite)?;
    let key = store::get_key(&state.inner.platform.db, &key_id)
        .await?
        .filter(|k| k.account_id == account_id)
        .ok_or_else(not_found)?;
    if !store::delete_key(&state.inner.platform.db, &account_id, &key_id).await? {
        return Err(not_found());
    }
    // Live allocations made with this key end at the next tick.
    state.inner.shared_keys(|ring| ring.remove_key(&key_id));
    tracing::info!(%key_id, %account_id, "TURN key deleted");
    Ok(envelope(key_json(&key)))
}

/// The key named in the path, if the bearer token is its secret.
async fn key_from_bearer(
    state: &ApiState,
    headers: &HeaderMap,
    key_id: &str,
) -> ApiResult<TurnKey> {
    let token = bearer_token(headers).ok_or_else(ApiError::missing_token)?;
    let key = store::get_key(&state.inner.platform.db, key_id)
        .await?
        .ok_or_else(ApiError::invalid_token)?;
    let matches = key.secret.len() == token.len()
        && key
            .secret
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !matches {
        return Err(ApiError::invalid_token());
    }
    Ok(key)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[derive(Deserialize, Default)]
struct GenerateBody {
    ttl: Option<u64>,
}

/// Mints `<expiry>:<key_id>.<random>` and its credential.
fn mint(key: &TurnKey, body: &Bytes) -> ApiResult<(String, String)> {
    let body: GenerateBody = optional_json(body)?;
    let ttl = body.ttl.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            16400,
            "invalid_ttl",
            format!("ttl must be between 1 and {MAX_TTL_SECS} seconds"),
        ));
    }
    let expiry = (now_ms() / 1000) as u64 + ttl;
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut nonce);
    let username = format!("{expiry}:{}.{}", key.id, hex::encode(nonce));
    let credential = credential_for(&key.secret, &username);
    Ok((username, credential))
}

async fn generate(
    State(state): State<ApiState>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let key = key_from_bearer(&state, &headers, &key_id).await?;
    let (username, credential) = mint(&key, &body)?;
    let urls = state.inner.ice_urls();
    let turn_urls: Vec<&String> = urls.iter().filter(|u| !u.starts_with("stun:")).collect();
    Ok((StatusCode::CREATED, Json(json!({ "iceServers": { "urls": turn_urls, "username": username, "credential": credential } }))).into_response())
}

async fn generate_ice_servers(
    State(state): State<ApiState>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let key = key_from_bearer(&state, &headers, &key_id).await?;
    let (username, credential) = mint(&key, &body)?;
    let urls = state.inner.ice_urls();
    let (stun, turn): (Vec<&String>, Vec<&String>) =
        urls.iter().partition(|u| u.starts_with("stun:"));
    let mut servers = Vec::new();
    if !stun.is_empty() {
        servers.push(json!({ "urls": stun }));
    }
    servers.push(json!({ "urls": turn, "username": username, "credential": credential }));
    Ok((StatusCode::CREATED, Json(json!({ "iceServers": servers }))).into_response())
}

async fn revoke(
    State(state): State<ApiState>,
    Path((key_id, username)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let key = key_from_bearer(&state, &headers, &key_id).await?;
    let (expiry, _) = parse_username(&username).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            16401,
            "invalid_username",
            "username must look like <expiry>[:<id>]",
        )
    })?;
    let expires_at_ms = i64::try_from(expiry)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .unwrap_or(i64::MAX);
    store::revoke(&state.inner.platform.db, &key.id, &username, expires_at_ms).await?;
    state
        .inner
        .shared_keys(|ring| ring.revoke(&key.id, &username));
    tracing::info!(%key_id, %username, "TURN credential revoked");
    Ok(StatusCode::NO_CONTENT)
}
