//! The feature store's data: a feature view's batches as typed rows with an entity key, an event
//! time and a write time ([`ViewRows`]); the offline log of every accepted batch as immutable
//! Parquet ([`offline`]); the point-in-time correct join of entity rows against that log
//! ([`join`]); the online store's keys and values ([`online`]), and a reader's replica of them
//! in memory ([`replica`]).
//!
//! Time is Unix milliseconds throughout. A value is *visible* at time `t` when its event time and
//! its write time are both at or before `t`, and its event time is within the view's TTL of `t`;
//! of the visible values of a key, the newest event time wins, then the latest write (a
//! correction of the same event), then the later position in the log.

mod erase;
pub mod join;
mod keys;
mod lookup;
pub mod offline;
pub mod online;
pub mod replica;
mod rows;
mod store;
pub mod time;
pub mod training;

pub use erase::{ErasedFile, Matches, ViewErased};
pub use lookup::LookedUp;
pub use rows::{KEY_SEPARATOR, ViewRows, Written, composite_key, read_batch};
pub use store::{FeatureStore, Materialised, StoreError};

/// Why feature data was refused. The message names the column and row.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Data(#[from] mlops_data::DataError),
    #[error("column `{0}` is missing")]
    MissingColumn(String),
    #[error("row {row}: {message}")]
    Row { row: usize, message: String },
    #[error("offline file: {0}")]
    Offline(String),
    /// An error in a file of a view's log, or in a dataset (rows numbered in it).
    #[error("{file}: {error}")]
    InFile { file: String, error: Box<FeatureError> },
    /// An error in one of several sets of entity rows joined together (the caller names it).
    #[error("{error}")]
    InSet { set: usize, error: Box<FeatureError> },
    /// The store did not give a file of the log: trying again may work.
    #[error("{0}")]
    Unavailable(String),
}

impl FeatureError {
    /// Whether trying again may work: the store did not answer.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::InFile { error, .. } | Self::InSet { error, .. } => error.is_transient(),
            _ => false,
        }
    }
}
