//! Any S3-compatible store through aws-sdk-s3: custom endpoint, path-style addressing,
//! credentials from a shared-credentials file, a private CA.

use std::{ops::Range, time::Duration};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sdk_s3::{
    Client,
    config::http::HttpResponse,
    config::{BehaviorVersion, Region, timeout::TimeoutConfig},
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart, ObjectLockEnabled, ObjectLockMode},
};
use aws_smithy_http_client::tls;
use aws_smithy_types::DateTime;
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use crate::{
    LockMode, ObjectInfo, ObjectReader, ObjectRetention, ObjectStore, ObjectWriter,
    ServerSideEncryption, SharedCredentials, StoreError,
};

/// Parts of a streaming upload. S3 wants at least 5 MiB per part but the last.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once by one writer; with the buffer, a writer holds at most
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes.
const PARTS_IN_FLIGHT: usize = 2;

/// How to reach a bucket.
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Folder inside the bucket; empty for the root.
    pub prefix: String,
    /// Region; `us-east-1` when unset.
    pub region: Option<String>,
    /// Endpoint of a non-AWS store (`config.s3Url`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`config.s3ForcePathStyle`), needed by most non-AWS stores.
    pub force_path_style: bool,
    /// Keys; when None, the SDK's default chain (environment, web identity, instance role).
    pub credentials: Option<SharedCredentials>,
    /// PEM bundle of a private CA to trust (in addition to the system roots).
    pub ca_pem: Option<Vec<u8>>,
    /// The endpoint users reach the store at, when it differs from `endpoint`
    /// (`config.publicUrl`): download URLs are made for it.
    pub public_endpoint: Option<String>,
    /// Server-side encryption asked for every object written.
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// Object lock retention of every object written (one backup's objects); the bucket
    /// must have object lock enabled.
    pub retention: Option<ObjectRetention>,
}

/// The shortest retention an object is written with: a retain-until date already past (a
/// backup that outlived its ttl) would be refused by the store.
const MIN_RETENTION: Duration = Duration::from_secs(60);

/// An S3 bucket (and prefix) as an object store.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    /// Signs download URLs (for `public_endpoint` when there is one).
    signer: Client,
    bucket: String,
    /// Ends with `/` unless empty.
    root: String,
    endpoint: String,
    sse: Option<ServerSideEncryption>,
    retention: Option<ObjectRetention>,
    /// Bodies are sent without a SHA-256 of the payload in the signature (HTTPS only: TLS
    /// protects them in transit, and the CRC32 checksum the SDK adds lets the store check
    /// them). Over plain HTTP the payload stays signed.
    unsigned_payload: bool,
}

