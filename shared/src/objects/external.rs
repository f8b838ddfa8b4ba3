//! Blobs in an object store outside NATS — S3 and S3-compatible stores, Google Cloud Storage,
//! Azure Blob Storage or a local directory — through the Arrow project's `object_store` crate,
//! chosen per deployment by `MLOPS_OBJECT_STORE`. Every bucket of the platform is a folder under
//! the configured prefix (`s3://lake/mlops/datasets/<sha256>`); credentials come from the
//! provider's usual environment variables and never appear in a log or an error.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, ObjectStoreScheme, PutMode, PutOptions, PutPayload};

use super::ObjectError;

/// Objects up to this size go in one request; larger ones in parts of this size, so a file of
/// any size is uploaded without being held in memory (S3 takes parts of 5 MiB and more).
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;

/// A provider's builder with `options` applied; keys it does not know are left out.
macro_rules! with_options {
    ($builder:expr, $options:expr) => {
        $options.iter().fold($builder, |b, (k, v)| match k.parse() {
            Ok(key) => b.with_config(key, *v),
            Err(_) => b,
        })
    };
}

/// Why a store setting (`MLOPS_OBJECT_STORE`, a lake URI) cannot be used; each names the
/// setting and its value, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error(
        "{setting} {value:?} is not a URL (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path)"
    )]
    NotAUrl { setting: &'static str, value: String },
    #[error("{setting} {value}: the scheme is not one of s3://, gs://, az:// or file://")]
    Scheme { setting: &'static str, value: String },
    #[error("{setting} {value}: {message}")]
    Unusable { setting: &'static str, value: String, message: String },
}

/// Where the platform keeps its blobs when not in NATS: a store and the prefix of every key.
#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The setting it came from, for errors.
    setting: &'static str,
    /// The URL as configured, with any user information removed: what logs and errors show.
    shown: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Location {
    /// The store that `MLOPS_OBJECT_STORE`'s `value` names, with credentials from the environment.
    pub fn parse(value: &str) -> Result<Self, LocationError> {
        Self::parse_named("MLOPS_OBJECT_STORE", value, &[])
    }

    /// [`Location::parse`], with provider settings (`aws_endpoint`, `aws_access_key_id`, …, as
    /// the `object_store` crate names them) given in `options` winning over the environment's.
    pub fn parse_with(value: &str, options: &[(&str, &str)]) -> Result<Self, LocationError> {
        Self::parse_named("MLOPS_OBJECT_STORE", value, options)
    }

    /// The store `value` names, errors naming it as `setting`.
    pub fn parse_named(setting: &'static str, value: &str, options: &[(&str, &str)]) -> Result<Self, LocationError> {
        let mut url =
            url::Url::parse(value).map_err(|_| LocationError::NotAUrl { setting, value: value.to_owned() })?;
        // Nobody should put a secret in the URL, but if someone does it is not shown.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let shown = url.to_string();
        let unusable = |message: String| LocationError::Unusable { setting, value: shown.clone(), message };
        let (scheme, prefix) =
            ObjectStoreScheme::parse(&url).map_err(|_| LocationError::Scheme { setting, value: shown.clone() })?;
        // The HTTP client's TLS takes the process's provider: ring, as NATS and gRPC use here.
        // Installing it twice is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                let dir = url.to_file_path().map_err(|()| unusable("not a local path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| unusable(format!("creating {}: {e}", dir.display())))?;
                let local =
                    object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| unusable(e.to_string()))?;
                return Ok(Self { store: Arc::new(local), prefix: Path::default(), setting, shown });
            }
            ObjectStoreScheme::AmazonS3 => {
                if options.is_empty() {
                    check_aws_keys().map_err(unusable)?;
                }
                let builder = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str()).with_retry(retry());
                let builder = with_options!(builder, options);
                Arc::new(builder.build().map_err(|e| unusable(e.to_string()))?)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let builder =
                    object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url.as_str()).with_retry(retry());
                let builder = with_options!(builder, options);
                Arc::new(builder.build().map_err(|e| unusable(e.to_string()))?)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let builder =
                    object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str()).with_retry(retry());
                let builder = with_options!(builder, options);
                Arc::new(builder.build().map_err(|e| unusable(e.to_string()))?)
            }
            _ => return Err(LocationError::Scheme { setting, value: shown }),
        };
        Ok(Self { store, prefix, setting, shown })
    }

    /// The store and prefix, as every process on one platform must agree on them
    /// ([`super::agreement`]): the URL shown, without a trailing `/`.
    pub fn identity(&self) -> String {
        self.shown.trim_end_matches('/').to_owned()
    }

    /// Asks for an object that is not there, then lists the prefix, so that refused credentials,
    /// a missing bucket or a wrong endpoint are said at start, naming the setting, rather than at
    /// the first dataset. (A refusal is told apart on the first request: stores answer a listing
    /// with errors that carry no kind.)
    pub async fn probe(&self) -> Result<(), LocationError> {
        let unusable =
            |message: String| LocationError::Unusable { setting: self.setting, value: self.shown.clone(), message };
        match self.store.head(&self.prefix.clone().join(".mlops-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(unusable(explain(&e))),
        }
        match self.store.list_with_delimiter(Some(&self.prefix)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(unusable(format!("the bucket or container cannot be listed (does it exist?): {e}"))),
        }
    }

    /// The platform's bucket `bucket`: a folder under the prefix.
    pub(super) fn bucket(&self, bucket: &'static str) -> Folder {
        Folder { store: self.store.clone(), folder: self.prefix.clone().join(bucket), bucket }
    }
}

