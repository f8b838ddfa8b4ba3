//! Blobs in the NATS object store, addressed by the sha256 of their content, so a trainer on
//! another machine needs no shared disk and a blob is verified before anyone uses it.

use async_nats::jetstream::object_store::{GetErrorKind, InfoErrorKind, ObjectStore};
use tokio::io::AsyncReadExt;

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
    store: ObjectStore,
    bucket: &'static str,
}

impl Bus {
    /// The bucket `bucket`, created by [`Bus::provision`].
    pub async fn objects(&self, bucket: &'static str) -> Result<Objects, ObjectError> {
        let store = self
            .js
            .get_object_store(bucket)
            .await
            .map_err(|e| ObjectError::Store { bucket, message: e.to_string() })?;
        Ok(Objects { store, bucket })
    }
}

impl Objects {
    /// Stores `bytes` under their sha256 and returns it. Storing the same content again is a no-op.
    pub async fn put(&self, bytes: &[u8]) -> Result<Sha256, ObjectError> {
        let sha = Sha256::of(bytes);
        if self.size_of(sha.as_str()).await?.is_some() {
            return Ok(sha);
        }
        let mut reader = bytes;
        self.store
            .put(sha.as_str(), &mut reader)
            .await
            .map_err(|e| ObjectError::Store { bucket: self.bucket, message: e.to_string() })?;
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
        let mut object = self.open_named(name, limit).await?;
        let mut bytes = Vec::with_capacity(object.info.size);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| ObjectError::Store { bucket: self.bucket, message: format!("reading {name}: {e}") })?;
        Ok(bytes)
    }

    /// Opens the object `name` for reading, refusing one larger than `limit` bytes.
    async fn open_named(
        &self,
        name: &str,
        limit: u64,
    ) -> Result<async_nats::jetstream::object_store::Object, ObjectError> {
        let object = self.store.get(name).await.map_err(|e| match e.kind() {
            GetErrorKind::NotFound | GetErrorKind::InvalidName => {
                ObjectError::NotFound { bucket: self.bucket, name: name.into() }
            }
            _ => ObjectError::Store { bucket: self.bucket, message: e.to_string() },
        })?;
        let size = object.info.size as u64;
        if size > limit {
            return Err(ObjectError::TooLarge { bucket: self.bucket, name: name.into(), size, limit });
        }
        Ok(object)
    }

    /// The size of object `name`, or `None` when there is none.
    pub async fn size_of(&self, name: &str) -> Result<Option<u64>, ObjectError> {
        match self.store.info(name).await {
            Ok(info) if !info.deleted => Ok(Some(info.size as u64)),
            Ok(_) => Ok(None),
            Err(e) if matches!(e.kind(), InfoErrorKind::NotFound | InfoErrorKind::InvalidName) => Ok(None),
            Err(e) => Err(ObjectError::Store { bucket: self.bucket, message: e.to_string() }),
        }
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
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
        self.store.put(staged.sha.as_str(), &mut reader).await.map_err(|e| store_err(e.to_string()))?;
        Ok(())
    }

    /// Streams the object `name` (any name, not only a sha256) into a staged file, refusing one
    /// larger than `limit` bytes before reading it.
    pub async fn stage_named(&self, name: &str, dir: &std::path::Path, limit: u64) -> Result<Staged, ObjectError> {
        let store_err = |message: String| ObjectError::Store { bucket: self.bucket, message };
        let object = self.open_named(name, limit).await?;
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
}
