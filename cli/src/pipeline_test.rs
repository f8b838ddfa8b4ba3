//! `mlops pipeline test SPEC [--data SAMPLE]`: a pipeline's three rings of tests, run where it
//! lives (a CI job, a laptop) with no platform: the data ring (the spec, and the validator's
//! checks on each sample), the model ring (the code's unit tests, training on the samples with
//! the trainer's own code, the spec's gates and the `--expect` bounds on the holdout) and the
//! infrastructure ring (the model loads in the serving engine, answers, and retraining gives it
//! again bit for bit). Every part is the services' own library code, not a copy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use mlops_shared::ids::Sha256;
use mlops_shared::model::Model;
use mlops_shared::spec::{Environment, Origin, PipelineSpec, Task};

use crate::code_bundle::{self, CodeUpload};

/// The seed's three rings of tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ring {
    Data,
    Model,
    Infrastructure,
}

impl Ring {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Model => "model",
            Self::Infrastructure => "infrastructure",
        }
    }
}

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

/// One test: its ring, what it checks, how it ended and why.
#[derive(Debug, Clone)]
pub struct Case {
    pub ring: Ring,
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    pub secs: f64,
}

/// A bound a metric must meet on the sample's holdout: `roc_auc=0.8` is a floor for a
/// higher-is-better metric, `rmse=3.5` a ceiling for a lower-is-better one.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub metric: String,
    pub bound: f64,
}

impl std::str::FromStr for Expect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (metric, bound) =
            s.split_once('=').ok_or_else(|| format!("expected METRIC=BOUND (roc_auc=0.8), got {s:?}"))?;
        let bound: f64 =
            bound.trim().parse().map_err(|_| format!("the bound of {metric:?} is not a number: {bound:?}"))?;
        if !bound.is_finite() {
            return Err(format!("the bound of {metric:?} must be finite"));
        }
        Ok(Self { metric: metric.trim().to_owned(), bound })
    }
}

/// What to test.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub spec: PathBuf,
    /// Sample datasets (CSV, Parquet, JSON lines): checked, then trained on together.
    pub data: Vec<PathBuf>,
    pub expect: Vec<Expect>,
}

/// Every test that ran, in ring order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub pipeline: String,
    pub cases: Vec<Case>,
}

/// The spec and, when it names code, its bundle.
struct Loaded {
    spec: PipelineSpec,
    code: Option<CodeUpload>,
}

/// A trained sample model: the artifact, loaded in the serving engine.
struct Candidate {
    bytes: Vec<u8>,
    model: Arc<dyn Model>,
}

/// Runs the three rings. Never fails: what cannot be done is a failed (or skipped) test.
pub async fn run(opts: &Options) -> Report {
    let mut r = Report { pipeline: opts.spec.display().to_string(), cases: Vec::new() };
    let Some(loaded) = r.check(Ring::Data, "the spec is valid", || load(&opts.spec)) else {
        r.skip_all("the spec is not valid");
        return r;
    };
    r.pipeline = loaded.spec.name.to_string();
    let samples = r.data_ring(&loaded.spec, &opts.data);
    if let Some(code) = &loaded.code {
        r.unit_tests(&opts.spec, &loaded.spec, code).await;
    }
    match samples {
        Err(why) => r.skip_all(&why),
        Ok(samples) => {
            if let Some(candidate) = r.train_and_load(&loaded, samples.clone(), "training on the sample").await {
                r.gates(&loaded.spec, &candidate, &samples, &opts.expect).await;
                r.answers(&loaded.spec, &candidate, &samples);
                r.reproduces(&loaded, &candidate, samples).await;
            }
        }
    }
    r.cases.sort_by_key(|c| c.ring);
    r
}

