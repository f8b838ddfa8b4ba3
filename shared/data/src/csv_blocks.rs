//! CSV decoded on every core. One thread reads (and decompresses) the file in blocks cut at record
//! boundaries; worker threads parse the blocks into record batches; the batches come out in file
//! order, each error with its line number in the whole file. Memory stays bounded: a few blocks are
//! in flight at once, whatever the size of the file.
//!
//! Records are parsed by the `csv` crate (quotes, doubled quotes, CRLF). A block boundary is found
//! by a scanner that follows the same quoting rules, so a newline inside a quoted field never cuts
//! a record, and a stray quote inside an unquoted field (`5'11"`) is a plain character, as it is to
//! the parser.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use arrow_array::builder::{Float64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use mlops_shared::format::Compression;
use mlops_shared::table::{parse_number, parse_plain_decimal};

use crate::read::{DataError, Limits};

type Blocks = Result<Vec<RecordBatch>, DataError>;

/// What the reading thread hands to the workers.
struct Job {
    block: Vec<u8>,
    /// The file's line number of the block's first line.
    first_line: u64,
    reply: SyncSender<Blocks>,
}

/// The parser's view of where a byte is, for finding record ends without parsing.
#[derive(Clone, Copy, PartialEq)]
enum Scan {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// The end (just past the `\n`) of the first or the last complete record in `buf`, which starts at
/// a record boundary.
fn record_end(buf: &[u8], first: bool) -> Option<usize> {
    if memchr::memchr(b'"', buf).is_none() {
        // No quotes, no quoted newlines: every newline ends a record.
        let at = if first { memchr::memchr(b'\n', buf) } else { memchr::memrchr(b'\n', buf) };
        return at.map(|i| i + 1);
    }
    let mut state = Scan::FieldStart;
    let mut end = None;
    for (i, &b) in buf.iter().enumerate() {
        state = match (state, b) {
            (Scan::Quoted, b'"') => Scan::QuoteInQuoted,
            (Scan::Quoted, _) => Scan::Quoted,
            (Scan::QuoteInQuoted, b'"') | (Scan::FieldStart, b'"') => Scan::Quoted,
            (_, b',') | (_, b'\r') => Scan::FieldStart,
            (_, b'\n') => {
                end = Some(i + 1);
                if first {
                    break;
                }
                Scan::FieldStart
            }
            _ => Scan::Unquoted,
        };
    }
    end
}

fn read_error(e: &std::io::Error, compression: Compression) -> DataError {
    match compression {
        Compression::None => DataError::Io(e.to_string()),
        Compression::Gzip => DataError::Decompress("gzip", e.to_string()),
        Compression::Zstd => DataError::Decompress("zstd", e.to_string()),
    }
}

/// Reads from `reader` until `buf` holds `want` bytes or the input ends; whether it ended.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, want: usize, compression: Compression) -> Result<bool, DataError> {
    while buf.len() < want {
        let before = buf.len();
        let n = reader.take((want - before) as u64).read_to_end(buf).map_err(|e| read_error(&e, compression))?;
        if n == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The header record and the bytes read past it.
pub(crate) fn read_header(
    reader: &mut dyn Read,
    limits: &Limits,
    compression: Compression,
) -> Result<(csv::StringRecord, Vec<u8>, u64), DataError> {
    let mut buf = Vec::new();
    let mut want = limits.block_bytes.min(64 * 1024);
    let end = loop {
        let eof = fill(reader, &mut buf, want, compression)?;
        if let Some(end) = record_end(&buf, true) {
            break end;
        }
        if eof {
            break buf.len();
        }
        if buf.len() >= limits.max_record_bytes {
            return Err(DataError::Csv(format!("line 1: the header is longer than {} bytes", limits.max_record_bytes)));
        }
        want += want;
    };
    let rest = buf.split_off(end);
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(buf.as_slice());
    let header = csv.headers().map_err(|e| DataError::Csv(describe(&e, 1)))?.clone();
    let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
    Ok((header, rest, 1 + lines))
}

/// Decodes the records after the header on worker threads.
pub(crate) struct CsvBlocks {
    ordered: Receiver<Receiver<Blocks>>,
    ready: VecDeque<RecordBatch>,
    done: bool,
}

impl CsvBlocks {
    /// Starts reading `reader` (positioned after the header; `rest` is what was read past it, and
    /// `first_line` its line number). Columns flagged in `numeric` become Float64 in every batch
    /// where all their cells are numbers or empty; otherwise, and always for the rest, text.
    pub(crate) fn start(
        mut reader: Box<dyn Read + Send>,
        rest: Vec<u8>,
        first_line: u64,
        schema: SchemaRef,
        numeric: Vec<bool>,
        limits: Limits,
        compression: Compression,
    ) -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let (ordered_tx, ordered) = sync_channel::<Receiver<Blocks>>(workers + 1);
        let (jobs_tx, jobs) = channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let numeric = Arc::new(numeric);
        for _ in 0..workers {
            let (jobs, schema, numeric) = (jobs.clone(), schema.clone(), numeric.clone());
            std::thread::spawn(move || {
                loop {
                    let job = match jobs.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let out = decode_block(&job.block, job.first_line, &schema, &numeric, limits.batch_rows);
                    // The consumer may have stopped early; nothing to do then.
                    let _ = job.reply.send(out);
                }
            });
        }
        std::thread::spawn(move || {
            if let Err(e) = split(&mut *reader, rest, first_line, &limits, compression, &ordered_tx, &jobs_tx) {
                let (tx, rx) = sync_channel(1);
                let _ = tx.send(Err(e));
                let _ = ordered_tx.send(rx);
            }
        });
        Self { ordered, ready: VecDeque::new(), done: false }
    }
}

/// Cuts the input into blocks of whole records and queues them, in order.
fn split(
    reader: &mut dyn Read,
    mut buf: Vec<u8>,
    mut line: u64,
    limits: &Limits,
    compression: Compression,
    ordered: &SyncSender<Receiver<Blocks>>,
    jobs: &Sender<Job>,
) -> Result<(), DataError> {
    let mut want = limits.block_bytes.max(1);
    loop {
        let eof = fill(reader, &mut buf, want, compression)?;
        if buf.is_empty() {
            return Ok(());
        }
        let cut = if eof { Some(buf.len()) } else { record_end(&buf, false) };
        let Some(cut) = cut else {
            if buf.len() >= limits.max_record_bytes {
                return Err(DataError::Csv(format!(
                    "line {line}: a record is longer than {} bytes (an unclosed quote?)",
                    limits.max_record_bytes
                )));
            }
            want += limits.block_bytes.max(1);
            continue;
        };
        want = limits.block_bytes.max(1);
        let rest = buf.split_off(cut);
        let block = std::mem::replace(&mut buf, rest);
        let lines = memchr::memchr_iter(b'\n', &block).count() as u64;
        let (reply, result) = sync_channel(1);
        if ordered.send(result).is_err() || jobs.send(Job { block, first_line: line, reply }).is_err() {
            return Ok(()); // the consumer is gone
        }
        line += lines;
    }
}

impl Iterator for CsvBlocks {
    type Item = Result<RecordBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            let Ok(next) = self.ordered.recv() else {
                self.done = true;
                return None;
            };
            match next.recv() {
                Ok(Ok(batches)) => self.ready.extend(batches),
                Ok(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Err(_) => {
                    self.done = true;
                    return Some(Err(DataError::Io("a CSV decoding thread stopped unexpectedly".into())));
                }
            }
        }
    }
}

