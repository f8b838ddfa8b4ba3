//! Blobs addressed by the sha256 of their content, so a trainer on another machine needs no
//! shared disk and a blob is verified before anyone uses it: in the NATS object store (the
//! embedded default) or in an external store named by `MLOPS_OBJECT_STORE` ([`external`]).

pub mod agreement;
pub mod external;

use async_nats::jetstream::object_store::{GetErrorKind, InfoErrorKind, ObjectStore};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::bus::Bus;
use crate::ids::Sha256;

/// Errors reading or writing blobs.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object {name:?} not found in bucket {bucket}")]
    NotFound { bucket: &'static str, name: String },
    #[error("object {name} in bucket {bucket} is corrupt or tampered: its content hashes to {actual}")]
    Tampered { bucket: &'static str, name: String, actual: String },
    #[error("object {name:?} in bucket {bucket} is {size} bytes, over the limit of {limit}")]
    TooLarge { bucket: &'static str, name: String, size: u64, limit: u64 },
    #[error("object store {bucket}: {message}")]
    Store { bucket: &'static str, message: String },
}

/// One content-addressed bucket.
#[derive(Clone)]
pub struct Objects {
    backend: Backend,
    bucket: &'static str,
}

#[derive(Clone)]
enum Backend {
    Nats(Box<ObjectStore>),
    External(external::Folder),
}

/// An object being read, whichever store holds it.
type Reader = Box<dyn AsyncRead + Unpin + Send>;

impl Bus {
    /// The bucket `bucket`: a folder of the external store when the bus has one, else the NATS
    /// object store's bucket created by [`Bus::provision`].
    pub async fn objects(&self, bucket: &'static str) -> Result<Objects, ObjectError> {
        if let Some(location) = &self.object_store {
            return Ok(Objects { backend: Backend::External(location.bucket(bucket)), bucket });
        }
        let store = self
            .js
            .get_object_store(bucket)
            .await
            .map_err(|e| ObjectError::Store { bucket, message: e.to_string() })?;
        Ok(Objects { backend: Backend::Nats(Box::new(store)), bucket })
    }
}

impl Objects {
    /// Stores `bytes` under their sha256 and returns it. Storing the same content again is a no-op.
    pub async fn put(&self, bytes: &[u8]) -> Result<Sha256, ObjectError> {
        let sha = Sha256::of(bytes);
        if self.size_of(sha.as_str()).await?.is_some() {
            return Ok(sha);
        }
        match &self.backend {
            Backend::Nats(store) => {
                let mut reader = bytes;
                store
                    .put(sha.as_str(), &mut reader)
                    .await
                    .map_err(|e| ObjectError::Store { bucket: self.bucket, message: e.to_string() })?;
            }
            Backend::External(folder) => folder.put_new(sha.as_str(), bytes.to_vec().into()).await?,
        }
        Ok(sha)
    }

    /// Reads the blob `sha` and checks that its content still hashes to `sha`.
    pub async fn get_verified(&self, sha: &Sha256) -> Result<Vec<u8>, ObjectError> {
        let bytes = self.get_named(sha.as_str(), u64::MAX).await?;
        let actual = crate::sha256_hex(&bytes);
        if actual != sha.as_str() {
            return Err(ObjectError::Tampered { bucket: self.bucket, name: sha.to_string(), actual });
        }
        Ok(bytes)
    }

    /// Reads the object `name`, refusing one larger than `limit` bytes before reading it.
    pub async fn get_named(&self, name: &str, limit: u64) -> Result<Vec<u8>, ObjectError> {
        let (size, mut object) = self.open_named(name, limit).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| ObjectError::Store { bucket: self.bucket, message: format!("reading {name}: {e}") })?;
        Ok(bytes)
    }

    /// Opens the object `name` for reading, refusing one larger than `limit` bytes; its size
    /// and a reader of its content as it streams from the store.
    async fn open_named(&self, name: &str, limit: u64) -> Result<(u64, Reader), ObjectError> {
        let store = match &self.backend {
            Backend::Nats(store) => store,
            Backend::External(folder) => {
                let (size, reader) = folder.open(name, limit).await?;
                return Ok((size, Box::new(reader)));
            }
        };
        let object = store.get(name).await.map_err(|e| match e.kind() {
            GetErrorKind::NotFound | GetErrorKind::InvalidName => {
                ObjectError::NotFound { bucket: self.bucket, name: name.into() }
            }
            _ => ObjectError::Store { bucket: self.bucket, message: e.to_string() },
        })?;
        let size = object.info.size as u64;
        if size > limit {
            return Err(ObjectError::TooLarge { bucket: self.bucket, name: name.into(), size, limit });
        }
        Ok((size, Box::new(object)))
    }

    /// The size of object `name`, or `None` when there is none.
    pub async fn size_of(&self, name: &str) -> Result<Option<u64>, ObjectError> {
        let store = match &self.backend {
            Backend::Nats(store) => store,
            Backend::External(folder) => return folder.size_of(name).await,
        };
        match store.info(name).await {
            Ok(info) if !info.deleted => Ok(Some(info.size as u64)),
            Ok(_) => Ok(None),
            Err(e) if matches!(e.kind(), InfoErrorKind::NotFound | InfoErrorKind::InvalidName) => Ok(None),
            Err(e) => Err(ObjectError::Store { bucket: self.bucket, message: e.to_string() }),
        }
    }
}

/// Objects by name rather than by content: the prediction archive's files and the offline
/// feature log, whose names say what they hold (`<pipeline>/<hour>/…`, `<view>/…`).
impl Objects {
    fn store_error(&self, message: String) -> ObjectError {
        ObjectError::Store { bucket: self.bucket, message }
    }

    /// Writes `bytes` as `name`, replacing any object of that name.
    pub async fn put_named(&self, name: &str, bytes: &[u8]) -> Result<(), ObjectError> {
        match &self.backend {
            Backend::Nats(store) => {
                let mut reader = bytes;
                store.put(name, &mut reader).await.map(drop).map_err(|e| self.store_error(format!("{name}: {e}")))
            }
            Backend::External(folder) => folder.put(name, bytes.to_vec().into()).await,
        }
    }

    /// Deletes `name`; deleting what is not there is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), ObjectError> {
        match &self.backend {
            Backend::Nats(store) => match store.delete(name).await {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.kind(), async_nats::jetstream::object_store::DeleteErrorKind::NotFound) => Ok(()),
                Err(e) => Err(self.store_error(format!("deleting {name}: {e}"))),
            },
            Backend::External(folder) => folder.delete(name).await,
        }
    }

    /// The names of the objects whose names start with `prefix`, sorted.
    pub async fn names(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let mut names = match &self.backend {
            Backend::Nats(store) => {
                use futures::TryStreamExt;
                let list = store.list().await.map_err(|e| self.store_error(e.to_string()))?;
                let infos: Vec<_> = list.try_collect().await.map_err(|e| self.store_error(e.to_string()))?;
                infos.into_iter().filter(|i| !i.deleted && i.name.starts_with(prefix)).map(|i| i.name).collect()
            }
            Backend::External(folder) => folder.names(prefix).await?,
        };
        names.sort();
        Ok(names)
    }
}