/// The spec file read and checked, and the code it names packed as `apply` would.
fn load(file: &Path) -> anyhow::Result<(String, Loaded)> {
    let yaml = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut spec = PipelineSpec::from_yaml(&yaml)?;
    let code = code_bundle::for_spec(file, &yaml)?;
    if let (Some(c), None) = (&spec.training.code, &code) {
        let dir = file.parent().unwrap_or(Path::new(".")).join(&c.path);
        anyhow::bail!("the code directory {} (`training.code.path`) does not exist", dir.display());
    }
    if let (Some(c), Some(upload)) = (spec.training.code.as_mut(), &code) {
        c.bundle = Some(mlops_shared::sha256_hex(&upload.bundle));
    }
    let what =
        format!("pipeline {}, {} feature(s), task {}", spec.name, spec.features.len(), task_name(spec.target.task));
    Ok((what, Loaded { spec, code }))
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::BinaryClassification => "binary classification",
        Task::Regression => "regression",
    }
}

impl Report {
    /// Whether no test failed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.outcome != Outcome::Failed)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.cases.iter().filter(|c| c.outcome == outcome).count()
    }

    fn push(&mut self, ring: Ring, name: impl Into<String>, outcome: Outcome, detail: String, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        self.cases.push(Case { ring, name: name.into(), outcome, detail, secs });
    }

    /// Runs `f` as the test `name`: its `Ok` says what it found, its error why it failed.
    fn check<T>(&mut self, ring: Ring, name: &str, f: impl FnOnce() -> anyhow::Result<(String, T)>) -> Option<T> {
        let started = Instant::now();
        match f() {
            Ok((detail, value)) => {
                self.push(ring, name, Outcome::Passed, detail, started);
                Some(value)
            }
            Err(e) => {
                self.push(ring, name, Outcome::Failed, format!("{e:#}"), started);
                None
            }
        }
    }

    /// The model and infrastructure rings, skipped for `why`.
    fn skip_all(&mut self, why: &str) {
        let later = [
            (Ring::Model, "training on the sample"),
            (Ring::Model, "the gates on the sample's holdout"),
            (Ring::Infrastructure, "the model loads in the serving engine"),
            (Ring::Infrastructure, "retraining reproduces the model bit for bit"),
        ];
        for (ring, name) in later {
            self.push(ring, name, Outcome::Skipped, why.to_owned(), Instant::now());
        }
    }

    /// The validator's checks on each sample. The samples as (name, bytes), or why the model
    /// ring cannot run.
    fn data_ring(&mut self, spec: &PipelineSpec, files: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>, String> {
        if files.is_empty() {
            let why = "no sample given (--data FILE)".to_owned();
            self.push(Ring::Data, "the data checks", Outcome::Skipped, why.clone(), Instant::now());
            return Err(why);
        }
        let mut samples = Vec::with_capacity(files.len());
        for file in files {
            let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into());
            let title = format!("the sample {name} passes the data checks");
            samples.extend(self.check(Ring::Data, &title, || check_sample(spec, file, &name)));
        }
        if samples.len() < files.len() {
            return Err("a sample failed its data checks".into());
        }
        Ok(samples)
    }

    /// The code's unit tests (pytest), in the environment the trainers would make.
    async fn unit_tests(&mut self, file: &Path, spec: &PipelineSpec, code: &CodeUpload) {
        let started = Instant::now();
        let name = "the code passes its unit tests";
        match crate::code_tests::run(file, spec, &code.bundle).await {
            Ok(Some(summary)) => self.push(Ring::Model, name, Outcome::Passed, summary, started),
            Ok(None) => {
                let why = "the code has no tests (test_*.py or *_test.py)".to_owned();
                self.push(Ring::Model, name, Outcome::Skipped, why, started);
            }
            Err(e) => self.push(Ring::Model, name, Outcome::Failed, format!("{e:#}"), started),
        }
    }

    /// Trains on `samples` as the trainers do, and loads the artifact as the deployer does.
    async fn train_and_load(
        &mut self,
        loaded: &Loaded,
        samples: Vec<(String, Vec<u8>)>,
        name: &str,
    ) -> Option<Candidate> {
        let started = Instant::now();
        let bytes = match train(loaded, samples).await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.push(Ring::Model, name, Outcome::Failed, format!("{e:#}"), started);
                return None;
            }
        };
        let sha = Sha256::of(&bytes);
        self.push(Ring::Model, name, Outcome::Passed, format!("artifact sha256 {sha}, {} bytes", bytes.len()), started);
        let model = self.check(Ring::Infrastructure, "the model loads in the serving engine", || {
            let model = mlops_onnx::Engine::from_env()?.load_verified(&bytes, &sha).map_err(anyhow::Error::msg)?;
            Ok((format!("served as {}", model.platform()), model))
        })?;
        Some(Candidate { bytes, model })
    }

    /// The evaluator's judgement of the candidate (the spec's gates and serving limits, with no
    /// production model to compare with), then the `--expect` bounds.
    async fn gates(
        &mut self,
        spec: &PipelineSpec,
        candidate: &Candidate,
        samples: &[(String, Vec<u8>)],
        expect: &[Expect],
    ) {
        let started = Instant::now();
        let inputs = mlops_evaluator::judge::Inputs {
            spec: spec.clone(),
            candidate: candidate.model.clone(),
            artifact_size: candidate.bytes.len() as u64,
            champion: None,
            production_version: 0,
            window: samples.to_vec(),
            newest: None,
        };
        let judged = match tokio::task::spawn_blocking(move || mlops_evaluator::judge::judge(&inputs)).await {
            Ok(Ok(j)) => j,
            Ok(Err(e)) => return self.push(Ring::Model, "the gates", Outcome::Failed, e.to_string(), started),
            Err(e) => return self.push(Ring::Model, "the gates", Outcome::Failed, e.to_string(), started),
        };
        for c in &judged.checks {
            let outcome = if c.passed { Outcome::Passed } else { Outcome::Failed };
            self.push(Ring::Model, format!("gate {}", c.name), outcome, c.detail.clone(), started);
        }
        // Gates against a production model have nothing to compare with here: said, not hidden.
        for g in spec.gates.iter().filter(|g| g.max_drop.is_some() || g.max_relative_drop.is_some()) {
            let why = "judged against the production model, which only a platform has".to_owned();
            self.push(Ring::Model, format!("gate {} against production", g.metric), Outcome::Skipped, why, started);
        }
        if judged.checks.is_empty() {
            let why = "the spec has no gate on absolute values".to_owned();
            self.push(Ring::Model, "the gates", Outcome::Skipped, why, started);
        }
        let metrics = &judged.measured.holdout.candidate;
        for e in expect {
            let (name, outcome, detail) = expectation(spec.target.task, e, metrics, judged.rows);
            self.push(Ring::Model, name, outcome, detail, started);
        }
    }

    /// The loaded model answers the sample's rows, one score each, every one finite.
    fn answers(&mut self, spec: &PipelineSpec, candidate: &Candidate, samples: &[(String, Vec<u8>)]) {
        self.check(Ring::Infrastructure, "the served model answers predictions", || {
            let frame = mlops_data::read_datasets(spec, samples)?;
            let rows: Vec<_> = (0..frame.rows.min(100)).map(|i| frame.row(i)).collect();
            let answers = candidate.model.predict_rows(&rows)?;
            anyhow::ensure!(answers.len() == rows.len(), "{} answers to {} rows", answers.len(), rows.len());
            if let Some(i) = answers.iter().position(|a| !a.score.is_finite()) {
                anyhow::bail!("row {i}'s score is {}", answers[i].score);
            }
            Ok((format!("{} rows, {} answers, all finite", rows.len(), answers.len()), ()))
        });
    }

    /// Trains again on the same samples: the artifact must be the same, byte for byte.
    async fn reproduces(&mut self, loaded: &Loaded, candidate: &Candidate, samples: Vec<(String, Vec<u8>)>) {
        let started = Instant::now();
        let name = "retraining reproduces the model bit for bit";
        let (outcome, detail) = match train(loaded, samples).await {
            Err(e) => (Outcome::Failed, format!("training again failed: {e:#}")),
            Ok(again) if again == candidate.bytes => (Outcome::Passed, format!("sha256 {} twice", Sha256::of(&again))),
            Ok(again) => {
                let parts = crate::reproduce::differences(&candidate.bytes, &again).join(", ");
                (Outcome::Failed, format!("the second artifact differs in: {parts}"))
            }
        };
        self.push(Ring::Infrastructure, name, outcome, detail, started);
    }
}

