//! Database rows of the Images product and the queries on them (SQL written once for SQLite and
//! PostgreSQL: `$n` placeholders, BIGINT flags and unix-ms times).

use platform::{db::flag, ids, storage::StorageError, time_util::now_ms, Db, ObjectKey};
use sqlx::{any::AnyRow, Row};

use crate::transform::{Probe, SourceFormat};

#[derive(Debug, Clone)]
pub struct ImageRow {
    pub account_id: String,
    pub id: String,
    pub storage_uid: String,
    pub filename: Option<String>,
    pub custom_id: bool,
    pub original_object: Option<String>,
    pub meta: serde_json::Value,
    pub require_signed: bool,
    pub draft: bool,
    pub upload_expires_at: Option<i64>,
    pub format: Option<SourceFormat>,
    pub width: i64,
    pub height: i64,
    pub animated: bool,
    pub size_bytes: i64,
    pub sha256: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub uploaded_at: Option<i64>,
}

const IMAGE_COLUMNS: &str = "account_id, id, storage_uid, filename, custom_id, original_object, meta, require_signed, draft, \
     upload_expires_at, format, width, height, animated, size_bytes, sha256, version, created_at, uploaded_at";

impl ImageRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let meta: String = row.try_get("meta")?;
        let format: Option<String> = row.try_get("format")?;
        Ok(Self {
            account_id: row.try_get("account_id")?,
            id: row.try_get("id")?,
            storage_uid: row.try_get("storage_uid")?,
            filename: row.try_get("filename")?,
            custom_id: row.try_get::<i64, _>("custom_id")? != 0,
            original_object: row.try_get("original_object")?,
            meta: serde_json::from_str(&meta)
                .unwrap_or(serde_json::Value::Object(Default::default())),
            require_signed: row.try_get::<i64, _>("require_signed")? != 0,
            draft: row.try_get::<i64, _>("draft")? != 0,
            upload_expires_at: row.try_get("upload_expires_at")?,
            format: format.as_deref().and_then(SourceFormat::parse),
            width: row.try_get::<Option<i64>, _>("width")?.unwrap_or(0),
            height: row.try_get::<Option<i64>, _>("height")?.unwrap_or(0),
            animated: row.try_get::<i64, _>("animated")? != 0,
            size_bytes: row.try_get::<Option<i64>, _>("size_bytes")?.unwrap_or(0),
            sha256: row.try_get("sha256")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            uploaded_at: row.try_get("uploaded_at")?,
        })
    }

    pub fn probe(&self) -> Option<Probe> {
        Some(Probe {
            format: self.format?,
            width: self.width as u32,
            height: self.height as u32,
            animated: self.animated,
        })
    }

    /// Prefix of every object of this image (original and derivatives).
    pub fn object_prefix(&self) -> Result<ObjectKey, StorageError> {
        image_prefix(&self.account_id, &self.storage_uid)
    }
}

pub fn image_prefix(account_id: &str, storage_uid: &str) -> Result<ObjectKey, StorageError> {
    ObjectKey::new(&["images", account_id, storage_uid])
}

/// A fresh object key for an original (each upload gets its own).
pub fn new_original_key(account_id: &str, storage_uid: &str) -> Result<ObjectKey, StorageError> {
    image_prefix(account_id, storage_uid)?.join(&[format!("original-{}", ids::new_uid())])
}

pub struct NewImage<'a> {
    pub account_id: &'a str,
    pub id: &'a str,
    pub custom_id: bool,
    pub filename: Option<&'a str>,
    pub meta: &'a serde_json::Value,
    pub require_signed: bool,
}

pub struct StoredOriginal<'a> {
    pub object: &'a ObjectKey,
    pub probe: &'a Probe,
    pub size: i64,
    pub sha256: &'a str,
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds what the probe and upload learned about an original, in column order: format, width,
/// height, animated, size_bytes, sha256 (shared by uploads and completed direct uploads).
fn bind_original_facts<'q>(query: AnyQuery<'q>, original: &'q StoredOriginal<'_>) -> AnyQuery<'q> {
    query
        .bind(original.probe.format.as_str())
        .bind(original.probe.width as i64)
        .bind(original.probe.height as i64)
        .bind(flag(original.probe.animated))
        .bind(original.size)
        .bind(original.sha256)
}

