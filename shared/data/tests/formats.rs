//! Every format reads into the same frame; every kind of broken input is an error naming the
//! problem.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray, types::Int32Type};
use mlops_data::{DataError, Format, Limits, Source, open, read_frame};
use mlops_shared::spec::PipelineSpec;
use mlops_shared::table::Column;

const SPEC: &str = r#"
name: t
features:
  - {name: x, type: numeric, nullable: true}
  - {name: c, type: categorical, categories: [a, b]}
target: {name: y}
"#;

const CSV: &str = "x,c,y\n1.5,a,1\n,b,0\n-2,\"a\",1\n";

fn spec() -> PipelineSpec {
    PipelineSpec::from_yaml(SPEC).unwrap()
}

fn frame_of(bytes: Vec<u8>, name: &str) -> Result<mlops_shared::table::Frame, DataError> {
    let batches = open(Source::Bytes(bytes.into()), name, &Limits::default())?;
    read_frame(batches, &spec(), true)
}

fn expected() -> mlops_shared::table::Frame {
    mlops_shared::table::Frame {
        columns: vec![
            Column::Numeric(vec![Some(1.5), None, Some(-2.0)]),
            Column::Categorical(vec![Some("a".into()), Some("b".into()), Some("a".into())]),
        ],
        target: Some(vec![1.0, 0.0, 1.0]),
        rows: 3,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn parquet(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf
}

#[test]
fn csv_gzip_zstd_jsonl_and_parquet_read_alike() {
    assert_eq!(frame_of(CSV.into(), "d.csv").unwrap(), expected());
    assert_eq!(frame_of(gzip(CSV.as_bytes()), "d.csv.gz").unwrap(), expected());
    assert_eq!(frame_of(zstd::encode_all(CSV.as_bytes(), 3).unwrap(), "").unwrap(), expected());
    let jsonl = "{\"x\": 1.5, \"c\": \"a\", \"y\": 1}\n{\"c\": \"b\", \"y\": 0, \"x\": null}\n{\"x\": -2, \"c\": \"a\", \"y\": \"1\"}\n";
    assert_eq!(frame_of(jsonl.into(), "d.jsonl").unwrap(), expected());

    let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
    let batch = RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-2.0)])) as ArrayRef),
        ("c", Arc::new(dict) as ArrayRef),
        ("y", Arc::new(Int64Array::from(vec![1, 0, 1])) as ArrayRef),
    ])
    .unwrap();
    let pq = parquet(&batch);
    assert_eq!(frame_of(pq.clone(), "whatever").unwrap(), expected());

    // A file source streams the same way.
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&pq).unwrap();
    let batches = open(Source::File(file), "", &Limits::default()).unwrap();
    assert_eq!(batches.format, Format::Parquet);
    assert_eq!(read_frame(batches, &spec(), true).unwrap(), expected());
}

#[test]
fn large_inputs_stream_in_bounded_batches() {
    let mut csv = String::from("x,c,y\n");
    for i in 0..10_000 {
        csv.push_str(&format!("{i},a,{}\n", i % 2));
    }
    let limits = Limits { batch_rows: 1024, ..Limits::default() };
    let batches: Vec<RecordBatch> = open(Source::Bytes(csv.into()), "", &limits).unwrap().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 10);
    assert!(batches.iter().all(|b| b.num_rows() <= 1024));
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 10_000);
}

