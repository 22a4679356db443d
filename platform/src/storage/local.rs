//! Objects as files under one root directory. A write goes to a unique temp file in the same
//! directory, is fsynced, then renamed over the target, so readers never see a partial object and
//! an acknowledged write survives a crash.

use std::{
    io::{Read, Seek, SeekFrom},
    ops::Range,
    path::{Path, PathBuf},
};

use bytes::Bytes;

use super::{ObjectKey, ObjectMeta, ObjectStore, StorageError};

const TEMP_MARKER: &str = ".tmp-";

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn open(root: PathBuf) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

fn not_found_as_none<T>(r: std::io::Result<T>) -> Result<Option<T>, StorageError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("object paths have a parent");
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let tmp = dir.join(format!("{name}{TEMP_MARKER}{}", crate::ids::new_uid()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk for the write to be durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<ObjectKey>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
        } else if !path.to_string_lossy().contains(TEMP_MARKER) {
            if let Some(rel) = path.strip_prefix(root).ok().and_then(|p| p.to_str()) {
                if let Ok(key) = ObjectKey::new(&[rel]) {
                    out.push(key);
                }
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || write_atomic(&path, &data))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError> {
        not_found_as_none(tokio::fs::read(self.path(key)).await).map(|o| o.map(Bytes::from))
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, StorageError> {
        let path = self.path(key);
        let read = move || -> std::io::Result<Vec<u8>> {
            let mut file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            let start = range.start.min(len);
            let end = range.end.min(len).max(start);
            file.seek(SeekFrom::Start(start))?;
            let mut buf = vec![0; (end - start) as usize];
            file.read_exact(&mut buf)?;
            Ok(buf)
        };
        let result = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        not_found_as_none(result).map(|o| o.map(Bytes::from))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        not_found_as_none(tokio::fs::metadata(self.path(key)).await)
            .map(|o| o.map(|m| ObjectMeta { size: m.len() }))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        not_found_as_none(tokio::fs::remove_file(self.path(key)).await).map(|_| ())
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, StorageError> {
        let root = self.root.clone();
        let dir = self.path(prefix);
        let mut keys = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            list_files(&root, &dir, &mut out).map(|_| out)
        })
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))??;
        keys.sort();
        Ok(keys)
    }

    async fn delete_prefix(&self, prefix: &ObjectKey) -> Result<u64, StorageError> {
        let keys = self.list(prefix).await?;
        for key in &keys {
            self.delete(key).await?;
        }
        let _ = tokio::fs::remove_dir_all(self.path(prefix)).await;
        Ok(keys.len() as u64)
    }

    async fn check(&self) -> Result<(), StorageError> {
        let key = ObjectKey::new(&["_health", "probe"])?;
        self.put(&key, Bytes::from_static(b"ok")).await?;
        match self.get(&key).await? {
            Some(data) if data.as_ref() == b"ok" => Ok(()),
            _ => Err(StorageError::Io(std::io::Error::other(
                "probe object did not read back",
            ))),
        }
    }

    fn backend(&self) -> &'static str {
        "local"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_range_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().to_path_buf()).unwrap();
        let a = ObjectKey::new(&["p", "a"]).unwrap();
        let b = ObjectKey::new(&["p", "sub", "b"]).unwrap();
        store
            .put(&a, Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        store.put(&b, Bytes::from_static(b"x")).await.unwrap();
        store
            .put(&a, Bytes::from_static(b"HELLO WORLD"))
            .await
            .unwrap();
        assert_eq!(
            store.get(&a).await.unwrap().unwrap().as_ref(),
            b"HELLO WORLD"
        );
        assert_eq!(
            store.get_range(&a, 6..100).await.unwrap().unwrap().as_ref(),
            b"WORLD"
        );
        assert_eq!(store.head(&a).await.unwrap(), Some(ObjectMeta { size: 11 }));
        let prefix = ObjectKey::new(&["p"]).unwrap();
        assert_eq!(
            store.list(&prefix).await.unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(store.delete_prefix(&prefix).await.unwrap(), 2);
        assert_eq!(store.get(&a).await.unwrap(), None);
        store.delete(&a).await.unwrap();
        store.check().await.unwrap();
    }

    #[tokio::test]
    async fn temp_files_are_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().to_path_buf()).unwrap();
        std::fs::create_dir_all(dir.path().join("p")).unwrap();
        std::fs::write(
            dir.path().join("p").join(format!("x{TEMP_MARKER}123")),
            b"partial",
        )
        .unwrap();
        assert!(store
            .list(&ObjectKey::new(&["p"]).unwrap())
            .await
            .unwrap()
            .is_empty());
    }
}