/// Inserts a finished image. Returns false if the id is taken.
pub async fn insert_image(
    db: &Db,
    new: &NewImage<'_>,
    storage_uid: &str,
    original: &StoredOriginal<'_>,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let query = sqlx::query(
        "INSERT INTO images (account_id, id, storage_uid, filename, custom_id, original_object, meta, require_signed, draft, \
         upload_token_sha256, upload_expires_at, format, width, height, animated, size_bytes, sha256, version, created_at, uploaded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, NULL, NULL, $9, $10, $11, $12, $13, $14, 1, $15, $15) \
         ON CONFLICT (account_id, id) DO NOTHING",
    )
    .bind(new.account_id)
    .bind(new.id)
    .bind(storage_uid)
    .bind(new.filename)
    .bind(flag(new.custom_id))
    .bind(original.object.as_str())
    .bind(new.meta.to_string())
    .bind(flag(new.require_signed));
    let result = bind_original_facts(query, original)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Inserts a draft waiting for its direct upload. Returns false if the id is taken.
pub async fn insert_draft(
    db: &Db,
    new: &NewImage<'_>,
    storage_uid: &str,
    token_sha256: &str,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO images (account_id, id, storage_uid, filename, custom_id, original_object, meta, require_signed, draft, \
         upload_token_sha256, upload_expires_at, format, width, height, animated, size_bytes, sha256, version, created_at, uploaded_at) \
         VALUES ($1, $2, $3, NULL, $4, NULL, $5, $6, 1, $7, $8, NULL, NULL, NULL, 0, NULL, NULL, 1, $9, NULL) \
         ON CONFLICT (account_id, id) DO NOTHING",
    )
    .bind(new.account_id)
    .bind(new.id)
    .bind(storage_uid)
    .bind(flag(new.custom_id))
    .bind(new.meta.to_string())
    .bind(flag(new.require_signed))
    .bind(token_sha256)
    .bind(expires_at)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn draft_by_token(db: &Db, token_sha256: &str) -> Result<Option<ImageRow>, sqlx::Error> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE upload_token_sha256 = $1");
    sqlx::query(&sql)
        .bind(token_sha256)
        .fetch_optional(db.pool())
        .await?
        .map(|r| ImageRow::from_row(&r))
        .transpose()
}

/// Completes a draft exactly once: only the first caller whose token still matches a draft wins.
pub async fn complete_draft(
    db: &Db,
    token_sha256: &str,
    filename: Option<&str>,
    original: &StoredOriginal<'_>,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let query = sqlx::query(
        "UPDATE images SET draft = 0, filename = $2, original_object = $3, format = $4, width = $5, height = $6, animated = $7, \
         size_bytes = $8, sha256 = $9, uploaded_at = $10 \
         WHERE upload_token_sha256 = $1 AND draft = 1 AND upload_expires_at > $10",
    )
    .bind(token_sha256)
    .bind(filename)
    .bind(original.object.as_str());
    let result = bind_original_facts(query, original)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn get_image(
    db: &Db,
    account_id: &str,
    id: &str,
) -> Result<Option<ImageRow>, sqlx::Error> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE account_id = $1 AND id = $2");
    sqlx::query(&sql)
        .bind(account_id)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .map(|r| ImageRow::from_row(&r))
        .transpose()
}

/// Removes drafts whose upload URL expired unused (nothing was stored for them).
pub async fn purge_expired_drafts(db: &Db, account_id: &str) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "DELETE FROM images WHERE account_id = $1 AND draft = 1 AND upload_expires_at <= $2",
    )
    .bind(account_id)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected())
}

