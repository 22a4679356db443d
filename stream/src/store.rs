//! Database rows of Stream (one SQL text for SQLite and PostgreSQL, `$n` placeholders).

use platform::{db::flag, Db};
use sqlx::{any::AnyRow, Row};

#[derive(Debug, Clone)]
pub struct LiveInputRow {
    pub uid: String,
    pub account_id: String,
    pub meta: serde_json::Value,
    pub recording_mode: String,
    pub timeout_seconds: i64,
    pub require_signed_urls: bool,
    pub allowed_origins: Option<Vec<String>>,
    pub delete_recording_after_days: Option<i64>,
    pub enabled: bool,
    pub secret: String,
    pub created_ms: i64,
    pub modified_ms: i64,
}

const INPUT_COLUMNS: &str = "uid, account_id, meta, recording_mode, timeout_seconds, require_signed_urls, allowed_origins, \
     delete_recording_after_days, enabled, secret, created_ms, modified_ms";

fn input_from_row(row: &AnyRow) -> Result<LiveInputRow, sqlx::Error> {
    let meta: String = row.try_get(2)?;
    let origins: Option<String> = row.try_get(6)?;
    Ok(LiveInputRow {
        uid: row.try_get(0)?,
        account_id: row.try_get(1)?,
        meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
        recording_mode: row.try_get(3)?,
        timeout_seconds: row.try_get(4)?,
        require_signed_urls: row.try_get::<i64, _>(5)? != 0,
        allowed_origins: origins.and_then(|o| serde_json::from_str(&o).ok()),
        delete_recording_after_days: row.try_get(7)?,
        enabled: row.try_get::<i64, _>(8)? != 0,
        secret: row.try_get(9)?,
        created_ms: row.try_get(10)?,
        modified_ms: row.try_get(11)?,
    })
}

pub async fn insert_input(db: &Db, input: &LiveInputRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("INSERT INTO stream_live_inputs ({INPUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
        .bind(&input.uid)
        .bind(&input.account_id)
        .bind(input.meta.to_string())
        .bind(&input.recording_mode)
        .bind(input.timeout_seconds)
        .bind(flag(input.require_signed_urls))
        .bind(input.allowed_origins.as_ref().map(|o| serde_json::Value::from(o.clone()).to_string()))
        .bind(input.delete_recording_after_days)
        .bind(flag(input.enabled))
        .bind(&input.secret)
        .bind(input.created_ms)
        .bind(input.modified_ms)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn update_input(db: &Db, input: &LiveInputRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stream_live_inputs SET meta = $1, recording_mode = $2, timeout_seconds = $3, require_signed_urls = $4, \
         allowed_origins = $5, delete_recording_after_days = $6, enabled = $7, secret = $8, modified_ms = $9 \
         WHERE uid = $10 AND account_id = $11",
    )
    .bind(input.meta.to_string())
    .bind(&input.recording_mode)
    .bind(input.timeout_seconds)
    .bind(flag(input.require_signed_urls))
    .bind(input.allowed_origins.as_ref().map(|o| serde_json::Value::from(o.clone()).to_string()))
    .bind(input.delete_recording_after_days)
    .bind(flag(input.enabled))
    .bind(&input.secret)
    .bind(input.modified_ms)
    .bind(&input.uid)
    .bind(&input.account_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn get_input(
    db: &Db,
    account_id: &str,
    uid: &str,
) -> Result<Option<LiveInputRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {INPUT_COLUMNS} FROM stream_live_inputs WHERE uid = $1 AND account_id = $2"
    ))
    .bind(uid)
    .bind(account_id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(input_from_row).transpose()
}

pub async fn get_input_by_uid(db: &Db, uid: &str) -> Result<Option<LiveInputRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {INPUT_COLUMNS} FROM stream_live_inputs WHERE uid = $1"
    ))
    .bind(uid)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(input_from_row).transpose()
}

pub async fn get_input_by_secret(
    db: &Db,
    secret: &str,
) -> Result<Option<LiveInputRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {INPUT_COLUMNS} FROM stream_live_inputs WHERE secret = $1"
    ))
    .bind(secret)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(input_from_row).transpose()
}

