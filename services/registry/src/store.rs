//! The registry's redb file: pipelines, model versions, aliases and an append-only audit log.
//! Every change is one write transaction, so a crash leaves either all of it or none.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const PIPELINES: TableDefinition<&str, &[u8]> = TableDefinition::new("pipelines");
const MODELS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("models");
const BY_SHA: TableDefinition<(&str, &str), u64> = TableDefinition::new("models_by_sha");
/// The version each training job made: a job run twice (its first trainer killed after announcing
/// the model) by a program whose output is not bit-identical still makes one version.
const BY_JOB: TableDefinition<(&str, &str), u64> = TableDefinition::new("models_by_job");
const ALIASES: TableDefinition<(&str, &str), u64> = TableDefinition::new("aliases");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// (pipeline, dataset id) -> the erasure that erased the version (an [`ErasureMark`] of it alone),
/// so that a model registered after the erasure, trained on it, is marked too.
const ERASED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("erased_versions");
/// Every spec a pipeline has had, by (pipeline, spec hash): what a model's lineage names.
const SPEC_HISTORY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("spec_history");

/// Errors of the registry store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("pipeline `{0}` not found")]
    UnknownPipeline(String),
    #[error("pipeline `{pipeline}` has no version {version}")]
    UnknownVersion { pipeline: String, version: u64 },
    #[error("pipeline `{pipeline}` never had a spec with hash {hash}")]
    UnknownSpec { pipeline: String, hash: String },
    #[error("pipeline `{pipeline}` version {version} is blocked by {by}: {reason}")]
    Blocked { pipeline: String, version: u64, by: String, reason: String },
    #[error("database: {0}")]
    Db(#[from] mlops_shared::DbError),
    /// A write handed to the blocking pool did not come back (it panicked, or the runtime is
    /// stopping).
    #[error("a database write did not finish: {0}")]
    Interrupted(#[from] mlops_shared::bus::Interrupted),
}

mlops_shared::redb_errors!(StoreError);

/// At the gRPC edge: what is missing is `not_found`, a blocked version a failed precondition,
/// the database's own failure `internal`.
impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownPipeline(_) | StoreError::UnknownVersion { .. } | StoreError::UnknownSpec { .. } => {
                Self::not_found(e.to_string())
            }
            StoreError::Blocked { .. } => Self::failed_precondition(e.to_string()),
            StoreError::Db(_) | StoreError::Interrupted(_) => Self::internal(e.to_string()),
        }
    }
}

/// At the bus edge: an event naming what the registry does not have is bad input (dead-lettered);
/// the database failing is worth retrying.
impl From<StoreError> for mlops_shared::bus::HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(_) | StoreError::Interrupted(_) => Self::Transient(e.into()),
            _ => Self::permanent(e.to_string()),
        }
    }
}

/// A pipeline as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub name: String,
    pub spec_yaml: String,
    pub spec_hash: String,
    pub revision: u64,
    pub updated_unix_ms: i64,
    /// The git commit the revision was applied from (empty when unknown).
    #[serde(default)]
    pub commit: String,
    /// The revision before (empty for a first revision, and in records older than this field).
    #[serde(default)]
    pub previous_spec_hash: String,
}

/// One gate check as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// A model version as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRecord {
    pub pipeline: String,
    pub version: u64,
    pub artifact_sha256: String,
    pub artifact_size: u64,
    pub algorithm: String,
    pub dataset_ids: Vec<String>,
    pub spec_hash: String,
    pub seed: u64,
    pub code_version: String,
    pub job_id: String,
    pub reason: i32,
    pub trainer_id: String,
    pub metrics: BTreeMap<String, f64>,
    pub metrics_rows: u64,
    pub created_unix_ms: i64,
    #[serde(default)]
    pub gate: Gate,
    #[serde(default)]
    pub gate_checks: Vec<CheckRecord>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the evaluator measured besides the holdout: the production model on the same rows,
    /// the newest validated data, and the slices.
    #[serde(default, skip_serializing_if = "Evaluation::is_empty")]
    pub evaluation: Evaluation,
    /// An operator's verdict overriding the gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// When it last became `production`; 0 if it never served.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub promoted_unix_ms: i64,
    /// A code step's run: the commit its code was applied from, its environment's `pip freeze`
    /// and the program's own metrics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code_commit: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub program_metrics: BTreeMap<String, f64>,
    /// The threshold and value curve `business.value` chose, when the spec priced decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<mlops_shared::decision::Decision>,
    /// Erasures that removed data of its lineage: it cannot be rebuilt as it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erasures: Vec<ErasureMark>,
}

