//! Ids that cross services, as newtypes so a dataset id is never passed where a pipeline goes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("pipeline name must not be empty")]
    EmptyPipeline,
    #[error("pipeline name {0:?} is invalid: use 1-64 characters from a-z, 0-9, '-' and '_', starting with a letter")]
    BadPipeline(String),
    #[error("{0:?} is not a sha256 (64 lowercase hex characters)")]
    BadSha256(String),
}

/// A pipeline's name. It is a NATS subject token, so it is restricted to `[a-z][a-z0-9_-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PipelineName(String);

impl PipelineName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, IdError> {
        let name = name.into();
        if name.is_empty() {
            return Err(IdError::EmptyPipeline);
        }
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !first_ok || !rest_ok || name.len() > 64 {
            return Err(IdError::BadPipeline(name));
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PipelineName {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<PipelineName> for String {
    fn from(value: PipelineName) -> Self {
        value.0
    }
}

impl fmt::Display for PipelineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content address: the lowercase hex sha256 of a blob (a dataset or a model artifact).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

impl Sha256 {
    /// Checks that `hex` looks like a sha256 and wraps it.
    pub fn parse(hex: impl Into<String>) -> Result<Self, IdError> {
        let hex = hex.into();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(hex))
        } else {
            Err(IdError::BadSha256(hex))
        }
    }

    /// The address of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(crate::sha256_hex(bytes))
    }

    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, for logs and tables.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl TryFrom<String> for Sha256 {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Sha256> for String {
    fn from(value: Sha256) -> Self {
        value.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dataset version: the sha256 of its content.
pub type DatasetId = Sha256;

/// The first 12 characters of an id or hash, for display; shorter ones whole. Safe on any text:
/// ids inside outside events may be anything.
pub fn short(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_cut_on_characters_not_bytes() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(""), "");
        // Found by `just fuzz events`: a dataset id with a two-byte character across byte 12.
        assert_eq!(short("Z 2 \u{63c}Z 2 }xyz"), "Z 2 \u{63c}Z 2 }xy");
    }

    #[test]
    fn pipeline_names_are_subject_tokens() {
        assert!(PipelineName::new("churn").is_ok());
        assert!(PipelineName::new("churn_v2-eu").is_ok());
        assert_eq!(PipelineName::new(""), Err(IdError::EmptyPipeline));
        for bad in ["Churn", "a.b", "a*", "a>", "a b", "9lives", "-x"] {
            assert!(PipelineName::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sha256_parses_only_hex_digests() {
        let s = Sha256::of(b"abc");
        assert_eq!(s.as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(Sha256::parse(s.as_str().to_uppercase()).is_err());
        assert!(Sha256::parse("../etc/passwd").is_err());
        assert_eq!(s.short(), "ba7816bf8f01");
    }
}