/// One column of a batch being built.
enum ColumnBuilder {
    Text(StringBuilder),
    Number(Float64Builder),
}

impl ColumnBuilder {
    /// Appends a field.
    #[inline]
    fn push(&mut self, field: &str) {
        match self {
            Self::Number(b) => match parse_plain_decimal(field.as_bytes()) {
                Some(v) => b.append_value(v),
                None => self.push_other(field),
            },
            Self::Text(b) => b.append_value(field),
        }
    }

    /// A number the fast path does not take: empty, padded, an exponent, or not a number at all.
    #[cold]
    #[inline(never)]
    fn push_other(&mut self, field: &str) {
        if let Self::Number(b) = self {
            // `parse_number` is the one rule for numeric cells (trimmed, empty is missing, finite).
            if let Ok(v) = parse_number(field) {
                b.append_option(v);
                return;
            }
            // Not a number: this batch keeps the column as text, for the checks to report.
            let mut text = StringBuilder::new();
            for v in b.finish().iter() {
                match v {
                    Some(v) => text.append_value(v.to_string()),
                    None => text.append_null(),
                }
            }
            *self = Self::Text(text);
        }
        if let Self::Text(b) = self {
            b.append_value(field);
        }
    }

    fn finish(&mut self) -> (DataType, ArrayRef) {
        match self {
            Self::Text(b) => (DataType::Utf8, std::sync::Arc::new(b.finish())),
            Self::Number(b) => (DataType::Float64, std::sync::Arc::new(b.finish())),
        }
    }
}