pub async fn list_inputs(db: &Db, account_id: &str) -> Result<Vec<LiveInputRow>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {INPUT_COLUMNS} FROM stream_live_inputs WHERE account_id = $1 ORDER BY created_ms, uid"))
        .bind(account_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(input_from_row).collect()
}

pub async fn delete_input(db: &Db, account_id: &str, uid: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM stream_live_inputs WHERE uid = $1 AND account_id = $2")
        .bind(uid)
        .bind(account_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, Clone)]
pub struct VideoRow {
    pub uid: String,
    pub account_id: String,
    pub live_input_id: String,
    pub recorded: bool,
    /// `live` while a publisher may still add segments, `ready` after.
    pub state: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub duration_ticks: i64,
    pub size_bytes: i64,
    pub width: i64,
    pub height: i64,
    pub codecs: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// EXT-X-TARGETDURATION of its playlists, fixed at the start (0: recorded before it was kept).
    pub target_duration: i64,
}

const VIDEO_COLUMNS: &str = "uid, account_id, live_input_id, recorded, state, started_ms, ended_ms, duration_ticks, size_bytes, \
     width, height, codecs, created_ms, modified_ms, target_duration";

fn video_from_row(row: &AnyRow) -> Result<VideoRow, sqlx::Error> {
    Ok(VideoRow {
        uid: row.try_get(0)?,
        account_id: row.try_get(1)?,
        live_input_id: row.try_get(2)?,
        recorded: row.try_get::<i64, _>(3)? != 0,
        state: row.try_get(4)?,
        started_ms: row.try_get(5)?,
        ended_ms: row.try_get(6)?,
        duration_ticks: row.try_get(7)?,
        size_bytes: row.try_get(8)?,
        width: row.try_get(9)?,
        height: row.try_get(10)?,
        codecs: row.try_get(11)?,
        created_ms: row.try_get(12)?,
        modified_ms: row.try_get(13)?,
        target_duration: row.try_get(14)?,
    })
}

pub async fn insert_video(db: &Db, v: &VideoRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO stream_videos ({VIDEO_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&v.uid)
    .bind(&v.account_id)
    .bind(&v.live_input_id)
    .bind(flag(v.recorded))
    .bind(&v.state)
    .bind(v.started_ms)
    .bind(v.ended_ms)
    .bind(v.duration_ticks)
    .bind(v.size_bytes)
    .bind(v.width)
    .bind(v.height)
    .bind(&v.codecs)
    .bind(v.created_ms)
    .bind(v.modified_ms)
    .bind(v.target_duration)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn get_video(db: &Db, uid: &str) -> Result<Option<VideoRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {VIDEO_COLUMNS} FROM stream_videos WHERE uid = $1"
    ))
    .bind(uid)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(video_from_row).transpose()
}

/// Recorded videos of an account (optionally of one input), newest first.
pub async fn list_videos(
    db: &Db,
    account_id: &str,
    input: Option<&str>,
) -> Result<Vec<VideoRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {VIDEO_COLUMNS} FROM stream_videos WHERE account_id = $1 AND recorded = 1 AND ($2 = '' OR live_input_id = $2) \
         ORDER BY created_ms DESC, uid"
    ))
    .bind(account_id)
    .bind(input.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(video_from_row).collect()
}

/// The most recent video of an input (live or ended).
pub async fn latest_video_of_input(
    db: &Db,
    input_uid: &str,
) -> Result<Option<VideoRow>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {VIDEO_COLUMNS} FROM stream_videos WHERE live_input_id = $1 ORDER BY created_ms DESC, uid LIMIT 1"))
        .bind(input_uid)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(video_from_row).transpose()
}

