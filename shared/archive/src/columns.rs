//! One partition's predictions gathered column by column as they are read, and written as one
//! Parquet file with a bloom filter of its prediction ids beside it.
//!
//! A file holds the inputs as received, a column per feature (a feature named like one of the
//! archive's own columns is written as `input.<name>`), then the answers as batch scoring writes
//! them (`prediction_id`, `probability` and `label`, or `prediction`, and `model_version`), then
//! `artifact_sha256`, `predicted_at` (UTC) and `stream_sequence`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::bloom_filter::Sbbf;
use parquet::file::properties::WriterProperties;

use crate::wire::{Logged, text};
use crate::{ArchiveError, FileEntry};

/// The archive's own columns, after the inputs.
pub const OWN_COLUMNS: [&str; 10] = [
    "prediction_id",
    "probability",
    "prediction",
    "label",
    "model_version",
    "artifact_sha256",
    "predicted_at",
    "stream_sequence",
    "true_label",
    "labelled_at",
];

/// The time zone of `predicted_at`, as an offset (which readers need no time zone database for).
pub(crate) const UTC: &str = "+00:00";

/// The share of lookups of an id not in a file that its bloom filter answers "maybe".
const BLOOM_FPP: f64 = 0.01;

/// One input column: numbers, or text once any value was text (numbers then written as text).
enum Input {
    Num(Vec<Option<f64>>),
    Cat(Vec<Option<String>>),
}

impl Input {
    fn len(&self) -> usize {
        match self {
            Self::Num(v) => v.len(),
            Self::Cat(v) => v.len(),
        }
    }

    fn push_num(&mut self, x: f64) {
        match self {
            Self::Num(v) => v.push(x.is_finite().then_some(x)),
            Self::Cat(v) => v.push(Some(x.to_string())),
        }
    }

    fn push_cat(&mut self, s: String) {
        if let Self::Num(v) = self {
            *self = Self::Cat(v.iter().map(|x| x.map(|x| x.to_string())).collect());
        }
        if let Self::Cat(v) = self {
            v.push(Some(s));
        }
    }

    /// Fills the column with nulls up to `rows` (never shortens it).
    fn pad(&mut self, rows: usize) {
        match self {
            Self::Num(v) if v.len() < rows => v.resize(rows, None),
            Self::Cat(v) if v.len() < rows => v.resize(rows, None),
            _ => {}
        }
    }

    fn into_array(self) -> (DataType, ArrayRef) {
        match self {
            Self::Num(v) => (DataType::Float64, Arc::new(Float64Array::from(v))),
            Self::Cat(v) => (DataType::Utf8, Arc::new(StringArray::from(v))),
        }
    }
}

/// The predictions of one pipeline in one hour, as columns.
pub struct Partition {
    pub pipeline: String,
    pub hour: String,
    ids: StringBuilder,
    scores: Vec<f64>,
    labels: StringDictionaryBuilder<Int32Type>,
    classifier: bool,
    versions: Vec<u64>,
    artifacts: StringDictionaryBuilder<Int32Type>,
    times: Vec<i64>,
    sequences: Vec<u64>,
    /// Each input's column, by the name as logged.
    index: HashMap<Bytes, usize, foldhash::fast::FixedState>,
    inputs: Vec<(Bytes, Input)>,
}

/// A partition written: the Parquet file, its ids' bloom filter, and the manifest's entry.
pub struct Encoded {
    pub parquet: Vec<u8>,
    pub bloom: Vec<u8>,
    pub entry: FileEntry,
}