/// Reads and checks one sample as the validator checks an upload for training.
fn check_sample(spec: &PipelineSpec, file: &Path, name: &str) -> anyhow::Result<(String, (String, Vec<u8>))> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let batches = mlops_data::open_typed(
        mlops_data::Source::Bytes(bytes.clone().into()),
        name,
        &mlops_data::Limits::default(),
        &spec.numeric_features(),
    );
    let report = mlops_validator::checks::validate(batches, spec, None, Environment::Training, Origin::Upload);
    anyhow::ensure!(!report.blocked(), "{}", report.summary());
    let warnings = report.warnings();
    let mut detail = format!("{} rows", report.rows);
    if !warnings.is_empty() {
        let listed: Vec<_> = warnings
            .iter()
            .flat_map(|c| c.anomalies.iter().map(move |a| format!("{}: {}", c.column, a.message)))
            .collect();
        let _ = write!(detail, ", warnings: {}", listed.join("; "));
    }
    Ok((detail, (name.to_owned(), bytes)))
}

/// The trainer's training of `samples`: its built-in algorithm, or the spec's code step.
async fn train(loaded: &Loaded, samples: Vec<(String, Vec<u8>)>) -> anyhow::Result<Vec<u8>> {
    if let Some(code) = &loaded.code {
        return crate::reproduce::train_code(&loaded.spec, &code.bundle, samples, "pipeline-test", None).await;
    }
    crate::reproduce::train_builtin(loaded.spec.clone(), samples).await
}

