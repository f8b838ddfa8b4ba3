//! Erasure ("right to be forgotten"): `mlops data erase --pipeline P --key COLUMN=VALUE`.
//!
//! Every catalogued version of the pipeline (any verdict, any environment, feedback versions
//! included) whose content still exists is read; one holding rows whose `COLUMN` is the subject's
//! is written again without them as Parquet — a *successor* version with the same arrival time,
//! environment and origin, validated like any other — and its old content is deleted from the
//! `datasets` bucket (kept only while another pipeline's catalog holds the same content, which is
//! said). The old row stays in the catalog, marked erased, naming its successor.
//!
//! The value itself is never stored, logged or published: rows are matched by its keyed hash
//! (HMAC-SHA256 under `MLOPS_PII_KEY`, the pseudonym `pii: pseudonymise` stores), which the audit
//! record keeps. A cell matches when its trimmed text is the hash (a pseudonymised column) or
//! hashes to it.
//!
//! Crash safety: the audit record, the erased mark and the successor's row are written in one
//! transaction per version, after the successor's content is stored; the successor's
//! `data.ingested`, the old content's deletion and `data.erased` follow, and an erasure whose
//! `data.erased` was not published is carried out again when ingest starts (versions already
//! erased are not read again; the rest are).

use std::sync::Arc;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use mlops_proto as pb;
use mlops_shared::bus::{EVENTS_STREAM, PREDICTIONS_STREAM};
use mlops_shared::events::EventContext;
use mlops_shared::ids::PipelineName;
use mlops_shared::pii::Pseudonymiser;
use tracing::{info, warn};

use crate::catalog::{DatasetRecord, ErasureRecord, LateLook};
use crate::{Ingest, IngestError};

impl Ingest {
    /// Checks an erase request, then carries it out. The audit record of what it erased; an
    /// error when nothing matched (and nothing was changed). An erasure by a feature is announced
    /// even when no stored version holds the subject: the monitor may keep their predictions.
    pub(crate) async fn erase(self: &Arc<Self>, req: pb::EraseRequest) -> Result<pb::DataErased, IngestError> {
        let bad = |m: String| IngestError::BadInput(format!("erasure: {m}"));
        let name = PipelineName::new(&req.pipeline).map_err(|e| bad(e.to_string()))?;
        let (column, value, reason) = (req.column.trim(), req.value.trim(), req.reason.trim());
        if value.is_empty() {
            return Err(bad(format!("the value of `{column}` to erase is empty")));
        }
        if reason.is_empty() {
            return Err(bad("a `reason` is required (the request's reference or legal ground): it is kept in \
                            the audit record"
                .into()));
        }
        let declared = self.declared(name.as_str(), column).await?;
        let Some(key) = self.pseudonymiser.clone() else {
            return Err(bad("MLOPS_PII_KEY is not set on ingest: the audit record keeps the value's keyed hash, \
                            never the value; nothing was changed"
                .into()));
        };
        let value = match declared.view {
            true => mlops_shared::pii::key_text(value).into_owned(),
            false => mlops_shared::pii::subject_value(value, declared.numeric)
                .map_err(|m| bad(format!("`{column}`: {m}")))?,
        };
        let subject_hash = key.pseudonym(&value);
        let requested = mlops_shared::now_unix_ms();
        let audit = pb::DataErased {
            pipeline: name.to_string(),
            erasure_id: format!("erasure-{requested}-{}", &subject_hash[..8]),
            column: column.to_owned(),
            subject_hash,
            reason: reason.to_owned(),
            requested_by: req.requested_by.trim().to_owned(),
            requested_unix_ms: requested,
            ..Default::default()
        };
        let erasure = ErasureRecord {
            audit,
            published: false,
            archive: Vec::new(),
            numeric: declared.numeric,
            feature: declared.feature,
            view: declared.view,
            late: None,
        };
        // In a task of its own, so that a caller who goes away (a timeout, Ctrl-C) does not stop it
        // half-way; erasures an earlier one left unfinished are finished first.
        let ingest = self.clone();
        let looking = key.clone();
        let done = tokio::spawn(async move {
            let _one_at_a_time = ingest.erasing.lock().await;
            ingest.finish_unfinished(&key).await;
            ingest.carry_out(erasure, &key).await
        })
        .await
        .map_err(|e| IngestError::Unavailable(anyhow::anyhow!("the erasure stopped: {e}")))??;
        if done.late.is_some() {
            self.clone().look_again_soon(done.audit.erasure_id.clone(), looking);
        }
        if !done.published {
            return Err(IngestError::NothingMatched(format!(
                "no row of pipeline `{name}` has that value in `{column}` ({} version(s) looked at): nothing was \
                 changed",
                done.audit.versions_scanned
            )));
        }
        Ok(done.audit)
    }

