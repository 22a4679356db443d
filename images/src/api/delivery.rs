//! Delivery: `<prefix>/<account_hash>/<image_id>/<variant or options>` and
//! `/cdn-cgi/image/<options>/<source>`. Both end in [`serve`]: options → output format →
//! derivative key → 304 / cached bytes / computed once on the CPU pool → response with
//! ETag, Cache-Control and `Vary: Accept`.

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Redirect, Response},
};
use bytes::Bytes;
use platform::{time_util::now_ms, ApiError, Metric, ObjectKey};
use sha2::{Digest, Sha256};

use super::{fetch_error, invalid_option, transform_error, AppState, Inner};
use crate::{
    signing,
    store::{self, ImageRow},
    transform::{
        self,
        options::{Gravity, MetadataMode},
        Probe, TransformOptions,
    },
};

fn signature_error(e: signing::SignatureError) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        5410,
        "signature_invalid",
        e.to_string(),
    )
}

pub async fn deliver(
    State(state): State<AppState>,
    Path((account_hash, rest)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let state = &state.0;
    let (image_id, variant) = rest
        .rsplit_once('/')
        .ok_or_else(|| ApiError::not_found("image"))?;
    let (account_id, settings) = store::account_by_hash(&state.platform.db, &account_hash)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    let row = store::get_image(&state.platform.db, &account_id, image_id)
        .await?
        .filter(|r| !r.draft)
        .ok_or_else(|| ApiError::not_found("image"))?;
    let flexible = variant.contains('=');
    let (opts, never_require_signed) = if flexible {
        if !settings.flexible_variants {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                5411,
                "flexible_variants_disabled",
                "flexible variants are disabled for this account (PATCH images/v1/config)",
            ));
        }
        if row.require_signed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                5412,
                "flexible_variant_on_signed_image",
                "flexible variants cannot be used with images that require signed URLs",
            ));
        }
        (
            TransformOptions::parse(variant).map_err(|e| invalid_option(&e.option, &e.reason))?,
            false,
        )
    } else {
        let v = store::get_variant(&state.platform.db, &account_id, variant)
            .await?
            .ok_or_else(|| ApiError::not_found("variant"))?;
        (variant_options(&v.options), v.never_require_signed)
    };
    if row.require_signed && !never_require_signed {
        let keys: Vec<Vec<u8>> = store::signing_keys(&state.platform.db, &account_id)
            .await?
            .into_iter()
            .map(|(_, secret)| secret.into_bytes())
            .collect();
        let now_secs = now_ms() / 1000;
        signing::verify(&keys, uri.path(), uri.query().unwrap_or(""), now_secs)
            .map_err(signature_error)?;
    }
    let private = row.require_signed && !never_require_signed;
    serve(
        state,
        &account_id,
        Source::Stored(Box::new(row)),
        opts,
        &headers,
        private,
        flexible,
    )
    .await
}

/// A named variant's stored options as transform options.
fn variant_options(options: &serde_json::Value) -> TransformOptions {
    let mut o = TransformOptions::default();
    if let Some(fit) = options["fit"]
        .as_str()
        .and_then(transform::options::Fit::parse)
    {
        o.fit = fit;
    }
    if let Some(w) = options["width"].as_u64() {
        o.width = transform::options::Width::Px(w as u32);
    }
    o.height = options["height"].as_u64().map(|h| h as u32);
    // Extension: `gravity` and `zoom` (validated when the variant was saved).
    if let Some(gravity) = options["gravity"].as_str() {
        if let Ok(parsed) = TransformOptions::parse(&format!("gravity={gravity}")) {
            o.gravity = parsed.gravity;
        }
    }
    if let Some(zoom) = options["zoom"].as_f64() {
        o.zoom = (zoom as f32).clamp(0.0, 1.0);
    }
    o.metadata = match options["metadata"].as_str() {
        Some("keep") => MetadataMode::Keep,
        Some("copyright") => MetadataMode::Copyright,
        _ => MetadataMode::None,
    };
    o
}

