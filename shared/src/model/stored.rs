//! What the `models` bucket holds: a built-in [`Artifact`] (a JSON document), or an imported ONNX
//! graph with its manifest ([`OnnxArtifact`]). Both are content-addressed and verified before
//! they are read; the first bytes say which one a blob is.
//!
//! An ONNX artifact is laid out so that the graph is kept byte for byte, never re-encoded:
//!
//! ```text
//! mlops-onnx/1\n
//! {"manifest":{…},"graph":LEN,"external":[["weights.bin",LEN],…]}\n
//! <the graph's LEN bytes><each external file's bytes, in the header's order>
//! ```

use serde::{Deserialize, Serialize};

use super::{Artifact, ArtifactError, Manifest};
use crate::ids::Sha256;

/// The format of an imported ONNX model, its first line and its manifest's `format`.
pub const ONNX_FORMAT: &str = "mlops-onnx/1";

/// An imported ONNX model as stored: its manifest (written by the platform at import: the
/// pipeline's features and target, the data it was judged on, the reference profile), the graph
/// as exported, and the external weight files the graph names, by their relative path.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxArtifact {
    pub manifest: Manifest,
    pub graph: Vec<u8>,
    pub external: Vec<(String, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    manifest: Manifest,
    graph: u64,
    external: Vec<(String, u64)>,
}

impl OnnxArtifact {
    /// Serializes deterministically: the same model gives the same bytes, hence the same sha256.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            manifest: self.manifest.clone(),
            graph: self.graph.len() as u64,
            external: self.external.iter().map(|(name, b)| (name.clone(), b.len() as u64)).collect(),
        };
        let header = serde_json::to_vec(&header).expect("a manifest always serializes");
        let size = self.graph.len() + self.external.iter().map(|(_, b)| b.len()).sum::<usize>();
        let mut out = Vec::with_capacity(ONNX_FORMAT.len() + header.len() + 2 + size);
        out.extend_from_slice(ONNX_FORMAT.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&header);
        out.push(b'\n');
        out.extend_from_slice(&self.graph);
        for (_, bytes) in &self.external {
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Parses bytes already verified (see [`Stored::from_verified_bytes`]).
    fn parse(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let (header, mut body) = Self::header(bytes)?;
        let mut take = |len: u64| -> Result<Vec<u8>, ArtifactError> {
            let len = usize::try_from(len).ok().filter(|&l| l <= body.len()).ok_or_else(|| bad("cut short"))?;
            let (head, tail) = body.split_at(len);
            body = tail;
            Ok(head.to_vec())
        };
        let graph = take(header.graph)?;
        let mut external: Vec<(String, Vec<u8>)> = Vec::with_capacity(header.external.len());
        for (name, len) in header.external {
            super::onnx_graph::check_external_name(&name).map_err(|e| bad(&e))?;
            if external.iter().any(|(n, _)| *n == name) {
                return Err(bad(&format!("external file {name:?} twice")));
            }
            external.push((name, take(len)?));
        }
        if !body.is_empty() {
            return Err(bad("bytes after the last file"));
        }
        Ok(Self { manifest: header.manifest, graph, external })
    }

    /// The header of verified bytes, and the bytes after it, read without copying the files.
    fn header(bytes: &[u8]) -> Result<(Header, &[u8]), ArtifactError> {
        let rest = bytes.strip_prefix(format!("{ONNX_FORMAT}\n").as_bytes()).ok_or_else(|| bad("no format line"))?;
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| bad("no header line"))?;
        let header: Header = serde_json::from_slice(&rest[..end]).map_err(|e| bad(&e.to_string()))?;
        if header.manifest.format != ONNX_FORMAT {
            return Err(bad(&format!("manifest format {:?}", header.manifest.format)));
        }
        Ok((header, &rest[end + 1..]))
    }
}

/// An ONNX artifact that does not read.
fn bad(m: &str) -> ArtifactError {
    ArtifactError::Invalid(format!("{ONNX_FORMAT} artifact: {m}"))
}

