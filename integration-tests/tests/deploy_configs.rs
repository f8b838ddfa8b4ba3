//! Every deployment file parses: YAML (Kubernetes, kustomize, compose), JSON (Grafana) and the
//! NATS server configurations, which nats-server itself checks with `-t`.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn deploy_files(ext: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut all = Vec::new();
    files(&root, &mut all);
    all.into_iter().filter(|p| p.extension().is_some_and(|e| e == ext)).collect()
}

#[test]
fn yaml_manifests_parse() {
    use serde::Deserialize as _;
    let yamls = [deploy_files("yaml"), deploy_files("yml")].concat();
    assert!(yamls.len() >= 10, "{yamls:?}");
    let mut kinds = Vec::new();
    for path in yamls {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = serde_norway::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(kind) = value.get("kind").and_then(|k| k.as_str()) {
                kinds.push(kind.to_owned());
            }
        }
    }
    for expected in ["Deployment", "StatefulSet", "Service", "Kustomization", "Namespace"] {
        assert!(kinds.iter().any(|k| k == expected), "no {expected} among {kinds:?}");
    }
}

#[test]
fn trainers_are_a_scalable_deployment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/base");
    let text = std::fs::read_to_string(root.join("trainer.yaml")).unwrap();
    assert!(text.contains("kind: Deployment") && text.contains("replicas:"), "{text}");
}

#[test]
fn services_on_kubernetes_log_json_for_the_collector() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/base");
    let kustomization = std::fs::read_to_string(base.join("kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- MLOPS_LOG_FORMAT=json"), "{kustomization}");
    // Every service reads the common settings.
    for service in mlops_cli::stack::SERVICES {
        let manifest = std::fs::read_to_string(base.join(format!("{service}.yaml"))).unwrap();
        assert!(manifest.contains("name: mlops-common"), "{service}.yaml does not read mlops-common");
    }
}

#[test]
fn json_files_parse() {
    let jsons = deploy_files("json");
    assert!(!jsons.is_empty());
    for path in jsons {
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn nats_configs_are_valid_for_nats_server() {
    let confs = deploy_files("conf");
    assert!(confs.len() >= 4, "one node and a three-node cluster: {confs:?}");
    for path in confs {
        // authorization.conf reads its passwords from the server's environment.
        let passwords =
            ["INGEST", "VALIDATOR", "TRAINER", "EVALUATOR", "REGISTRY", "DEPLOYER", "MONITOR", "PRODUCER", "ADMIN"]
                .map(|u| (format!("MLOPS_NATS_PASSWORD_{u}"), "test"));
        let out = std::process::Command::new(mlops_cli::stack::nats_server_binary())
            .envs(passwords)
            .arg("-c")
            .arg(&path)
            .arg("-t")
            .output()
            .expect("nats-server on PATH");
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric the Grafana dashboard queries is one the code exports (by its name in a
/// `metrics::` macro), so a renamed metric cannot leave a panel empty.
#[test]
fn the_dashboard_queries_only_metrics_the_services_export() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = Vec::new();
    for dir in ["services", "shared/src"] {
        files(&root.join(dir), &mut sources);
    }
    let code: String = sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/mlops-dashboard.json")).unwrap();
    let mut names: Vec<&str> = dashboard
        .match_indices("mlops_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = &rest[..end];
            // Histograms are queried through their series.
            name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count")
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(code.contains(&format!("\"{name}\"")), "the dashboard queries `{name}`, which no service exports");
    }
}