pub async fn finish_video(db: &Db, uid: &str, ended_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stream_videos SET state = 'ready', ended_ms = $1, modified_ms = $1 WHERE uid = $2",
    )
    .bind(ended_ms)
    .bind(uid)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn delete_video_rows(db: &Db, uid: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    for table in ["stream_segments", "stream_inits"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE video_id = $1"))
            .bind(uid)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM stream_videos WHERE uid = $1")
        .bind(uid)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Recorded videos whose retention ran out.
pub async fn expired_videos(db: &Db, now_ms: i64) -> Result<Vec<VideoRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM stream_videos v JOIN stream_live_inputs i ON i.uid = v.live_input_id \
         WHERE v.state = 'ready' AND i.delete_recording_after_days IS NOT NULL \
         AND v.ended_ms + i.delete_recording_after_days * 86400000 < $1",
        VIDEO_COLUMNS
            .split(", ")
            .map(|c| format!("v.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(now_ms)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(video_from_row).collect()
}

#[derive(Debug, Clone)]
pub struct InitRow {
    pub idx: i64,
    pub codecs: String,
    pub width: i64,
    pub height: i64,
}

pub async fn insert_init(db: &Db, video_id: &str, init: &InitRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO stream_inits (video_id, idx, codecs, width, height) VALUES ($1, $2, $3, $4, $5)")
        .bind(video_id)
        .bind(init.idx)
        .bind(&init.codecs)
        .bind(init.width)
        .bind(init.height)
        .execute(db.pool())
        .await?;
    sqlx::query("UPDATE stream_videos SET codecs = $1, width = $2, height = $3 WHERE uid = $4")
        .bind(&init.codecs)
        .bind(init.width)
        .bind(init.height)
        .bind(video_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn list_inits(db: &Db, video_id: &str) -> Result<Vec<InitRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT idx, codecs, width, height FROM stream_inits WHERE video_id = $1 ORDER BY idx",
    )
    .bind(video_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InitRow {
                idx: r.try_get(0)?,
                codecs: r.try_get(1)?,
                width: r.try_get(2)?,
                height: r.try_get(3)?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRow {
    pub seq: i64,
    pub init_idx: i64,
    pub start_ticks: i64,
    pub duration_ticks: i64,
    pub size_bytes: i64,
    pub discontinuity: bool,
    /// Starts with a keyframe (false when the recorder had to cut inside a GOP).
    pub independent: bool,
}

impl SegmentRow {
    pub fn start_seconds(&self) -> f64 {
        self.start_ticks as f64 / 90_000.0
    }
    pub fn duration_seconds(&self) -> f64 {
        self.duration_ticks as f64 / 90_000.0
    }
    pub fn end_ticks(&self) -> i64 {
        self.start_ticks + self.duration_ticks
    }
}

/// Records a stored segment and grows the video's duration and size in one transaction.
pub async fn insert_segment(db: &Db, video_id: &str, s: &SegmentRow) -> Result<(), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO stream_segments (video_id, seq, init_idx, start_ticks, duration_ticks, size_bytes, discontinuity, independent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(video_id)
    .bind(s.seq)
    .bind(s.init_idx)
    .bind(s.start_ticks)
    .bind(s.duration_ticks)
    .bind(s.size_bytes)
    .bind(flag(s.discontinuity))
    .bind(flag(s.independent))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE stream_videos SET duration_ticks = $1, size_bytes = size_bytes + $2 WHERE uid = $3",
    )
    .bind(s.end_ticks())
    .bind(s.size_bytes)
    .bind(video_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

const SEGMENT_COLUMNS: &str =
    "seq, init_idx, start_ticks, duration_ticks, size_bytes, discontinuity, independent";

/// Maps a row of `SELECT {SEGMENT_COLUMNS}`.
fn segment_from_row(r: &sqlx::any::AnyRow) -> Result<SegmentRow, sqlx::Error> {
    Ok(SegmentRow {
        seq: r.try_get(0)?,
        init_idx: r.try_get(1)?,
        start_ticks: r.try_get(2)?,
        duration_ticks: r.try_get(3)?,
        size_bytes: r.try_get(4)?,
        discontinuity: r.try_get::<i64, _>(5)? != 0,
        independent: r.try_get::<i64, _>(6)? != 0,
    })
}

pub async fn list_segments(db: &Db, video_id: &str) -> Result<Vec<SegmentRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SEGMENT_COLUMNS} FROM stream_segments WHERE video_id = $1 ORDER BY seq"
    ))
    .bind(video_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(segment_from_row).collect()
}

pub async fn get_segment(
    db: &Db,
    video_id: &str,
    seq: i64,
) -> Result<Option<SegmentRow>, sqlx::Error> {
    Ok(list_segment_range(db, video_id, seq, seq)
        .await?
        .into_iter()
        .next())
}

async fn list_segment_range(
    db: &Db,
    video_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<SegmentRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SEGMENT_COLUMNS} FROM stream_segments \
         WHERE video_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
    ))
    .bind(video_id)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(segment_from_row).collect()
}
