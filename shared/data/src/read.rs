//! Opening a dataset as a stream of Arrow record batches. CSV and JSON Lines columns are read as
//! strings (the checks parse them, so a bad cell is reported, not fatal); Parquet keeps its types,
//! dictionary-encoded columns decoded to strings.

use std::io::{BufRead, BufReader, Cursor, Read, Seek};
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
    let io_err = |e: std::io::Error| match compression {
        Compression::Gzip => DataError::Decompress("gzip", e.to_string()),
        Compression::Zstd => DataError::Decompress("zstd", e.to_string()),
        Compression::None => DataError::Io(e.to_string()),
    };
    match format {
        Format::Csv => {
            let mut reader = BufReader::with_capacity(1 << 16, decompressed()?);
            let mut header = Vec::new();
            reader.read_until(b'\n', &mut header).map_err(io_err)?;
            if header.iter().all(u8::is_ascii_whitespace) {
                return Err(DataError::Empty);
            }
            let names = csv_header(&header)?;
            let schema = Arc::new(Schema::new(
                names.into_iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>(),
            ));
            check_width(&schema)?;
            let body = Cursor::new(header).chain(reader);
            let csv = arrow_csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_batch_size(limits.batch_rows)
                .build(body)
                .map_err(|e| DataError::Csv(e.to_string()))?;
            let inner = csv.map(|b| b.map_err(|e| DataError::Csv(describe(e))));
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

fn csv_header(line: &[u8]) -> Result<Vec<String>, DataError> {
    let text = std::str::from_utf8(line).map_err(|_| DataError::Csv("line 1: the header is not valid UTF-8".into()))?;
    let mut names = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.trim_end_matches(['\r', '\n']).chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => names.push(std::mem::take(&mut field).trim().to_owned()),
            (c, _) => field.push(c),
        }
    }
    names.push(field.trim().to_owned());
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        if !seen.insert(n.as_str()) {
            return Err(DataError::Csv(format!("line 1: column `{n}` appears twice in the header")));
        }
    }
    Ok(names)
}

/// arrow-csv's messages count records from 0 after the header; people count lines from 1 with it.
fn describe(e: ArrowError) -> String {
    e.to_string().trim_start_matches("Csv error: ").trim_start_matches("Parser error: ").to_owned()
}
