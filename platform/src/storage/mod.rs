//! Object storage: local disk (embedded default) or S3 (aws-sdk-s3).
//!
//! Writes are atomic on both: a reader sees the old object, no object, or the whole new one,
//! never a prefix. Keys are [`ObjectKey`]s, which products build from ids the platform issued.

mod local;
mod s3;

use std::{ops::Range, sync::Arc};

use bytes::Bytes;

pub use local::LocalStore;
pub use s3::S3Store;

use crate::PlatformConfig;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object key segment {0:?}")]
    InvalidKey(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("s3: {0}")]
    S3(String),
}

/// A validated object key: `/`-joined segments of `[A-Za-z0-9._~=-]`, never `.`/`..`/empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new<S: AsRef<str>>(segments: &[S]) -> Result<Self, StorageError> {
        let mut key = String::new();
        for segment in segments {
            let segment = segment.as_ref();
            for part in segment.split('/') {
                if !is_valid_segment(part) {
                    return Err(StorageError::InvalidKey(segment.to_string()));
                }
            }
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(segment);
        }
        if key.is_empty() {
            return Err(StorageError::InvalidKey(String::new()));
        }
        Ok(Self(key))
    }

    /// This key with more segments appended.
    pub fn join<S: AsRef<str>>(&self, segments: &[S]) -> Result<Self, StorageError> {
        let mut all: Vec<&str> = vec![self.0.as_str()];
        all.extend(segments.iter().map(|s| s.as_ref()));
        Self::new(&all)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_valid_segment(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.len() <= 255
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b'='))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
}

#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `data` under `key`, replacing any previous object atomically.
    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError>;
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError>;
    /// Bytes `range` of the object (clamped to its end); `None` if the object is missing.
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, StorageError>;
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError>;
    /// Deleting a missing object is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;
    /// Keys under `prefix/`, sorted.
    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, StorageError>;
    /// Deletes every object under `prefix/`; returns how many were deleted.
    async fn delete_prefix(&self, prefix: &ObjectKey) -> Result<u64, StorageError> {
        let keys = self.list(prefix).await?;
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len() as u64)
    }
    /// Readiness: the store can be written and read right now.
    async fn check(&self) -> Result<(), StorageError>;
    fn backend(&self) -> &'static str;
}

pub type Storage = Arc<dyn ObjectStore>;

/// Opens S3 when a bucket is configured, else local disk under `<data_dir>/objects`.
pub async fn open(config: &PlatformConfig) -> Result<Storage, StorageError> {
    match &config.s3_bucket {
        Some(bucket) => Ok(Arc::new(S3Store::connect(config, bucket).await?)),
        None => Ok(Arc::new(LocalStore::open(config.data_dir.join("objects"))?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reject_traversal_and_odd_bytes() {
        assert!(ObjectKey::new(&["images", "acc", "a.b-c_d"]).is_ok());
        assert!(ObjectKey::new(&["images/acc", "x"]).is_ok());
        assert!(ObjectKey::new(&["..", "x"]).is_err());
        assert!(ObjectKey::new(&["a/../b"]).is_err());
        assert!(ObjectKey::new(&["a//b"]).is_err());
        assert!(ObjectKey::new(&["a b"]).is_err());
        assert!(ObjectKey::new(&["a\\b"]).is_err());
        assert!(ObjectKey::new::<&str>(&[]).is_err());
        let k = ObjectKey::new(&["a"]).unwrap().join(&["b", "c"]).unwrap();
        assert_eq!(k.as_str(), "a/b/c");
    }
}