/// One page ordered by (created_at, id); `after` is the last row of the previous page.
pub async fn list_images(
    db: &Db,
    account_id: &str,
    after: Option<(i64, String)>,
    limit: i64,
    descending: bool,
) -> Result<Vec<ImageRow>, sqlx::Error> {
    let (cmp, order) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let rows = match after {
        Some((created, id)) => {
            let sql = format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE account_id = $1 AND (created_at {cmp} $2 OR (created_at = $2 AND id {cmp} $3)) \
                 ORDER BY created_at {order}, id {order} LIMIT $4"
            );
            sqlx::query(&sql)
                .bind(account_id)
                .bind(created)
                .bind(id)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
        None => {
            let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE account_id = $1 ORDER BY created_at {order}, id {order} LIMIT $2");
            sqlx::query(&sql)
                .bind(account_id)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.iter().map(ImageRow::from_row).collect()
}

pub async fn count_images(db: &Db, account_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM images WHERE account_id = $1 AND draft = 0")
        .bind(account_id)
        .fetch_one(db.pool())
        .await?
        .try_get(0)
}

pub async fn update_image(
    db: &Db,
    account_id: &str,
    id: &str,
    meta: Option<&serde_json::Value>,
    require_signed: Option<bool>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE images SET meta = COALESCE($3, meta), require_signed = COALESCE($4, require_signed) WHERE account_id = $1 AND id = $2",
    )
    .bind(account_id)
    .bind(id)
    .bind(meta.map(|m| m.to_string()))
    .bind(require_signed.map(flag))
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete_image(db: &Db, account_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "DELETE FROM image_faces WHERE storage_uid IN (SELECT storage_uid FROM images WHERE account_id = $1 AND id = $2)",
    )
    .bind(account_id)
    .bind(id)
    .execute(db.pool())
    .await?;
    let result = sqlx::query("DELETE FROM images WHERE account_id = $1 AND id = $2")
        .bind(account_id)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The detected faces (JSON, see `faces::FaceInfo`) of one original version, if detected yet.
pub async fn get_faces(
    db: &Db,
    storage_uid: &str,
    version: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT faces FROM image_faces WHERE storage_uid = $1 AND version = $2")
        .bind(storage_uid)
        .bind(version)
        .fetch_optional(db.pool())
        .await?
        .map(|r| r.try_get(0))
        .transpose()
}

/// Records detected faces; the first writer wins (detections of one version are interchangeable).
pub async fn put_faces(
    db: &Db,
    storage_uid: &str,
    version: i64,
    faces_json: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO image_faces (storage_uid, version, faces, detected_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (storage_uid, version) DO NOTHING",
    )
    .bind(storage_uid)
    .bind(version)
    .bind(faces_json)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

// ---- per-account settings, variants, signing keys -------------------------------------------

#[derive(Debug, Clone)]
pub struct Settings {
    pub account_hash: String,
    pub flexible_variants: bool,
}

/// The account's settings, created on first use together with the `public` variant and a
/// `default` signing key.
pub async fn settings(db: &Db, account_id: &str) -> Result<Settings, sqlx::Error> {
    if let Some(row) = sqlx::query(
        "SELECT account_hash, flexible_variants FROM image_settings WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(db.pool())
    .await?
    {
        return Ok(Settings {
            account_hash: row.try_get(0)?,
            flexible_variants: row.try_get::<i64, _>(1)? != 0,
        });
    }
    let hash = ids::new_secret(16);
    sqlx::query("INSERT INTO image_settings (account_id, account_hash, flexible_variants) VALUES ($1, $2, 0) ON CONFLICT (account_id) DO NOTHING")
        .bind(account_id)
        .bind(&hash)
        .execute(db.pool())
        .await?;
    sqlx::query(
        "INSERT INTO image_variants (account_id, name, options, never_require_signed, created_at) VALUES ($1, 'public', $2, 0, $3) \
         ON CONFLICT (account_id, name) DO NOTHING",
    )
    .bind(account_id)
    .bind(serde_json::json!({ "fit": "scale-down", "metadata": "none" }).to_string())
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    sqlx::query("INSERT INTO image_signing_keys (account_id, name, secret, created_at) VALUES ($1, 'default', $2, $3) ON CONFLICT (account_id, name) DO NOTHING")
        .bind(account_id)
        .bind(ids::new_secret(32))
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Box::pin(settings(db, account_id)).await
}

pub async fn account_by_hash(
    db: &Db,
    hash: &str,
) -> Result<Option<(String, Settings)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT account_id, flexible_variants FROM image_settings WHERE account_hash = $1",
    )
    .bind(hash)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok((
            r.try_get(0)?,
            Settings {
                account_hash: hash.to_string(),
                flexible_variants: r.try_get::<i64, _>(1)? != 0,
            },
        ))
    })
    .transpose()
}