impl From<ObjectError> for crate::bus::HandlerError {
    /// A missing, tampered or oversized blob will not get better on retry; a store error may.
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::Store { .. } => Self::Transient(e.into()),
            _ => Self::Permanent(e.to_string()),
        }
    }
}

impl Objects {
    /// Streams the blob `sha` into an anonymous temporary file in `dir`, checking its sha256 on
    /// the way, so a dataset of any size is never held in memory. The file is deleted when dropped.
    pub async fn download_verified(&self, sha: &Sha256, dir: &std::path::Path) -> Result<std::fs::File, ObjectError> {
        let staged = self.stage_named(sha.as_str(), dir, u64::MAX).await?;
        if staged.sha != *sha {
            let actual = staged.sha.to_string();
            return Err(ObjectError::Tampered { bucket: self.bucket, name: sha.to_string(), actual });
        }
        Ok(staged.file)
    }
}

/// A blob written to an anonymous temporary file (deleted when dropped) while its sha256 was
/// computed: how a dataset of any size goes from a client or a drop directory into the store
/// without being held in memory.
pub struct Staged {
    pub file: std::fs::File,
    pub sha: Sha256,
    pub size: u64,
    /// The first bytes, for recognising the format.
    pub head: Vec<u8>,
}

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("over the limit of {0} bytes")]
    TooLarge(u64),
    #[error("staging to a temporary file: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a blob piece by piece to a temporary file, hashing it and enforcing a size limit.
pub struct Stager {
    file: std::fs::File,
    out: tokio::fs::File,
    hasher: sha2::Sha256,
    size: u64,
    limit: u64,
    head: Vec<u8>,
}

impl Stager {
    const HEAD: usize = 16;

    /// A stager writing into `dir`, refusing more than `limit` bytes.
    pub fn new(dir: &std::path::Path, limit: u64) -> Result<Self, StageError> {
        use sha2::Digest;
        let file = tempfile::tempfile_in(dir)?;
        let out = tokio::fs::File::from_std(file.try_clone()?);
        Ok(Self { file, out, hasher: sha2::Sha256::new(), size: 0, limit, head: Vec::new() })
    }

    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StageError> {
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(StageError::TooLarge(self.limit));
        }
        let room = Self::HEAD.saturating_sub(self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..room]);
        self.hasher.update(chunk);
        self.out.write_all(chunk).await?;
        Ok(())
    }

    /// Copies everything `reader` yields.
    pub async fn copy_from(&mut self, mut reader: impl tokio::io::AsyncRead + Unpin) -> Result<(), StageError> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            self.write(&buf[..n]).await?;
        }
    }

    /// The staged blob, flushed to its file.
    pub async fn finish(mut self) -> Result<Staged, StageError> {
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        self.out.flush().await?;
        let sha =
            Sha256::parse(hex::encode(self.hasher.finalize())).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Staged { file: self.file, sha, size: self.size, head: self.head })
    }
}