/// One object named by URI (`s3://bucket/key`), as read: its content as it streams and what
/// identifies that content in its store.
pub struct Remote {
    pub size: u64,
    /// The store's entity tag of what is being read (S3's ETag).
    pub e_tag: Option<String>,
    /// The object's version, where the bucket keeps versions.
    pub version: Option<String>,
    pub reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
}

impl Location {
    /// Opens the object the location's own path names (a location parsed from an object's URI,
    /// not a prefix), refusing one larger than `limit` bytes before reading it.
    pub async fn open_object(&self, limit: u64) -> Result<Remote, ObjectError> {
        let name = || self.shown.clone();
        let got = self.store.get(&self.prefix).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => ObjectError::NotFound { bucket: "lake", name: name() },
            e => ObjectError::Store { bucket: "lake", message: format!("{}: {}", self.shown, explain(&e)) },
        })?;
        let (size, e_tag, version) = (got.meta.size, got.meta.e_tag.clone(), got.meta.version.clone());
        if size > limit {
            return Err(ObjectError::TooLarge { bucket: "lake", name: name(), size, limit });
        }
        let stream = got.into_stream().map_err(std::io::Error::other);
        Ok(Remote { size, e_tag, version, reader: Box::new(tokio_util::io::StreamReader::new(stream)) })
    }
}

/// Refuses half a key pair at once: the store would otherwise fall back to the instance's role
/// and fail much later with a less useful message.
fn check_aws_keys() -> Result<(), String> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        (true, false) => Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into()),
        (false, true) => Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into()),
        _ => Ok(()),
    }
}

/// A few quick retries inside a request; a store down for longer is the bus's to retry (the
/// message is redelivered with backoff, then dead-lettered with the reason).
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

/// What went wrong, in words an operator can act on; never a credential.
fn explain(e: &object_store::Error) -> String {
    match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => format!(
            "the store refused the credentials (check the provider's variables, e.g. AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY): {e}"
        ),
        _ => e.to_string(),
    }
}

/// One platform bucket in an external store.
#[derive(Clone)]
pub(super) struct Folder {
    store: Arc<dyn ObjectStore>,
    folder: Path,
    bucket: &'static str,
}

impl Folder {
    /// The key of `name`; a `/` in a name makes folders, as it does in the NATS store's names.
    fn key(&self, name: &str) -> Path {
        name.split('/').fold(self.folder.clone(), |key, part| key.join(part))
    }

    fn error(&self, e: &object_store::Error) -> ObjectError {
        ObjectError::Store { bucket: self.bucket, message: explain(e) }
    }

    /// The size of `name`, or `None` when there is none.
    pub(super) async fn size_of(&self, name: &str) -> Result<Option<u64>, ObjectError> {
        match self.store.head(&self.key(name)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// A reader of `name`'s content as it streams from the store, and its size; refuses one
    /// larger than `limit` before reading it.
    pub(super) async fn open(
        &self,
        name: &str,
        limit: u64,
    ) -> Result<(u64, impl tokio::io::AsyncRead + Unpin + Send + use<>), ObjectError> {
        let got = self.store.get(&self.key(name)).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => ObjectError::NotFound { bucket: self.bucket, name: name.into() },
            e => self.error(&e),
        })?;
        let size = got.meta.size;
        if size > limit {
            return Err(ObjectError::TooLarge { bucket: self.bucket, name: name.into(), size, limit });
        }
        let stream = got.into_stream().map_err(std::io::Error::other);
        Ok((size, tokio_util::io::StreamReader::new(stream)))
    }