impl Partition {
    pub fn new(pipeline: &str, hour: &str) -> Self {
        Self {
            pipeline: pipeline.into(),
            hour: hour.into(),
            ids: StringBuilder::new(),
            scores: Vec::new(),
            labels: StringDictionaryBuilder::new(),
            classifier: false,
            versions: Vec::new(),
            artifacts: StringDictionaryBuilder::new(),
            times: Vec::new(),
            sequences: Vec::new(),
            index: HashMap::default(),
            inputs: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.times.len()
    }

    /// Adds one prediction, read from the stream message at `sequence`.
    pub fn push(&mut self, sequence: u64, p: &Logged) {
        let row = self.rows();
        // A name given twice (as a number and as text) keeps its first value.
        for n in &p.numeric {
            let input = self.column(&n.key, true, row);
            if input.len() == row {
                input.push_num(n.value);
            }
        }
        for c in &p.categorical {
            let input = self.column(&c.key, false, row);
            if input.len() == row {
                input.push_cat(text(&c.value).to_owned());
            }
        }
        self.ids.append_value(text(&p.prediction_id));
        self.scores.push(p.score);
        self.classifier |= !p.label.is_empty();
        self.labels.append_value(text(&p.label));
        self.versions.push(p.version);
        self.artifacts.append_value(text(&p.artifact_sha256));
        self.times.push(p.time_unix_ms);
        self.sequences.push(sequence);
    }

    /// The input column `name`, made and padded with nulls to `row` rows when new.
    fn column(&mut self, name: &Bytes, num: bool, row: usize) -> &mut Input {
        let i = match self.index.get(name.as_ref()) {
            Some(&i) => i,
            None => {
                self.index.insert(name.clone(), self.inputs.len());
                self.inputs.push((name.clone(), if num { Input::Num(vec![]) } else { Input::Cat(vec![]) }));
                self.inputs.len() - 1
            }
        };
        let input = &mut self.inputs[i].1;
        input.pad(row);
        input
    }

    /// Writes the partition as the file of the flush covering sequences `first` to `last`.
    pub fn encode(mut self, first: u64, last: u64) -> Result<Encoded, ArchiveError> {
        let rows = self.rows();
        let ids = self.ids.finish();
        let bloom = bloom_of(&[&ids])?;
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        let mut inputs = BTreeMap::new();
        // Named as logged, but never like one of the archive's own columns; in name order.
        let named: BTreeMap<String, Input> = std::mem::take(&mut self.inputs)
            .into_iter()
            .map(|(name, input)| {
                let name = String::from_utf8_lossy(&name);
                (if OWN_COLUMNS.contains(&name.as_ref()) { format!("input.{name}") } else { name.into_owned() }, input)
            })
            .collect();
        for (name, mut input) in named {
            input.pad(rows);
            let (data_type, array) = input.into_array();
            inputs.insert(name.clone(), if data_type == DataType::Utf8 { "utf8" } else { "f64" }.to_owned());
            fields.push(Field::new(name, data_type, true));
            columns.push(array);
        }
        let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        fields.push(Field::new("prediction_id", DataType::Utf8, false));
        columns.push(Arc::new(ids));
        fields.push(Field::new(if self.classifier { "probability" } else { "prediction" }, DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(std::mem::take(&mut self.scores))));
        if self.classifier {
            fields.push(Field::new("label", dictionary.clone(), false));
            columns.push(Arc::new(self.labels.finish()));
        }
        let (min_time, max_time) = (self.times.iter().min().copied(), self.times.iter().max().copied());
        let mut versions = self.versions.clone();
        versions.sort_unstable();
        versions.dedup();
        fields.push(Field::new("model_version", DataType::UInt64, false));
        columns.push(Arc::new(UInt64Array::from(std::mem::take(&mut self.versions))));
        fields.push(Field::new("artifact_sha256", dictionary, false));
        columns.push(Arc::new(self.artifacts.finish()));
        fields.push(Field::new("predicted_at", DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())), false));
        columns.push(Arc::new(TimestampMillisecondArray::from(std::mem::take(&mut self.times)).with_timezone(UTC)));
        fields.push(Field::new("stream_sequence", DataType::UInt64, false));
        columns.push(Arc::new(UInt64Array::from(std::mem::take(&mut self.sequences))));
        let name = format!("{}/{}/{first}-{last}.parquet", self.pipeline, self.hour);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| ArchiveError::Write(e.to_string()))?;
        let (parquet, bloom_bytes) = (to_parquet(&[batch], &self.pipeline, first, last)?, bloom);
        let entry = FileEntry {
            bloom_sha256: mlops_shared::sha256_hex(&bloom_bytes),
            sha256: mlops_shared::sha256_hex(&parquet),
            bytes: parquet.len() as u64,
            name,
            pipeline: self.pipeline,
            hour: self.hour,
            rows: rows as u64,
            min_time_ms: min_time.unwrap_or_default(),
            max_time_ms: max_time.unwrap_or_default(),
            versions,
            inputs,
            classifier: self.classifier,
            first_sequence: first,
            last_sequence: last,
            batch: None,
            object: String::new(),
        };
        Ok(Encoded { parquet, bloom: bloom_bytes, entry })
    }
}

/// The bloom filter of a file's prediction ids (in one or more arrays), serialized.
pub(crate) fn bloom_of(ids: &[&StringArray]) -> Result<Vec<u8>, ArchiveError> {
    let write = |e: parquet::errors::ParquetError| ArchiveError::Write(e.to_string());
    let count: usize = ids.iter().map(|a| a.len()).sum();
    let mut bloom = Sbbf::new_with_ndv_fpp(count.max(1) as u64, BLOOM_FPP).map_err(write)?;
    for id in ids.iter().flat_map(|a| a.iter().flatten()) {
        bloom.insert(id);
    }
    let mut bytes = Vec::new();
    bloom.write(&mut bytes).map_err(write)?;
    Ok(bytes)
}

