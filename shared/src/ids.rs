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

/// The fewest characters a prefix must have to stand for an id (as `git` asks for at least 4;
/// 8 hex characters make a chance collision among thousands of ids unlikely).
pub const MIN_PREFIX: usize = 8;

/// Why a prefix names no single id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrefixError {
    #[error("no {what} {prefix:?} (an id, or a prefix of one)")]
    NotFound { what: &'static str, prefix: String },
    #[error("{what} prefix {prefix:?} is too short: give at least {MIN_PREFIX} characters")]
    TooShort { what: &'static str, prefix: String },
    #[error("{what} prefix {prefix:?} is ambiguous: it starts {}; give more characters", .candidates.join(", "))]
    Ambiguous { what: &'static str, prefix: String, candidates: Vec<String> },
}

/// The one id among `ids` that is `prefix` or starts with it, as git resolves short commit ids:
/// an exact match always wins; otherwise the prefix needs [`MIN_PREFIX`] characters and one match.
/// `what` names the kind of id in errors ("dataset", "job").
pub fn resolve_prefix<'a>(
    what: &'static str,
    prefix: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<String, PrefixError> {
    let prefix = prefix.trim();
    let mut matches: Vec<&str> = ids.into_iter().filter(|id| id.starts_with(prefix)).collect();
    matches.sort_unstable();
    matches.dedup();
    if matches.contains(&prefix) {
        return Ok(prefix.to_owned());
    }
    match matches.as_slice() {
        _ if prefix.is_empty() => Err(PrefixError::NotFound { what, prefix: prefix.into() }),
        [] => Err(PrefixError::NotFound { what, prefix: prefix.into() }),
        _ if prefix.chars().count() < MIN_PREFIX => Err(PrefixError::TooShort { what, prefix: prefix.into() }),
        [one] => Ok((*one).to_owned()),
        many => Err(PrefixError::Ambiguous {
            what,
            prefix: prefix.into(),
            candidates: many.iter().map(|id| (*id).to_owned()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_as_git_resolves_short_ids() {
        let ids = ["abcdef0123456789", "abcdef0199999999", "0123456789abcdef"];
        let resolve = |p: &str| resolve_prefix("dataset", p, ids.iter().copied());
        assert_eq!(resolve("0123456789ab").unwrap(), "0123456789abcdef");
        assert_eq!(resolve("abcdef0123456789").unwrap(), "abcdef0123456789");
        let Err(PrefixError::Ambiguous { candidates, .. }) = resolve("abcdef01") else { panic!() };
        assert_eq!(candidates, ["abcdef0123456789", "abcdef0199999999"]);
        assert!(resolve("abcdef01").unwrap_err().to_string().contains("abcdef0123456789, abcdef0199999999"));
        assert!(matches!(resolve("0123"), Err(PrefixError::TooShort { .. })));
        assert!(matches!(resolve("ffffffff"), Err(PrefixError::NotFound { .. })));
        assert!(matches!(resolve(""), Err(PrefixError::NotFound { .. })));
        // A full id that is also another's prefix is that id.
        assert_eq!(resolve_prefix("job", "a-1", ["a-1", "a-10"]).unwrap(), "a-1");
    }

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