pub async fn cdn_cgi(
    State(state): State<AppState>,
    Path((options, source)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let state = &state.0;
    let opts =
        TransformOptions::parse(&options).map_err(|e| invalid_option(&e.option, &e.reason))?;
    let redirect_to = |target: &str| Redirect::to(target).into_response();
    if source.starts_with("http://") || source.starts_with("https://") {
        let url = match uri.query() {
            Some(q) => format!("{source}?{q}"),
            None => source.clone(),
        };
        // The allow-list is checked before any error could redirect anywhere.
        crate::fetch::check_url(&url, &state.fetch_policy(true)).map_err(fetch_error)?;
        let account_id = platform::auth::default_account(&state.platform.db)
            .await?
            .ok_or_else(|| {
                ApiError::unavailable("no default account to bill remote transforms to")
            })?;
        let onerror = opts.onerror_redirect;
        return match serve(
            state,
            &account_id,
            Source::Remote(url.clone()),
            opts,
            &headers,
            false,
            true,
        )
        .await
        {
            Err(e) if onerror && e.status.as_u16() >= 422 => Ok(redirect_to(&url)),
            other => other,
        };
    }
    // A source on this platform: `<delivery prefix>/<account_hash>/<image_id>[/<variant>]`.
    let prefix = state.config.delivery_prefix.trim_start_matches('/');
    let path = source.trim_start_matches('/');
    let rest = path
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                5403,
                "invalid_source",
                format!("the source must be an absolute http(s) URL or a path under /{prefix}/"),
            )
        })?;
    let (account_hash, image_path) = rest
        .split_once('/')
        .ok_or_else(|| ApiError::not_found("image"))?;
    let (account_id, _) = store::account_by_hash(&state.platform.db, account_hash)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    // `<id>/<variant>` or just `<id>`: try the whole path as an id first.
    let mut row = store::get_image(&state.platform.db, &account_id, image_path).await?;
    if row.is_none() {
        if let Some((id, _variant)) = image_path.rsplit_once('/') {
            row = store::get_image(&state.platform.db, &account_id, id).await?;
        }
    }
    let row = row
        .filter(|r| !r.draft)
        .ok_or_else(|| ApiError::not_found("image"))?;
    if row.require_signed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            5412,
            "signed_image",
            "images that require signed URLs cannot be transformed through /cdn-cgi/image",
        ));
    }
    let onerror = opts.onerror_redirect;
    match serve(
        state,
        &account_id,
        Source::Stored(Box::new(row)),
        opts,
        &headers,
        false,
        true,
    )
    .await
    {
        Err(e) if onerror && e.status.as_u16() >= 422 => Ok(redirect_to(&format!("/{path}"))),
        other => other,
    }
}

pub enum Source {
    Stored(Box<ImageRow>),
    Remote(String),
}

