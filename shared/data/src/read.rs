//! Opening a dataset as a stream of Arrow record batches. CSV and JSON Lines columns are read as
//! strings (the checks parse them, so a bad cell is reported, not fatal); Parquet keeps its types,
//! dictionary-encoded columns decoded to strings.

use std::io::{BufReader, Cursor, Read, Seek};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
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

/// Bounds on what a reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_columns: usize,
    pub batch_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_columns: 2_000, batch_rows: 64 * 1024 }
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
    /// caller does with each batch use two cores.
    pub fn read_ahead(self, depth: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        let Self { format, compression, schema, inner } = self;
        std::thread::spawn(move || {
            for batch in inner {
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
        self.inner.next()
    }
}

/// Opens `source` (named `name`, which may be empty) as a stream of batches.
pub fn open(source: Source, name: &str, limits: &Limits) -> Result<Batches, DataError> {
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
            // The `csv` crate parses (quotes, UTF-8, field counts, each error with its line); the
            // fields go into Arrow string arrays. arrow-csv 60 reaches undefined behaviour on a row
            // with too few fields, so it is not used.
            let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(decompressed()?);
            let header = reader.headers().map_err(|e| csv_error(e, compression))?.clone();
            if header.iter().all(|h| h.trim().is_empty()) {
                return Err(DataError::Empty);
            }
            let names = unique_names(header.iter().map(|h| h.trim().to_owned()).collect())?;
            let schema = Arc::new(Schema::new(
                names.into_iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>(),
            ));
            check_width(&schema)?;
            let inner =
                CsvBatches { reader, schema: schema.clone(), batch_rows: limits.batch_rows, compression, done: false };
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

/// A CSV error; an I/O error inside a compressed stream is a decompression failure.
fn csv_error(e: csv::Error, compression: Compression) -> DataError {
    match (e.kind(), compression) {
        (csv::ErrorKind::Io(io), Compression::Gzip) => DataError::Decompress("gzip", io.to_string()),
        (csv::ErrorKind::Io(io), Compression::Zstd) => DataError::Decompress("zstd", io.to_string()),
        (csv::ErrorKind::Io(io), Compression::None) => DataError::Io(io.to_string()),
        _ => DataError::Csv(describe_csv_error(&e)),
    }
}

fn describe_csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            format!("line {}: {len} fields where the header has {expected_len}", pos.as_ref().map_or(0, |p| p.line()))
        }
        csv::ErrorKind::Utf8 { pos, err } => {
            format!("line {}: field {} is not valid UTF-8", pos.as_ref().map_or(0, |p| p.line()), err.field() + 1)
        }
        _ => e.to_string(),
    }
}

/// CSV records gathered into string-column batches.
struct CsvBatches {
    reader: csv::Reader<Box<dyn Read + Send>>,
    schema: SchemaRef,
    batch_rows: usize,
    compression: Compression,
    done: bool,
}

impl Iterator for CsvBatches {
    type Item = Result<RecordBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let width = self.schema.fields().len();
        let mut columns: Vec<StringBuilder> =
            (0..width).map(|_| StringBuilder::with_capacity(self.batch_rows, self.batch_rows * 8)).collect();
        let mut record = csv::StringRecord::new();
        let mut rows = 0;
        while rows < self.batch_rows {
            match self.reader.read_record(&mut record) {
                Ok(true) => {
                    for (builder, field) in columns.iter_mut().zip(record.iter()) {
                        builder.append_value(field);
                    }
                    rows += 1;
                }
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(csv_error(e, self.compression)));
                }
            }
        }
        if rows == 0 {
            return None;
        }
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        Some(RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| DataError::Csv(e.to_string())))
    }
}