/// The erasures of `pipeline` that erased any of `dataset_ids`, one mark per erasure.
fn erased_in(
    erased: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    pipeline: &str,
    dataset_ids: &[String],
) -> Result<Vec<ErasureMark>, StoreError> {
    let mut marks: Vec<ErasureMark> = Vec::new();
    for id in dataset_ids {
        let Some(v) = erased.get((pipeline, id.as_str()))? else { continue };
        let mark: ErasureMark = serde_json::from_slice(v.value())?;
        match marks.iter_mut().find(|m| m.erasure_id == mark.erasure_id) {
            Some(m) => m.versions.extend(mark.versions),
            None => marks.push(mark),
        }
    }
    Ok(marks)
}

/// An erasure that removed versions of a model's lineage, and what replaced each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureMark {
    pub erasure_id: String,
    pub erased_unix_ms: i64,
    pub reason: String,
    /// (erased version, its successor or empty).
    pub versions: Vec<(String, String)>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The evaluator's measurements beyond the candidate's holdout metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub production_version: u64,
    pub production_metrics: BTreeMap<String, f64>,
    pub newest_dataset_id: String,
    pub newest_rows: u64,
    pub newest_metrics: BTreeMap<String, f64>,
    pub slices: Vec<SliceRecord>,
    /// Permutation importance per feature: (feature, candidate, production).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub importance: Vec<(String, f64, Option<f64>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Evaluation {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One slice's metrics as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceRecord {
    pub feature: String,
    pub value: String,
    pub rows: u64,
    pub candidate: BTreeMap<String, f64>,
    pub production: BTreeMap<String, f64>,
}

impl From<mlops_proto::SliceMetrics> for SliceRecord {
    fn from(s: mlops_proto::SliceMetrics) -> Self {
        let (candidate, production) = (s.candidate.into_iter().collect(), s.production.into_iter().collect());
        Self { feature: s.feature, value: s.value, rows: s.rows, candidate, production }
    }
}

impl From<SliceRecord> for mlops_proto::SliceMetrics {
    fn from(s: SliceRecord) -> Self {
        let (candidate, production) = (s.candidate.into_iter().collect(), s.production.into_iter().collect());
        Self { feature: s.feature, value: s.value, rows: s.rows, candidate, production }
    }
}

/// Where a version stands with its quality gates (stored as `""`, `passed` or `failed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Not judged yet.
    #[default]
    #[serde(rename = "")]
    Pending,
    Passed,
    Failed,
}

impl Gate {
    /// The name in the API and the audit log (`""` while pending).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "",
            Self::Passed => "passed",
            Self::Failed => "failed",
        }
    }
}

/// What an operator decided about a version (stored as `approved` or `blocked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Serve it despite failed gates.
    Approved,
    /// Never serve it.
    Blocked,
}

impl Action {
    /// Reads a request's verb: `approve` or `block`.
    pub fn from_verb(verb: &str) -> Option<Self> {
        match verb {
            "approve" => Some(Self::Approved),
            "block" => Some(Self::Blocked),
            _ => None,
        }
    }

    /// The name in the API, events and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Blocked => "blocked",
        }
    }
}

/// An operator's verdict, why, by whom, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
    pub by: String,
    pub time_unix_ms: i64,
}

/// One audit entry: what changed, why, and which event or caller caused it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time_unix_ms: i64,
    pub pipeline: String,
    pub action: String,
    pub detail: String,
    pub cause: String,
}

/// The registry database.
pub struct Store {
    db: Database,
}

