//! Reading datasets with Apache Arrow. A dataset is CSV (plain, gzip or zstd), Parquet or JSON
//! Lines; whatever the format it is read as a stream of record batches, so memory stays bounded by
//! the batch size however large the file. Cells are then seen through one [`Cell`] view, so checks
//! and profiles are written once for every format.

mod cell;
mod csv_blocks;
mod footer;
mod frame;
mod infer;
mod read;
mod score;
mod write;

pub use arrow_array::{Array, RecordBatch};
pub use arrow_schema::DataType;
pub use cell::{Cell, ColumnView, finite_doubles, text, view};
pub use frame::{DatasetError, FrameChunks, read_datasets, read_datasets_counted, read_frame, read_sources_counted};
pub use infer::{Inferred, MAX_CATEGORIES, infer, spec_fragment};
pub use mlops_shared::format::{Compression, Format, detect};
pub use read::{Batches, DataError, Limits, Source, open, open_typed};
pub use score::{ANSWER_COLUMNS, ScoreError, Scored, Scorer, score_to_parquet};
pub use write::{
    Erased, FeedbackRows, column_array, erase_to_parquet, keep_unmatched, pseudonymise_to_parquet, write_feedback,
    write_parquet,
};