    /// Writes `bytes` as `name` unless an object of that name exists: two writers of the same
    /// content make one object. A store without conditional writes is overwritten, which for
    /// content-addressed names writes the same bytes again.
    pub(super) async fn put_new(&self, name: &str, bytes: PutPayload) -> Result<(), ObjectError> {
        let key = self.key(name);
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&key, bytes.clone(), create).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => {
                self.store.put(&key, bytes).await.map(drop).map_err(|e| self.error(&e))
            }
            Err(e) => Err(self.error(&e)),
        }
    }

    /// Writes `bytes` as `name`, replacing any object of that name.
    pub(super) async fn put(&self, name: &str, bytes: PutPayload) -> Result<(), ObjectError> {
        self.store.put(&self.key(name), bytes).await.map(drop).map_err(|e| self.error(&e))
    }

    /// Deletes `name`; deleting what is not there is not an error.
    pub(super) async fn delete(&self, name: &str) -> Result<(), ObjectError> {
        match self.store.delete(&self.key(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// The names (relative to the folder) of the objects whose names start with `prefix`.
    pub(super) async fn names(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        // Listing takes a folder: list the folder `prefix` is in and filter the rest.
        let folder = match prefix.rsplit_once('/') {
            Some((dir, _)) => self.key(dir),
            None => self.folder.clone(),
        };
        let listed: Vec<_> = self.store.list(Some(&folder)).try_collect().await.map_err(|e| self.error(&e))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let name: Vec<String> =
                    meta.location.prefix_match(&self.folder)?.map(|p| p.as_ref().to_owned()).collect();
                Some(name.join("/")).filter(|n| n.starts_with(prefix))
            })
            .collect())
    }

    /// Uploads `file` (`size` bytes, read from its start) as `name`: in one request when small,
    /// else as a multipart upload of [`PART_SIZE`] parts read one at a time, aborted on failure so
    /// no half object is left.
    pub(super) async fn put_file(&self, name: &str, file: std::fs::File, size: u64) -> Result<(), ObjectError> {
        use tokio::io::AsyncReadExt;
        let io =
            |e: std::io::Error| ObjectError::Store { bucket: self.bucket, message: format!("reading {name}: {e}") };
        let mut file = tokio::fs::File::from_std(file);
        if size <= PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).await.map_err(io)?;
            return self.put_new(name, bytes.into()).await;
        }
        let mut upload = self.store.put_multipart(&self.key(name)).await.map_err(|e| self.error(&e))?;
        let sent: Result<(), ObjectError> = async {
            loop {
                let mut part = Vec::with_capacity(PART_SIZE);
                (&mut file).take(PART_SIZE as u64).read_to_end(&mut part).await.map_err(io)?;
                if part.is_empty() {
                    return Ok(());
                }
                upload.put_part(part.into()).await.map_err(|e| self.error(&e))?;
            }
        }
        .await;
        match sent {
            Ok(()) => upload.complete().await.map(drop).map_err(|e| self.error(&e)),
            Err(e) => {
                // Best effort: a part left behind is collected by the bucket's lifecycle rule.
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_setting() {
        let err = |s: &str| Location::parse(s).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("bucket/prefix").contains("MLOPS_OBJECT_STORE \"bucket/prefix\" is not a URL"));
        assert!(err("ftp://host/x").contains("the scheme is not one of"));
        let dir = tempfile::tempdir().unwrap();
        let local = Location::parse(&format!("file://{}/blobs", dir.path().display())).unwrap();
        assert!(dir.path().join("blobs").is_dir(), "the directory is made");
        assert_eq!(local.to_string(), format!("file://{}/blobs", dir.path().display()));
        let s3 = Location::parse("s3://AKIAEXAMPLE:secret@lake/mlops").map(|l| l.to_string());
        assert_eq!(s3.unwrap_or_else(|e| e.to_string()), "s3://lake/mlops");
    }
}