/// `batches` (of one schema) as a Parquet file of the flush covering sequences `first` to `last`.
pub(crate) fn to_parquet(
    batches: &[RecordBatch],
    pipeline: &str,
    first: u64,
    last: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Err(ArchiveError::Write("a file of no rows".into()));
    };
    let write = |e: parquet::errors::ParquetError| ArchiveError::Write(e.to_string());
    let metadata = vec![
        parquet::file::metadata::KeyValue::new("mlops.pipeline".into(), pipeline.to_owned()),
        parquet::file::metadata::KeyValue::new("mlops.first_sequence".into(), first.to_string()),
        parquet::file::metadata::KeyValue::new("mlops.last_sequence".into(), last.to_string()),
    ];
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled("label".into(), true)
        .set_column_dictionary_enabled("true_label".into(), true)
        .set_column_dictionary_enabled("artifact_sha256".into(), true)
        .set_column_dictionary_enabled("model_version".into(), true)
        .set_key_value_metadata(Some(metadata))
        .build();
    let mut parquet = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut parquet, schema, Some(props)).map_err(write)?;
    for batch in batches {
        writer.write(batch).map_err(write)?;
    }
    writer.close().map_err(write)?;
    Ok(parquet)
}

/// The labels that came for one pipeline's predictions of one hour: `prediction_id`,
/// `true_label`, `labelled_at` (when the label was published) and `stream_sequence`.
pub struct LabelPartition {
    pub pipeline: String,
    pub hour: String,
    ids: StringBuilder,
    labels: StringBuilder,
    times: Vec<i64>,
    sequences: Vec<u64>,
}

impl LabelPartition {
    pub fn new(pipeline: &str, hour: &str) -> Self {
        Self {
            pipeline: pipeline.into(),
            hour: hour.into(),
            ids: StringBuilder::new(),
            labels: StringBuilder::new(),
            times: Vec::new(),
            sequences: Vec::new(),
        }
    }

    /// Adds the label of `prediction_id`, published at `at`, read from the message at `sequence`.
    pub fn push(&mut self, sequence: u64, prediction_id: &str, label: &str, at: i64) {
        self.ids.append_value(prediction_id);
        self.labels.append_value(label);
        self.times.push(at);
        self.sequences.push(sequence);
    }

    /// Writes the partition as the file of the flush covering sequences `first` to `last`.
    pub fn encode(mut self, first: u64, last: u64) -> Result<Encoded, ArchiveError> {
        let ids = self.ids.finish();
        let bloom = bloom_of(&[&ids])?;
        let rows = ids.len() as u64;
        let (min_time, max_time) = (self.times.iter().min().copied(), self.times.iter().max().copied());
        let time = DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()));
        let schema = Schema::new(vec![
            Field::new("prediction_id", DataType::Utf8, false),
            Field::new("true_label", DataType::Utf8, false),
            Field::new("labelled_at", time, false),
            Field::new("stream_sequence", DataType::UInt64, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids),
            Arc::new(self.labels.finish()),
            Arc::new(TimestampMillisecondArray::from(std::mem::take(&mut self.times)).with_timezone(UTC)),
            Arc::new(UInt64Array::from(std::mem::take(&mut self.sequences))),
        ];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| ArchiveError::Write(e.to_string()))?;
        let parquet = to_parquet(&[batch], &self.pipeline, first, last)?;
        let entry = FileEntry {
            name: format!("{LABELS_DIR}/{}/{}/{first}-{last}.parquet", self.pipeline, self.hour),
            bloom_sha256: mlops_shared::sha256_hex(&bloom),
            sha256: mlops_shared::sha256_hex(&parquet),
            bytes: parquet.len() as u64,
            pipeline: self.pipeline,
            hour: self.hour,
            rows,
            min_time_ms: min_time.unwrap_or_default(),
            max_time_ms: max_time.unwrap_or_default(),
            versions: Vec::new(),
            inputs: BTreeMap::new(),
            classifier: false,
            first_sequence: first,
            last_sequence: last,
            batch: None,
            object: String::new(),
        };
        Ok(Encoded { parquet, bloom, entry })
    }
}

/// Where label files are kept: a name no pipeline can have (they start with a letter).
pub const LABELS_DIR: &str = "_labels";