fn describe(e: &csv::Error, first_line: u64) -> String {
    let line = |p: Option<&csv::Position>| first_line + p.map_or(1, csv::Position::line) - 1;
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => {
            format!("line {}: field {} is not valid UTF-8", line(pos.as_ref()), err.field() + 1)
        }
        _ => e.to_string(),
    }
}

/// Rows gathered into batches of at most `batch_rows` rows.
struct Batcher<'a> {
    schema: &'a Schema,
    numeric: &'a [bool],
    batch_rows: usize,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    out: Vec<RecordBatch>,
}

impl<'a> Batcher<'a> {
    fn new(schema: &'a Schema, numeric: &'a [bool], batch_rows: usize) -> Self {
        let mut b = Self { schema, numeric, batch_rows, builders: vec![], rows: 0, out: vec![] };
        b.builders = b.new_builders();
        b
    }

    fn new_builders(&self) -> Vec<ColumnBuilder> {
        let rows = self.batch_rows.min(16 * 1024);
        self.numeric
            .iter()
            .map(|&n| {
                if n {
                    ColumnBuilder::Number(Float64Builder::with_capacity(rows))
                } else {
                    ColumnBuilder::Text(StringBuilder::with_capacity(rows, rows * 8))
                }
            })
            .collect()
    }

    /// Adds the record at `line`, of `len` fields.
    fn row<'f>(&mut self, line: u64, len: usize, fields: impl Iterator<Item = &'f str>) -> Result<(), DataError> {
        let width = self.numeric.len();
        if len != width {
            return Err(DataError::Csv(format!("line {line}: {len} fields where the header has {width}")));
        }
        for (b, field) in self.builders.iter_mut().zip(fields) {
            b.push(field);
        }
        self.end_row()
    }

    /// Counts a row whose fields were pushed.
    fn end_row(&mut self) -> Result<(), DataError> {
        self.rows += 1;
        if self.rows == self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DataError> {
        if self.rows == 0 {
            return Ok(());
        }
        let (types, arrays): (Vec<DataType>, Vec<ArrayRef>) =
            self.builders.iter_mut().map(ColumnBuilder::finish).unzip();
        let fields: Vec<Field> =
            self.schema.fields().iter().zip(types).map(|(f, t)| Field::new(f.name(), t, true)).collect();
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| DataError::Csv(e.to_string()))?;
        self.out.push(batch);
        self.builders = self.new_builders();
        self.rows = 0;
        Ok(())
    }

    fn finish(mut self) -> Blocks {
        self.flush()?;
        Ok(self.out)
    }
}