pub async fn set_flexible_variants(db: &Db, account_id: &str, on: bool) -> Result<(), sqlx::Error> {
    settings(db, account_id).await?;
    sqlx::query("UPDATE image_settings SET flexible_variants = $2 WHERE account_id = $1")
        .bind(account_id)
        .bind(flag(on))
        .execute(db.pool())
        .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantRow {
    pub name: String,
    pub options: serde_json::Value,
    pub never_require_signed: bool,
}

pub async fn list_variants(db: &Db, account_id: &str) -> Result<Vec<VariantRow>, sqlx::Error> {
    settings(db, account_id).await?;
    let rows = sqlx::query("SELECT name, options, never_require_signed FROM image_variants WHERE account_id = $1 ORDER BY name")
        .bind(account_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(variant_from_row).collect()
}

fn variant_from_row(r: &AnyRow) -> Result<VariantRow, sqlx::Error> {
    let options: String = r.try_get(1)?;
    Ok(VariantRow {
        name: r.try_get(0)?,
        options: serde_json::from_str(&options).unwrap_or_default(),
        never_require_signed: r.try_get::<i64, _>(2)? != 0,
    })
}

pub async fn get_variant(
    db: &Db,
    account_id: &str,
    name: &str,
) -> Result<Option<VariantRow>, sqlx::Error> {
    settings(db, account_id).await?;
    let row = sqlx::query("SELECT name, options, never_require_signed FROM image_variants WHERE account_id = $1 AND name = $2")
        .bind(account_id)
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(variant_from_row).transpose()
}

pub async fn count_variants(db: &Db, account_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) FROM image_variants WHERE account_id = $1")
        .bind(account_id)
        .fetch_one(db.pool())
        .await?
        .try_get(0)
}

/// Inserts (`create` = true, fails on an existing name) or replaces a variant.
pub async fn put_variant(
    db: &Db,
    account_id: &str,
    variant: &VariantRow,
    create: bool,
) -> Result<bool, sqlx::Error> {
    settings(db, account_id).await?;
    let sql = if create {
        "INSERT INTO image_variants (account_id, name, options, never_require_signed, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (account_id, name) DO NOTHING"
    } else {
        "UPDATE image_variants SET options = $3, never_require_signed = $4 WHERE account_id = $1 AND name = $2 AND $5 >= 0"
    };
    let result = sqlx::query(sql)
        .bind(account_id)
        .bind(&variant.name)
        .bind(variant.options.to_string())
        .bind(flag(variant.never_require_signed))
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete_variant(db: &Db, account_id: &str, name: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM image_variants WHERE account_id = $1 AND name = $2")
        .bind(account_id)
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn signing_keys(db: &Db, account_id: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    settings(db, account_id).await?;
    let rows = sqlx::query(
        "SELECT name, secret FROM image_signing_keys WHERE account_id = $1 ORDER BY name",
    )
    .bind(account_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Creates or rotates the key `name`; returns the new secret.
pub async fn put_signing_key(db: &Db, account_id: &str, name: &str) -> Result<String, sqlx::Error> {
    settings(db, account_id).await?;
    let secret = ids::new_secret(32);
    sqlx::query(
        "INSERT INTO image_signing_keys (account_id, name, secret, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id, name) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at",
    )
    .bind(account_id)
    .bind(name)
    .bind(&secret)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(secret)
}

pub async fn delete_signing_key(
    db: &Db,
    account_id: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM image_signing_keys WHERE account_id = $1 AND name = $2")
        .bind(account_id)
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

// ---- widget keys ----------------------------------------------------------------------------

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WidgetKey {
    pub id: String,
    #[serde(skip)]
    pub account_id: String,
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub uploads_per_minute: i64,
    pub max_file_bytes: i64,
}

fn widget_from_row(r: &AnyRow) -> Result<WidgetKey, sqlx::Error> {
    let origins: String = r.try_get(3)?;
    Ok(WidgetKey {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        name: r.try_get(2)?,
        allowed_origins: serde_json::from_str(&origins).unwrap_or_default(),
        uploads_per_minute: r.try_get(4)?,
        max_file_bytes: r.try_get(5)?,
    })
}

pub async fn insert_widget_key(db: &Db, key: &WidgetKey) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO image_widget_keys (id, account_id, name, allowed_origins, uploads_per_minute, max_file_bytes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&key.id)
    .bind(&key.account_id)
    .bind(&key.name)
    .bind(serde_json::to_string(&key.allowed_origins).unwrap_or_else(|_| "[]".into()))
    .bind(key.uploads_per_minute)
    .bind(key.max_file_bytes)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

const WIDGET_COLUMNS: &str =
    "id, account_id, name, allowed_origins, uploads_per_minute, max_file_bytes";

pub async fn widget_key(db: &Db, id: &str) -> Result<Option<WidgetKey>, sqlx::Error> {
    let sql = format!("SELECT {WIDGET_COLUMNS} FROM image_widget_keys WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(widget_from_row)
        .transpose()
}

pub async fn list_widget_keys(db: &Db, account_id: &str) -> Result<Vec<WidgetKey>, sqlx::Error> {
    let sql = format!("SELECT {WIDGET_COLUMNS} FROM image_widget_keys WHERE account_id = $1 ORDER BY created_at, id");
    sqlx::query(&sql)
        .bind(account_id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(widget_from_row)
        .collect()
}

pub async fn delete_widget_key(db: &Db, account_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM image_widget_keys WHERE account_id = $1 AND id = $2")
        .bind(account_id)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

// ---- unique transformations -----------------------------------------------------------------

pub const TRANSFORM_WINDOW_MS: i64 = 30 * 24 * 3_600_000;

/// Records that `transform_key` was used now; true if it starts a new 30-day window (billable).
pub async fn note_transformation(
    db: &Db,
    account_id: &str,
    transform_key: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO image_transformations (account_id, transform_key, window_start) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id, transform_key) DO UPDATE SET window_start = excluded.window_start \
         WHERE image_transformations.window_start <= $4",
    )
    .bind(account_id)
    .bind(transform_key)
    .bind(now)
    .bind(now - TRANSFORM_WINDOW_MS)
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() == 1)
}
