//! `mlops reproduce P@VERSION`: retrains a model version from its lineage alone — the spec by its
//! hash (from the registry's spec history), the datasets by their sha256 (from the object store),
//! the seed and the code — and compares the new artifact with the stored one, byte for byte. When
//! they differ it names the parts of the artifact that do.

use anyhow::Context as _;
use mlops_proto as pb;
use mlops_shared::bus::{Bus, DATASETS_BUCKET, MODELS_BUCKET};
use mlops_shared::ids::Sha256;
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
    let trained = tokio::task::spawn_blocking(move || mlops_trainer::train::train(&spec, &blobs))
        .await
        .context("training panicked")?
        .context("retraining")?;
    let bytes = trained.artifact.to_bytes();
    let actual = mlops_shared::sha256_hex(&bytes);
    let differences = if actual == model.artifact_sha256 { Vec::new() } else { differences(&original, &bytes) };
    Ok(Reproduction {
        pipeline: pipeline.into(),
        version,
        expected_sha256: model.artifact_sha256,
        actual_sha256: actual,
        datasets: n,
        spec_hash: lineage.spec_hash,
        seed: lineage.seed,
        code_versions: (lineage.code_version, mlops_shared::CODE_VERSION.into()),
        differences,
    })
}

/// The parts of two artifacts (JSON documents) that differ: `manifest.<key>`, `preprocessing`,
/// `parameters`.
fn differences(a: &[u8], b: &[u8]) -> Vec<String> {
    let (Ok(a), Ok(b)) =
        (serde_json::from_slice::<serde_json::Value>(a), serde_json::from_slice::<serde_json::Value>(b))
    else {
        return vec!["the stored artifact is not a JSON document".into()];
    };
    let mut out = Vec::new();
    for part in ["manifest", "preprocessing", "parameters"] {
        match (&a[part], &b[part]) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) if part == "manifest" => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                out.extend(keys.into_iter().filter(|k| x.get(*k) != y.get(*k)).map(|k| format!("manifest.{k}")));
            }
            (x, y) if x != y => out.push(part.to_owned()),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push("the serialisation only".into());
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