/// Parses one block of whole records into batches of at most `batch_rows` rows.
fn decode_block(block: &[u8], first_line: u64, schema: &Schema, numeric: &[bool], batch_rows: usize) -> Blocks {
    let mut out = Batcher::new(schema, numeric, batch_rows);
    // A block valid as a whole is valid field by field: fields are cut at ASCII bytes.
    if let Ok(text) = std::str::from_utf8(block)
        && plain(block)
    {
        decode_plain(text, first_line, &mut out)?;
        return out.finish();
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(block);
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(|e| DataError::Csv(describe(&e, first_line)))? {
        let line = first_line + record.position().map_or(1, csv::Position::line) - 1;
        out.row(line, record.len(), record.iter())?;
    }
    out.finish()
}

/// Calls `at` with the position of every comma and newline in `block`, in order, until it returns
/// false. Eight bytes at a time: in a word, a byte equal to the pattern becomes zero, and the exact
/// zero-byte test (no borrow between bytes) flags it in its top bit.
fn delimiters(block: &[u8], mut at: impl FnMut(usize) -> bool) {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let zero_bytes = |v: u64| !(((v & LOW7) + LOW7) | v | LOW7);
    let (commas, newlines) = (u64::from_ne_bytes([b','; 8]), u64::from_ne_bytes([b'\n'; 8]));
    let mut words = block.chunks_exact(8);
    for (w, word) in words.by_ref().enumerate() {
        let v = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        let mut hits = zero_bytes(v ^ commas) | zero_bytes(v ^ newlines);
        while hits != 0 {
            if !at(w * 8 + (hits.trailing_zeros() / 8) as usize) {
                return;
            }
            hits &= hits - 1;
        }
    }
    let tail = block.len() - words.remainder().len();
    for (i, b) in words.remainder().iter().enumerate() {
        if matches!(b, b',' | b'\n') && !at(tail + i) {
            return;
        }
    }
}

/// Whether a block needs no quoting rules: no quotes, and a carriage return only before a newline.
fn plain(block: &[u8]) -> bool {
    memchr::memchr(b'"', block).is_none() && memchr::memchr_iter(b'\r', block).all(|i| block.get(i + 1) == Some(&b'\n'))
}

/// A block without quotes, split at commas and newlines in one pass, each field going straight to
/// its column; the records are the ones the `csv` crate reads (blank lines skipped, CRLF accepted),
/// checked by a property test.
fn decode_plain(block: &str, line: u64, out: &mut Batcher<'_>) -> Result<(), DataError> {
    let mut at_field = Cursor { start: 0, column: 0, line };
    let mut result = Ok(());
    delimiters(block.as_bytes(), |at| {
        result = at_field.end(block, at, block.as_bytes()[at] == b'\n', out);
        result.is_ok()
    });
    result?;
    if at_field.start < block.len() || at_field.column > 0 {
        at_field.end(block, block.len(), true, out)?;
    }
    Ok(())
}

/// Where [`decode_plain`] is: the current field's first byte, its column and its line.
struct Cursor {
    start: usize,
    column: usize,
    line: u64,
}

impl Cursor {
    /// Ends the current field at `at`, and the record too at the end of a line.
    #[inline]
    fn end(&mut self, block: &str, at: usize, end_of_line: bool, out: &mut Batcher<'_>) -> Result<(), DataError> {
        let width = out.numeric.len();
        // In bounds and on character boundaries: `at` is a delimiter's position or the end.
        let mut value = block.get(self.start..at).unwrap_or_default();
        self.start = at + 1;
        if end_of_line {
            value = value.strip_suffix('\r').unwrap_or(value);
            if self.column == 0 && value.is_empty() {
                self.line += 1;
                return Ok(()); // a blank line
            }
        }
        if let Some(b) = out.builders.get_mut(self.column) {
            b.push(value);
        }
        let line = self.line;
        self.column += 1;
        if end_of_line {
            if self.column != width {
                return Err(DataError::Csv(format!(
                    "line {line}: {} fields where the header has {width}",
                    self.column
                )));
            }
            out.end_row()?;
            self.column = 0;
            self.line += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,6}",
            "-?[0-9]{1,4}(\\.[0-9]{1,3})?",
            Just("\"with, comma\"".to_owned()),
            Just("\"two\nlines\"".to_owned()),
            Just("\"say \"\"hi\"\"\"".to_owned()),
            Just("5'11\"".to_owned()),
            Just(String::new()),
        ]
    }

    /// Every cell as text, through our reader with `block_bytes`.
    fn ours(csv: &str, block_bytes: usize, numeric: &[&str]) -> Result<Vec<Vec<String>>, DataError> {
        let limits = Limits { block_bytes, ..Limits::default() };
        let batches =
            crate::read::open_typed(crate::Source::Bytes(csv.as_bytes().to_vec().into()), "", &limits, numeric)?;
        let mut rows = Vec::new();
        for b in batches {
            let b = b?;
            for r in 0..b.num_rows() {
                rows.push(
                    b.columns()
                        .iter()
                        .map(|c| match c.data_type() {
                            DataType::Float64 if c.is_null(r) => String::new(),
                            DataType::Float64 => {
                                c.as_primitive::<arrow_array::types::Float64Type>().value(r).to_string()
                            }
                            _ => c.as_string::<i32>().value(r).to_owned(),
                        })
                        .collect(),
                );
            }
        }
        Ok(rows)
    }

    /// The `csv` crate reading the whole text at once.
    fn reference(csv: &str) -> Vec<Vec<String>> {
        csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    proptest! {
        // However the file is cut into blocks, the records are the ones the parser reads from the
        // whole file: quoted newlines, doubled quotes, stray quotes and CRLF included.
        #[test]
        fn blocks_read_as_the_whole_file_does(
            rows in prop::collection::vec(prop::collection::vec(field(), 3), 0..40),
            crlf: bool,
            block in 1usize..200,
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut csv = format!("a,b,c{end}");
            for r in &rows {
                csv.push_str(&r.join(","));
                csv.push_str(end);
            }
            let expected = reference(&csv);
            prop_assert_eq!(ours(&csv, block, &[]).unwrap(), expected.clone());
            prop_assert_eq!(ours(&csv, 1 << 20, &[]).unwrap(), expected);
        }

        // The fast path for quote-free blocks reads what the parser reads: blank lines skipped,
        // CRLF and LF mixed, no newline at the end, spaces kept.
        #[test]
        fn plain_blocks_read_as_the_parser_does(
            rows in prop::collection::vec((prop::collection::vec("[a-z0-9 .-]{0,5}", 2), 0u8..4), 0..40),
            last_newline: bool,
            block in 1usize..120,
        ) {
            let mut csv = "a,b\n".to_owned();
            for (i, (r, style)) in rows.iter().enumerate() {
                csv.push_str(&r.join(","));
                if i + 1 < rows.len() || last_newline {
                    csv.push_str(["\n", "\r\n", "\n\n", "\r\n\r\n"][usize::from(*style)]);
                }
            }
            prop_assert_eq!(ours(&csv, block, &[]).unwrap(), reference(&csv));
        }

        // A ragged row is reported at the line the parser finds it, whichever block it is in.
        #[test]
        fn a_ragged_row_is_reported_at_its_line(good in 0usize..60, block in 1usize..100, quoted: bool, long: bool) {
            let mut csv = "a,b,c\n".to_owned();
            for i in 0..good {
                csv.push_str(&if quoted { format!("{i},\"x\ny\",z\n") } else { format!("{i},x,z\n") });
            }
            csv.push_str(if long { "1,2,3,4\n3,4,5\n" } else { "1,2\n3,4,5\n" });
            let line = 2 + good * if quoted { 2 } else { 1 };
            let err = ours(&csv, block, &["a"]).unwrap_err();
            let n = if long { 4 } else { 2 };
            prop_assert_eq!(err, DataError::Csv(format!("line {line}: {n} fields where the header has 3")));
        }
    }

    #[test]
    fn numeric_columns_are_float64_unless_a_cell_is_not_a_number() {
        let csv = "x,y\n1.5,a\n,b\n 2 ,c\n";
        let limits = Limits::default();
        let b = crate::read::open_typed(crate::Source::Bytes(csv.as_bytes().to_vec().into()), "", &limits, &["x"])
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(b.column(0).data_type(), &DataType::Float64);
        assert_eq!(b.column(0).null_count(), 1);
        assert_eq!(b.column(1).data_type(), &DataType::Utf8);
        let odd = "x\n1.5\nabc\n\n3\n";
        assert_eq!(ours(odd, 1 << 20, &["x"]).unwrap(), [["1.5"], ["abc"], ["3"]]);
        let b = crate::read::open_typed(crate::Source::Bytes(odd.as_bytes().to_vec().into()), "", &limits, &["x"])
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(b.column(0).data_type(), &DataType::Utf8, "kept as text so the checks see `abc`");
    }

    #[test]
    fn an_unclosed_quote_is_an_error_not_unbounded_memory() {
        let limits = Limits { block_bytes: 16, max_record_bytes: 64, ..Limits::default() };
        let csv = format!("a,b\n1,\"{}\n", "x".repeat(200));
        let err = crate::read::open(crate::Source::Bytes(csv.into_bytes().into()), "", &limits)
            .unwrap()
            .find_map(Result::err)
            .unwrap();
        assert!(err.to_string().contains("line 2: a record is longer than 64 bytes"), "{err}");
    }

    proptest! {
        #[test]
        fn delimiters_are_found_exactly(bytes in prop::collection::vec(prop_oneof![Just(b','), Just(b'\n'), any::<u8>()], 0..100)) {
            let mut found = vec![];
            delimiters(&bytes, |i| { found.push(i); true });
            let expected: Vec<usize> = (0..bytes.len()).filter(|&i| matches!(bytes[i], b',' | b'\n')).collect();
            prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn record_ends_follow_the_quoting_rules() {
        assert_eq!(record_end(b"a,b\nc,d\ne", false), Some(8));
        assert_eq!(record_end(b"a,b\nc,d\ne", true), Some(4));
        assert_eq!(record_end(b"a,\"b\nc\",d\ne", true), Some(10), "a quoted newline is inside the field");
        assert_eq!(record_end(b"a,\"b\"\"\nc\",d\n", true), Some(12), "a doubled quote does not close");
        assert_eq!(record_end(b"5'11\",x\ny", true), Some(8), "a quote inside an unquoted field is plain");
        assert_eq!(record_end(b"a,\"open\nb\n", false), None, "an unclosed quote has no end yet");
        assert_eq!(record_end(b"a,b\r\nc\r\n", false), Some(8));
    }
}
