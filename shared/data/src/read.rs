//! Opening a dataset as a stream of Arrow record batches. CSV and JSON Lines columns are read as
//! strings (the checks parse them, so a bad cell is reported, not fatal); Parquet keeps its types,
//! dictionary-encoded columns decoded to strings.

use std::io::{BufReader, Cursor, Read, Seek};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use mlops_shared::format::{Compression, Format, detect};

/// Why a dataset could not be read. Messages name the line, field or limit at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    #[error("the data is empty: no header row")]
    Empty,
    #[error("{0} columns is over the limit of {1}")]
    TooManyColumns(usize, usize),
    #[error("malformed CSV: {0}")]
    Csv(String),
    #[error("malformed JSON Lines: {0}")]
    Json(String),
    #[error("unreadable Parquet: {0}")]
    Parquet(String),
    #[error("cannot decompress {0}: {1}")]
    Decompress(&'static str, String),
    #[error("reading data: {0}")]
    Io(String),
    #[error("the {0} decoder failed on this file: {1}")]
    Decoder(&'static str, String),
    #[error("row {row}, column `{column}`: {message}")]
    Cell { row: usize, column: String, message: String },
    #[error("column `{0}` is missing")]
    MissingColumn(String),
}

/// Where the bytes are: in memory or in a file (which is never read whole).
pub enum Source {
    Bytes(bytes::Bytes),
    File(std::fs::File),
}

impl Source {
    /// The same data, to be read once more from its start (a file's handle is shared: read the
    /// two one after the other).
    pub fn again(&self) -> Result<Self, DataError> {
        Ok(match self {
            Self::Bytes(b) => Self::Bytes(b.clone()),
            Self::File(f) => Self::File(f.try_clone().map_err(|e| DataError::Io(e.to_string()))?),
        })
    }

    fn reader(&self) -> Result<Box<dyn Read + Send>, DataError> {
        match self {
            Self::Bytes(b) => Ok(Box::new(Cursor::new(b.clone()))),
            Self::File(f) => {
                let mut f = f.try_clone().map_err(|e| DataError::Io(e.to_string()))?;
                f.rewind().map_err(|e| DataError::Io(e.to_string()))?;
                Ok(Box::new(f))
            }
        }
    }

    fn head(&self) -> Result<Vec<u8>, DataError> {
        let mut head = Vec::with_capacity(8);
        self.reader()?.take(8).read_to_end(&mut head).map_err(|e| DataError::Io(e.to_string()))?;
        Ok(head)
    }
}

/// Bounds on what a reader accepts, and how it cuts the work.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_columns: usize,
    pub batch_rows: usize,
    /// Bytes of CSV parsed as one unit of work by one thread.
    pub block_bytes: usize,
    /// The longest CSV record accepted (a longer one is most likely an unclosed quote).
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_columns: 2_000, batch_rows: 64 * 1024, block_bytes: 4 << 20, max_record_bytes: 64 << 20 }
    }
}

/// A dataset as a stream of record batches.
pub struct Batches {
    pub format: Format,
    pub compression: Compression,
    pub schema: SchemaRef,
    inner: Box<dyn Iterator<Item = Result<RecordBatch, DataError>> + Send>,
}