#[test]
fn broken_inputs_name_the_problem() {
    let err = |bytes: Vec<u8>, name: &str| match open(Source::Bytes(bytes.into()), name, &Limits::default()) {
        Err(e) => e.to_string(),
        Ok(b) => match read_frame(b, &spec(), true) {
            Err(e) => e.to_string(),
            Ok(f) => panic!("read {} rows of bad input", f.rows),
        },
    };
    assert_eq!(err(vec![], "a.csv"), "the data is empty: no header row");
    assert_eq!(err(b"\n\n".to_vec(), "a.csv"), "the data is empty: no header row");
    let ragged = err(b"x,c,y\n1,a,1\n2,b\n".to_vec(), "");
    assert!(ragged.contains("malformed CSV") && ragged.contains("line"), "{ragged}");
    let latin1 = err(b"x,c,y\n1,\xe9t\xe9,1\n".to_vec(), "");
    assert!(latin1.contains("UTF-8"), "{latin1}");
    let text = err(b"x,c,y\nabc,a,1\n".to_vec(), "");
    assert_eq!(text, "row 1, column `x`: \"abc\" is not a number");

    let batch = RecordBatch::try_from_iter([("x", Arc::new(StringArray::from(vec!["1"; 100])) as ArrayRef)]).unwrap();
    let pq = parquet(&batch);
    let truncated = err(pq[..pq.len() / 2].to_vec(), "");
    assert!(truncated.starts_with("unreadable Parquet"), "{truncated}");
    let mut corrupt = pq.clone();
    let n = corrupt.len();
    corrupt[n - 12..n - 8].copy_from_slice(&[0xff; 4]);
    assert!(err(corrupt, "").starts_with("unreadable Parquet"));

    let bad_gzip = err(vec![0x1f, 0x8b, 8, 0, 1, 2, 3], "a.csv.gz");
    assert!(bad_gzip.contains("gzip"), "{bad_gzip}");

    let wide = (0..10_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",") + "\n";
    assert_eq!(err(wide.into_bytes(), ""), "10000 columns is over the limit of 2000");
    let dup = err(b"x,x,y\n1,2,1\n".to_vec(), "");
    assert!(dup.contains("`x` appears twice"), "{dup}");

    let missing = err(b"x,y\n1,1\n".to_vec(), "");
    assert_eq!(missing, "column `c` is missing");
    let nested = err(b"{\"x\": {\"a\": 1}, \"c\": \"a\", \"y\": 1}\n".to_vec(), "");
    assert!(nested.contains("JSON"), "{nested}");
}

#[test]
fn ragged_first_row_is_an_error_not_a_crash() {
    for bad in [&b"a,b,c,d\n1,2\n"[..], b"a,b,c,d\n1,2\n3,4,5,6\n", b"a,b\n1,2,3\n"] {
        let batches = open(Source::Bytes(bad.to_vec().into()), "", &Limits::default()).unwrap();
        let results: Vec<_> = batches.collect();
        assert!(results.iter().any(Result::is_err), "{:?}", String::from_utf8_lossy(bad));
    }
}

/// Inputs the fuzzer (`just fuzz data_parquet`) found, kept as regressions. Two footers declare
/// lists of billions of booleans, which parquet 60.1 would spend seconds to hours skipping: each
/// is refused at once, naming the list. One makes parquet 60.1's decoder panic ("Decoder for dict
/// should have been set"): the file fails with that reason, and the reader goes on.
#[test]
fn fuzz_found_parquet_inputs_are_refused_at_once() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-found");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 3);
    // Every batch, from memory or from a file (as ingest reads a streamed upload): the first error.
    let first_error = |source: mlops_data::Source| -> Option<String> {
        match mlops_data::open(source, "upload.parquet", &Default::default()) {
            Err(e) => Some(e.to_string()),
            Ok(batches) => batches.filter_map(Result::err).map(|e| e.to_string()).next(),
        }
    };
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let started = std::time::Instant::now();
        let err = first_error(mlops_data::Source::Bytes(bytes.clone().into()))
            .unwrap_or_else(|| panic!("{} was read without an error", path.display()));
        let known = (err.contains("malformed Parquet footer") && err.contains("a list of"))
            || err.contains("the parquet decoder failed on this file");
        assert!(known, "{}: {err}", path.display());
        assert!(
            started.elapsed() < std::time::Duration::from_millis(200),
            "{}: {:?}",
            path.display(),
            started.elapsed()
        );
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        assert_eq!(first_error(mlops_data::Source::File(file)).as_deref(), Some(err.as_str()), "{}", path.display());
        // Decoded ahead on another thread (as the validator reads Parquet), the same error.
        let ahead = mlops_data::open(mlops_data::Source::Bytes(bytes.into()), "upload.parquet", &Default::default())
            .map(|b| b.read_ahead(2).filter_map(Result::err).map(|e| e.to_string()).next());
        assert_eq!(ahead.unwrap_or_else(|e| Some(e.to_string())).as_deref(), Some(err.as_str()), "{}", path.display());
    }
}

/// Footers written by pyarrow (the fuzz seeds: snappy, zstd, plain without dictionaries) pass the
/// footer walk and read whole.
#[test]
fn pyarrow_written_parquet_passes_the_footer_walk() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/data_parquet");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let batches = mlops_data::open(mlops_data::Source::Bytes(bytes.into()), "rows.parquet", &Default::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rows: usize = batches.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 3, "{}", path.display());
    }
}
