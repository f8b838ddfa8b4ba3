//! `mlops reproduce`: a model version retrained from its lineage alone is identical, bit for bit,
//! even after its pipeline's spec changed and every service restarted. And the registry's view of
//! lineage (both ways), aliases, tags, descriptions and search, with the audit log of it all.

use std::path::Path;
use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_cli::stack::SERVICES;
use mlops_integration_tests::{TestApp, sample, wait_until};
use mlops_proto as pb;
use sample::Variant;

const T: Duration = Duration::from_secs(60);

/// Runs `mlops` with `args`; (success, stdout + stderr).
fn run(mlops: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(mlops).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The platform with a pipeline of boosted trees on a window of two versions, after two uploads:
/// the spec, the second model (trained on both datasets) and its version number.
async fn trained_on_two_datasets() -> (TestApp, String, pb::ModelTrained, u64) {
    let app = TestApp::start().await;
    let spec = mlops_cli::EXAMPLE_SPEC
        .replace(
            "  algorithm: logistic_regression\n  params: {l2: 1.0, max_iter: 50}",
            "  algorithm: gradient_boosting\n  params: {trees: 30, min_data_in_leaf: 10}",
        )
        .replace("  holdout: 0.2\n", "  holdout: 0.2\n  window: {versions: 2}\n");
    app.apply(&spec).await;
    app.upload("churn", &sample::csv(1200, 31, Variant::Normal)).await;
    app.wait_event("model.trained", T, |_| true).await;
    app.upload("churn", &sample::csv(1200, 32, Variant::Normal)).await;
    let second = app
        .wait_event("model.trained", T, |s| matches!(&s.payload, Decoded::Trained(t) if t.dataset_ids.len() == 2))
        .await;
    let Decoded::Trained(second) = second.payload else { unreachable!() };
    let version = wait_until(T, || async {
        let versions = mlops_integration_tests::client::models(&app.stack.url("registry"), "churn").await.ok()?;
        versions.iter().find(|v| v.artifact_sha256 == second.artifact_sha256).map(|v| v.version)
    })
    .await
    .expect("the second model registered");
    (app, spec, second, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_retrained_from_its_lineage_is_identical_across_a_restart_of_every_service() {
    let (mut app, spec, second, version) = trained_on_two_datasets().await;
    // The spec moves on: the lineage's spec is an earlier revision now.
    app.apply(&spec.replace("window: 200", "window: 300")).await;

    // Every service restarts, the registry first (the others are told its new address).
    for service in SERVICES {
        app.stack.kill(service).await.unwrap();
        app.stack.spawn(service, service, &[]).await.unwrap();
    }
    app.stack.wait_healthy(T).await.unwrap();

    let mlops = app.stack.opts.bin_dir.join("mlops");
    let registry = app.stack.url("registry");
    let cli = |target: &str| {
        run(&mlops, &["--nats-url", &app.stack.nats_url, "--registry-url", &registry, "reproduce", target])
    };
    let (ok, said) = cli(&format!("churn@{version}"));
    assert!(ok, "{said}");
    assert!(said.contains("identical") && said.contains(&second.artifact_sha256), "{said}");
    assert!(said.contains("2 dataset(s)") && said.contains(&second.spec_hash[..12]), "{said}");

    let (ok, said) = cli("churn@99");
    assert!(!ok && said.contains("has no version 99"), "{said}");
    let (ok, said) = cli("nope@1");
    assert!(!ok && said.contains("nope"), "{said}");
    let (ok, said) = cli("churn");
    assert!(!ok && said.contains("PIPELINE@VERSION"), "{said}");
    let (ok, audit) = run(&mlops, &["--registry-url", &registry, "models", "audit", "churn"]);
    let applied = audit.lines().filter(|l| l.contains("pipeline.applied")).count();
    assert!(ok && applied == 2, "both revisions of the spec are in the audit log: {audit}");
}

/// Lineage both ways, an alias set by hand, tags, a description and search, and the audit log
/// that records it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_shows_lineage_both_ways_and_audits_aliases_tags_and_descriptions() {
    let (app, _, second, version) = trained_on_two_datasets().await;
    let mlops = app.stack.opts.bin_dir.join("mlops");
    let registry = app.stack.url("registry");
    let models = |args: &[&str]| run(&mlops, &[&["--registry-url", registry.as_str(), "models"], args].concat());
    let target = format!("churn@{version}");
    let (ok, lineage) = models(&["lineage", &target]);
    assert!(ok && lineage.contains(&second.dataset_ids[0]) && lineage.contains(&second.dataset_ids[1]), "{lineage}");
    assert!(lineage.contains("reason      new_data") && lineage.contains(&second.spec_hash), "{lineage}");
    let (ok, used) = models(&["used-by", &second.dataset_ids[0]]);
    assert!(ok && used.contains("churn@1") && used.contains(&target), "the first dataset made both: {used}");
    let (ok, used) = models(&["used-by", &second.dataset_ids[1]]);
    assert!(ok && !used.contains("churn@1 ") && used.contains(&target), "{used}");
    let (ok, shown) = models(&["show", &target]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap_or_else(|e| panic!("{e}: {shown}"));
    assert!(ok && shown["lineage"]["dataset_ids"].as_array().unwrap().len() == 2, "{shown}");
    let (ok, said) = models(&["alias", &target, "champion-eu", "--reason", "EU launch", "--by", "ana"]);
    assert!(ok && said.contains("champion-eu"), "{said}");
    let (ok, said) = models(&["alias", "churn@99", "x"]);
    assert!(!ok && said.contains("has no version 99"), "{said}");
    // Tags, a description, and search by tag and by metric.
    let (ok, said) = models(&["tag", &target, "team=growth", "region=eu", "--by", "ana"]);
    assert!(ok && said.contains("region=eu, team=growth"), "{said}");
    let (ok, said) = models(&["tag", &target, "--remove", "region"]);
    assert!(ok && said.contains("team=growth") && !said.contains("region"), "{said}");
    let (ok, said) = models(&["describe", &target, "Boosted trees on two weeks of data"]);
    assert!(ok && said.contains("two weeks"), "{said}");
    let (ok, found) = models(&["list", "--pipeline", "churn", "--tag", "team=growth", "--json"]);
    let found: serde_json::Value = serde_json::from_str(&found).unwrap_or_else(|e| panic!("{e}: {found}"));
    assert!(ok && found.as_array().unwrap().len() == 1 && found[0]["version"] == version, "{found}");
    assert_eq!(found[0]["description"], "Boosted trees on two weeks of data");
    let auc = shown["metrics"]["roc_auc"].as_f64().unwrap();
    let (_, above) = models(&["list", "--pipeline", "churn", "--metric", &format!("roc_auc>={auc}"), "--json"]);
    let above: serde_json::Value = serde_json::from_str(&above).unwrap();
    assert!(above.as_array().unwrap().iter().any(|v| v["version"] == version), "{above}");
    let (_, none) = models(&["list", "--pipeline", "churn", "--metric", "roc_auc>1", "--json"]);
    assert_eq!(none.trim(), "[]");
    let (ok, said) = models(&["list", "--pipeline", "churn", "--metric", "roc_auc~1"]);
    assert!(!ok && said.contains("expected METRIC OP NUMBER"), "{said}");
    let (ok, said) = models(&["tag", &target, "oops"]);
    assert!(!ok && said.contains("expected KEY=VALUE"), "{said}");
    let (ok, audit) = models(&["audit", "churn"]);
    assert!(ok, "{audit}");
    let applied = audit.lines().filter(|l| l.contains("pipeline.applied")).count();
    assert_eq!(applied, 1, "{audit}");
    let alias = audit.lines().find(|l| l.contains("champion-eu")).unwrap_or_else(|| panic!("{audit}"));
    assert!(alias.contains("EU launch") && alias.contains("by ana"), "{alias}");
    let tagged = audit.lines().find(|l| l.contains("tag team=growth")).unwrap_or_else(|| panic!("{audit}"));
    assert!(tagged.contains("model.updated") && tagged.contains("by ana"), "{tagged}");
    let (ok, said) = models(&["audit", "nope"]);
    assert!(!ok && said.contains("nope"), "{said}");
}
