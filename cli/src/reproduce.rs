//! `mlops reproduce P@VERSION`: retrains a model version from its lineage alone — the spec by its
//! hash (from the registry's spec history), the datasets by their sha256 (from the object store),
//! the seed and the code — and compares the new artifact with the stored one, byte for byte. When
//! they differ it names the parts of the artifact that do.

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, CODE_BUCKET, DATASETS_BUCKET, MODELS_BUCKET};
use mlops_shared::ids::Sha256;
use mlops_shared::model::{ONNX_FORMAT, Stored};
use mlops_shared::spec::PipelineSpec;

use crate::client::{self, Remote};
use crate::model_ref::ModelRef;

/// What a reproduction found.
#[derive(Debug)]
pub struct Reproduction {
    pub pipeline: String,
    pub version: u64,
    pub expected_sha256: String,
    pub actual_sha256: String,
    pub datasets: usize,
    pub spec_hash: String,
    pub seed: u64,
    /// The code version that made the original, and this one.
    pub code_versions: (String, String),
    /// The parts of the artifact that differ (e.g. `manifest.metrics`, `parameters`).
    pub differences: Vec<String>,
    /// The holdout metrics that moved: name, stored value, retrained value.
    pub metric_changes: Vec<(String, f64, f64)>,
    /// What of the lineage no longer matches (a code step's environment).
    pub mismatches: Vec<String>,
}

impl Reproduction {
    pub fn identical(&self) -> bool {
        self.expected_sha256 == self.actual_sha256
    }

    /// A report for people.
    pub fn report(&self) -> String {
        let mut out = format!(
            "{}@{}: retrained from its lineage: {} dataset(s), spec {}, seed {}, code {} (this build: {})\n",
            self.pipeline,
            self.version,
            self.datasets,
            &self.spec_hash[..12.min(self.spec_hash.len())],
            self.seed,
            self.code_versions.0,
            self.code_versions.1
        );
        if self.identical() {
            out += &format!("identical: artifact sha256 {} reproduced bit for bit\n", self.expected_sha256);
        } else {
            out += &format!(
                "DIFFERENT: stored sha256 {}, retrained sha256 {}\ndiffers in: {}\n",
                self.expected_sha256,
                self.actual_sha256,
                self.differences.join(", ")
            );
            if self.code_versions.0 != self.code_versions.1 {
                out += "the code version differs: bit-for-bit reproduction needs the code that made the model\n";
            }
            for m in &self.mismatches {
                out += &format!("mismatch: {m}\n");
            }
            if self.metric_changes.is_empty() {
                out += "holdout metrics: equal (the program is not bit-for-bit deterministic, its model scores the same)\n";
            }
            for (name, stored, now) in &self.metric_changes {
                out += &format!("holdout {name}: {stored:.6} stored, {now:.6} retrained ({:+.6})\n", now - stored);
            }
        }
        out
    }
}