    /// What `pipeline`'s spec declares of `column` (among `features` and `columns`), or of a
    /// feature view's entity key column: refused when it declares nothing.
    async fn declared(&self, pipeline: &str, column: &str) -> Result<Declared, IngestError> {
        let unavailable = |e: &dyn std::fmt::Display| IngestError::Unavailable(anyhow::anyhow!("{e}"));
        let Some(spec) = self.specs.get(pipeline).await.map_err(|e| unavailable(&e))? else {
            let Some(view) = self.features.view(pipeline).await.map_err(|e| unavailable(&e))? else {
                return Err(IngestError::UnknownPipeline(pipeline.to_owned()));
            };
            if !view.entities.iter().any(|k| k == column) {
                return Err(IngestError::BadInput(format!(
                    "erasure: feature view `{pipeline}` is erased by one of its entity key columns ({}), whose \
                     rows are the subject's; `{column}` is not one",
                    view.entities.join(", ")
                )));
            }
            return Ok(Declared { numeric: false, feature: false, view: true });
        };
        let Some(c) = spec.features.iter().chain(&spec.columns).find(|c| c.name == column) else {
            let names: Vec<&str> = spec.features.iter().chain(&spec.columns).map(|c| c.name.as_str()).collect();
            return Err(IngestError::BadInput(format!(
                "erasure: column `{column}` is not declared in pipeline `{pipeline}`; erasure matches a column of \
                 `features` or `columns`: {}",
                names.join(", ")
            )));
        };
        Ok(Declared {
            numeric: c.kind == mlops_shared::spec::FeatureKind::Numeric,
            feature: spec.features.iter().any(|f| f.name == column),
            view: false,
        })
    }

    /// Carries out `erasure` over its pipeline's versions not erased yet, then finishes every
    /// version it erased and publishes `data.erased` (once it erased anything).
    async fn carry_out(
        &self,
        mut erasure: ErasureRecord,
        key: &Arc<Pseudonymiser>,
    ) -> Result<ErasureRecord, IngestError> {
        let pipeline = erasure.audit.pipeline.clone();
        let versions = self.catalog(move |c| c.list(&pipeline, None)).await?;
        erasure.audit.versions_scanned = versions.len() as u64;
        for version in versions.iter().filter(|v| v.erased.is_none()) {
            let Some((erased, successor)) = self.erase_version(&erasure, version, key).await? else {
                continue;
            };
            erasure.audit.versions.push(erased.clone());
            let mark = pb::ErasedMark {
                erasure_id: erasure.audit.erasure_id.clone(),
                erased_unix_ms: mlops_shared::now_unix_ms(),
                successor_id: erased.successor_id.clone(),
                rows_removed: erased.rows_removed,
            };
            let (record, id) = (erasure.clone(), version.dataset_id.clone());
            self.catalog(move |c| c.record_erased(&record, &id, mark, successor.as_ref())).await?;
        }
        if erasure.feature && !erasure.published && erasure.late.is_none() {
            let late = self.log_positions(&erasure.audit.pipeline).await?;
            erasure.audit.predictions_sequence = late.predictions;
            erasure.late = Some(late);
        }
        match erasure.view {
            true => self.erase_from_view(&mut erasure, key).await?,
            false => self.rewrite_archive(&mut erasure, key).await?,
        }
        // Nothing held the subject: nothing to announce, unless the column is a feature, which the
        // monitor may keep with predictions.
        let held = !erasure.audit.versions.is_empty() || !erasure.archive.is_empty();
        if !held && erasure.audit.feature_files.is_empty() && !erasure.feature {
            return Ok(erasure);
        }
        self.finish(&mut erasure).await?;
        Ok(erasure)
    }