fn width_hint(headers: &HeaderMap) -> Option<u32> {
    ["sec-ch-width", "width"]
        .iter()
        .find_map(|name| {
            headers
                .get(*name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .filter(|w| *w > 0 && *w <= 12_000)
}

fn sha_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The probe of the original, its bytes when they had to be read already (remote sources), the
/// identity (changes when the source changes) and the object prefix derivatives are stored under.
async fn load_source(
    state: &Inner,
    source: &Source,
) -> Result<(Option<Bytes>, Probe, String, ObjectKey), ApiError> {
    match source {
        Source::Stored(row) => {
            let probe = row
                .probe()
                .ok_or_else(|| ApiError::internal("image row without format"))?;
            Ok((
                None,
                probe,
                format!("{}:{}", row.storage_uid, row.version),
                row.object_prefix()?,
            ))
        }
        Source::Remote(url) => {
            let ttl_ms = (state.config.remote_cache_secs.max(1) * 1000) as i64;
            let epoch = now_ms() / ttl_ms;
            let prefix = ObjectKey::new(&[
                "images-remote",
                &sha_hex(&[url])[..40],
                &format!("e{epoch}"),
            ])?;
            let key = prefix.join(&["source"])?;
            let policy = state.fetch_policy(true);
            let (data, _) = state
                .engine
                .derivative(&state.platform.storage, &key, || async {
                    let (data, _) = crate::fetch::fetch(url, &policy)
                        .await
                        .map_err(fetch_error)?;
                    Ok::<_, ApiError>(data)
                })
                .await?;
            let limits = transform::SourceLimits {
                max_bytes: state.config.remote_max_bytes,
                ..state.config.source_limits()
            };
            let probe = transform::probe(&data, &limits).map_err(super::probe_error)?;
            Ok((Some(data), probe, format!("remote:{url}:{epoch}"), prefix))
        }
    }
}

pub async fn serve(
    state: &Inner,
    account_id: &str,
    source: Source,
    opts: TransformOptions,
    headers: &HeaderMap,
    private: bool,
    count_unique: bool,
) -> Result<Response, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let hint = if opts.width == transform::options::Width::Auto {
        width_hint(headers)
    } else {
        None
    };
    let (data, probe, identity, prefix) = load_source(state, &source).await?;
    let out = transform::choose_output(
        opts.format,
        probe.format,
        probe.animated && opts.anim,
        accept,
    )
    .map_err(transform_error)?;
    let canonical = opts.canonical();
    let hint_text = hint.map(|h| h.to_string()).unwrap_or_default();
    let digest = sha_hex(&[&identity, &canonical, out.key(), &hint_text]);
    let etag = format!("\"{}\"", &digest[..32]);
    let key = prefix.join(&["d", &format!("{}.{}", &digest[..40], out.key())])?;
    let needs_faces = matches!(opts.gravity, Gravity::Face | Gravity::Auto)
        || out == transform::OutputFormat::Json;
    let cache_control = if private {
        format!("private, max-age={}", state.config.browser_ttl_secs)
    } else {
        format!("public, max-age={}", state.config.browser_ttl_secs)
    };
    let now = now_ms();
    if count_unique {
        // format=auto stays "auto" in the canonical form, so every negotiated format counts once.
        let transform_key = match &source {
            Source::Stored(row) => sha_hex(&[&row.storage_uid, &canonical]),
            Source::Remote(url) => sha_hex(&[url, &canonical]),
        };
        if !state.engine.recently_counted(&transform_key, now) {
            if store::note_transformation(&state.platform.db, account_id, &transform_key, now)
                .await?
            {
                state
                    .platform
                    .meter
                    .record(account_id, Metric::ImagesTransformations, 1.0);
            }
            state.engine.remember_counted(&transform_key, now);
        }
    }
    state
        .platform
        .meter
        .record(account_id, Metric::ImagesDelivered, 1.0);
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let not_modified = if_none_match.split(',').any(|tag| {
        let tag = tag.trim();
        tag == etag || tag == "*" || tag.strip_prefix("W/") == Some(etag.as_str())
    });
    let common = |response: &mut Response| {
        let h = response.headers_mut();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&cache_control).unwrap_or(HeaderValue::from_static("no-cache")),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
    };
    if not_modified {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        common(&mut response);
        return Ok(response);
    }
    let (bytes, computed) = state
        .engine
        .derivative(&state.platform.storage, &key, || async move {
            let data = match (data, &source) {
                (Some(data), _) => data,
                (None, Source::Stored(row)) => {
                    let object = row
                        .original_object
                        .as_deref()
                        .ok_or_else(|| ApiError::not_found("image"))?;
                    state
                        .platform
                        .storage
                        .get(&ObjectKey::new(&[object])?)
                        .await?
                        .ok_or_else(|| ApiError::internal("original missing from storage"))?
                }
                (None, Source::Remote(_)) => {
                    return Err(ApiError::internal("remote source without bytes"))
                }
            };
            // Faces are looked up (or detected once) only on a cache miss that needs them.
            let faces = match (&source, needs_faces) {
                (_, false) => None,
                (Source::Stored(row), true) => {
                    Some(crate::faces::for_stored(state, row, &data, &probe).await?)
                }
                (Source::Remote(_), true) => {
                    Some(crate::faces::for_remote(state, &prefix, &data, &probe).await?)
                }
            };
            let opts = opts.clone();
            let output = state
                .engine
                .cpu(move || transform::transform(&data, &probe, &opts, out, hint, faces.as_ref()))
                .await?
                .map_err(transform_error)?;
            Ok::<_, ApiError>(Bytes::from(output.bytes))
        })
        .await?;
    tracing::debug!(account_id = %account_id, identity = %identity, options = %canonical, format = out.key(), computed, "image delivered");
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, out.content_type())],
        bytes,
    )
        .into_response();
    common(&mut response);
    Ok(response)
}
