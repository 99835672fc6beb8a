//! `s3`: Amazon S3 and S3-compatible servers, through aws-sdk-s3.
//!
//! Bucket URLs as JuiceFS users write them: path style
//! `http://127.0.0.1:9000/BUCKET` (S3-compatible servers) or virtual-host
//! style `https://BUCKET.s3.REGION.amazonaws.com`. Request checksums are
//! sent only where S3 requires them, which every S3-compatible server
//! accepts. Retries are left to [`super::Retrying`], so there is one retry
//! policy for every backend. Credentials never appear in messages.

use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{ObjectError, ObjectInfo, ObjectResult, ObjectStore};

/// Per-request limits: a stuck connection becomes a retryable error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a bucket URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    pub endpoint: String,
    pub bucket: String,
    pub region: Option<String>,
    pub path_style: bool,
}

impl BucketUrl {
    pub fn parse(url: &str) -> Result<BucketUrl, String> {
        let bad = |why: &str| {
            format!("invalid bucket URL '{url}': {why} (use http://HOST:PORT/BUCKET or https://BUCKET.s3.REGION.amazonaws.com)")
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_matches('/');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let region = aws_region(host);
        if !path.is_empty() {
            if path.contains('/') {
                return Err(bad("the path must be just the bucket name"));
            }
            return Ok(BucketUrl {
                endpoint: format!("{scheme}://{host}"),
                bucket: path.to_string(),
                region,
                path_style: true,
            });
        }
        let (bucket, service) = host
            .split_once('.')
            .ok_or_else(|| bad("no bucket in the host name or path"))?;
        Ok(BucketUrl {
            endpoint: format!("{scheme}://{service}"),
            bucket: bucket.to_string(),
            region,
            path_style: false,
        })
    }
}

/// The region in an AWS host name (`s3.REGION.amazonaws.com`,
/// `s3-REGION.amazonaws.com`).
fn aws_region(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let s3 = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"))?;
    if !host.ends_with("amazonaws.com") {
        return None;
    }
    if let Some(region) = labels[s3].strip_prefix("s3-") {
        return Some(region.to_string());
    }
    labels
        .get(s3 + 1)
        .filter(|r| **r != "amazonaws")
        .map(|r| r.to_string())
}

pub struct S3Store {
    client: Client,
    bucket: String,
    shown: String,
}

impl S3Store {
    /// The whole object, each part of the body handed to `feed` as it
    /// arrives.
    async fn read(&self, key: &str, feed: Option<super::Feed>) -> ObjectResult<bytes::Bytes> {
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("get", key, e))?;
        whole_body(key, resp.body, resp.content_length, feed).await
    }

    /// A client for `url` with the given keys (or, when absent, the usual
    /// environment variables: ACCESS_KEY / SECRET_KEY, AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN; region from the URL or
    /// AWS_REGION).
    pub fn new(
        url: &str,
        access_key: Option<&str>,
        secret_key: Option<&str>,
    ) -> ObjectResult<S3Store> {
        let parsed = BucketUrl::parse(url).map_err(ObjectError::Fatal)?;
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let access = access_key
            .map(str::to_string)
            .or_else(|| env(&["ACCESS_KEY", "AWS_ACCESS_KEY_ID"]));
        let secret = secret_key
            .map(str::to_string)
            .or_else(|| env(&["SECRET_KEY", "AWS_SECRET_ACCESS_KEY"]));
        let (Some(access), Some(secret)) = (access, secret) else {
            return Err(ObjectError::Auth(
                "no credentials: give --access-key and --secret-key, or set ACCESS_KEY and SECRET_KEY".into(),
            ));
        };
        let credentials =
            Credentials::new(access, secret, env(&["AWS_SESSION_TOKEN"]), None, "jfs");
        let region = parsed
            .region
            .clone()
            .or_else(|| env(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
            .unwrap_or_else(|| "us-east-1".into());
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .endpoint_url(&parsed.endpoint)
            .force_path_style(parsed.path_style)
            .credentials_provider(credentials)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        Ok(S3Store {
            client: Client::from_conf(config),
            shown: format!("s3 bucket {} at {}", parsed.bucket, parsed.endpoint),
            bucket: parsed.bucket,
        })
    }

    fn error<E: ProvideErrorMetadata + std::fmt::Debug, R>(
        &self,
        what: &str,
        key: &str,
        e: SdkError<E, R>,
    ) -> ObjectError {
        match &e {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("");
                let message = service.err().message().unwrap_or("").to_string();
                match code {
                    "NoSuchKey" | "NotFound" => ObjectError::NotFound(key.to_string()),
                    "NoSuchBucket" => ObjectError::Fatal(format!(
                        "{}: the bucket does not exist: create it, or check --bucket",
                        self.shown
                    )),
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken" => ObjectError::Auth(format!(
                        "{}: {code}: check the access key and secret key",
                        self.shown
                    )),
                    "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" => {
                        ObjectError::Transient(format!("{what} {key}: {code} {message}"))
                    }
                    "" => {
                        ObjectError::Transient(format!("{what} {key}: server error without a code"))
                    }
                    _ => ObjectError::Fatal(format!(
                        "{what} {key} on {}: {code}: {message}",
                        self.shown
                    )),
                }
            }
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => ObjectError::Transient(format!(
                "{what} {key}: cannot reach {}: {}",
                self.shown,
                describe_dispatch(&e)
            )),
            _ => ObjectError::Fatal(format!("{what} {key} on {}: {e}", self.shown)),
        }
    }
}