    /// Where the logs the archive is written from are now: the prediction log's last sequence,
    /// and the sequence of `pipeline`'s last `batch.completed`.
    async fn log_positions(&self, pipeline: &str) -> Result<LateLook, IngestError> {
        let unavailable =
            |e: &dyn std::fmt::Display| IngestError::Unavailable(anyhow::anyhow!("reading where the logs are: {e}"));
        let predictions = self.prediction_log().await?.last_sequence;
        let events = self.bus.js.get_stream(EVENTS_STREAM).await.map_err(|e| unavailable(&e))?;
        let subject = format!("mlops.events.batch.completed.{pipeline}");
        let batches = match events.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => message.sequence,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => 0,
            Err(e) => return Err(unavailable(&e)),
        };
        Ok(LateLook { predictions, batches, since_ms: mlops_shared::now_unix_ms() })
    }

    /// Takes an erasure's second look at the archive once the archive holds the logs through
    /// where they were when it began (predictions logged before, archived after its first look),
    /// and records the files it wrote again. Not yet: nothing done. A day on, given up, saying so.
    async fn look_again(&self, erasure: &mut ErasureRecord, key: &Arc<Pseudonymiser>) -> Result<(), IngestError> {
        let Some(late) = erasure.late.clone() else { return Ok(()) };
        let expired = mlops_shared::now_unix_ms() - late.since_ms > LATE_LOOK_MS;
        let looked = match self.archived_through(&late).await {
            Ok(true) => self.second_look(erasure, key).await,
            Ok(false) if !expired => return Ok(()),
            Ok(false) => Err(IngestError::Unavailable(anyhow::anyhow!(
                "the archive never held the logs through where they were when the erasure began (is the archive \
                 off?)"
            ))),
            Err(e) => Err(e),
        };
        match looked {
            Ok(()) => {}
            Err(e) if expired => warn!(pipeline = %erasure.audit.pipeline, erasure = %erasure.audit.erasure_id,
                                       error = %e, "second look at the archive given up after a day: files archived \
                                       since the erasure began may hold the subject (erase again)"),
            Err(e) => return Err(e),
        }
        erasure.late = None;
        let record = erasure.clone();
        self.catalog(move |c| c.put_erasure(&record)).await
    }

    /// Whether the archive holds the logs through `late` — or the prediction log no longer holds
    /// what it had not archived, so that nothing more of it can be.
    async fn archived_through(&self, late: &LateLook) -> Result<bool, IngestError> {
        let archived = |e: mlops_archive::ArchiveError| IngestError::Unavailable(e.into());
        if !self.archive.batches().listed_through(late.batches).await.map_err(archived)? {
            return Ok(false);
        }
        if self.archive.listed_through(late.predictions).await.map_err(archived)? {
            return Ok(true);
        }
        Ok(self.prediction_log().await?.first_sequence > late.predictions)
    }

    /// The prediction log's state: the sequences it holds.
    async fn prediction_log(&self) -> Result<async_nats::jetstream::stream::State, IngestError> {
        let unavailable =
            |e: &dyn std::fmt::Display| IngestError::Unavailable(anyhow::anyhow!("the prediction log: {e}"));
        let mut log = self.bus.js.get_stream(PREDICTIONS_STREAM).await.map_err(|e| unavailable(&e))?;
        Ok(log.info().await.map_err(|e| unavailable(&e))?.state.clone())
    }

    /// Writes the archive files still holding the subject again and moves their entries.
    async fn second_look(&self, erasure: &mut ErasureRecord, key: &Arc<Pseudonymiser>) -> Result<(), IngestError> {
        let before: u64 = erasure.audit.archive_files.iter().map(|f| f.rows_removed).sum();
        self.rewrite_archive(erasure, key).await?;
        // Every file recorded, so that one recorded before a crash is moved too (idempotent).
        for r in &erasure.archive {
            self.archive.swap(r).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        }
        let rows = erasure.audit.archive_files.iter().map(|f| f.rows_removed).sum::<u64>() - before;
        metrics::counter!("mlops_erased_rows_total", "where" => "archive").increment(rows);
        info!(pipeline = %erasure.audit.pipeline, erasure = %erasure.audit.erasure_id, rows,
              "second look at the archive taken");
        Ok(())
    }

    /// Takes erasure `id`'s second look at the archive as soon as the archive allows, looking
    /// every second for five minutes (then the minutely resumption takes over).
    fn look_again_soon(self: Arc<Self>, id: String, key: Arc<Pseudonymiser>) {
        tokio::spawn(async move {
            for _ in 0..300 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let _one_at_a_time = self.erasing.lock().await;
                let wanted = id.clone();
                let mut erasure = match self.catalog(move |c| c.erasure(&wanted)).await {
                    Ok(Some(erasure)) if erasure.late.is_some() => erasure,
                    Ok(_) => return,
                    Err(e) => return warn!(erasure = %id, error = %e, "the erasure could not be read; looked at later"),
                };
                if let Err(e) = self.look_again(&mut erasure, &key).await {
                    warn!(erasure = %id, error = %e, "the second look at the archive failed; tried again");
                }
            }
        });
    }

    /// Writes the archive files holding rows of the subject again without them, and records
    /// them (before [`Ingest::finish`] moves their manifest entries). A file recorded already
    /// from the object it is in is not recorded twice (resumed before its entry moved); one
    /// recorded from an object another erasure has moved it from since is recorded anew.
    async fn rewrite_archive(&self, erasure: &mut ErasureRecord, key: &Arc<Pseudonymiser>) -> Result<(), IngestError> {
        let archived = |e: mlops_archive::ArchiveError| IngestError::Unavailable(e.into());
        let matches = matcher(erasure, key);
        let (pipeline, column, tag) = (&erasure.audit.pipeline, &erasure.audit.column, &erasure.audit.erasure_id);
        let rewritten = self.archive.rewrite_without(pipeline, column, &matches, tag).await.map_err(archived)?;
        let mut changed = false;
        for r in rewritten {
            let file =
                pb::ErasedArchiveFile { name: r.name.clone(), rows_removed: r.rows_removed, rows_kept: r.rows_kept };
            match erasure.archive.iter().position(|a| a.name == r.name) {
                Some(i) if erasure.archive[i].old_object == r.old_object => continue,
                Some(i) => {
                    if let Some(f) = erasure.audit.archive_files.iter_mut().find(|f| f.name == r.name) {
                        *f = file;
                    }
                    erasure.archive[i] = r;
                }
                None => {
                    erasure.audit.archive_files.push(file);
                    erasure.archive.push(r);
                }
            }
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        let record = erasure.clone();
        self.catalog(move |c| c.put_erasure(&record)).await
    }

    /// Deletes the subject's entities from a feature view's online store and writes its offline
    /// files holding their rows again without them, and records those files. Repeated when
    /// resumed: it finds what is left, which is then added to the record.
    async fn erase_from_view(&self, erasure: &mut ErasureRecord, key: &Arc<Pseudonymiser>) -> Result<(), IngestError> {
        let unavailable = |e: mlops_features::StoreError| IngestError::Unavailable(e.into());
        let name = erasure.audit.pipeline.clone();
        let Some(view) = self.features.view(&name).await.map_err(unavailable)? else {
            return Ok(()); // the view was deleted since: nothing of it is kept
        };
        let matches: mlops_features::Matches = Arc::new(matcher(erasure, key));
        let done = self.features.erase_entity(&view, &erasure.audit.column, matches).await.map_err(unavailable)?;
        if done.files.is_empty() {
            return Ok(());
        }
        erasure.audit.online_entries_deleted += done.online_deleted;
        erasure.audit.feature_files.extend(done.files.into_iter().map(|f| pb::ErasedArchiveFile {
            name: f.name,
            rows_removed: f.rows_removed,
            rows_kept: f.rows_kept,
        }));
        let record = erasure.clone();
        self.catalog(move |c| c.put_erasure(&record)).await
    }

    /// Publishes each successor's `data.ingested` and deletes each old content (both idempotent),
    /// then publishes `data.erased` and records it published.
    async fn finish(&self, erasure: &mut ErasureRecord) -> Result<(), IngestError> {
        let ctx = EventContext::new_run(erasure.audit.erasure_id.clone());
        let unavailable = |e: mlops_shared::objects::ObjectError| IngestError::Unavailable(e.into());
        for v in &mut erasure.audit.versions {
            let (id, pipeline) = (v.successor_id.clone(), erasure.audit.pipeline.clone());
            let successor = match id.is_empty() {
                true => None,
                false => self.catalog(move |c| c.get(&id, &pipeline)).await?,
            };
            if let Some(s) = successor.filter(|s| !s.published) {
                self.publish_ingested(s, &ctx).await?;
            }
            if v.content_deleted {
                // Checked again under the content's lock: another pipeline may have catalogued
                // the same content since.
                let _held = self.content.lock(&v.dataset_id).await;
                match self.other_holder(&v.dataset_id, &erasure.audit.pipeline).await? {
                    Some(why) => (v.content_deleted, v.kept_because) = (false, why),
                    None => self.datasets.delete(&v.dataset_id).await.map_err(unavailable)?,
                }
            }
        }
        for r in &erasure.archive {
            self.archive.swap(r).await.map_err(|e| IngestError::Unavailable(e.into()))?;
        }
        erasure.audit.erased_unix_ms = mlops_shared::now_unix_ms();
        let published = self.bus.publish(&erasure.audit.erasure_id, &ctx, &erasure.audit).await;
        published.map_err(|e| IngestError::Unavailable(e.into()))?;
        erasure.published = true;
        let record = erasure.clone();
        self.catalog(move |c| c.put_erasure(&record)).await?;
        let rows: u64 = erasure.audit.versions.iter().map(|v| v.rows_removed).sum();
        metrics::counter!("mlops_erasures_total").increment(1);
        let archived: u64 = erasure.audit.archive_files.iter().map(|f| f.rows_removed).sum();
        let offline: u64 = erasure.audit.feature_files.iter().map(|f| f.rows_removed).sum();
        metrics::counter!("mlops_erased_rows_total", "where" => "datasets").increment(rows);
        metrics::counter!("mlops_erased_rows_total", "where" => "archive").increment(archived);
        metrics::counter!("mlops_erased_rows_total", "where" => "features").increment(offline);
        info!(pipeline = %erasure.audit.pipeline, erasure = %erasure.audit.erasure_id, rows,
              versions = erasure.audit.versions.len(), "subject erased");
        Ok(())
    }

    /// Reads `version` and, when it holds rows of the subject, stores it again without them.
    /// What was erased and the successor's catalog row (none when every row was the subject's);
    /// `None` when the version holds no such row or its content is gone already.
    async fn erase_version(
        &self,
        erasure: &ErasureRecord,
        version: &DatasetRecord,
        key: &Arc<Pseudonymiser>,
    ) -> Result<Option<(pb::ErasedVersion, Option<DatasetRecord>)>, IngestError> {
        let audit = &erasure.audit;
        let unavailable = |e: mlops_shared::objects::ObjectError| IngestError::Unavailable(e.into());
        let id = version.dataset_id.as_str();
        let staged = match self.datasets.stage_named(id, &self.staging, u64::MAX).await {
            Ok(staged) => staged,
            // Deleted for the personal data it held, or by an earlier erasure.
            Err(mlops_shared::objects::ObjectError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        if staged.sha.as_str() != id {
            return Err(IngestError::Unavailable(anyhow::anyhow!(
                "dataset {id} reads back with sha256 {}: the stored content is damaged",
                staged.sha
            )));
        }
        let (kept, rewritten) = self.without_subject(erasure, version, staged, key).await?;
        if kept.removed == 0 {
            return Ok(None);
        }
        let successor = match (kept.kept, rewritten) {
            (0, _) | (_, None) => None,
            (_, Some(file)) => {
                let staged = self.stage_file(file).await?;
                self.datasets.put_staged(&staged).await.map_err(unavailable)?;
                Some(successor_of(version, &staged, kept.removed, &audit.erasure_id))
            }
        };
        let kept_because = self.other_holder(id, &version.pipeline).await?;
        if let Some(why) = &kept_because {
            warn!(pipeline = %version.pipeline, dataset = %mlops_shared::ids::short(id), "old content kept: {why}");
        }
        let erased = pb::ErasedVersion {
            dataset_id: id.to_owned(),
            successor_id: successor.as_ref().map(|s| s.dataset_id.clone()).unwrap_or_default(),
            rows_removed: kept.removed,
            rows_kept: kept.kept,
            environment: version.environment.clone(),
            content_deleted: kept_because.is_none(),
            kept_because: kept_because.unwrap_or_default(),
        };
        Ok(Some((erased, successor)))
    }

    /// Why content `id` is to be kept after `pipeline` erased it: another pipeline's catalog holds
    /// it (and it is not erased there).
    async fn other_holder(&self, id: &str, pipeline: &str) -> Result<Option<String>, IngestError> {
        let i = id.to_owned();
        let holders = self.catalog(move |c| c.of_content(&i)).await?;
        let other = holders.iter().find(|h| h.pipeline != pipeline && h.erased.is_none());
        Ok(other.map(|o| {
            format!("the same content is a version of pipeline `{}`: erase the subject there too", o.pipeline)
        }))
    }

    /// Writes `staged` (the content of `version`) without the subject's rows to an anonymous
    /// file, off the runtime: what it kept and removed, and the file.
    async fn without_subject(
        &self,
        erasure: &ErasureRecord,
        version: &DatasetRecord,
        staged: mlops_shared::objects::Staged,
        key: &Arc<Pseudonymiser>,
    ) -> Result<(mlops_data::Erased, Option<std::fs::File>), IngestError> {
        let unavailable = |e: std::io::Error| IngestError::Unavailable(e.into());
        let mut out = tempfile::tempfile_in(&self.staging).map_err(unavailable)?;
        let audit = &erasure.audit;
        let (column, matches) = (audit.column.clone(), matcher(erasure, key));
        let name = format!("data.{}", version.format);
        let id = version.dataset_id.clone();
        mlops_shared::bus::off_runtime(move || {
            use std::io::Seek as _;
            let unreadable = |e: mlops_data::DataError| {
                IngestError::Unavailable(anyhow::anyhow!("dataset {id} could not be read to erase from it: {e}"))
            };
            let mut file = staged.file;
            file.rewind().map_err(unavailable)?;
            let batches = mlops_data::open(mlops_data::Source::File(file), &name, &mlops_data::Limits::default())
                .map_err(unreadable)?;
            let erased = mlops_data::erase_to_parquet(batches, &column, matches, &mut out).map_err(unreadable)?;
            out.rewind().map_err(unavailable)?;
            Ok((erased, (erased.removed > 0).then_some(out)))
        })
        .await
    }

    /// Carries out the erasures an earlier run left unpublished (it stopped part-way, or failed):
    /// at start-up, now and then, and before each new erasure. One that fails again is said and
    /// tried again later; the others go on.
    pub(crate) async fn resume_erasures(&self) -> Result<(), IngestError> {
        let Some(key) = self.pseudonymiser.clone() else {
            let unfinished = self.catalog(|c| c.erasures("")).await?.into_iter().filter(|e| !e.published).count();
            if unfinished > 0 {
                warn!(erasures = unfinished, "unfinished erasures wait for MLOPS_PII_KEY to be set on ingest");
            }
            return Ok(());
        };
        let _one_at_a_time = self.erasing.lock().await;
        self.finish_unfinished(&key).await;
        Ok(())
    }

    /// [`Ingest::resume_erasures`] with the erasure lock held; also takes the second looks at
    /// the archive that are due.
    async fn finish_unfinished(&self, key: &Arc<Pseudonymiser>) {
        let unfinished = match self.catalog(|c| c.erasures("")).await {
            Ok(all) => all.into_iter().filter(|e| !e.published || e.late.is_some()),
            Err(e) => return warn!(error = %e, "the unfinished erasures could not be read; tried again later"),
        };
        for mut erasure in unfinished {
            let id = erasure.audit.erasure_id.clone();
            let done = match erasure.published {
                true => self.look_again(&mut erasure, key).await,
                false => {
                    info!(erasure = %id, "finishing an erasure that stopped part-way");
                    self.carry_out(erasure, key).await.map(drop)
                }
            };
            if let Err(e) = done {
                tracing::error!(erasure = %id, error = %e, "an unfinished erasure failed again; tried again later");
            }
        }
    }
}

/// Whether a cell holds `erasure`'s subject: a feature view's key as text
/// ([`mlops_shared::pii::key_text`]), a numeric column's value by its number, any other by its
/// trimmed text or the pseudonym stored in its place.
fn matcher(erasure: &ErasureRecord, key: &Arc<Pseudonymiser>) -> impl Fn(&str) -> bool + Send + Sync + 'static {
    let (hash, numeric, view, key) = (erasure.audit.subject_hash.clone(), erasure.numeric, erasure.view, key.clone());
    move |cell: &str| match view {
        true => key.matches(&mlops_shared::pii::key_text(cell), &hash, false),
        false => key.matches(cell, &hash, numeric),
    }
}

/// How long an erasure's second look at the archive waits for the archive to hold the logs
/// through its start: a day.
const LATE_LOOK_MS: i64 = 24 * 3600 * 1000;

/// What a spec declares of an erasure's column.
struct Declared {
    numeric: bool,
    /// A feature (logged with predictions), not only a checked column.
    feature: bool,
    /// A feature view's entity key column.
    view: bool,
}

/// The catalog row of the version written in `old`'s place: the same arrival, environment and
/// origin, pending validation.
fn successor_of(
    old: &DatasetRecord,
    staged: &mlops_shared::objects::Staged,
    removed: u64,
    erasure: &str,
) -> DatasetRecord {
    DatasetRecord {
        dataset_id: staged.sha.to_string(),
        pipeline: old.pipeline.clone(),
        source: format!("{} (erased {removed} row(s) of a subject: {erasure})", old.source),
        format: "parquet".into(),
        size_bytes: staged.size,
        arrived_unix_ms: old.arrived_unix_ms,
        environment: old.environment.clone(),
        origin: old.origin().as_str().into(),
        feedback: old.feedback.clone(),
        erased_from: old.dataset_id.clone(),
        ..DatasetRecord::default()
    }
}
