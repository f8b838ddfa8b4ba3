//! Level 2, for real: a git repository holding a pipeline, a bare remote whose `post-receive`
//! hook is `examples/ci/post-receive` running `examples/ci/deliver.sh` (the steps the CI examples
//! run), and two platforms, staging and production, each on its own nats-server. A push that
//! improves the model ends with production serving it; a push that breaks a gate ends with
//! staging refusing it and production untouched; a push with a malformed spec is stopped by
//! `mlops pipeline test` before anything is applied.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mlops_integration_tests::{TestApp, client, sample, wait_until};
use mlops_proto as pb;

const T: Duration = Duration::from_secs(120);

/// The example's features, by name.
const FEATURES: [(&str, &str); 6] = [
    ("tenure_months", "{name: tenure_months, type: numeric, min: 0, max: 72}"),
    ("monthly_charges", "{name: monthly_charges, type: numeric, min: 0, max: 500}"),
    ("support_calls", "{name: support_calls, type: numeric, min: 0, max: 50}"),
    ("age", "{name: age, type: numeric, min: 18, max: 120, nullable: true, mostly: 0.99}"),
    ("contract", "{name: contract, type: categorical, categories: [month-to-month, one-year, two-year]}"),
    (
        "payment_method",
        "{name: payment_method, type: categorical, categories: [card, bank-transfer, electronic-check, mailed-check]}",
    ),
];

/// The features that say little about churn.
const WEAK: [&str; 3] = ["support_calls", "age", "payment_method"];

/// The churn pipeline on `features`, with an absolute floor on the ROC AUC and at most a 0.02
/// drop against the model in production.
fn spec(features: &[&str], l2: f64) -> String {
    let listed: Vec<_> =
        FEATURES.iter().filter(|(n, _)| features.contains(n)).map(|(_, f)| format!("  - {f}")).collect();
    format!(
        "name: churn\nfeatures:\n{}\ntarget: {{name: churned, positive: \"1\", negative: \"0\"}}\n\
         training:\n  algorithm: logistic_regression\n  params: {{l2: {l2}, max_iter: 50}}\n  seed: 42\n\
         gates:\n  - {{metric: roc_auc, min: 0.55, max_drop: 0.02}}\ndeployment: {{strategy: direct}}\n",
        listed.join("\n")
    )
}

fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Tess Ter", "-c", "user.email=tess@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Writes `spec` as the repository's pipeline.yaml and commits it: the commit's sha.
fn commit(repo: &Path, spec: &str, message: &str) -> String {
    std::fs::write(repo.join("pipeline.yaml"), spec).expect("writing the spec");
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    String::from_utf8_lossy(&git(repo, &["rev-parse", "HEAD"]).stdout).trim().to_owned()
}

/// The two platforms, the repository and its remote, and the hook's environment.
struct World {
    staging: TestApp,
    production: TestApp,
    dir: tempfile::TempDir,
}

impl World {
    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Where the hook's delivery of `commit` writes its JUnit report.
    fn reports(&self, commit: &str) -> PathBuf {
        self.dir.path().join("reports").join(commit)
    }

    /// Runs `mlops` as the hook does (the environments file, no endpoint flags): whether it
    /// succeeded, and what it said.
    fn mlops(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(self.staging.stack.opts.bin_dir.join("mlops"))
            .args(args)
            .env("MLOPS_ENVIRONMENTS", self.dir.path().join("environments.yaml"))
            .output()
            .expect("running mlops");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Writes `yaml` to a file of its own: its path.
    fn spec_file(&self, name: &str, yaml: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).expect("writing the spec");
        path.display().to_string()
    }

    /// `git push origin main` as a person runs it: the hook delivers, and the push returns when
    /// it has finished.
    fn push(&self, commit: &str) -> Output {
        let bin = self.staging.stack.opts.bin_dir.clone();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        Command::new("git")
            .arg("-C")
            .arg(self.repo())
            .args(["push", "-q", "origin", "main"])
            .env("PATH", path)
            .env("MLOPS_ENVIRONMENTS", self.dir.path().join("environments.yaml"))
            .env("MLOPS_REPORTS", self.reports(commit))
            .env("MLOPS_WAIT_SECS", T.as_secs().to_string())
            .env("USER", "tess")
            .env_remove("GITHUB_SHA")
            .env_remove("CI_COMMIT_SHA")
            .output()
            .expect("git push runs")
    }
}