/// An `--expect` bound against the holdout's metrics: the test's name, outcome and detail.
fn expectation(
    task: Task,
    e: &Expect,
    metrics: &mlops_evaluator::gate::Metrics,
    rows: u64,
) -> (String, Outcome, String) {
    let Some(higher) = task.higher_is_better(&e.metric) else {
        let known: Vec<_> = task.metrics().iter().map(|(m, _)| *m).collect();
        let detail = format!("{} is not a metric of {}: one of {}", e.metric, task_name(task), known.join(", "));
        return (format!("expect {}", e.metric), Outcome::Failed, detail);
    };
    let value = metrics.get(&e.metric).copied().unwrap_or(f64::NAN);
    let (sign, met) = if higher { (">=", value >= e.bound) } else { ("<=", value <= e.bound) };
    let outcome = if met { Outcome::Passed } else { Outcome::Failed };
    let detail = format!("{} = {value:.4} on {rows} holdout rows", e.metric);
    (format!("expect {} {sign} {}", e.metric, e.bound), outcome, detail)
}

impl Report {
    /// The report for people: each ring, each test with its outcome and what it found.
    pub fn text(&self) -> String {
        let mut out = format!("pipeline test {}\n", self.pipeline);
        let mut ring = None;
        for c in &self.cases {
            if ring != Some(c.ring) {
                ring = Some(c.ring);
                let _ = writeln!(out, "{} ring", c.ring.as_str());
            }
            let mark = match c.outcome {
                Outcome::Passed => "ok  ",
                Outcome::Failed => "FAIL",
                Outcome::Skipped => "skip",
            };
            let _ = writeln!(out, "  {mark} {} ({:.1} s)", c.name, c.secs);
            for line in c.detail.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "       {line}");
            }
        }
        let (passed, failed, skipped) =
            (self.count(Outcome::Passed), self.count(Outcome::Failed), self.count(Outcome::Skipped));
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        let _ = writeln!(out, "{verdict}: {passed} passed, {failed} failed, {skipped} skipped");
        out
    }

    /// JUnit XML, as CI systems display test results: one `<testsuite>` per ring.
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            xml(&format!("mlops pipeline test {}", self.pipeline)),
            self.cases.len(),
            self.count(Outcome::Failed),
            self.count(Outcome::Skipped)
        );
        for ring in [Ring::Data, Ring::Model, Ring::Infrastructure] {
            self.junit_suite(&mut out, ring);
        }
        out.push_str("</testsuites>\n");
        out
    }

    fn junit_suite(&self, out: &mut String, ring: Ring) {
        let cases: Vec<_> = self.cases.iter().filter(|c| c.ring == ring).collect();
        let of = |o| cases.iter().filter(|c| c.outcome == o).count();
        let secs: f64 = cases.iter().map(|c| c.secs).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{secs:.3}\">",
            ring.as_str(),
            cases.len(),
            of(Outcome::Failed),
            of(Outcome::Skipped)
        );
        let class = xml(&format!("{}.{}", self.pipeline, ring.as_str()));
        for c in cases {
            let _ = write!(out, "    <testcase classname=\"{class}\" name=\"{}\" time=\"{:.3}\"", xml(&c.name), c.secs);
            let first = c.detail.lines().next().unwrap_or_default();
            match c.outcome {
                Outcome::Passed => {
                    let _ = writeln!(out, "><system-out>{}</system-out></testcase>", xml(&c.detail));
                }
                Outcome::Failed => {
                    let _ =
                        writeln!(out, "><failure message=\"{}\">{}</failure></testcase>", xml(first), xml(&c.detail));
                }
                Outcome::Skipped => {
                    let _ = writeln!(out, "><skipped message=\"{}\"/></testcase>", xml(first));
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
}

/// `s` escaped for XML text and attribute values, without the characters XML 1.0 forbids.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse_and_refuse_what_is_not_a_bound() {
        assert_eq!("roc_auc=0.8".parse::<Expect>(), Ok(Expect { metric: "roc_auc".into(), bound: 0.8 }));
        assert!("roc_auc".parse::<Expect>().unwrap_err().contains("METRIC=BOUND"));
        assert!("roc_auc=high".parse::<Expect>().unwrap_err().contains("not a number"));
        assert!("rmse=inf".parse::<Expect>().unwrap_err().contains("finite"));
    }

    #[test]
    fn a_bound_is_a_floor_or_a_ceiling_by_the_metric() {
        let metrics = [("roc_auc".to_owned(), 0.75), ("log_loss".to_owned(), 0.4)].into();
        let floor = expectation(Task::BinaryClassification, &"roc_auc=0.8".parse().unwrap(), &metrics, 10);
        assert_eq!((floor.0.as_str(), floor.1), ("expect roc_auc >= 0.8", Outcome::Failed));
        let ceiling = expectation(Task::BinaryClassification, &"log_loss=0.5".parse().unwrap(), &metrics, 10);
        assert_eq!((ceiling.0.as_str(), ceiling.1), ("expect log_loss <= 0.5", Outcome::Passed));
        let unknown = expectation(Task::BinaryClassification, &"rmse=1".parse().unwrap(), &metrics, 10);
        assert_eq!(unknown.1, Outcome::Failed);
        assert!(unknown.2.contains("not a metric of binary classification"), "{}", unknown.2);
    }

    #[test]
    fn junit_escapes_and_counts_per_ring() {
        let case = |ring, name: &str, outcome, detail: &str| Case {
            ring,
            name: name.into(),
            outcome,
            detail: detail.into(),
            secs: 0.5,
        };
        let report = Report {
            pipeline: "churn".into(),
            cases: vec![
                case(Ring::Data, "the spec is valid", Outcome::Passed, "ok"),
                case(Ring::Model, "gate roc_auc >= 0.9", Outcome::Failed, "candidate <0.7> & \"low\"\u{1}"),
                case(Ring::Infrastructure, "reproduce", Outcome::Skipped, "no sample"),
            ],
        };
        let x = report.junit();
        assert!(x.contains("tests=\"3\" failures=\"1\" skipped=\"1\""), "{x}");
        assert!(x.contains("name=\"gate roc_auc &gt;= 0.9\""), "{x}");
        assert!(x.contains("message=\"candidate &lt;0.7&gt; &amp; &quot;low&quot;\u{fffd}\""), "{x}");
        assert!(x.contains("<testsuite name=\"model\" tests=\"1\" failures=\"1\" skipped=\"0\""), "{x}");
        assert!(!report.passed());
        assert!(report.text().contains("FAILED: 1 passed, 1 failed, 1 skipped"), "{}", report.text());
    }
}