impl S3Store {
    pub async fn new(config: S3Config) -> Result<Self, StoreError> {
        if config.bucket.is_empty() {
            return Err(StoreError::Config("objectStorage.bucket is empty".into()));
        }
        let region = Region::new(config.region.clone().unwrap_or_else(|| "us-east-1".into()));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build();
        let mut builder = match &config.credentials {
            Some(creds) => aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(Credentials::new(
                    &creds.access_key_id,
                    &creds.secret_access_key,
                    creds.session_token.clone(),
                    None,
                    "arca-location-secret",
                )),
            None => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(region.clone())
                    .load()
                    .await;
                aws_sdk_s3::config::Builder::from(&shared)
            }
        };
        builder = builder
            .region(region)
            .timeout_config(timeouts)
            .force_path_style(config.force_path_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if let Some(pem) = &config.ca_pem {
            let trust = tls::TrustStore::default().with_pem_certificate(pem.clone());
            let context = tls::TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .map_err(|e| {
                    StoreError::Config(format!("the CA certificate cannot be used: {e}"))
                })?;
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context)
                .build_https();
            builder = builder.http_client(http);
        }
        let prefix = config.prefix.trim_matches('/');
        let client_config = builder.build();
        let signer = match &config.public_endpoint {
            Some(public) => {
                Client::from_conf(client_config.to_builder().endpoint_url(public).build())
            }
            None => Client::from_conf(client_config.clone()),
        };
        Ok(Self {
            client: Client::from_conf(client_config),
            signer,
            bucket: config.bucket.clone(),
            root: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            unsigned_payload: config
                .endpoint
                .as_deref()
                .is_none_or(|e| e.to_ascii_lowercase().starts_with("https://")),
            endpoint: config.endpoint.unwrap_or_else(|| "AWS S3".into()),
            sse: config.server_side_encryption,
            retention: config.retention,
        })
    }

    /// The retention to write an object with now: at least [`MIN_RETENTION`] ahead.
    fn retention_now(&self) -> Option<(ObjectLockMode, DateTime)> {
        self.retention.map(|r| {
            let until = r.until.max(std::time::SystemTime::now() + MIN_RETENTION);
            let mode = match r.mode {
                LockMode::Governance => ObjectLockMode::Governance,
                LockMode::Compliance => ObjectLockMode::Compliance,
            };
            (mode, DateTime::from(until))
        })
    }

    fn sse_headers(
        &self,
    ) -> (
        Option<aws_sdk_s3::types::ServerSideEncryption>,
        Option<String>,
    ) {
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        match &self.sse {
            None => (None, None),
            Some(ServerSideEncryption::Aes256) => (Some(Sse::Aes256), None),
            Some(ServerSideEncryption::Kms { key_id }) => (Some(Sse::AwsKms), key_id.clone()),
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn error<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        SdkError<E, HttpResponse>: std::error::Error,
    {
        classify(operation, key, &self.bucket, &self.endpoint, err)
    }
}

/// Turns an SDK error into one that says what is wrong and what to do.
fn classify<E>(
    operation: &'static str,
    key: &str,
    bucket: &str,
    endpoint: &str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    SdkError<E, HttpResponse>: std::error::Error,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            let lower = detail.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
            {
                StoreError::Tls {
                    endpoint: endpoint.into(),
                    detail,
                }
            } else {
                StoreError::Unreachable {
                    endpoint: endpoint.into(),
                    detail,
                }
            }
        }
        SdkError::ServiceError(_) => match err.code() {
            Some("NoSuchBucket") => StoreError::NoSuchBucket {
                bucket: bucket.into(),
                endpoint: endpoint.into(),
            },
            Some(
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken",
            ) => StoreError::Credentials {
                detail: err.message().unwrap_or("rejected").to_string(),
            },
            // AWS and versitygw both refuse a delete or overwrite under retention so.
            Some("AccessDenied")
                if err
                    .message()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("object lock")) =>
            {
                StoreError::Locked {
                    what: format!("{operation} {key}"),
                    detail: err.message().unwrap_or_default().to_string(),
                }
            }
            Some("AccessDenied" | "Forbidden") => StoreError::AccessDenied {
                what: format!("{operation} {key}"),
                detail: err.message().unwrap_or("access denied").to_string(),
            },
            Some("NoSuchKey" | "NotFound") => StoreError::NotFound { key: key.into() },
            // Stores have codes of their own (versitygw: XAdminUserNotFound for an unknown
            // key); an unrecognised refusal is still a refusal.
            Some(code) if matches!(http_status(&err), Some(401 | 403)) => {
                StoreError::AccessDenied {
                    what: format!("{operation} {key}"),
                    detail: format!("{code}: {}", err.message().unwrap_or("refused")),
                }
            }
            _ => StoreError::Service {
                operation,
                key: key.into(),
                detail,
            },
        },
        _ => StoreError::Service {
            operation,
            key: key.into(),
            detail,
        },
    }
}

fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let (sse, kms_key) = self.sse_headers();
        let retention = self.retention_now();
        // The SDK adds a CRC32 checksum to every put, which S3 requires with a retention.
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(body))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .set_object_lock_mode(retention.as_ref().map(|r| r.0.clone()))
            .set_object_lock_retain_until_date(retention.map(|r| r.1));
        let sent = if self.unsigned_payload {
            request.customize().disable_payload_signing().send().await
        } else {
            request.send().await
        };
        sent.map_err(|e| self.error("writing", key, e))?;
        Ok(())
    }

    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Ok(Box::new(S3Writer {
            store: self.clone(),
            key: key.into(),
            buffer: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            in_flight: JoinSet::new(),
            next_part: 1,
            written: 0,
            done: false,
        }))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.error("reading", key, e))?;
        let body = out.body.collect().await.map_err(|e| StoreError::Service {
            operation: "reading",
            key: key.into(),
            detail: e.to_string(),
        })?;
        Ok(body.into_bytes())
    }

    async fn reader(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectReader, StoreError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key));
        if let Some(range) = range {
            if range.is_empty() {
                return Ok(Box::pin(tokio::io::empty()));
            }
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        let out = request
            .send()
            .await
            .map_err(|e| self.error("reading", key, e))?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("listing", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.root)) {
                    out.push(ObjectInfo {
                        key: key.to_string(),
                        size: object.size().unwrap_or_default().max(0) as u64,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = self.full(prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("listing", prefix, e))?;
            for common in page.common_prefixes() {
                if let Some(name) = common.prefix().and_then(|p| p.strip_prefix(&full)) {
                    out.push(name.trim_end_matches('/').to_string());
                }
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.error("deleting", key, e))?;
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or_default().max(0) as u64)),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(self.error("reading", key, e)),
        }
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.root)
    }

    async fn presign_get(
        &self,
        key: &str,
        valid_for: Duration,
    ) -> Result<Option<String>, StoreError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid_for)
            .map_err(|e| StoreError::Config(format!("presigning: {e}")))?;
        let request = self
            .signer
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .presigned(config)
            .await
            .map_err(|e| self.error("presigning", key, e))?;
        Ok(Some(request.uri().to_string()))
    }

    async fn object_lock_enabled(&self) -> Result<Option<bool>, StoreError> {
        match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled),
            )),
            Err(e) if no_lock_configuration(e.code()) => Ok(Some(false)),
            Err(e) => Err(self.error("reading the object lock configuration of", "", e)),
        }
    }

    /// Read with HeadObject, whose `x-amz-object-lock-*` headers AWS and versitygw both
    /// return (versitygw 1.7.0 answers GetObjectRetention with an `ObjectLockRetention`
    /// root element, which the SDK refuses to parse).
    async fn retention(&self, key: &str) -> Result<Option<ObjectRetention>, StoreError> {
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => return Ok(None),
            Err(e) => return Err(self.error("reading the retention of", key, e)),
        };
        let mode = match out.object_lock_mode() {
            Some(ObjectLockMode::Compliance) => LockMode::Compliance,
            Some(ObjectLockMode::Governance) => LockMode::Governance,
            _ => return Ok(None),
        };
        let Some(until) = out
            .object_lock_retain_until_date()
            .and_then(|d| std::time::SystemTime::try_from(*d).ok())
        else {
            return Ok(None);
        };
        Ok(Some(ObjectRetention { mode, until }))
    }
}

