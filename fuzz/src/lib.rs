//! What the fuzz targets share: the example pipeline, a served model of it, and a dataset reader
//! run the way ingest and the validator run it.

use std::sync::atomic::AtomicU64;

use mlops_deployer::serving::{Models, PredictionLog, Served};
use mlops_shared::ids::Sha256;
use mlops_shared::model::Artifact;
use mlops_shared::spec::PipelineSpec;

/// The example pipeline (`examples/churn.yaml`).
pub const SPEC: &str = include_str!("../../examples/churn.yaml");

/// A few rows of the example pipeline, to fit the served model's preprocessing on.
pub const ROWS: &str = "tenure_months,monthly_charges,support_calls,age,contract,payment_method,churned\n\
    1,50.5,3,30,month-to-month,card,1\n\
    40,20,0,,two-year,bank-transfer,0\n\
    12,80,1,55,one-year,electronic-check,0\n";

pub fn spec() -> PipelineSpec {
    PipelineSpec::from_yaml(SPEC).expect("the example spec")
}

/// Reads `bytes` as a dataset file called `name` through the platform's reader, every batch, and
/// then typed as the example pipeline's training frame, as the validator and trainer read it.
/// Batches and CSV blocks are cut small so that a short input still crosses their boundaries
/// (and each run stays fast). Errors are answers; only a panic, a hang or an allocation beyond
/// libFuzzer's limit is a finding.
pub fn read_dataset(name: &str, bytes: &[u8]) {
    // The reader turns a decoder's panic into an error for that file (parquet 60.1 panics on some
    // malformed files). libFuzzer's panic hook aborts even on a caught panic, so the default hook
    // is put back: a panic the reader does not catch still escapes and aborts the run.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let limits = mlops_data::Limits { batch_rows: 7, block_bytes: 256, max_record_bytes: 4096, max_columns: 64 };
    let source = || mlops_data::Source::Bytes(bytes.to_vec().into());
    if let Ok(batches) = mlops_data::open(source(), name, &limits) {
        for batch in batches {
            if batch.is_err() {
                break;
            }
        }
    }
    let spec = spec();
    if let Ok(batches) = mlops_data::open_typed(source(), name, &limits, &spec.numeric_features()) {
        let _ = mlops_data::read_frame(batches, &spec, true);
    }
}

/// What a deployer serves: the example pipeline's model, version 1, and its prediction log.
pub struct Serving {
    pub models: Models,
    pub log: PredictionLog,
    /// The log's queue, never read: once full, logs are dropped and counted, as in production.
    _queue: tokio::sync::mpsc::Receiver<mlops_proto::v1::PredictionLogged>,
}

pub fn served() -> Serving {
    let spec = spec();
    let frame =
        mlops_data::read_datasets(&spec, &[("rows.csv".into(), ROWS.as_bytes().to_vec())]).expect("the example rows");
    let artifact = Artifact::example(&spec, &frame);
    let sha = Sha256::of(&artifact.to_bytes());
    let models = Models::default();
    models.swap(Served {
        pipeline: spec.name.to_string(),
        version: 1,
        sha,
        artifact,
        since_unix_ms: 0,
        predictions: AtomicU64::new(0),
        log_sample: 1.0,
    });
    let (log, queue) = PredictionLog::new(16);
    Serving { models, log, _queue: queue }
}
