//! The team's own training code in the loop, end to end on real NATS: `examples/code-sklearn`
//! applied from a git work tree, trained by the trainers in its Python environment, gated and
//! served; a trainer killed mid-run hands the run over, its program dying with it; a program past
//! its timeout, one that fails, one that writes no model and one that writes a broken one each
//! fail their run with the reason, and the trainer goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_cli::sample::{self, Variant};
use mlops_integration_tests::{TestApp, client, target_dir, wait_until};
use mlops_shared::bus::MODELS_BUCKET;
use mlops_shared::ids::Sha256;
use mlops_shared::model::Stored;

/// Making the example's environment on a fresh machine downloads scikit-learn and pyarrow.
const FIRST: Duration = Duration::from_secs(900);
const T: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
}

/// The trainers' environment: Python environments shared by every test run under `target/`.
fn trainer_env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let envs = target_dir().join("trainer-envs");
    let mut env = vec![("MLOPS_TRAINER_ENV_DIR", envs.display().to_string())];
    env.extend(extra.iter().cloned());
    env
}

async fn start(env: &[(&'static str, String)]) -> TestApp {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::start_with(&env).await
}

/// A copy of the scikit-learn example's code directory under `dir/train`, with `extra` files
/// beside it.
fn example_code(dir: &Path, extra: &[(&str, &str)]) {
    copy_example("code-sklearn", &["train.py", "features.py", "requirements.txt", "tests/test_features.py"], dir);
    for (name, text) in extra {
        std::fs::write(dir.join("train").join(name), text).unwrap();
    }
}

/// `files` of `examples/<example>/train` copied under `dir/train`.
fn copy_example(example: &str, files: &[&str], dir: &Path) {
    let from = repo().join("examples").join(example).join("train");
    let to = dir.join("train");
    std::fs::create_dir_all(to.join("tests")).unwrap();
    for name in files {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

/// The example's spec named `name`, its training section replaced by `training`.
fn spec(name: &str, training: &str) -> String {
    let example = std::fs::read_to_string(repo().join("examples/code-sklearn/pipeline.yaml")).unwrap();
    let head = example.split("training:\n").next().unwrap().replace("name: churn-code\n", &format!("name: {name}\n"));
    format!("{head}training:\n{training}gates:\n  - {{metric: roc_auc, min: 0.6}}\ndeployment: {{strategy: direct}}\n")
}

/// The example's environment and program, with `command` run instead.
fn with_env(command: &str, extra: &str) -> String {
    format!(
        "  code: {{path: train, command: {command}{extra}}}\n  environment: {{python: {{requirements: train/requirements.txt}}}}\n  params: {{C: 1.0}}\n"
    )
}

/// Writes `yaml` as `dir/pipeline.yaml` and applies it as `mlops pipeline apply` does.
async fn apply(app: &TestApp, dir: &Path, yaml: &str) -> mlops_proto::Pipeline {
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml).unwrap();
    let code = mlops_cli::code_bundle::for_spec(&file, yaml).unwrap();
    client::apply_pipeline_with_code(&app.stack.remote("registry"), yaml, code, None).await.unwrap()
}

/// Runs the `mlops` command against the test's platform: whether it succeeded, and what it said.
fn mlops(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(app.stack.opts.bin_dir.join("mlops"))
        .args(["--nats-url", &app.stack.nats_url, "--registry-url", &app.stack.url("registry")])
        .args(args)
        .env("MLOPS_TRAINER_ENV_DIR", target_dir().join("trainer-envs"))
        .output()
        .expect("running mlops");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn trained(app: &TestApp, pipeline: &str) -> Vec<mlops_proto::ModelTrained> {
    app.seen()
        .into_iter()
        .filter(|s| s.pipeline == pipeline)
        .filter_map(|s| match s.payload {
            Decoded::Trained(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_team_program_trains_in_its_environment_is_gated_and_served() {
    let app = start(&trainer_env(&[])).await;
    let work = tempfile::tempdir().unwrap();
    example_code(work.path(), &[]);
    let yaml = std::fs::read_to_string(repo().join("examples/code-sklearn/pipeline.yaml")).unwrap();
    std::fs::write(work.path().join("pipeline.yaml"), &yaml).unwrap();
    git(work.path(), &["init", "-q"]);
    git(work.path(), &["add", "."]);
    git(work.path(), &["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "the churn model"]);
    let head = git(work.path(), &["rev-parse", "HEAD"]);
    let (ok, said) = mlops(&app, &["pipeline", "apply", work.path().join("pipeline.yaml").to_str().unwrap()]);
    assert!(ok && said.contains(&format!("(commit {})", &head[..12])), "{said}");
    let mut registry = client::registry(&app.stack.remote("registry")).await.unwrap();
    let request = mlops_proto::GetPipelineRequest { name: "churn-code".into(), spec_hash: String::new() };
    let applied = registry.get_pipeline(request).await.unwrap().into_inner();
    let stored = mlops_shared::spec::PipelineSpec::from_yaml(&applied.spec_yaml).unwrap();
    let code = stored.training.code.clone().unwrap();
    assert_eq!((code.commit.as_deref(), code.dirty), (Some(head.as_str()), false));
    let bundle = code.bundle.clone().unwrap();
    assert_eq!(bundle, mlops_shared::sha256_hex(&mlops_shared::bundle::pack(&work.path().join("train")).unwrap()));

    let data = app.upload("churn-code", &sample::csv(1500, 7, Variant::Normal)).await;
    app.wait_event("model.promoted", FIRST, |s| s.pipeline == "churn-code").await;
    let [t] = trained(&app, "churn-code").try_into().expect("one model trained");
    assert_eq!((t.algorithm.as_str(), t.code_bundle.as_str()), ("code", bundle.as_str()));
    assert_eq!(
        (t.code_version.as_str(), t.code_commit.as_str()),
        (format!("code sha256:{bundle}").as_str(), head.as_str())
    );
    assert!(t.environment.contains("scikit-learn==1.8.0") && t.environment.contains("pyarrow=="), "{}", t.environment);
    assert!(t.program_metrics["train_accuracy"] > 0.6, "{:?}", t.program_metrics);
    let auc = t.holdout_metrics.unwrap().values["roc_auc"];
    assert!(auc > 0.7, "holdout AUC {auc}");
    assert_eq!(t.dataset_ids, [data.dataset_id]);
    // The registry's lineage names the commit, the environment and the program's own numbers.
    let versions = client::models(&app.stack.remote("registry"), "churn-code").await.unwrap();
    let lineage = versions[0].lineage.clone().unwrap();
    assert_eq!((lineage.code_commit, lineage.code_version), (head.clone(), format!("code sha256:{bundle}")));
    assert_eq!(lineage.environment, t.environment);
    assert_eq!(lineage.program_metrics, t.program_metrics);
    // The run keeps what the program printed; it read the rows the holdout left (1500 × 0.8).
    let run = app.runs().await.wait_final(&t.job_id, T).await.unwrap().expect("the run ends");
    assert!(run.output.contains("read 1200 training rows"), "{}", run.output);
    // The model the program wrote answers over REST.
    let rows = mlops_integration_tests::rows_json(&sample::customers(5, 11, Variant::Normal));
    app.wait_serving("churn-code", 1, &rows, T).await;
    let body = client::predict(&app.stack.remote("deployer"), "churn-code", &rows).await.unwrap();
    let probabilities: Vec<f64> =
        body["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(body["outputs"][0]["name"], "probability", "{body}");
    assert!(probabilities.len() == 5 && probabilities.iter().all(|p| (0.0..=1.0).contains(p)), "{body}");

    // Rerun from the lineage alone: the bundle by its sha256, the environment from its pip freeze.
    let (ok, said) = mlops(&app, &["reproduce", "churn-code@1"]);
    assert!(ok && said.contains("identical"), "{said}");

    // A changed program is a new bundle: applied from a dirty work tree, it says so.
    let train = work.path().join("train/train.py");
    std::fs::write(&train, std::fs::read_to_string(&train).unwrap().replace("C=params.get(\"C\", 1.0)", "C=0.5"))
        .unwrap();
    let again = apply(&app, work.path(), &yaml).await;
    let code = mlops_shared::spec::PipelineSpec::from_yaml(&again.spec_yaml).unwrap().training.code.unwrap();
    assert!(code.dirty && code.bundle.as_deref() != Some(bundle.as_str()), "{code:?}");
}

/// The program a killed trainer was running dies with it (and the child it started); the job
/// goes to the other trainer, which makes the one version. The program sees the variables the
/// spec lists and none of the trainer's others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainer_killed_mid_run_takes_its_program_along_and_another_makes_the_one_version() {
    let marks = tempfile::tempdir().unwrap();
    let env = trainer_env(&[
        ("MARKER_DIR", marks.path().display().to_string()),
        ("SECRET_TOKEN", "hunter2".into()),
        ("MLOPS_JOB_ACK_WAIT_SECS", "3".into()),
    ]);
    let mut app = start(&env).await;
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.stack.spawn("trainer", "trainer-2", &extra).await.unwrap();
    app.stack.wait_healthy(T).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    // The program may read outside its run directory but not write there: the test sees it
    // start in /proc, and lays the marker that lets the second attempt train.
    let slow = r#"import os, signal, subprocess
print("env", " ".join(sorted(os.environ)), flush=True)
if not os.path.exists(os.path.join(os.environ["MARKER_DIR"], "second")):
    child = subprocess.Popen(["sleep", "300"])
    signal.pause()  # until the trainer's going kills it
import train
train.main()
"#;
    example_code(work.path(), &[("slow.py", slow)]);
    apply(&app, work.path(), &spec("handover", &with_env("[python, slow.py]", ", env: [MARKER_DIR]"))).await;
    app.upload("handover", &sample::csv(1200, 3, Variant::Normal)).await;
    let pids = wait_until(FIRST, || async {
        let program = processes_running("slow.py").into_iter().next()?;
        let children = children_of(program);
        (!children.is_empty()).then(|| [vec![program], children].concat())
    })
    .await
    .expect("the program started its child");
    std::fs::write(marks.path().join("second"), "").unwrap();
    // The trainer running it: the run record names it by host and process id.
    let running = wait_until(T, || async {
        let runs = app.runs().await.list().await.ok()?;
        runs.into_iter().find(|r| r.pipeline == "handover" && !r.trainer.is_empty())
    })
    .await
    .unwrap();
    // The stack names each trainer (MLOPS_TRAINER_ID) as its service.
    app.stack.kill(&running.trainer).await.unwrap();
    let gone = wait_until(T, || async { pids.iter().all(|p| process_gone(*p)).then_some(()) }).await;
    assert!(gone.is_some(), "the program of the killed trainer is still running: {pids:?}");

    app.wait_event("model.promoted", T, |s| s.pipeline == "handover").await;
    app.wait_quiet(&["MLOPS_EVENTS", "MLOPS_JOBS"], T).await;
    let versions = client::models(&app.stack.remote("registry"), "handover").await.unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let run = app.runs().await.wait_final(&running.job_id, T).await.unwrap().expect("the run ends");
    assert!(run.attempt >= 2 && run.trainer != running.trainer, "{run:?}");
    let env_line = run.output.lines().find(|l| l.starts_with("env ")).unwrap().to_owned();
    assert!(env_line.contains(" MARKER_DIR ") && env_line.contains(" MLOPS_TRAIN_DATA "), "{env_line}");
    assert!(!env_line.contains("SECRET_TOKEN") && !env_line.contains("MLOPS_NATS_URL"), "{env_line}");
}

/// The processes whose command line names `script`.
fn processes_running(script: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|p| {
            Some((p.file_name().to_str()?.parse::<u32>().ok()?, std::fs::read(p.path().join("cmdline")).ok()?))
        })
        .filter(|(pid, cmdline)| !process_gone(*pid) && cmdline.split(|b| *b == 0).any(|arg| arg == script.as_bytes()))
        .map(|(pid, _)| pid)
        .collect()
}

/// The children of process `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Each bad program fails its run with a reason that names what went wrong, publishes
/// `model.training_failed` with its last lines, and makes no version; the trainer then trains the
/// next job. Bad code directories are refused at apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_programs_fail_their_run_with_the_reason_and_the_trainer_goes_on() {
    let app = start(&trainer_env(&[])).await;
    let cases = [
        ("code-hang", "import signal\nprint('waiting forever')\nsignal.pause()\n", "ran past its timeout of 2 s"),
        ("code-exit", "import sys\nprint('cannot read the data')\nsys.exit(3)\n", "exited with status 3"),
        ("code-nomodel", "print('forgot to save')\n", "wrote no model.onnx"),
        (
            "code-broken",
            "import os\nopen(os.path.join(os.environ['MLOPS_MODEL_DIR'], 'model.onnx'), 'wb').write(b'not onnx')\n",
            "not an ONNX model",
        ),
    ];
    let mut dirs = Vec::new();
    for (name, program, _) in cases {
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(work.path().join("train")).unwrap();
        std::fs::write(work.path().join("train/p.py"), program).unwrap();
        let training = "  code: {path: train, command: [python3, p.py]}\n  timeout_secs: 2\n";
        apply(&app, work.path(), &spec(name, training)).await;
        app.upload(name, &sample::csv(300, 5, Variant::Normal)).await;
        dirs.push(work);
    }
    for (name, program, reason) in cases {
        let failed = app.wait_event("model.training_failed", T, |s| s.pipeline == name).await;
        let Decoded::TrainingFailed(f) = failed.payload else { unreachable!() };
        assert!(f.error.contains(reason), "{name}: {}", f.error);
        let first_line = program.lines().find(|l| l.starts_with("print")).map(|l| l.split('\'').nth(1).unwrap());
        if let Some(line) = first_line {
            assert!(f.output_tail.contains(line), "{name}: {}", f.output_tail);
        }
        let run = app.runs().await.get(&f.job_id).await.unwrap().unwrap();
        assert_eq!(run.state, mlops_shared::runs::RunState::Failed, "{run:?}");
        assert!(client::models(&app.stack.remote("registry"), name).await.unwrap().is_empty());
    }
    // Requirements pip cannot resolve fail the run with pip's words, and are not kept.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("train")).unwrap();
    std::fs::write(work.path().join("train/p.py"), "print('never runs')\n").unwrap();
    std::fs::write(work.path().join("train/requirements.txt"), "no-such-package-for-mlops-tests==0.0.1\n").unwrap();
    let training = "  code: {path: train, command: [python, p.py]}\n  environment: {python: {requirements: train/requirements.txt}}\n";
    apply(&app, work.path(), &spec("code-pip", training)).await;
    app.upload("code-pip", &sample::csv(300, 5, Variant::Normal)).await;
    let failed = app.wait_event("model.training_failed", T, |s| s.pipeline == "code-pip").await;
    let Decoded::TrainingFailed(f) = failed.payload else { unreachable!() };
    assert!(f.error.contains("pip could not install the requirements"), "{}", f.error);
    assert!(f.error.contains("no-such-package-for-mlops-tests"), "{}", f.error);
    assert_eq!(f.attempt, 1, "a resolution failure is not retried");

    // The trainer goes on: the LightGBM example trains the next pipeline, its search one run of
    // the program per candidate.
    let work = tempfile::tempdir().unwrap();
    copy_example("code-lightgbm", &["train.py", "requirements.txt"], work.path());
    let yaml = std::fs::read_to_string(repo().join("examples/code-lightgbm/pipeline.yaml")).unwrap();
    apply(&app, work.path(), &yaml).await;
    app.upload("churn-lgbm", &sample::csv(1500, 9, Variant::Normal)).await;
    app.wait_event("model.promoted", FIRST, |s| s.pipeline == "churn-lgbm").await;
    let [t] = trained(&app, "churn-lgbm").try_into().expect("one model trained");
    assert!(t.environment.contains("lightgbm==4.6.0"), "{}", t.environment);
    let artifact = Sha256::parse(t.artifact_sha256).unwrap();
    let bytes = app.bus().await.objects(MODELS_BUCKET).await.unwrap().get_verified(&artifact).await.unwrap();
    let manifest = Stored::verified_manifest(&bytes, &artifact).unwrap();
    let search = manifest.search.expect("the search is recorded");
    let tried: Vec<f64> = search.candidates.iter().map(|c| c.params["num_leaves"]).collect();
    assert_eq!(tried, [7.0, 15.0, 31.0]);
    assert!(search.candidates.iter().all(|c| c.score.is_some_and(|s| s > 0.6)), "{search:?}");
    assert_eq!(manifest.params, search.candidates[search.best].params);
    assert_eq!(manifest.params["n_estimators"], 100.0);

    // Bad code directories never reach the platform.
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("train")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", bad.path().join("train/host.txt")).unwrap();
    let yaml = spec("code-bad", "  code: {path: train, command: [python3, p.py]}\n");
    std::fs::write(bad.path().join("pipeline.yaml"), &yaml).unwrap();
    let err = mlops_cli::code_bundle::for_spec(&bad.path().join("pipeline.yaml"), &yaml).unwrap_err();
    assert!(format!("{err:#}").contains("outside the code directory"), "{err:#}");
    let yaml = spec("code-bad", &with_env("[python, train.py]", ""));
    let err = mlops_cli::code_bundle::for_spec(&bad.path().join("pipeline.yaml"), &yaml).unwrap_err();
    assert!(
        format!("{err:#}").contains("requirements file") && format!("{err:#}").contains("does not exist"),
        "{err:#}"
    );
    // A spec with code but no bundle, sent as another client might: refused, naming the fix.
    let plain = client::apply_pipeline_with_code(&app.stack.remote("registry"), &yaml, None, None).await;
    assert!(format!("{:#}", plain.unwrap_err()).contains("no code bundle came with it"));
}

/// `mlops pipeline test` of a code-step pipeline, as CI runs it with no platform: the team's unit
/// tests run by pytest in the program's environment, the program trained on a sample, gated,
/// served and trained again; a failing unit test fails the model ring.
#[test]
fn pipeline_test_runs_the_teams_unit_tests_and_program() {
    let work = tempfile::tempdir().unwrap();
    example_code(work.path(), &[]);
    let spec = work.path().join("pipeline.yaml");
    std::fs::copy(repo().join("examples/code-sklearn/pipeline.yaml"), &spec).unwrap();
    let data = work.path().join("sample.csv");
    std::fs::write(&data, sample::csv(1500, 11, Variant::Normal)).unwrap();
    let junit = work.path().join("junit.xml");
    let run = || {
        let bin = mlops_cli::stack::StackOptions::beside_current_exe(work.path().into()).unwrap().bin_dir;
        let out = std::process::Command::new(bin.join("mlops"))
            .args(["pipeline", "test"])
            .arg(&spec)
            .arg("--data")
            .arg(&data)
            .arg("--junit")
            .arg(&junit)
            .env("MLOPS_TRAINER_ENV_DIR", target_dir().join("trainer-envs"))
            .output()
            .expect("running mlops");
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), said, std::fs::read_to_string(&junit).unwrap_or_default())
    };
    let case = |junit: &str, name: &str| {
        let needle = format!("name=\"{name}\"");
        junit.lines().find(|l| l.contains(&needle)).unwrap_or_else(|| panic!("no {name:?}:\n{junit}")).to_owned()
    };
    let (ok, said, xml) = run();
    assert!(ok, "{said}");
    assert!(case(&xml, "the code passes its unit tests").contains("3 passed"), "{xml}");
    for name in ["training on the sample", "gate roc_auc &gt;= 0.7", "the served model answers predictions"] {
        assert!(!case(&xml, name).contains("<failure"), "{name}: {xml}");
    }

    std::fs::write(work.path().join("train/tests/test_more.py"), "def test_the_rule():\n    assert 1 + 1 == 3\n")
        .unwrap();
    let (ok, said, xml) = run();
    assert!(!ok, "{said}");
    let unit = case(&xml, "the code passes its unit tests");
    assert!(unit.contains("<failure") && unit.contains("1 failed"), "{xml}");
}

/// `mlops pipeline promote` of a code-step pipeline: production receives staging's code bundle
/// from staging's store (the CI job has no copy of the code to send), stores the same revision,
/// and trains the same program on its own data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_carries_the_code_bundle_from_staging_to_production() {
    let env = trainer_env(&[]);
    let (staging, production) = tokio::join!(start(&env), start(&env));
    let work = tempfile::tempdir().unwrap();
    example_code(work.path(), &[]);
    let yaml = std::fs::read_to_string(repo().join("examples/code-sklearn/pipeline.yaml")).unwrap();
    apply(&staging, work.path(), &yaml).await;
    staging.upload("churn-code", &sample::csv(1500, 1, Variant::Normal)).await;
    let serving = |app: &TestApp| {
        let registry = app.stack.remote("registry");
        async move {
            let models = client::models(&registry, "churn-code").await.ok()?;
            models.into_iter().find(|m| m.aliases.iter().any(|a| a == "production"))
        }
    };
    let staged = wait_until(FIRST, || serving(&staging)).await.expect("staging serves the program's model");
    let environments = work.path().join("environments.yaml");
    let urls =
        |app: &TestApp| format!("{{nats_url: {}, registry_url: {}}}", app.stack.nats_url, app.stack.url("registry"));
    let text = format!("environments:\n  staging: {}\n  production: {}\n", urls(&staging), urls(&production));
    std::fs::write(&environments, text).unwrap();
    let out = std::process::Command::new(staging.stack.opts.bin_dir.join("mlops"))
        .args(["pipeline", "promote", "churn-code", "--from", "staging", "--to", "production"])
        .env("MLOPS_ENVIRONMENTS", &environments)
        .output()
        .expect("running mlops");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let hash = |app: &TestApp| {
        let registry = app.stack.remote("registry");
        async move {
            let mut c = client::registry(&registry).await.unwrap();
            let req = mlops_proto::GetPipelineRequest { name: "churn-code".into(), spec_hash: String::new() };
            c.get_pipeline(req).await.unwrap().into_inner().spec_hash
        }
    };
    assert_eq!(hash(&production).await, hash(&staging).await);
    production.upload("churn-code", &sample::csv(1500, 2, Variant::Normal)).await;
    let promoted = wait_until(T, || serving(&production)).await.expect("production serves the program's model");
    let code = |m: &mlops_proto::ModelVersion| m.lineage.as_ref().map(|l| l.code_version.clone());
    assert_eq!(code(&promoted), code(&staged));
    assert!(code(&promoted).is_some_and(|c| c.starts_with("code sha256:")), "{promoted:?}");
}