fn describe_dispatch<E: std::fmt::Debug, R>(e: &SdkError<E, R>) -> String {
    match e {
        SdkError::DispatchFailure(d) if d.is_io() => "connection failed".into(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "timed out".into(),
        SdkError::TimeoutError(_) => "timed out".into(),
        _ => "request failed".into(),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn put(&self, key: &str, data: bytes::Bytes) -> ObjectResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(data))
            // No SHA-256 of the payload in the signature (a fifth of the
            // client's CPU on a 4 MiB PUT, on an async worker): a block
            // carries its own CRC-32, checked on every read, and https
            // protects the transfer.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.error("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> ObjectResult<bytes::Bytes> {
        self.read(key, None).await
    }

    async fn get_fed(&self, key: &str, feed: super::Feed) -> ObjectResult<bytes::Bytes> {
        self.read(key, Some(feed)).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> ObjectResult<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={}-{}", offset, offset + len - 1);
        let resp = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(range)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(SdkError::ServiceError(s)) if s.err().code() == Some("InvalidRange") => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(self.error("get", key, e)),
        };
        let mut data = body(key, resp.body, resp.content_length).await?;
        // Some servers answer a range starting past the end with the whole
        // object; some ignore the end. Keep to what was asked.
        if resp.content_range.is_none() && offset > 0 {
            data = data
                .get(offset as usize..)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
        }
        data.truncate(len as usize);
        Ok(data)
    }

    async fn delete(&self, key: &str) -> ObjectResult<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error("delete", key, e) {
                ObjectError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn head(&self, key: &str) -> ObjectResult<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(resp) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: resp.content_length.unwrap_or(0).max(0) as u64,
                modified_secs: resp.last_modified.map(|t| t.secs()),
            })),
            Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => match self.error("head", key, e) {
                ObjectError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ObjectResult<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut start_after = after.map(str::to_string);
        while out.len() < limit {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys((limit - out.len()).min(1000) as i32);
            if let Some(a) = &start_after {
                req = req.start_after(a);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.error("list", prefix, e))?;
            let contents = resp.contents.unwrap_or_default();
            if contents.is_empty() {
                break;
            }
            for o in contents {
                let Some(key) = o.key else { continue };
                start_after = Some(key.clone());
                out.push(ObjectInfo {
                    key,
                    size: o.size.unwrap_or(0).max(0) as u64,
                    modified_secs: o.last_modified.map(|t| t.secs()),
                });
            }
            if !resp.is_truncated.unwrap_or(false) {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// A response body read into one buffer sized from its length: each network
/// chunk is copied once, straight into place.
/// A whole object's body. One of a known length of a block's order goes
/// into a page mapping of its own (returned to the kernel when the block
/// is dropped) rather than the heap, where 4 MiB bodies freed by other
/// threads stayed resident.
async fn whole_body(
    key: &str,
    mut stream: aws_sdk_s3::primitives::ByteStream,
    length: Option<i64>,
    feed: Option<super::Feed>,
) -> ObjectResult<bytes::Bytes> {
    let len = match length {
        Some(n) if (MAPPED_BODY..=64 << 20).contains(&n) => n as usize,
        _ => {
            let data = body(key, stream, length).await?;
            if let Some(feed) = feed {
                feed(0, &data);
            }
            return Ok(bytes::Bytes::from(data));
        }
    };
    let mut buf = crate::data::PageBuf::new(len)
        .map_err(|e| ObjectError::Transient(format!("get {key}: no memory for the body: {e}")))?;
    let mut filled = 0;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| ObjectError::Transient(format!("get {key}: body: {e}")))?
    {
        let end = filled + chunk.len();
        if end > len {
            return Err(ObjectError::Transient(format!(
                "get {key}: body longer than its Content-Length {len}"
            )));
        }
        buf[filled..end].copy_from_slice(&chunk);
        if let Some(feed) = &feed {
            feed(filled, &buf[filled..end]);
        }
        filled = end;
    }
    if filled != len {
        return Err(ObjectError::Transient(format!(
            "get {key}: body of {filled} bytes, Content-Length {len}"
        )));
    }
    Ok(bytes::Bytes::from_owner(crate::data::Filled { buf, len }))
}

/// Bodies from this size up go into page mappings.
const MAPPED_BODY: i64 = 1 << 20;

async fn body(
    key: &str,
    mut stream: aws_sdk_s3::primitives::ByteStream,
    length: Option<i64>,
) -> ObjectResult<Vec<u8>> {
    let mut data = Vec::with_capacity(length.unwrap_or(0).clamp(0, 64 << 20) as usize);
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| ObjectError::Transient(format!("get {key}: body: {e}")))?
    {
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_in_both_styles() {
        let p = BucketUrl::parse("http://127.0.0.1:9000/jfs").expect("path style");
        assert_eq!(
            (p.endpoint.as_str(), p.bucket.as_str(), p.path_style),
            ("http://127.0.0.1:9000", "jfs", true)
        );
        let v =
            BucketUrl::parse("https://mybucket.s3.eu-west-1.amazonaws.com").expect("virtual host");
        assert_eq!(
            (v.endpoint.as_str(), v.bucket.as_str(), v.path_style),
            ("https://s3.eu-west-1.amazonaws.com", "mybucket", false)
        );
        assert_eq!(v.region.as_deref(), Some("eu-west-1"));
        assert!(BucketUrl::parse("ftp://x/y").is_err());
        assert!(BucketUrl::parse("http://host/a/b").is_err());
        assert!(BucketUrl::parse("http:///b").is_err());
    }
}