/// Runs `write`, which commits to `store`, on the blocking pool: a commit waits for the disk
/// (fsync), which must not hold one of the runtime's threads while other requests and messages
/// wait for it.
pub async fn commit<T: Send + 'static>(
    store: &Arc<Store>,
    write: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    mlops_shared::bus::off_runtime(move || write(&store)).await
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // redb caches up to 1 GiB by default, which reads as a leak in a long-running process:
        // 16 MiB is the bound (model versions are few and small).
        let db = redb::Builder::new().set_cache_size(16 << 20).create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(PIPELINES)?;
        txn.open_table(MODELS)?;
        txn.open_table(BY_SHA)?;
        txn.open_table(ALIASES)?;
        txn.open_table(AUDIT)?;
        txn.open_table(ERASED)?;
        txn.open_table(SPEC_HISTORY)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Creates or updates a pipeline. Applying the same spec again changes nothing.
    pub fn apply_pipeline(
        &self,
        name: &str,
        spec_yaml: &str,
        spec_hash: &str,
        commit: &str,
        cause: &str,
    ) -> Result<PipelineRecord, StoreError> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut table = txn.open_table(PIPELINES)?;
            let existing: Option<PipelineRecord> = match table.get(name)? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            };
            match existing {
                Some(rec) if rec.spec_hash == spec_hash => return Ok(rec),
                other => {
                    let rec = PipelineRecord {
                        name: name.into(),
                        spec_yaml: spec_yaml.into(),
                        spec_hash: spec_hash.into(),
                        revision: other.as_ref().map_or(1, |r| r.revision + 1),
                        updated_unix_ms: mlops_shared::now_unix_ms(),
                        commit: commit.into(),
                        previous_spec_hash: other.map(|r| r.spec_hash).unwrap_or_default(),
                    };
                    let bytes = serde_json::to_vec(&rec)?;
                    table.insert(name, bytes.as_slice())?;
                    txn.open_table(SPEC_HISTORY)?.insert((name, spec_hash), bytes.as_slice())?;
                    rec
                }
            }
        };
        audit(
            &txn,
            name,
            "pipeline.applied",
            &format!(
                "revision {} spec {}{}",
                record.revision,
                &spec_hash[..12],
                if commit.is_empty() { String::new() } else { format!(" from commit {commit}") }
            ),
            cause,
        )?;
        txn.commit()?;
        Ok(record)
    }

    /// Records that `name`'s current spec now hashes to `hash`: this version reads the same YAML
    /// into a different canonical form (a default that changed, a key renamed), so that models
    /// trained under it find their spec by the hash in their lineage. The revision stays; the old
    /// hash still finds the record too. `false` when the hash was already that.
    pub fn rehash(&self, name: &str, hash: &str, cause: &str) -> Result<bool, StoreError> {
        use mlops_shared::ids::short;
        let mut record = self.pipeline(name)?;
        if record.spec_hash == hash {
            return Ok(false);
        }
        let before = std::mem::replace(&mut record.spec_hash, hash.into());
        let txn = self.db.begin_write()?;
        {
            let mut history = txn.open_table(SPEC_HISTORY)?;
            if history.get((name, before.as_str()))?.is_none() {
                let old = PipelineRecord { spec_hash: before.clone(), ..record.clone() };
                history.insert((name, before.as_str()), serde_json::to_vec(&old)?.as_slice())?;
            }
            let bytes = serde_json::to_vec(&record)?;
            txn.open_table(PIPELINES)?.insert(name, bytes.as_slice())?;
            history.insert((name, hash), bytes.as_slice())?;
        }
        let detail = format!("revision {} spec {} now reads as {}", record.revision, short(&before), short(hash));
        audit(&txn, name, "pipeline.rehashed", &detail, cause)?;
        txn.commit()?;
        Ok(true)
    }

    /// The pipeline `name` as it was when its spec hashed to `hash`.
    pub fn pipeline_at(&self, name: &str, hash: &str) -> Result<PipelineRecord, StoreError> {
        let current = self.pipeline(name)?;
        if current.spec_hash == hash {
            return Ok(current);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SPEC_HISTORY)?;
        let value = table
            .get((name, hash))?
            .ok_or_else(|| StoreError::UnknownSpec { pipeline: name.into(), hash: hash.into() })?;
        Ok(serde_json::from_slice(value.value())?)
    }

    /// The pipeline `name`.
    pub fn pipeline(&self, name: &str) -> Result<PipelineRecord, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PIPELINES)?;
        let value = table.get(name)?.ok_or_else(|| StoreError::UnknownPipeline(name.into()))?;
        Ok(serde_json::from_slice(value.value())?)
    }

    /// Every pipeline, by name.
    pub fn pipelines(&self) -> Result<Vec<PipelineRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PIPELINES)?;
        table.iter()?.map(|kv| Ok(serde_json::from_slice(kv?.1.value())?)).collect()
    }

    /// Records a trained model. The same artifact for the same pipeline is the same version, so a
    /// redelivered `model.trained` never makes a second one. Returns the record and whether it is new.
    pub fn register(&self, mut record: ModelRecord, cause: &str) -> Result<(ModelRecord, bool), StoreError> {
        let txn = self.db.begin_write()?;
        let (record, new) = {
            let pipelines = txn.open_table(PIPELINES)?;
            if pipelines.get(record.pipeline.as_str())?.is_none() {
                return Err(StoreError::UnknownPipeline(record.pipeline));
            }
            let mut by_sha = txn.open_table(BY_SHA)?;
            let mut models = txn.open_table(MODELS)?;
            let mut by_job = txn.open_table(BY_JOB)?;
            let key = (record.pipeline.as_str(), record.artifact_sha256.as_str());
            let job = (record.pipeline.as_str(), record.job_id.as_str());
            let made = match by_sha.get(key)? {
                Some(v) => Some(v.value()),
                None if !record.job_id.is_empty() => by_job.get(job)?.map(|v| v.value()),
                None => None,
            };
            if let Some(v) = made {
                let existing = models
                    .get((record.pipeline.as_str(), v))?
                    .expect("by_sha and models are written in one transaction");
                return Ok((serde_json::from_slice(existing.value())?, false));
            }
            let last = models
                .range((record.pipeline.as_str(), 0)..=(record.pipeline.as_str(), u64::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(k, _)| k.value().1);
            record.version = last + 1;
            record.created_unix_ms = mlops_shared::now_unix_ms();
            record.erasures = erased_in(&txn.open_table(ERASED)?, &record.pipeline, &record.dataset_ids)?;
            by_sha.insert((record.pipeline.as_str(), record.artifact_sha256.as_str()), record.version)?;
            if !record.job_id.is_empty() {
                by_job.insert((record.pipeline.as_str(), record.job_id.as_str()), record.version)?;
            }
            models.insert((record.pipeline.as_str(), record.version), serde_json::to_vec(&record)?.as_slice())?;
            // The newest version is the one under judgement.
            txn.open_table(ALIASES)?.insert((record.pipeline.as_str(), "candidate"), record.version)?;
            (record, true)
        };
        audit(
            &txn,
            &record.pipeline,
            "model.registered",
            &format!(
                "version {} artifact {}; candidate -> version {}",
                record.version,
                &record.artifact_sha256[..12],
                record.version
            ),
            cause,
        )?;
        txn.commit()?;
        Ok((record, new))
    }

    /// Records the evaluator's verdict on a version, and what it measured.
    pub fn record_gate(
        &self,
        pipeline: &str,
        version: u64,
        passed: bool,
        checks: Vec<CheckRecord>,
        evaluation: Option<Evaluation>,
        cause: &str,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut models = txn.open_table(MODELS)?;
            let mut record = self.stored_model(&models, pipeline, version)?;
            record.gate = if passed { Gate::Passed } else { Gate::Failed };
            record.gate_checks = checks;
            if let Some(evaluation) = evaluation {
                record.evaluation = evaluation;
            }
            models.insert((pipeline, version), serde_json::to_vec(&record)?.as_slice())?;
        }
        audit(
            &txn,
            pipeline,
            "model.evaluated",
            &format!("version {version} {}", if passed { "passed" } else { "failed" }),
            cause,
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Sets and removes tags and replaces the description of a version, in one audited change.
    pub fn update_model(
        &self,
        pipeline: &str,
        version: u64,
        set_tags: &BTreeMap<String, String>,
        remove_tags: &[String],
        description: Option<&str>,
        cause: &str,
    ) -> Result<ModelRecord, StoreError> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut models = txn.open_table(MODELS)?;
            let mut record = self.stored_model(&models, pipeline, version)?;
            record.tags.extend(set_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            for k in remove_tags {
                record.tags.remove(k);
            }
            if let Some(d) = description {
                d.clone_into(&mut record.description);
            }
            models.insert((pipeline, version), serde_json::to_vec(&record)?.as_slice())?;
            record
        };
        let mut what: Vec<String> = set_tags.iter().map(|(k, v)| format!("tag {k}={v}")).collect();
        what.extend(remove_tags.iter().map(|k| format!("untag {k}")));
        if let Some(d) = description {
            what.push(format!("description {d:?}"));
        }
        audit(&txn, pipeline, "model.updated", &format!("version {version}: {}", what.join(", ")), cause)?;
        txn.commit()?;
        Ok(record)
    }

    /// Records an operator's verdict on a version, replacing any earlier one; audited.
    pub fn decide(
        &self,
        pipeline: &str,
        version: u64,
        decision: Decision,
        cause: &str,
    ) -> Result<ModelRecord, StoreError> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut models = txn.open_table(MODELS)?;
            let mut record = self.stored_model(&models, pipeline, version)?;
            record.decision = Some(decision.clone());
            models.insert((pipeline, version), serde_json::to_vec(&record)?.as_slice())?;
            record
        };
        audit(
            &txn,
            pipeline,
            &format!("model.{}", decision.action.as_str()),
            &format!("version {version} by {}: {}", decision.by, decision.reason),
            cause,
        )?;
        txn.commit()?;
        Ok(record)
    }

    /// Version `version` of `pipeline`.
    pub fn model(&self, pipeline: &str, version: u64) -> Result<ModelRecord, StoreError> {
        let txn = self.db.begin_read()?;
        let models = txn.open_table(MODELS)?;
        let v = models.get((pipeline, version))?.ok_or_else(|| self.missing(pipeline, version))?;
        Ok(serde_json::from_slice(v.value())?)
    }

    /// Version `version` of `pipeline` as `models` (in a write transaction) holds it.
    fn stored_model(
        &self,
        models: &redb::Table<(&'static str, u64), &'static [u8]>,
        pipeline: &str,
        version: u64,
    ) -> Result<ModelRecord, StoreError> {
        match models.get((pipeline, version))? {
            Some(v) => Ok(serde_json::from_slice(v.value())?),
            None => Err(self.missing(pipeline, version)),
        }
    }

    fn missing(&self, pipeline: &str, version: u64) -> StoreError {
        match self.pipeline(pipeline) {
            Err(e) => e,
            Ok(_) => StoreError::UnknownVersion { pipeline: pipeline.into(), version },
        }
    }

    /// The version of `pipeline` whose artifact is `sha`, if any.
    pub fn version_by_sha(&self, pipeline: &str, sha: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let by_sha = txn.open_table(BY_SHA)?;
        Ok(by_sha.get((pipeline, sha))?.map(|v| v.value()))
    }

    /// Every version of `pipeline`, oldest first.
    pub fn models(&self, pipeline: &str) -> Result<Vec<ModelRecord>, StoreError> {
        self.pipeline(pipeline)?;
        let txn = self.db.begin_read()?;
        let models = txn.open_table(MODELS)?;
        models
            .range((pipeline, 0)..=(pipeline, u64::MAX))?
            .map(|kv| Ok(serde_json::from_slice(kv?.1.value())?))
            .collect()
    }

    /// The version `alias` points at, if any.
    pub fn alias(&self, pipeline: &str, alias: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let aliases = txn.open_table(ALIASES)?;
        Ok(aliases.get((pipeline, alias))?.map(|v| v.value()))
    }

    /// Every alias of `pipeline` with its version.
    pub fn aliases(&self, pipeline: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let aliases = txn.open_table(ALIASES)?;
        aliases
            .range((pipeline, "")..)?
            .map(|kv| kv.map(|(k, v)| (k.value().0.to_owned(), k.value().1.to_owned(), v.value())))
            .take_while(|r| r.as_ref().map_or(true, |(p, _, _)| p == pipeline))
            .map(|r| r.map(|(_, a, v)| (a, v)).map_err(StoreError::from))
            .collect()
    }

    /// Points `alias` at `version`. Moving `production` to a new version points `previous` at
    /// the old one, in the same transaction.
    pub fn set_alias(
        &self,
        pipeline: &str,
        alias: &str,
        version: u64,
        reason: &str,
        cause: &str,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut models = txn.open_table(MODELS)?;
            let mut record = self.stored_model(&models, pipeline, version)?;
            // A blocked version never serves.
            if alias == "production"
                && let Some(d) = record.decision.clone().filter(|d| d.action == Action::Blocked)
            {
                return Err(StoreError::Blocked { pipeline: pipeline.into(), version, by: d.by, reason: d.reason });
            }
            let mut aliases = txn.open_table(ALIASES)?;
            let old = aliases.insert((pipeline, alias), version)?.map(|v| v.value());
            if old == Some(version) {
                return Ok(());
            }
            if alias == "production" {
                if let Some(old) = old {
                    aliases.insert((pipeline, "previous"), old)?;
                }
                record.promoted_unix_ms = mlops_shared::now_unix_ms();
                models.insert((pipeline, version), serde_json::to_vec(&record)?.as_slice())?;
            }
        }
        audit(&txn, pipeline, "alias.set", &format!("{alias} -> version {version}: {reason}"), cause)?;
        txn.commit()?;
        Ok(())
    }

    /// Marks every model of `pipeline` trained on versions `erasure` erased, once (a redelivery
    /// finds its mark), and audits each. The versions marked.
    pub fn mark_erased(
        &self,
        pipeline: &str,
        erasure: &mlops_proto::DataErased,
        cause: &str,
    ) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_write()?;
        let mut marked = Vec::new();
        {
            let mut erased = txn.open_table(ERASED)?;
            for v in &erasure.versions {
                let mark = ErasureMark {
                    erasure_id: erasure.erasure_id.clone(),
                    erased_unix_ms: erasure.erased_unix_ms,
                    reason: erasure.reason.clone(),
                    versions: vec![(v.dataset_id.clone(), v.successor_id.clone())],
                };
                erased.insert((pipeline, v.dataset_id.as_str()), serde_json::to_vec(&mark)?.as_slice())?;
            }
            let mut models = txn.open_table(MODELS)?;
            let mut changed = Vec::new();
            for kv in models.range((pipeline, 0)..=(pipeline, u64::MAX))? {
                let mut record: ModelRecord = serde_json::from_slice(kv?.1.value())?;
                let versions: Vec<(String, String)> = erasure
                    .versions
                    .iter()
                    .filter(|v| record.dataset_ids.contains(&v.dataset_id))
                    .map(|v| (v.dataset_id.clone(), v.successor_id.clone()))
                    .collect();
                if versions.is_empty() || record.erasures.iter().any(|m| m.erasure_id == erasure.erasure_id) {
                    continue;
                }
                record.erasures.push(ErasureMark {
                    erasure_id: erasure.erasure_id.clone(),
                    erased_unix_ms: erasure.erased_unix_ms,
                    reason: erasure.reason.clone(),
                    versions,
                });
                changed.push(record);
            }
            for record in changed {
                models.insert((pipeline, record.version), serde_json::to_vec(&record)?.as_slice())?;
                marked.push(record.version);
            }
        }
        for version in &marked {
            let detail = format!("version {version}: trained on data erased by {}", erasure.erasure_id);
            audit(&txn, pipeline, "model.lineage_erased", &detail, cause)?;
        }
        txn.commit()?;
        Ok(marked)
    }

    /// Every model version, of any pipeline, trained on `dataset_id` (pipeline, then version order).
    pub fn models_using(&self, dataset_id: &str) -> Result<Vec<ModelRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MODELS)?;
        let mut out = Vec::new();
        for kv in table.iter()? {
            let record: ModelRecord = serde_json::from_slice(kv?.1.value())?;
            if record.dataset_ids.iter().any(|d| d == dataset_id) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// The audit log of `pipeline`, oldest first.
    pub fn audit_log(&self, pipeline: &str) -> Result<Vec<AuditEntry>, StoreError> {
        self.pipeline(pipeline)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for kv in table.iter()? {
            let entry: AuditEntry = serde_json::from_slice(kv?.1.value())?;
            if entry.pipeline == pipeline {
                out.push(entry);
            }
        }
        Ok(out)
    }
}