/// A verified blob of the `models` bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Builtin(Artifact),
    Onnx(OnnxArtifact),
}

impl Stored {
    /// Checks `bytes` against `expected`, then reads them by their first bytes. A mismatch is
    /// never read.
    pub fn from_verified_bytes(bytes: &[u8], expected: &Sha256) -> Result<Self, ArtifactError> {
        if bytes.starts_with(ONNX_FORMAT.as_bytes()) {
            verify(bytes, expected)?;
            OnnxArtifact::parse(bytes).map(Self::Onnx)
        } else {
            Artifact::from_verified_bytes(bytes, expected).map(Self::Builtin)
        }
    }

    /// Checks `bytes` against `expected` and reads just the manifest: an imported graph and its
    /// files are not copied (the monitor needs only the reference profile).
    pub fn verified_manifest(bytes: &[u8], expected: &Sha256) -> Result<Manifest, ArtifactError> {
        if bytes.starts_with(ONNX_FORMAT.as_bytes()) {
            verify(bytes, expected)?;
            OnnxArtifact::header(bytes).map(|(h, _)| h.manifest)
        } else {
            Artifact::from_verified_bytes(bytes, expected).map(|a| a.manifest)
        }
    }

    pub fn manifest(&self) -> &Manifest {
        match self {
            Self::Builtin(a) => &a.manifest,
            Self::Onnx(o) => &o.manifest,
        }
    }
}

/// Refuses bytes whose sha256 is not `expected`.
pub(super) fn verify(bytes: &[u8], expected: &Sha256) -> Result<(), ArtifactError> {
    let actual = crate::sha256_hex(bytes);
    if actual != expected.as_str() {
        return Err(ArtifactError::Tampered { expected: expected.to_string(), actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onnx() -> OnnxArtifact {
        let mut manifest = super::super::tests::artifact().manifest;
        manifest.format = ONNX_FORMAT.into();
        manifest.algorithm = "onnx".into();
        OnnxArtifact {
            manifest,
            graph: b"\x08\x07graph\nwith newlines".to_vec(),
            external: vec![("w.bin".into(), vec![1, 2, 3]), ("empty.bin".into(), vec![])],
        }
    }

    #[test]
    fn an_onnx_artifact_round_trips_and_refuses_tampering_and_truncation() {
        let a = onnx();
        let bytes = a.to_bytes();
        let sha = Sha256::of(&bytes);
        assert_eq!(Stored::from_verified_bytes(&bytes, &sha).unwrap(), Stored::Onnx(a.clone()));
        assert_eq!(Stored::verified_manifest(&bytes, &sha).unwrap(), a.manifest);
        assert_eq!(a.to_bytes(), bytes, "deterministic");
        let mut tampered = bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(Stored::from_verified_bytes(&tampered, &sha), Err(ArtifactError::Tampered { .. })));
        let cut = &bytes[..bytes.len() - 2];
        let e = Stored::from_verified_bytes(cut, &Sha256::of(cut)).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        let long = [&bytes[..], b"x"].concat();
        let e = Stored::from_verified_bytes(&long, &Sha256::of(&long)).unwrap_err();
        assert!(e.to_string().contains("after the last file"), "{e}");
        // Files the loader would lay out beside the graph are refused unless they stay inside.
        for name in ["../escape.bin", "/etc/cron.d/x", "model.onnx"] {
            let a = OnnxArtifact { external: vec![(name.into(), vec![1])], ..onnx() };
            let bytes = a.to_bytes();
            let e = Stored::from_verified_bytes(&bytes, &Sha256::of(&bytes)).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn a_builtin_artifact_reads_as_before() {
        let a = super::super::tests::artifact();
        let bytes = a.to_bytes();
        let stored = Stored::from_verified_bytes(&bytes, &Sha256::of(&bytes)).unwrap();
        assert_eq!(stored.manifest(), &a.manifest);
    }
}