/// Retrains `target`, a version in the registry at `registry`, from its lineage and compares.
pub async fn reproduce(registry: &Remote, bus: &Bus, target: &ModelRef) -> anyhow::Result<Reproduction> {
    let (pipeline, version) = (target.pipeline.as_str(), target.version);
    let mut registry = client::registry(registry).await?;
    let model = registry
        .get_model_version(pb::GetModelVersionRequest {
            pipeline: pipeline.into(),
            selector: Some(pb::get_model_version_request::Selector::Version(version)),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if let Some(e) = model.erasures.first() {
        anyhow::bail!(
            "{pipeline}@{version} cannot be rebuilt from its lineage: {} of its dataset version(s) ({}) were erased by \
             {} (reason {:?}), their content deleted; the versions written in their place are {}, and a model \
             trained on them is a new version (`mlops models list --pipeline {pipeline}`, reason `erasure`)",
            e.dataset_ids.len(),
            e.dataset_ids.iter().map(|d| mlops_shared::ids::short(d)).collect::<Vec<_>>().join(", "),
            e.erasure_id,
            e.reason,
            e.successor_ids
                .iter()
                .map(|d| if d.is_empty() { "(none: every row was erased)" } else { mlops_shared::ids::short(d) })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let lineage = model.lineage.context("the registry returned no lineage")?;
    anyhow::ensure!(
        lineage.reason != pb::TrainReason::Imported as i32,
        "{pipeline}@{version} was imported, not trained by the platform: there is no training to repeat (its file: {})",
        lineage.code_version
    );
    let stored = registry
        .get_pipeline(pb::GetPipelineRequest { name: pipeline.into(), spec_hash: lineage.spec_hash.clone() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let spec = PipelineSpec::from_yaml(&stored.spec_yaml).context("the stored spec")?;
    anyhow::ensure!(
        spec.hash() == lineage.spec_hash,
        "the stored spec hashes to {}, not the lineage's {}",
        spec.hash(),
        lineage.spec_hash
    );
    let datasets = bus.objects(DATASETS_BUCKET).await?;
    let mut blobs = Vec::with_capacity(lineage.dataset_ids.len());
    for id in &lineage.dataset_ids {
        let sha = Sha256::parse(id.clone())?;
        blobs.push((id.clone(), datasets.get_verified(&sha).await.with_context(|| format!("dataset {id}"))?));
    }
    let original_sha = Sha256::parse(model.artifact_sha256.clone())?;
    let original =
        bus.objects(MODELS_BUCKET).await?.get_verified(&original_sha).await.context("the stored artifact")?;
    let n = blobs.len();
    let (bytes, code_now) = if spec.training.code.is_some() {
        let bytes = retrain_code(bus, &spec, blobs, &original, &original_sha, &lineage.job_id).await?;
        (bytes, lineage.code_version.clone())
    } else {
        (train_builtin(spec, blobs).await.context("retraining")?, mlops_shared::CODE_VERSION.to_owned())
    };
    let actual = mlops_shared::sha256_hex(&bytes);
    let differences = if actual == model.artifact_sha256 { Vec::new() } else { differences(&original, &bytes) };
    let (metric_changes, mismatches) = compare_runs(&original, &bytes);
    Ok(Reproduction {
        pipeline: pipeline.into(),
        version,
        expected_sha256: model.artifact_sha256,
        actual_sha256: actual,
        datasets: n,
        spec_hash: lineage.spec_hash,
        seed: lineage.seed,
        code_versions: (lineage.code_version, code_now),
        differences,
        metric_changes,
        mismatches,
    })
}

/// Reruns a code step as its model's lineage records it: the bundle by its sha256, the
/// environment rebuilt from the recorded `pip freeze`, the same data and seed. The new artifact.
async fn retrain_code(
    bus: &Bus,
    spec: &PipelineSpec,
    blobs: Vec<(String, Vec<u8>)>,
    original: &[u8],
    sha: &Sha256,
    job_id: &str,
) -> anyhow::Result<Vec<u8>> {
    let manifest = Stored::verified_manifest(original, sha).context("the stored artifact")?;
    let program = manifest.program.context("the stored artifact records no run of a program")?;
    let bundle_sha = Sha256::parse(program.bundle.clone())?;
    let bundle = bus.objects(CODE_BUCKET).await?.get_verified(&bundle_sha).await.context("the code bundle")?;
    let pinned = (!program.environment.is_empty()).then_some(program.environment);
    train_code(spec, &bundle, blobs, job_id, pinned).await
}

/// Trains `blobs` with `spec`'s built-in algorithm, as the trainers do, off the runtime: the
/// artifact's bytes.
pub(crate) async fn train_builtin(spec: PipelineSpec, blobs: Vec<(String, Vec<u8>)>) -> anyhow::Result<Vec<u8>> {
    let trained = tokio::task::spawn_blocking(move || mlops_trainer::train::train(&spec, &blobs))
        .await
        .context("training panicked")??;
    Ok(trained.artifact.to_bytes())
}

/// A trainer's settings from this process's environment (MLOPS_TRAINER_ENV_DIR, MLOPS_PYTHON,
/// MLOPS_PIP_INDEX_URL …), so code run here shares a local trainer's Python environments.
pub(crate) fn trainer_settings() -> anyhow::Result<mlops_trainer::Config> {
    Ok(<mlops_trainer::Config as clap::Parser>::try_parse_from(["mlops-trainer"])?)
}

/// Runs `spec`'s code step on `blobs` as a trainer runs it, with a trainer's settings
/// (MLOPS_TRAINER_ENV_DIR, MLOPS_PYTHON, MLOPS_PIP_INDEX_URL …, so a local trainer's environments
/// are shared; the step runner is found beside `mlops`); `pinned` packages instead of the
/// requirements file. The artifact's bytes.
pub(crate) async fn train_code(
    spec: &PipelineSpec,
    bundle: &[u8],
    blobs: Vec<(String, Vec<u8>)>,
    job_id: &str,
    pinned: Option<String>,
) -> anyhow::Result<Vec<u8>> {
    use mlops_trainer::code::Job;
    let runtime = mlops_onnx::Engine::from_env()?.runtime()?;
    let steps = trainer_settings()?.code_steps()?;
    let dataset_ids = blobs.iter().map(|(id, _)| id.clone()).collect();
    let read = spec.clone();
    let frame = tokio::task::spawn_blocking(move || mlops_data::read_datasets(&read, &blobs))
        .await
        .context("reading the data panicked")??;
    let (progress, _) =
        tokio::sync::watch::channel(mlops_trainer::train::Progress { stage: String::new(), fraction: 0.0 });
    let job = Job {
        steps: &steps,
        runtime,
        spec,
        job_id,
        bundle,
        dataset_ids,
        frame: std::sync::Arc::new(frame),
        progress: &progress,
        pinned,
        phases: Default::default(),
    };
    let trained = job.train().await.context("running the program")?;
    Ok(trained.artifact.to_bytes())
}

/// The holdout metrics that moved between two artifacts, and a code step's environment when it
/// differs (the packages that changed).
fn compare_runs(a: &[u8], b: &[u8]) -> (Vec<(String, f64, f64)>, Vec<String>) {
    let manifest = |bytes: &[u8]| Stored::verified_manifest(bytes, &Sha256::of(bytes)).ok();
    let (Some(a), Some(b)) = (manifest(a), manifest(b)) else { return (Vec::new(), Vec::new()) };
    let moved = a
        .metrics
        .iter()
        .filter_map(|(k, &x)| b.metrics.get(k).filter(|&&y| y != x).map(|&y| (k.clone(), x, y)))
        .collect();
    let env = |m: &mlops_shared::model::Manifest| m.program.as_ref().map(|p| p.environment.clone()).unwrap_or_default();
    let (was, now) = (env(&a), env(&b));
    let mut mismatches = Vec::new();
    if was != now {
        let changed: Vec<&str> = now.lines().filter(|l| !was.lines().any(|w| w == *l)).collect();
        mismatches.push(format!("the environment differs: now {}", changed.join(", ")));
    }
    (moved, mismatches)
}

/// The parts of two artifacts (JSON documents) that differ: `manifest.<key>`, `preprocessing`,
/// `parameters`.
pub(crate) fn differences(a: &[u8], b: &[u8]) -> Vec<String> {
    if a.starts_with(ONNX_FORMAT.as_bytes()) {
        return onnx_differences(a, b);
    }
    let (Ok(a), Ok(b)) =
        (serde_json::from_slice::<serde_json::Value>(a), serde_json::from_slice::<serde_json::Value>(b))
    else {
        return vec!["the stored artifact is not a JSON document".into()];
    };
    let mut out = Vec::new();
    for part in ["manifest", "preprocessing", "parameters"] {
        match (&a[part], &b[part]) {
            (x, y) if part == "manifest" && x.is_object() => out.extend(changed_manifest_keys(x, y)),
            (x, y) if x != y => out.push(part.to_owned()),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push("the serialisation only".into());
    }
    out
}

/// `manifest.<key>` for each key whose value differs between two manifests (JSON objects).
fn changed_manifest_keys(x: &serde_json::Value, y: &serde_json::Value) -> Vec<String> {
    let (Some(x), Some(y)) = (x.as_object(), y.as_object()) else { return vec!["manifest".into()] };
    let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    keys.into_iter().filter(|k| x.get(*k) != y.get(*k)).map(|k| format!("manifest.{k}")).collect()
}

/// The parts of two ONNX artifacts that differ: `manifest.<key>`, `graph`, `external`.
fn onnx_differences(a: &[u8], b: &[u8]) -> Vec<String> {
    let read = |bytes: &[u8]| match Stored::from_verified_bytes(bytes, &Sha256::of(bytes)) {
        Ok(Stored::Onnx(o)) => Some(o),
        _ => None,
    };
    let (Some(a), Some(b)) = (read(a), read(b)) else { return vec!["the artifacts are of different formats".into()] };
    let value = |m: &mlops_shared::model::Manifest| serde_json::to_value(m).unwrap_or_default();
    let mut out = changed_manifest_keys(&value(&a.manifest), &value(&b.manifest));
    if a.graph != b.graph {
        out.push("graph".into());
    }
    if a.external != b.external {
        out.push("external".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named() {
        let a = br#"{"manifest":{"seed":1,"metrics":{"a":1}},"preprocessing":{},"parameters":{"w":[1]}}"#;
        let b = br#"{"manifest":{"seed":1,"metrics":{"a":2}},"preprocessing":{},"parameters":{"w":[2]}}"#;
        assert_eq!(differences(a, b), ["manifest.metrics", "parameters"]);
    }
}
