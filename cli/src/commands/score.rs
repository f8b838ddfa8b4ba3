//! `mlops score`: a file scored in bulk by the version a pipeline serves (its `production` alias)
//! or a named one, read and scored batch by batch on every core, and written as Parquet with the
//! answers the deployer would give for each row.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use mlops_cli::client::{self, Remote};
use mlops_proto as pb;
use mlops_shared::bus::MODELS_BUCKET;
use mlops_shared::config::NatsArgs;
use mlops_shared::ids::Sha256;

/// The arguments of `mlops score`.
#[derive(Args)]
pub(crate) struct ScoreArgs {
    /// The pipeline whose model scores the rows.
    #[arg(long)]
    pipeline: String,
    /// The rows: a file, CSV (plain, gzip or zstd), Parquet or JSON Lines, with a column per
    /// feature of the model (other columns may ride along, see --keep); or a stored dataset's id.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the rows with `prediction_id`, `probability` and `label` (or `prediction`)
    /// and `model_version` appended, as Parquet.
    #[arg(long)]
    out: PathBuf,
    /// The version that scores; by default the one in production.
    #[arg(long)]
    version: Option<u64>,
    /// The input's columns to keep in the output (an id, say), comma-separated; by default all.
    /// `--keep ''` keeps none: the answers alone, in the input's order.
    #[arg(long, value_delimiter = ',')]
    keep: Option<Vec<String>>,
}

/// Scores the file and prints what was done.
pub(crate) async fn run(args: ScoreArgs, nats: &NatsArgs, registry: &Remote) -> anyhow::Result<()> {
    let version = version(registry, &args.pipeline, args.version).await?;
    let (bus, _) = super::runs::connect_runs(nats).await?;
    let sha = Sha256::parse(version.artifact_sha256.clone())?;
    let bytes = bus.objects(MODELS_BUCKET).await?.get_verified(&sha).await.context("the model's artifact")?;
    let (input, name) = input(&args.input, &bus).await?;
    let out = args.out.clone();
    // Each column once, in the order first named.
    let keep: Option<Vec<String>> = args.keep.clone().map(|names| {
        let mut keep: Vec<String> = Vec::new();
        for name in names.into_iter().filter(|c| !c.is_empty()) {
            if !keep.contains(&name) {
                keep.push(name);
            }
        }
        keep
    });
    // Names the rows' prediction ids: `<batch id>-<row>`.
    let batch_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let done = tokio::task::spawn_blocking(move || -> anyhow::Result<mlops_data::Scored> {
        let model = mlops_onnx::Engine::from_env()?.load_verified(&bytes, &sha).map_err(anyhow::Error::msg)?;
        let batches = mlops_data::open(input, &name, &mlops_data::Limits::default())?;
        let scorer = mlops_data::Scorer {
            model: model.as_ref(),
            version: version.version,
            artifact_sha256: sha.as_str(),
            batch_id: &batch_id,
            keep: keep.as_deref(),
        };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        // Written beside the output and renamed once whole: a failure leaves no half file.
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
        let done = mlops_data::score_to_parquet(
            &scorer,
            batches.read_ahead(2),
            threads,
            std::io::BufWriter::new(file.as_file_mut()),
            |_| (),
        )?;
        file.persist(&out).with_context(|| format!("writing {}", out.display()))?;
        Ok(done)
    })
    .await?
    .with_context(|| format!("scoring {}", args.input.display()))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} rows scored by {}@{} (artifact {}) in {secs:.1} s ({:.0} rows/s), written to {}",
        done.rows,
        args.pipeline,
        version.version,
        &version.artifact_sha256[..12.min(version.artifact_sha256.len())],
        done.rows as f64 / secs.max(1e-9),
        args.out.display()
    );
    Ok(())
}

/// The rows to score and their name (for its format): the file `input`, or else the stored
/// dataset it names, verified.
async fn input(input: &std::path::Path, bus: &mlops_shared::bus::Bus) -> anyhow::Result<(mlops_data::Source, String)> {
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match std::fs::File::open(input) {
        Ok(file) => Ok((mlops_data::Source::File(file), name)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Ok(sha) = Sha256::parse(input.to_string_lossy().into_owned()) else {
                anyhow::bail!("{} is neither a file nor a dataset id", input.display());
            };
            let datasets = bus.objects(mlops_shared::bus::DATASETS_BUCKET).await?;
            let bytes = datasets.get_verified(&sha).await.with_context(|| format!("dataset {sha}"))?;
            Ok((mlops_data::Source::Bytes(bytes.into()), String::new()))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening {}", input.display()))),
    }
}

/// The version `number` of `pipeline`, or the one in production.
async fn version(registry: &Remote, pipeline: &str, number: Option<u64>) -> anyhow::Result<pb::ModelVersion> {
    use pb::get_model_version_request::Selector;
    let selector = number.map_or_else(|| Selector::Alias("production".into()), Selector::Version);
    let request = pb::GetModelVersionRequest { pipeline: pipeline.to_owned(), selector: Some(selector) };
    let mut registry = client::registry(registry).await?;
    match registry.get_model_version(request).await {
        Ok(v) => Ok(v.into_inner()),
        Err(s) if s.code() == tonic::Code::NotFound && number.is_none() => {
            anyhow::bail!("{} (name a version with --version)", s.message())
        }
        Err(s) => anyhow::bail!("{}", s.message()),
    }
}