impl Objects {
    /// Stores a staged blob under its sha256, streaming it from its file. Storing the same
    /// content again is a no-op.
    pub async fn put_staged(&self, staged: &Staged) -> Result<(), ObjectError> {
        use std::io::Seek;
        let store_err = |message: String| ObjectError::Store { bucket: self.bucket, message };
        if self.size_of(staged.sha.as_str()).await?.is_some() {
            return Ok(());
        }
        let mut file = staged.file.try_clone().map_err(|e| store_err(e.to_string()))?;
        file.rewind().map_err(|e| store_err(e.to_string()))?;
        match &self.backend {
            Backend::Nats(store) => {
                let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
                store.put(staged.sha.as_str(), &mut reader).await.map_err(|e| store_err(e.to_string()))?;
                Ok(())
            }
            Backend::External(folder) => folder.put_file(staged.sha.as_str(), file, staged.size).await,
        }
    }

    /// Streams the object `name` (any name, not only a sha256) into a staged file, refusing one
    /// larger than `limit` bytes before reading it.
    pub async fn stage_named(&self, name: &str, dir: &std::path::Path, limit: u64) -> Result<Staged, ObjectError> {
        let store_err = |message: String| ObjectError::Store { bucket: self.bucket, message };
        let (_, object) = self.open_named(name, limit).await?;
        let mut stager = Stager::new(dir, limit).map_err(|e| store_err(e.to_string()))?;
        stager.copy_from(object).await.map_err(|e| store_err(format!("reading {name}: {e}")))?;
        stager.finish().await.map_err(|e| store_err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staging_hashes_keeps_the_head_and_enforces_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Stager::new(dir.path(), 1000).unwrap();
        s.write(b"a,b\n").await.unwrap();
        s.copy_from(&b"1,2\n3,4\n5,6\n7,8\n"[..]).await.unwrap();
        let staged = s.finish().await.unwrap();
        assert_eq!(staged.sha.as_str(), crate::sha256_hex(b"a,b\n1,2\n3,4\n5,6\n7,8\n"));
        assert_eq!((staged.size, staged.head.as_slice()), (20, &b"a,b\n1,2\n3,4\n5,6\n"[..]));
        let mut file = staged.file.try_clone().unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let mut content = String::new();
        std::io::Read::read_to_string(&mut file, &mut content).unwrap();
        assert_eq!(content, "a,b\n1,2\n3,4\n5,6\n7,8\n");
        let mut big = Stager::new(dir.path(), 10).unwrap();
        big.write(b"0123456789").await.unwrap();
        assert!(matches!(big.write(b"x").await, Err(StageError::TooLarge(10))));
        // Nothing is left behind: the file is anonymous.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// The external backend on a local directory (`file://`): the same contract as the NATS
    /// store's, and a blob larger than a part goes up in parts and comes back whole.
    #[tokio::test]
    async fn an_external_store_keeps_blobs_by_sha_verifies_them_and_uploads_large_ones_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let location = external::Location::parse(&format!("file://{}/store", dir.path().display())).unwrap();
        location.probe().await.unwrap();
        let objects = Objects { backend: Backend::External(location.bucket("datasets")), bucket: "datasets" };
        let sha = objects.put(b"a,b\n1,2\n").await.unwrap();
        assert_eq!(objects.put(b"a,b\n1,2\n").await.unwrap(), sha, "the same content is the same blob");
        assert_eq!(objects.get_verified(&sha).await.unwrap(), b"a,b\n1,2\n");
        let on_disk = dir.path().join("store/datasets").join(sha.as_str());
        assert!(on_disk.is_file());

        let big: Vec<u8> = (0..external::PART_SIZE * 2 + 123).map(|i| (i % 251) as u8).collect();
        let mut stager = Stager::new(dir.path(), u64::MAX).unwrap();
        stager.write(&big).await.unwrap();
        let staged = stager.finish().await.unwrap();
        objects.put_staged(&staged).await.unwrap();
        assert_eq!(objects.size_of(staged.sha.as_str()).await.unwrap(), Some(big.len() as u64));
        let mut back = objects.download_verified(&staged.sha, dir.path()).await.unwrap();
        let mut content = Vec::new();
        std::io::Seek::rewind(&mut back).unwrap();
        std::io::Read::read_to_end(&mut back, &mut content).unwrap();
        assert!(content == big, "the blob came back whole");
        let limited = objects.get_named(staged.sha.as_str(), 10).await;
        assert!(matches!(limited, Err(ObjectError::TooLarge { size, .. }) if size == big.len() as u64));

        std::fs::write(&on_disk, b"changed").unwrap();
        assert!(matches!(objects.get_verified(&sha).await, Err(ObjectError::Tampered { .. })));
        let missing = Sha256::of(b"nothing");
        assert!(matches!(objects.get_verified(&missing).await, Err(ObjectError::NotFound { .. })));
        assert_eq!(objects.size_of(missing.as_str()).await.unwrap(), None);
    }
}
