//! Shared HTTP plumbing: the tower layers every route gets, and the platform's own routes
//! (health, readiness, metrics, usage, tokens).

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRef, Path, Query, Request, State},
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;
use tower_http::{
    compression::CompressionLayer,
    cors::{AllowOrigin, Any, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{
    auth::{self, Caller, Scope},
    error::{envelope, ApiResult},
    metering::PriceTable,
    time_util::{now_ms, parse_time_ms, rfc3339_from_ms},
    ApiError, Platform, PlatformConfig,
};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers browsers may read cross-origin (WHIP/WHEP, clipping previews, uploads).
const EXPOSED_HEADERS: [&str; 7] = [
    "location",
    "etag",
    "link",
    "x-request-id",
    "preview-start-seconds",
    "stream-media-id",
    "content-disposition",
];

/// Wraps the composed application in the gateway's layers: request ids, tracing, timeout, body
/// limit, CORS, compression, and JSON error bodies for errors produced outside handlers.
pub fn apply_layers(app: Router, config: &PlatformConfig) -> Router {
    // Innermost first. json_errors sits outside the limit and timeout layers so their bare
    // responses get the JSON shape too, and inside compression so it reads plain bodies.
    app.layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, config.request_timeout()))
        .layer(middleware::from_fn(json_errors))
        .layer(CompressionLayer::new())
        .layer(cors(config))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", request_id = %id, method = %request.method(), path = %request.uri().path(), account_id = tracing::field::Empty)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

fn cors(config: &PlatformConfig) -> CorsLayer {
    let origin = if config.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(3600))
}

/// Rewrites error responses that carry no JSON (axum rejections, timeouts, 404 of the router, body
/// limit) into the one JSON error shape, keeping their status.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let mut rewritten = ApiError::from_status(status, text).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// State of the platform's own routes.
#[derive(Clone)]
pub struct PlatformState {
    pub platform: Platform,
    pub prices: Arc<PriceTable>,
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

impl FromRef<PlatformState> for Platform {
    fn from_ref(state: &PlatformState) -> Platform {
        state.platform.clone()
    }
}

pub fn routes(state: PlatformState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/client/v4/accounts/{account_id}/usage", get(usage))
        .route(
            "/client/v4/accounts/{account_id}/tokens",
            get(list_tokens).post(create_token),
        )
        .route(
            "/client/v4/accounts/{account_id}/tokens/{token_id}",
            delete(revoke_token),
        )
        .route("/client/v4/user/tokens/verify", get(verify_token))
        .with_state(state)
}

async fn readyz(State(state): State<PlatformState>) -> Response {
    let db = state.platform.db.ping().await;
    let storage = state.platform.storage.check().await;
    let ok = db.is_ok() && storage.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "database": db.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        "storage": storage.map(|_| state.platform.storage.backend().to_string()).unwrap_or_else(|e| e.to_string()),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<PlatformState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        (state.render_metrics)(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
}

/// Invoice preview: quantities per metric and cost for `[since, until)` (default: this month so far).
async fn usage(
    State(state): State<PlatformState>,
    caller: Caller,
    Path(account_id): Path<String>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(&account_id, Scope::BillingRead)?;
    let parse = |name: &str, value: &Option<String>| -> ApiResult<Option<i64>> {
        value
            .as_deref()
            .map(|v| {
                parse_time_ms(v).ok_or_else(|| {
                    ApiError::bad_request(format!("{name}: expected RFC 3339 time or unix seconds"))
                })
            })
            .transpose()
    };
    let until = parse("until", &query.until)?.unwrap_or_else(now_ms);
    let since = match parse("since", &query.since)? {
        Some(since) => since,
        None => start_of_month_ms(until),
    };
    if since >= until {
        return Err(ApiError::bad_request("since must be before until"));
    }
    if until - since > 5 * 366 * 24 * 3_600_000 {
        return Err(ApiError::bad_request(
            "the range may span at most five years",
        ));
    }
    state.platform.meter.flush().await?;
    let invoice = state
        .prices
        .invoice(&state.platform.db, &account_id, since, until)
        .await?;
    Ok(envelope(json!({
        "since": rfc3339_from_ms(since),
        "until": rfc3339_from_ms(until),
        "currency": "USD",
        "lines": invoice.lines.iter().map(|line| json!({
            "name": line.name,
            "unit": line.unit,
            "metrics": line.metrics.iter().map(|(m, q)| json!({"metric": m, "quantity": q})).collect::<Vec<_>>(),
            "quantity": line.quantity,
            "billableUnits": line.billable_units,
            "unitPriceUsd": line.price_usd,
            "costUsd": line.cost_usd,
        })).collect::<Vec<_>>(),
        "totalUsd": invoice.total_usd,
    })))
}

fn start_of_month_ms(at_ms: i64) -> i64 {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000)) else {
        return 0;
    };
    t.replace_day(1)
        .map(|t| t.replace_time(time::Time::MIDNIGHT).unix_timestamp() * 1000)
        .unwrap_or(0)
}

#[derive(Deserialize)]
struct CreateToken {
    name: String,
    scopes: Vec<String>,
}

async fn create_token(
    State(state): State<PlatformState>,
    caller: Caller,
    Path(account_id): Path<String>,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    caller.require(&account_id, Scope::Admin)?;
    let Json(body) = body?;
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::bad_request("name: 1 to 200 characters"));
    }
    let scopes = auth::parse_scopes(&body.scopes.join(",")).map_err(ApiError::bad_request)?;
    let (id, secret) = auth::create_token(
        &state.platform.db,
        &account_id,
        body.name.trim(),
        &scopes,
        None,
    )
    .await?;
    let result =
        json!({ "id": id, "name": body.name.trim(), "scopes": body.scopes, "value": secret });
    Ok((StatusCode::CREATED, envelope(result)).into_response())
}

async fn list_tokens(
    State(state): State<PlatformState>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(&account_id, Scope::Admin)?;
    let tokens = auth::list_tokens(&state.platform.db, &account_id).await?;
    Ok(envelope(tokens))
}

async fn revoke_token(
    State(state): State<PlatformState>,
    caller: Caller,
    Path((account_id, token_id)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(&account_id, Scope::Admin)?;
    if !auth::revoke_token(&state.platform.db, &account_id, &token_id).await? {
        return Err(ApiError::not_found("token"));
    }
    Ok(envelope(json!({ "id": token_id })))
}

/// Cloudflare's token check: tells a client which account and scopes its token has.
async fn verify_token(caller: Caller) -> Json<serde_json::Value> {
    envelope(json!({
        "id": caller.token_id,
        "status": "active",
        "account_id": caller.account_id,
        "scopes": caller.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    }))
}
