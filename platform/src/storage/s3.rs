//! Objects in an S3 bucket through aws-sdk-s3. A PUT is atomic in S3 itself: a reader sees the old
//! or the new object, never a partial one.

use std::ops::Range;

use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region},
    primitives::ByteStream,
    Client,
};
use bytes::Bytes;

use super::{ObjectKey, ObjectMeta, ObjectStore, StorageError};
use crate::PlatformConfig;

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

fn s3_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::S3(e.to_string())
}

impl S3Store {
    pub async fn connect(config: &PlatformConfig, bucket: &str) -> Result<Self, StorageError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.s3_region.clone()));
        if let (Some(id), Some(secret)) = (&config.s3_access_key_id, &config.s3_secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "mediaplane-config",
            ));
        }
        let shared = loader.load().await;
        let mut builder =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(config.s3_force_path_style);
        if let Some(endpoint) = &config.s3_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let client = Client::from_conf(builder.build());
        let prefix = config.s3_prefix.trim_matches('/').to_string();
        let store = Self {
            client,
            bucket: bucket.to_string(),
            prefix,
        };
        store.ensure_bucket().await?;
        Ok(store)
    }

    async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another process may have created it in between.
            Err(e)
                if self
                    .client
                    .head_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .is_ok() =>
            {
                tracing::debug!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "bucket appeared concurrently");
                Ok(())
            }
            Err(e) => Err(s3_err(aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn strip_prefix<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)
                .and_then(|s| s.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    async fn read(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<Option<Bytes>, StorageError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()));
        if let Some(range) = &range {
            if range.end <= range.start {
                return Ok(self.head(key).await?.map(|_| Bytes::new()));
            }
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        match request.send().await {
            Ok(output) => {
                let data = output.body.collect().await.map_err(s3_err)?;
                Ok(Some(data.into_bytes()))
            }
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_no_such_key()) {
                    return Ok(None);
                }
                // A range starting past the end of an existing object.
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) {
                    return Ok(Some(Bytes::new()));
                }
                Err(s3_err(aws_sdk_s3::error::DisplayErrorContext(e)))
            }
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| s3_err(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError> {
        self.read(key, None).await
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, StorageError> {
        self.read(key, Some(range)).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
        {
            Ok(output) => Ok(Some(ObjectMeta {
                size: output.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_err(aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
            .map_err(|e| s3_err(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, StorageError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}/", self.full_key(prefix.as_str())))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_err(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            for object in page.contents() {
                if let Some(full) = object.key() {
                    if let Ok(key) = ObjectKey::new(&[self.strip_prefix(full)]) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), StorageError> {
        let key = ObjectKey::new(&["_health", "probe"])?;
        self.put(&key, Bytes::from_static(b"ok")).await?;
        match self.get(&key).await? {
            Some(data) if data.as_ref() == b"ok" => Ok(()),
            _ => Err(StorageError::S3("probe object did not read back".into())),
        }
    }

    fn backend(&self) -> &'static str {
        "s3"
    }
}
