//! Code that two or more services need: the bus (JetStream connection, provisioning, typed publish
//! and consume), object storage addressed by sha256, the pipeline spec, the model artifact with its
//! preprocessing and prediction code, configuration, telemetry, HTTP health/metrics and shutdown.

pub mod bundle;
pub mod bus;
pub mod config;
pub mod decision;
pub mod describe;
pub mod events;
pub mod format;
pub mod http;
pub mod ids;
pub mod model;
pub mod objects;
pub mod pii;
pub mod runs;
pub mod schedule;
pub mod scoring;
pub mod service;
pub mod shutdown;
pub mod spec;
pub mod stats;
pub mod table;
pub mod telemetry;
pub mod tls;

/// The version of the code that built a model, recorded in its lineage: `MLOPS_CODE_VERSION` at
/// build time (release builds set it to the git revision), else the crate version.
pub const CODE_VERSION: &str = match option_env!("MLOPS_CODE_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `ms` (since the Unix epoch) as RFC 3339 in UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A failure of a service's own redb file, or of a record in it, kept typed (not flattened to a
/// message) so that callers can tell a full disk from a corrupt row.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error("a stored record does not decode: {0}")]
    Record(#[from] serde_json::Error),
}

/// Implements `From` for every redb error type (and `serde_json::Error`, for JSON-encoded rows)
/// into `$target` through [`DbError`], which `$target` must convert from (`#[from] DbError`): the
/// one error mapping the services that own a redb file share. The caller's crate must depend on
/// `redb` and `serde_json`.
#[macro_export]
macro_rules! redb_errors {
    ($target:ty) => {
        $crate::redb_errors!(@impl $target; redb::Error, redb::DatabaseError, redb::TransactionError,
            redb::TableError, redb::StorageError, redb::CommitError, serde_json::Error);
    };
    (@impl $target:ty; $($t:ty),*) => {$(
        impl From<$t> for $target {
            fn from(e: $t) -> Self {
                $crate::DbError::from(e).into()
            }
        }
    )*};
}

macro_rules! db_error_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}
db_error_from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
