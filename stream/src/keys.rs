//! Object storage keys of Stream, built only from platform-issued ids.

use platform::{storage::StorageError, ObjectKey};

pub fn video_prefix(account_id: &str, video_id: &str) -> Result<ObjectKey, StorageError> {
    ObjectKey::new(&["stream", account_id, video_id])
}

pub fn init_key(account_id: &str, video_id: &str, idx: i64) -> Result<ObjectKey, StorageError> {
    video_prefix(account_id, video_id)?.join(&[format!("init-{idx}.mp4")])
}

pub fn segment_key(account_id: &str, video_id: &str, seq: i64) -> Result<ObjectKey, StorageError> {
    video_prefix(account_id, video_id)?.join(&[format!("seg-{seq:08}.m4s")])
}