/// The model `app` serves for churn.
async fn serving(app: &TestApp) -> Option<pb::ModelVersion> {
    let models = client::models(&app.stack.remote("registry"), "churn").await.ok()?;
    models.into_iter().find(|m| m.aliases.iter().any(|a| a == "production"))
}

async fn pipeline(app: &TestApp) -> pb::Pipeline {
    let mut c = client::registry(&app.stack.remote("registry")).await.expect("the registry");
    let req = pb::GetPipelineRequest { name: "churn".into(), spec_hash: String::new() };
    c.get_pipeline(req).await.expect("the pipeline").into_inner()
}

fn roc_auc(m: &pb::ModelVersion) -> f64 {
    m.holdout_metrics.as_ref().and_then(|x| x.values.get("roc_auc").copied()).unwrap_or(f64::NAN)
}

/// Both platforms serving revision 1 (the weak features), each trained on data of its own; the
/// repository with that revision, pushed to a bare remote whose hook delivers.
async fn world() -> World {
    let (staging, production) = tokio::join!(TestApp::start(), TestApp::start());
    for (app, seed) in [(&staging, 1), (&production, 2)] {
        app.apply(&spec(&WEAK, 1.0)).await;
        app.upload("churn", &sample::csv(1500, seed, sample::Variant::Normal)).await;
    }
    for app in [&staging, &production] {
        wait_until(T, || serving(app)).await.expect("each platform serves revision 1");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let environments = format!(
        "environments:\n  staging: {{nats_url: {}, registry_url: {}}}\n  production: {{nats_url: {}, registry_url: {}}}\n  \
         staging-again: {{registry_url: {}}}\n",
        staging.stack.nats_url,
        staging.stack.url("registry"),
        production.stack.nats_url,
        production.stack.url("registry"),
        staging.stack.url("registry"),
    );
    std::fs::write(dir.path().join("environments.yaml"), environments).expect("environments file");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci");
    let (repo, remote) = (dir.path().join("repo"), dir.path().join("remote.git"));
    std::fs::create_dir_all(repo.join("ci")).expect("repo");
    std::fs::create_dir_all(repo.join("data")).expect("repo");
    git(dir.path(), &["init", "-q", "--bare", "-b", "main", remote.to_str().expect("utf-8")]);
    std::fs::copy(examples.join("post-receive"), remote.join("hooks/post-receive")).expect("the hook");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::copy(examples.join("deliver.sh"), repo.join("ci/deliver.sh")).expect("deliver.sh");
    std::fs::write(repo.join("data/sample.csv"), sample::csv(800, 3, sample::Variant::Normal)).expect("sample");
    git(&repo, &["remote", "add", "origin", remote.to_str().expect("utf-8")]);
    World { staging, production, dir }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_push_reaches_production_through_staging_and_nothing_unproven_does() {
    let w = world().await;
    let v1 = serving(&w.production).await.expect("production serves revision 1");

    // 1. Every feature: a better model. Staging trains and passes it, production gets exactly
    //    that revision, retrains on its own data and serves it.
    let better = commit(&w.repo(), &spec(&FEATURES.map(|(n, _)| n), 1.0), "use every feature");
    let started = Instant::now();
    let out = w.push(&better);
    let took = started.elapsed();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let served = serving(&w.production).await.expect("production serves");
    let lineage = served.lineage.clone().unwrap_or_default();
    assert_eq!(lineage.spec_commit, better, "production serves the pushed commit's model:\n{said}");
    assert_eq!(lineage.reason, pb::TrainReason::SpecChanged as i32);
    assert!(roc_auc(&served) > roc_auc(&v1) + 0.05, "{} then {}", roc_auc(&v1), roc_auc(&served));
    let staged = serving(&w.staging).await.expect("staging serves");
    assert_eq!(staged.lineage.unwrap_or_default().spec_commit, better);
    assert_eq!(pipeline(&w.production).await.spec_hash, pipeline(&w.staging).await.spec_hash);
    let audit = audit(&w.production).await;
    let promoted = audit.iter().find(|e| e.action == "pipeline.applied" && e.detail.contains(&better));
    let promoted = promoted.unwrap_or_else(|| panic!("production's audit: {audit:#?}"));
    assert!(promoted.cause.contains("promoted from staging revision 2") && promoted.cause.contains("by tess"));
    let junit = std::fs::read_to_string(w.reports(&better).join("pipeline-test.xml")).expect("the test report");
    assert!(junit.contains("failures=\"0\""), "{junit}");
    eprintln!(
        "{said}push to production serving: {:.1} s (pipeline test, staging, promotion, production)",
        took.as_secs_f64()
    );

    // 2. Back to the weak features: the sample's own floor passes, but staging's gate against
    //    its serving model refuses it, and production never hears of it.
    let before = (pipeline(&w.production).await, serving(&w.production).await.map(|m| m.version));
    let worse = commit(&w.repo(), &spec(&WEAK, 2.0), "drop the features that cost us most to collect");
    let out = w.push(&worse);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let models = client::models(&w.staging.stack.remote("registry"), "churn").await.expect("staging's models");
    let refused = models.iter().find(|m| m.lineage.as_ref().is_some_and(|l| l.spec_commit == worse));
    let refused = refused.unwrap_or_else(|| panic!("staging trained the commit:\n{said}"));
    assert_eq!(refused.gate, "failed", "{refused:?}");
    let after = (pipeline(&w.production).await, serving(&w.production).await.map(|m| m.version));
    assert_eq!((after.0.revision, after.0.spec_hash, after.1), (before.0.revision, before.0.spec_hash, before.1));

    // 3. A malformed spec: `pipeline test` stops it, and neither platform gets a revision.
    let staging_before = pipeline(&w.staging).await.revision;
    let broken = commit(&w.repo(), "name: churn\nfeatures: [{name: tenure, type: numberic}]\n", "typo");
    w.push(&broken);
    let junit = std::fs::read_to_string(w.reports(&broken).join("pipeline-test.xml")).expect("the test report");
    let spec_case = junit.lines().find(|l| l.contains("name=\"the spec is valid\"")).expect("the spec's test");
    assert!(spec_case.contains("<failure message="), "{junit}");
    assert_eq!(pipeline(&w.staging).await.revision, staging_before);
    assert_eq!(pipeline(&w.production).await.revision, after.0.revision);
}

async fn audit(app: &TestApp) -> Vec<pb::AuditEntry> {
    let mut c = client::registry(&app.stack.remote("registry")).await.expect("the registry");
    let req = pb::ListAuditRequest { pipeline: "churn".into() };
    c.list_audit(req).await.expect("the audit").into_inner().entries
}

/// What must not reach production does not: a revision staging refused or never trained, a stale
/// revision, a pipeline staging does not have, an unknown environment, the same platform twice.
/// `wait` says a refusal with its reasons and exit status 1.
#[tokio::test(flavor = "multi_thread")]
async fn promote_refuses_what_staging_did_not_pass() {
    let w = world().await;
    let production_before = pipeline(&w.production).await;
    let refuse = |args: &[&str], why: &str| {
        let (ok, said) = w.mlops(args);
        assert!(!ok && said.contains(why), "mlops {args:?} should fail with {why:?}:\n{said}");
    };

    // Staging refuses a worse model (revision 2): wait says why, promote will not.
    let worse = w.spec_file("worse.yaml", &spec(&["age"], 1.0));
    let (ok, said) = w.mlops(&["--env", "staging", "pipeline", "apply", &worse, "--json"]);
    assert!(ok && said.contains("\"revision\":2"), "{said}");
    refuse(
        &["--env", "staging", "pipeline", "wait", "churn", "--revision", "2", "--timeout", "120"],
        "was refused: roc_auc",
    );
    refuse(&["pipeline", "promote", "churn", "--from", "staging", "--to", "production"], "staging refused revision 2");

    // A revision nothing trained under (the model does not change, and no model serves it: a
    // pipeline with no data).
    let other = w.spec_file("other.yaml", &spec(&WEAK, 1.0).replace("name: churn", "name: other"));
    assert!(w.mlops(&["--env", "staging", "pipeline", "apply", &other]).0);
    refuse(&["pipeline", "promote", "other", "--from", "staging", "--to", "production"], "has not passed revision 1");

    refuse(&["pipeline", "promote", "churn", "--from", "staging", "--to", "production", "--revision", "1"], "stale");
    refuse(
        &["pipeline", "promote", "churn", "--from", "staging", "--to", "production", "--revision", "9"],
        "no revision 9",
    );
    refuse(&["--env", "staging", "pipeline", "wait", "churn", "--revision", "1"], "stale");
    refuse(
        &["pipeline", "promote", "nosuch", "--from", "staging", "--to", "production"],
        "staging has no pipeline `nosuch`",
    );
    refuse(&["pipeline", "promote", "churn", "--from", "staging", "--to", "prod"], "unknown environment `prod`");
    refuse(&["--env", "prod", "pipeline", "list"], "defines production, staging, staging-again");
    refuse(&["pipeline", "promote", "churn", "--from", "staging", "--to", "staging-again"], "are the same platform");

    let after = pipeline(&w.production).await;
    assert_eq!((after.revision, after.spec_hash), (production_before.revision, production_before.spec_hash));
    assert!(client::models(&w.production.stack.remote("registry"), "other").await.is_err());

    // A revision that changes only how the model is served passes as it is: staging's verdict is
    // its serving model, and promoting it changes production's settings, not its model.
    let served = serving(&w.production).await.map(|m| m.version);
    let settings = w.spec_file("settings.yaml", &format!("{}monitoring: {{window: 321}}\n", spec(&WEAK, 1.0)));
    assert!(w.mlops(&["--env", "staging", "pipeline", "apply", &settings]).0);
    let (ok, said) = w.mlops(&["--env", "staging", "pipeline", "wait", "churn", "--timeout", "120"]);
    assert!(ok && said.contains("does not change the model: churn@1 serves it already"), "{said}");
    let (ok, said) =
        w.mlops(&["pipeline", "promote", "churn", "--from", "staging", "--to", "production", "--by", "ci"]);
    assert!(ok, "{said}");
    assert_eq!(pipeline(&w.production).await.spec_hash, pipeline(&w.staging).await.spec_hash);
    let (ok, said) = w.mlops(&["--env", "production", "pipeline", "wait", "churn", "--timeout", "120"]);
    assert!(ok && said.contains("does not change the model"), "{said}");
    assert_eq!(serving(&w.production).await.map(|m| m.version), served);
}

/// The CI examples run the steps the hook runs: the same script, on the same files.
#[test]
fn the_ci_examples_run_the_delivery_script() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci");
    let step = "bash ci/deliver.sh pipeline.yaml data/sample.csv";
    let hook = std::fs::read_to_string(examples.join("post-receive")).expect("the hook");
    assert!(hook.contains(step), "{hook}");
    let yaml = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(examples.join(name)).expect("the example");
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
    };
    let github = yaml("github-actions.yml");
    let steps = github["jobs"]["deliver"]["steps"].as_array().expect("the job's steps");
    assert!(steps.iter().any(|s| s["run"] == step), "{github:#}");
    assert_eq!(github["on"]["push"]["branches"][0], "main");
    let gitlab = yaml("gitlab-ci.yml");
    assert_eq!(gitlab["deliver"]["script"][0], step, "{gitlab:#}");
    assert_eq!(gitlab["deliver"]["artifacts"]["reports"]["junit"], "reports/pipeline-test.xml");
}