impl Batches {
    /// Decodes on a separate thread, up to `depth` batches ahead, so decoding and whatever the
    /// caller does with each batch use two cores. The thread reads through [`Batches::next`], so
    /// a decoder that panics there fails the file with an error, as it would here, instead of
    /// ending the stream early as if the file had ended.
    pub fn read_ahead(self, depth: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        let (format, compression, schema) = (self.format, self.compression, self.schema.clone());
        std::thread::spawn(move || {
            for batch in self {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        Self { format, compression, schema, inner: Box::new(rx.into_iter()) }
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        // A decoder that panics on a malformed file (parquet 60.1 does, found by `just fuzz
        // data_parquet`) fails that file, by name, not the service reading it; nothing follows.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.next())) {
            Ok(next) => next,
            Err(panic) => {
                self.inner = Box::new(std::iter::empty());
                Some(Err(DataError::Decoder(self.format.as_str(), panic_message(&panic))))
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Opens `source` (named `name`, which may be empty) as a stream of batches, every CSV and JSON
/// Lines column as text.
pub fn open(source: Source, name: &str, limits: &Limits) -> Result<Batches, DataError> {
    open_typed(source, name, limits, &[])
}

/// Like [`open`], with the columns declared numeric: in CSV each of them is read as Float64 in
/// every batch where all its cells are numbers or empty, and as text where any is not, so that
/// the checks still see (and report) the odd cell. The schema gives the column names; a column's
/// type may differ between batches.
pub fn open_typed(source: Source, name: &str, limits: &Limits, numeric: &[&str]) -> Result<Batches, DataError> {
    // Opening parses a Parquet footer: a decoder panic there fails the file too.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_unguarded(source, name, limits, numeric))) {
        Ok(opened) => opened,
        Err(panic) => Err(DataError::Decoder(detect(name, &[]).0.as_str(), panic_message(&panic))),
    }
}

fn open_unguarded(source: Source, name: &str, limits: &Limits, numeric: &[&str]) -> Result<Batches, DataError> {
    let head = source.head()?;
    if head.is_empty() {
        return Err(DataError::Empty);
    }
    let (format, compression) = detect(name, &head);
    let check_width = |schema: &Schema| {
        let n = schema.fields().len();
        if n > limits.max_columns { Err(DataError::TooManyColumns(n, limits.max_columns)) } else { Ok(()) }
    };
    let decompressed = || -> Result<Box<dyn Read + Send>, DataError> {
        let raw = source.reader()?;
        Ok(match compression {
            Compression::None => raw,
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(raw).map_err(|e| DataError::Decompress("zstd", e.to_string()))?,
            ),
        })
    };
    match format {
        Format::Csv => {
            // The `csv` crate parses (quotes, UTF-8, field counts, each error with its line) on
            // every core; the fields go into Arrow arrays. arrow-csv 60 reaches undefined behaviour
            // on a row with too few fields, so it is not used.
            let mut reader = decompressed()?;
            let (header, rest, first_line) = crate::csv_blocks::read_header(&mut *reader, limits, compression)?;
            if header.iter().all(|h| h.trim().is_empty()) {
                return Err(DataError::Empty);
            }
            let names = unique_names(header.iter().map(|h| h.trim().to_owned()).collect())?;
            let flags = names.iter().map(|n| numeric.contains(&n.as_str())).collect();
            let schema = Arc::new(Schema::new(
                names.into_iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>(),
            ));
            check_width(&schema)?;
            let inner = crate::csv_blocks::CsvBlocks::start(
                reader,
                rest,
                first_line,
                schema.clone(),
                flags,
                *limits,
                compression,
            );
            Ok(Batches { format, compression, schema, inner: Box::new(inner) })
        }
        Format::JsonLines => {
            let mut first = BufReader::new(decompressed()?);
            let (inferred, _) = arrow_json::reader::infer_json_schema(&mut first, Some(1000))
                .map_err(|e| DataError::Json(e.to_string()))?;
            // Every field read as text: the checks parse values, so one odd value is a finding,
            // not a failure of the whole file.
            let schema = Arc::new(Schema::new(
                inferred.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect::<Vec<_>>(),
            ));
            check_width(&schema)?;
            let json = arrow_json::ReaderBuilder::new(schema.clone())
                .with_batch_size(limits.batch_rows)
                .with_coerce_primitive(true)
                .build(BufReader::new(decompressed()?))
                .map_err(|e| DataError::Json(e.to_string()))?;
            let inner = json.map(|b| b.map_err(|e| DataError::Json(e.to_string())));
            Ok(Batches { format, compression, schema, inner: Box::new(inner) })
        }
        Format::Parquet => {
            let pq = |e: parquet::errors::ParquetError| DataError::Parquet(e.to_string());
            match &source {
                Source::Bytes(b) => crate::footer::check_bytes(b),
                Source::File(f) => crate::footer::check_file(f),
            }
            .map_err(DataError::Parquet)?;
            let builder = match &source {
                Source::Bytes(b) => {
                    ParquetBuilder::Bytes(ParquetRecordBatchReaderBuilder::try_new(b.clone()).map_err(pq)?)
                }
                Source::File(f) => ParquetBuilder::File(
                    ParquetRecordBatchReaderBuilder::try_new(f.try_clone().map_err(|e| DataError::Io(e.to_string()))?)
                        .map_err(pq)?,
                ),
            };
            let (schema, inner): (SchemaRef, Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>) =
                match builder {
                    ParquetBuilder::Bytes(b) => {
                        let s = b.schema().clone();
                        (s, Box::new(b.with_batch_size(limits.batch_rows).build().map_err(pq)?))
                    }
                    ParquetBuilder::File(b) => {
                        let s = b.schema().clone();
                        (s, Box::new(b.with_batch_size(limits.batch_rows).build().map_err(pq)?))
                    }
                };
            check_width(&schema)?;
            let inner = inner.map(|b| b.map_err(|e| DataError::Parquet(e.to_string())).and_then(decode_dictionaries));
            Ok(Batches { format, compression, schema, inner: Box::new(inner) })
        }
    }
}

enum ParquetBuilder {
    Bytes(ParquetRecordBatchReaderBuilder<bytes::Bytes>),
    File(ParquetRecordBatchReaderBuilder<std::fs::File>),
}

/// Dictionary-encoded columns (pandas categoricals) become plain strings.
fn decode_dictionaries(batch: RecordBatch) -> Result<RecordBatch, DataError> {
    if !batch.schema().fields().iter().any(|f| matches!(f.data_type(), DataType::Dictionary(_, _))) {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(f.data_type(), DataType::Dictionary(_, _)) {
            columns.push(arrow_cast::cast(c, &DataType::Utf8).map_err(|e| DataError::Parquet(e.to_string()))?);
            fields.push(Field::new(f.name(), DataType::Utf8, true));
        } else {
            columns.push(c.clone());
            fields.push(f.as_ref().clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| DataError::Parquet(e.to_string()))
}

fn unique_names(names: Vec<String>) -> Result<Vec<String>, DataError> {
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        if !seen.insert(n.as_str()) {
            return Err(DataError::Csv(format!("line 1: column `{n}` appears twice in the header")));
        }
    }
    Ok(names)
}
