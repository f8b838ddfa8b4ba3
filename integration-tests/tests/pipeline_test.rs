//! `mlops pipeline test`, run as CI runs it: the `mlops` binary, no platform, a spec and a sample
//! on disk. Its exit status, its JUnit XML and the tests in it, for a good pipeline and for each
//! way one can be bad. (The code-step pipeline's unit tests and program: `code_steps.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use mlops_cli::sample::{self, Variant};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/churn.yaml")
}

/// What one run gave: success, its report, and the JUnit XML it wrote.
struct Run {
    ok: bool,
    said: String,
    junit: String,
}

impl Run {
    /// The `<testcase>` line named `name`.
    fn case(&self, name: &str) -> &str {
        let needle = format!("name=\"{name}\"");
        self.junit.lines().find(|l| l.contains(&needle)).unwrap_or_else(|| panic!("no test {name:?}:\n{}", self.junit))
    }

    fn passed(&self, name: &str) -> bool {
        let case = self.case(name);
        !case.contains("<failure") && !case.contains("<skipped")
    }
}

fn run(dir: &Path, spec: &Path, args: &[&str]) -> Run {
    let junit = dir.join("junit.xml");
    let bin = mlops_cli::stack::StackOptions::beside_current_exe(dir.to_path_buf()).expect("the binaries").bin_dir;
    let out = Command::new(bin.join("mlops"))
        .args(["pipeline", "test"])
        .arg(spec)
        .args(args)
        .arg("--junit")
        .arg(&junit)
        .output()
        .expect("running mlops");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Run { ok: out.status.success(), said, junit: std::fs::read_to_string(&junit).unwrap_or_default() }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing");
    path.display().to_string()
}

#[test]
fn a_good_pipeline_passes_every_ring_and_a_bound_it_misses_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "sample.csv", &sample::csv(2000, 7, Variant::Normal));
    let good = run(dir.path(), &example(), &["--data", &data, "--expect", "roc_auc=0.7", "--expect", "log_loss=0.7"]);
    assert!(good.ok, "{}", good.said);
    for name in [
        "the spec is valid",
        "the sample sample.csv passes the data checks",
        "training on the sample",
        "gate roc_auc &gt;= 0.7",
        "gate accuracy &gt;= 0.65",
        "expect roc_auc &gt;= 0.7",
        "expect log_loss &lt;= 0.7",
        "the model loads in the serving engine",
        "the served model answers predictions",
        "retraining reproduces the model bit for bit",
    ] {
        assert!(good.passed(name), "{name}: {}", good.junit);
    }
    assert!(good.case("gate roc_auc against production").contains("<skipped"), "{}", good.junit);
    for ring in ["data", "model", "infrastructure"] {
        assert!(good.junit.contains(&format!("<testsuite name=\"{ring}\"")), "{}", good.junit);
    }

    let missed = run(dir.path(), &example(), &["--data", &data, "--expect", "roc_auc=0.99"]);
    assert!(!missed.ok);
    assert!(missed.case("expect roc_auc &gt;= 0.99").contains("<failure"), "{}", missed.junit);
    assert!(missed.passed("retraining reproduces the model bit for bit"), "{}", missed.junit);
}

#[test]
fn each_bad_input_fails_the_test_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "sample.csv", &sample::csv(2000, 7, Variant::Normal));

    let typo = write(dir.path(), "typo.yaml", "name: churn\nfeatures: [{name: x, type: numberic}]\n");
    let r = run(dir.path(), Path::new(&typo), &["--data", &data]);
    assert!(!r.ok && r.case("the spec is valid").contains("unknown variant `numberic`"), "{}", r.junit);
    assert!(r.case("training on the sample").contains("<skipped message=\"the spec is not valid\""), "{}", r.junit);

    let churn = std::fs::read_to_string(example()).unwrap();
    let training = "training:\n  code: {path: train, command: [python, train.py]}\n";
    let codeless = churn.replace("training:\n", training).replace("  algorithm: logistic_regression\n", "");
    let codeless = write(dir.path(), "codeless.yaml", &codeless);
    let r = run(dir.path(), Path::new(&codeless), &["--data", &data]);
    assert!(!r.ok && r.case("the spec is valid").contains("train is not a directory"), "{}", r.junit);

    let missing = dir.path().join("nope.csv").display().to_string();
    let r = run(dir.path(), &example(), &["--data", &missing]);
    assert!(!r.ok && r.case("the sample nope.csv passes the data checks").contains("No such file"), "{}", r.junit);

    // Charges past the spec's bound, on every row: the validator blocks the sample.
    let csv = sample::csv(300, 7, Variant::Normal);
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let bad: Vec<String> = lines
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f[2] = "9999";
            f.join(",")
        })
        .collect();
    let blocked = write(dir.path(), "blocked.csv", &format!("{header}\n{}\n", bad.join("\n")));
    let r = run(dir.path(), &example(), &["--data", &blocked]);
    let case = r.case("the sample blocked.csv passes the data checks");
    assert!(!r.ok && case.contains("monthly_charges"), "{}", r.junit);
    assert!(r.case("training on the sample").contains("a sample failed its data checks"), "{}", r.junit);

    let r = run(dir.path(), &example(), &["--data", &data, "--expect", "rmse=1"]);
    assert!(!r.ok && r.case("expect rmse").contains("not a metric of binary classification"), "{}", r.junit);

    // No sample: the spec alone is checked, and the rest is said to be skipped.
    let r = run(dir.path(), &example(), &[]);
    assert!(r.ok && r.case("the data checks").contains("no sample given"), "{}", r.junit);
}