fn audit(
    txn: &redb::WriteTransaction,
    pipeline: &str,
    action: &str,
    detail: &str,
    cause: &str,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let next = table.last()?.map_or(0, |(k, _)| k.value()) + 1;
    let entry = AuditEntry {
        time_unix_ms: mlops_shared::now_unix_ms(),
        pipeline: pipeline.into(),
        action: action.into(),
        detail: detail.into(),
        cause: cause.into(),
    };
    table.insert(next, serde_json::to_vec(&entry)?.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_and_decisions_are_stored_as_the_words_they_always_were() {
        let words = |g: Gate| serde_json::to_string(&g).unwrap();
        assert_eq!(
            [words(Gate::Pending), words(Gate::Passed), words(Gate::Failed)],
            ["\"\"", "\"passed\"", "\"failed\""]
        );
        assert_eq!(serde_json::from_str::<Gate>("\"failed\"").unwrap(), Gate::Failed);
        let stored = r#"{"action":"blocked","reason":"leaks the label","by":"ana","time_unix_ms":1}"#;
        let d: Decision = serde_json::from_str(stored).unwrap();
        assert_eq!(d.action, Action::Blocked);
        assert_eq!(serde_json::to_string(&d).unwrap(), stored);
        assert_eq!((Action::from_verb("approve"), Action::from_verb("approved")), (Some(Action::Approved), None));
    }

    fn model(sha: &str) -> ModelRecord {
        ModelRecord {
            pipeline: "churn".into(),
            version: 0,
            artifact_sha256: sha.repeat(64 / sha.len()),
            artifact_size: 10,
            algorithm: "logistic_regression".into(),
            dataset_ids: vec!["d".into()],
            spec_hash: "s".into(),
            seed: 1,
            code_version: "c".into(),
            job_id: format!("j-{sha}"),
            reason: 1,
            trainer_id: "t".into(),
            metrics: BTreeMap::new(),
            metrics_rows: 0,
            created_unix_ms: 0,
            gate: Gate::Pending,
            gate_checks: vec![],
            tags: BTreeMap::new(),
            description: String::new(),
            evaluation: Evaluation::default(),
            decision: None,
            promoted_unix_ms: 0,
            code_commit: String::new(),
            environment: String::new(),
            program_metrics: BTreeMap::new(),
            business: None,
            erasures: Vec::new(),
        }
    }

    #[test]
    fn every_spec_a_pipeline_had_is_kept_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("registry.redb")).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        store.apply_pipeline("churn", "name: churn # first", &a, "", "cli").unwrap();
        store.apply_pipeline("churn", "name: churn # second", &b, "abc123", "cli").unwrap();
        assert_eq!(store.pipeline("churn").unwrap().spec_yaml, "name: churn # second");
        let first = store.pipeline_at("churn", &a).unwrap();
        assert_eq!((first.revision, first.spec_yaml.as_str()), (1, "name: churn # first"));
        let second = store.pipeline_at("churn", &b).unwrap();
        assert_eq!(
            (second.revision, second.commit.as_str(), second.previous_spec_hash.as_str()),
            (2, "abc123", a.as_str())
        );
        // The same spec again is the same revision, its commit kept.
        let again = store.apply_pipeline("churn", "name: churn # second", &b, "def456", "cli").unwrap();
        assert_eq!((again.revision, again.commit.as_str()), (2, "abc123"));
        let missing = store.pipeline_at("churn", &"c".repeat(64)).unwrap_err().to_string();
        assert!(missing.contains("never had a spec with hash ccc"), "{missing}");
        assert!(matches!(store.pipeline_at("nope", &a), Err(StoreError::UnknownPipeline(_))));
        // A newer version reads the same YAML into another canonical form: both hashes find it,
        // as the same revision.
        let c = "c".repeat(64);
        assert!(store.rehash("churn", &c, "start-up").unwrap());
        assert!(!store.rehash("churn", &c, "start-up").unwrap());
        let (now, before) = (store.pipeline_at("churn", &c).unwrap(), store.pipeline_at("churn", &b).unwrap());
        assert_eq!((now.revision, before.revision, now.spec_yaml), (2, 2, before.spec_yaml));
        let audit = store.audit_log("churn").unwrap();
        assert!(audit.iter().any(|e| e.action == "pipeline.rehashed"), "{audit:?}");
    }

    #[test]
    fn an_erasure_marks_the_models_trained_on_what_it_erased_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("registry.redb")).unwrap();
        store.apply_pipeline("churn", "name: churn", &"a".repeat(64), "", "cli").unwrap();
        store.register(ModelRecord { dataset_ids: vec!["d1".into(), "d2".into()], ..model("1") }, "t1").unwrap();
        store.register(ModelRecord { dataset_ids: vec!["d3".into()], ..model("2") }, "t2").unwrap();
        let version = |id: &str, successor: &str| mlops_proto::ErasedVersion {
            dataset_id: id.into(),
            successor_id: successor.into(),
            ..Default::default()
        };
        let erasure = mlops_proto::DataErased {
            pipeline: "churn".into(),
            erasure_id: "erasure-1".into(),
            reason: "ticket 42".into(),
            versions: vec![version("d2", "s2"), version("d9", "")],
            ..Default::default()
        };
        assert_eq!(store.mark_erased("churn", &erasure, "e1").unwrap(), [1]);
        assert!(store.mark_erased("churn", &erasure, "e1").unwrap().is_empty(), "marked twice");
        let marked = store.model("churn", 1).unwrap().erasures;
        assert_eq!(marked.len(), 1);
        assert_eq!(
            (marked[0].reason.as_str(), marked[0].versions.as_slice()),
            ("ticket 42", &[("d2".into(), "s2".into())][..])
        );
        assert!(store.model("churn", 2).unwrap().erasures.is_empty());
        let audit = store.audit_log("churn").unwrap();
        assert!(audit.iter().any(|e| e.action == "model.lineage_erased" && e.detail.contains("erasure-1")));
        // A model registered after the erasure, trained on what it erased (a job that ran
        // meanwhile), is marked as it is registered.
        let late = ModelRecord { dataset_ids: vec!["d2".into(), "d3".into()], ..model("3") };
        let (late, _) = store.register(late, "t3").unwrap();
        assert_eq!(late.erasures.len(), 1);
        assert_eq!(late.erasures[0].versions, [("d2".to_owned(), "s2".to_owned())]);
    }

    #[test]
    fn versions_are_numbered_per_pipeline_and_idempotent_by_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let store = Store::open(&path).unwrap();
        assert!(matches!(store.register(model("a"), "e0"), Err(StoreError::UnknownPipeline(_))));
        store.apply_pipeline("churn", "name: churn", &"f".repeat(64), "", "cli").unwrap();
        let (a, new_a) = store.register(model("a"), "e1").unwrap();
        let (again, new_again) = store.register(model("a"), "e1").unwrap();
        let (b, _) = store.register(model("b"), "e2").unwrap();
        assert_eq!((a.version, new_a, again.version, new_again, b.version), (1, true, 1, false, 2));
        // The same job again with other bytes (a program that is not bit-reproducible, rerun
        // after its first trainer died): still its one version.
        let rerun = ModelRecord { job_id: a.job_id.clone(), ..model("c") };
        let (same, new_rerun) = store.register(rerun, "e2b").unwrap();
        assert_eq!((same.version, new_rerun), (1, false));
        store.set_alias("churn", "production", 1, "first", "e3").unwrap();
        store.set_alias("churn", "production", 2, "better", "e4").unwrap();
        assert_eq!(store.alias("churn", "production").unwrap(), Some(2));
        assert_eq!(store.alias("churn", "previous").unwrap(), Some(1));
        assert!(matches!(
            store.set_alias("churn", "production", 9, "", ""),
            Err(StoreError::UnknownVersion { version: 9, .. })
        ));
        assert!(matches!(store.model("nope", 1), Err(StoreError::UnknownPipeline(_))));
        drop(store);
        // Everything survives a reopen.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.models("churn").unwrap().len(), 2);
        assert_eq!(
            store.aliases("churn").unwrap(),
            vec![("candidate".into(), 2), ("previous".into(), 1), ("production".into(), 2)]
        );
        let actions: Vec<String> = store.audit_log("churn").unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["pipeline.applied", "model.registered", "model.registered", "alias.set", "alias.set"]);
    }

    #[test]
    fn a_blocked_version_never_becomes_production() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("registry.redb")).unwrap();
        store.apply_pipeline("churn", "name: churn", &"f".repeat(64), "", "cli").unwrap();
        store.register(model("a"), "e1").unwrap();
        store.register(model("b"), "e2").unwrap();
        let block =
            Decision { action: Action::Blocked, reason: "leaks the label".into(), by: "ana".into(), time_unix_ms: 1 };
        store.decide("churn", 2, block, "grpc").unwrap();
        let err = store.set_alias("churn", "production", 2, "", "").unwrap_err().to_string();
        assert_eq!(err, "pipeline `churn` version 2 is blocked by ana: leaks the label");
        // Other aliases may still point at it (e.g. for a look), and an approval lifts the block.
        store.set_alias("churn", "candidate", 2, "", "").unwrap();
        let approve =
            Decision { action: Action::Approved, reason: "fixed upstream".into(), by: "bo".into(), time_unix_ms: 2 };
        store.decide("churn", 2, approve, "grpc").unwrap();
        store.set_alias("churn", "production", 2, "", "").unwrap();
        assert!(matches!(
            store.decide(
                "churn",
                7,
                Decision { action: Action::Approved, reason: "r".into(), by: "b".into(), time_unix_ms: 3 },
                "g"
            ),
            Err(StoreError::UnknownVersion { version: 7, .. })
        ));
        let details: Vec<String> =
            store.audit_log("churn").unwrap().into_iter().map(|e| format!("{} {}", e.action, e.detail)).collect();
        assert!(details.contains(&"model.blocked version 2 by ana: leaks the label".to_owned()), "{details:?}");
        assert!(details.contains(&"model.approved version 2 by bo: fixed upstream".to_owned()), "{details:?}");
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let store = std::sync::Arc::new(Store::open(&path).unwrap());
        store.apply_pipeline("churn", "name: churn", &"f".repeat(64), "", "cli").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let (r, _) = store.register(model(&format!("{t:02x}{i:02x}")), "e").unwrap();
                        let tags = BTreeMap::from([("writer".to_owned(), t.to_string())]);
                        store.update_model("churn", r.version, &tags, &[], None, "g").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        let models = store.models("churn").unwrap();
        let versions: Vec<u64> = models.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=200).collect::<Vec<_>>());
        assert!(models.iter().all(|m| m.tags.contains_key("writer")));
        // One entry per change, none lost or doubled.
        assert_eq!(store.audit_log("churn").unwrap().len(), 1 + 200 + 200);
    }
}