/// The codes S3 stores answer with when a bucket or object has no object lock: AWS says
/// InvalidRequest ("Bucket is missing Object Lock Configuration") or
/// NoSuchObjectLockConfiguration; versitygw ObjectLockConfigurationNotFoundError.
fn no_lock_configuration(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ObjectLockConfigurationNotFoundError"
                | "NoSuchObjectLockConfiguration"
                | "InvalidRequest"
        )
    )
}

/// A multipart upload that holds at most a few parts in memory.
struct S3Writer {
    store: S3Store,
    key: String,
    buffer: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    in_flight: JoinSet<Result<CompletedPart, StoreError>>,
    next_part: i32,
    written: u64,
    done: bool,
}

impl S3Writer {
    async fn upload_id(&mut self) -> Result<String, StoreError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let (sse, kms_key) = self.store.sse_headers();
        let retention = self.store.retention_now();
        let out = self
            .store
            .client
            .create_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.store.full(&self.key))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .set_object_lock_mode(retention.as_ref().map(|r| r.0.clone()))
            .set_object_lock_retain_until_date(retention.map(|r| r.1))
            .send()
            .await
            .map_err(|e| self.store.error("starting upload of", &self.key, e))?;
        let id = out.upload_id().unwrap_or_default().to_string();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    async fn send_part(&mut self, body: Bytes) -> Result<(), StoreError> {
        let upload_id = self.upload_id().await?;
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        let number = self.next_part;
        self.next_part += 1;
        let (store, key) = (self.store.clone(), self.key.clone());
        self.in_flight.spawn(async move {
            let request = store
                .client
                .upload_part()
                .bucket(&store.bucket)
                .key(store.full(&key))
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(body));
            let sent = if store.unsigned_payload {
                request.customize().disable_payload_signing().send().await
            } else {
                request.send().await
            };
            let out = sent.map_err(|e| store.error("uploading part of", &key, e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        });
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), StoreError> {
        if let Some(joined) = self.in_flight.join_next().await {
            let part = joined.map_err(|e| StoreError::Service {
                operation: "uploading",
                key: self.key.clone(),
                detail: e.to_string(),
            })??;
            self.parts.push(part);
        }
        Ok(())
    }

    async fn complete(&mut self) -> Result<u64, StoreError> {
        if self.upload_id.is_none() {
            let body = self.buffer.split().freeze();
            self.store.put(&self.key, body).await?;
            return Ok(self.written);
        }
        let rest = self.buffer.split().freeze();
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.part_number());
        let upload_id = self.upload_id().await?;
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.store.full(&self.key))
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.store.error("completing upload of", &self.key, e))?;
        Ok(self.written)
    }

    async fn abort_upload(&mut self) {
        self.in_flight.abort_all();
        if let Some(id) = self.upload_id.take() {
            let _ = self
                .store
                .client
                .abort_multipart_upload()
                .bucket(&self.store.bucket)
                .key(self.store.full(&self.key))
                .upload_id(id)
                .send()
                .await;
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        while self.buffer.len() >= PART_SIZE {
            let part = self.buffer.split_to(PART_SIZE).freeze();
            if let Err(e) = self.send_part(part).await {
                self.abort_upload().await;
                self.done = true;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        self.done = true;
        match self.complete().await {
            Ok(size) => Ok(size),
            Err(e) => {
                self.abort_upload().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        self.done = true;
        self.abort_upload().await;
    }
}

impl Drop for S3Writer {
    /// A writer dropped unfinished (a cancelled backup) aborts its multipart upload, so no
    /// half-uploaded parts linger in the bucket.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.in_flight.abort_all();
        if let (Some(id), Ok(handle)) =
            (self.upload_id.take(), tokio::runtime::Handle::try_current())
        {
            let store = self.store.clone();
            let key = store.full(&self.key);
            handle.spawn(async move {
                let _ = store
                    .client
                    .abort_multipart_upload()
                    .bucket(&store.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A stand-in S3 endpoint that answers every request with success and keeps each
    /// request's line and headers, lowercased.
    async fn recording_server() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 65536];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + length {
                            let mut chunk = [0u8; 65536];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + length);
                        let line = head.lines().next().unwrap_or_default().to_string();
                        let body = if line.starts_with("post") && line.contains("?uploads") {
                            "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>"
                        } else if line.starts_with("post") {
                            "<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>\"e\"</ETag></CompleteMultipartUploadResult>"
                        } else {
                            ""
                        };
                        seen.lock().expect("lock").push(head);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, heads)
    }

    #[tokio::test]
    async fn writes_carry_the_encryption_and_retention_headers() {
        let (url, heads) = recording_server().await;
        let until = std::time::SystemTime::now() + Duration::from_secs(3600);
        let store = S3Store::new(S3Config {
            bucket: "b".into(),
            endpoint: Some(url),
            force_path_style: true,
            credentials: Some(SharedCredentials {
                access_key_id: "a".into(),
                secret_access_key: "s".into(),
                session_token: None,
            }),
            server_side_encryption: Some(ServerSideEncryption::Kms {
                key_id: Some("key-1".into()),
            }),
            retention: Some(ObjectRetention {
                mode: LockMode::Compliance,
                until,
            }),
            ..S3Config::default()
        })
        .await
        .expect("store");
        store
            .put("backups/x/backup.json", Bytes::from_static(b"{}"))
            .await
            .expect("put");
        let mut writer = store
            .writer("backups/x/resources.tar.zst")
            .await
            .expect("writer");
        writer
            .write(Bytes::from(vec![7u8; PART_SIZE + 10]))
            .await
            .expect("write");
        writer.finish().await.expect("finish");

        let heads = heads.lock().expect("lock").clone();
        let until = aws_smithy_types::DateTime::from(until)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .expect("date")
            .to_ascii_lowercase();
        let put = heads
            .iter()
            .find(|h| h.starts_with("put /b/backups/x/backup.json"))
            .expect("the put");
        let create = heads
            .iter()
            .find(|h| h.starts_with("post /b/backups/x/resources.tar.zst?uploads"))
            .expect("the multipart upload's creation");
        for head in [put, create] {
            for header in [
                "x-amz-server-side-encryption: aws:kms".to_string(),
                "x-amz-server-side-encryption-aws-kms-key-id: key-1".into(),
                "x-amz-object-lock-mode: compliance".into(),
                format!("x-amz-object-lock-retain-until-date: {until}"),
            ] {
                assert!(head.contains(&header), "{header} missing in:\n{head}");
            }
        }
        // S3 takes a retention only with a checksum of the body (Content-MD5 or x-amz-checksum).
        assert!(put.contains("checksum"), "no checksum in:\n{put}");
        let parts: Vec<_> = heads.iter().filter(|h| h.contains("partnumber=")).collect();
        assert_eq!(parts.len(), 2, "{heads:#?}");
        assert!(parts.iter().all(|p| p.contains("checksum")), "{parts:#?}");
    }

    #[tokio::test]
    async fn without_settings_no_such_header_is_sent() {
        let (url, heads) = recording_server().await;
        let store = S3Store::new(S3Config {
            bucket: "b".into(),
            endpoint: Some(url),
            force_path_style: true,
            credentials: Some(SharedCredentials {
                access_key_id: "a".into(),
                secret_access_key: "s".into(),
                session_token: None,
            }),
            ..S3Config::default()
        })
        .await
        .expect("store");
        store.put("k", Bytes::from_static(b"x")).await.expect("put");
        let heads = heads.lock().expect("lock").clone();
        assert_eq!(heads.len(), 1);
        assert!(
            !heads[0].contains("x-amz-server-side-encryption")
                && !heads[0].contains("x-amz-object-lock"),
            "{}",
            heads[0]
        );
    }
}
