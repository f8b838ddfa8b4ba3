//! Named platforms, as kubectl has contexts: a small YAML file lists each environment's endpoints
//! (`staging`, `production`), and `mlops --env NAME` talks to that one. Secrets stay out of the
//! file: it names the variable that holds the admin token.
//!
//! ```yaml
//! environments:
//!   staging:
//!     nats_url: nats://staging.internal:4222
//!     registry_url: http://staging.internal:50051
//!     admin_token_env: STAGING_ADMIN_TOKEN
//!   production:
//!     nats_url: nats://prod.internal:4222
//!     registry_url: https://registry.prod.internal:50051
//!     tls_ca: prod-ca.pem
//!     nats_ca: prod-ca.pem
//!     object_store: s3://prod-lake/mlops
//!     admin_token_env: PRODUCTION_ADMIN_TOKEN
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::client::Remote;

/// The variable naming the environments file.
pub const FILE_ENV: &str = "MLOPS_ENVIRONMENTS";

/// One platform's endpoints; what is left out is the default (a local platform's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub nats_url: Option<String>,
    /// A NATS credentials file, for the commands that read the bus (relative to the file).
    pub nats_creds: Option<PathBuf>,
    /// PEM CA certificates for a NATS server that requires TLS (relative to the file).
    pub nats_ca: Option<PathBuf>,
    pub registry_url: Option<String>,
    pub ingest_url: Option<String>,
    pub deployer_url: Option<String>,
    pub evaluator_url: Option<String>,
    pub monitor_url: Option<String>,
    /// The name of the variable holding the admin token for mutating calls.
    pub admin_token_env: Option<String>,
    /// PEM CA certificates for https:// endpoints (relative to the file).
    pub tls_ca: Option<PathBuf>,
    /// The services' `MLOPS_OBJECT_STORE`, when the platform keeps its blobs outside NATS.
    pub object_store: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    environments: BTreeMap<String, Environment>,
}

/// Where the environments file is: `MLOPS_ENVIRONMENTS`, else `$XDG_CONFIG_HOME/mlops/`, else
/// `~/.config/mlops/`, `environments.yaml`.
pub fn file_path() -> PathBuf {
    if let Some(p) = std::env::var_os(FILE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("mlops").join("environments.yaml")
}

/// The environment `name` of the environments file, its relative paths resolved against the
/// file's directory. Unknown names and unreadable files are errors that name the file.
pub fn load(name: &str) -> anyhow::Result<Environment> {
    let path = file_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("environment `{name}`: cannot read the environments file {} (set {FILE_ENV})", path.display())
    })?;
    let file: File =
        serde_norway::from_str(&text).with_context(|| format!("the environments file {}", path.display()))?;
    let known = file.environments.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut env = file.environments.get(name).cloned().with_context(|| {
        format!(
            "unknown environment `{name}`: {} defines {}",
            path.display(),
            if known.is_empty() { "none" } else { &known }
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut env.tls_ca, &mut env.nats_creds, &mut env.nats_ca].into_iter().flatten() {
        *p = base.join(&*p);
    }
    Ok(env)
}

/// Every endpoint the CLI talks to, resolved.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub nats_url: String,
    pub nats_creds: Option<PathBuf>,
    pub nats_ca: Option<PathBuf>,
    pub registry: Remote,
    pub ingest: Remote,
    pub deployer: Remote,
    pub evaluator: Remote,
    pub monitor: Remote,
    pub admin_token: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub object_store: Option<String>,
}

/// What the command line (or its variables) gave.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub nats_url: Option<String>,
    pub registry_url: Option<String>,
    pub ingest_url: Option<String>,
    pub deployer_url: Option<String>,
    pub evaluator_url: Option<String>,
    pub monitor_url: Option<String>,
    pub admin_token: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub object_store: Option<String>,
}

impl Endpoints {
    /// Each endpoint: as given, else the environment's, else the local default.
    pub fn resolve(given: Given, env: Option<&Environment>) -> Self {
        let env = env.cloned().unwrap_or_default();
        // A variable that is not set gives no token: reading needs none, and a mutating call is
        // refused by the service, which says so.
        let token = given.admin_token.or_else(|| env.admin_token_env.and_then(|var| std::env::var(var).ok()));
        let tls_ca = given.tls_ca.or(env.tls_ca);
        let remote = |url: Option<String>, from_env: Option<String>, default: &str| {
            Remote::new(url.or(from_env).unwrap_or_else(|| default.to_owned()), tls_ca.clone())
        };
        Self {
            nats_url: given.nats_url.or(env.nats_url).unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            nats_creds: env.nats_creds,
            nats_ca: env.nats_ca,
            registry: remote(given.registry_url, env.registry_url, "http://127.0.0.1:50051"),
            ingest: remote(given.ingest_url, env.ingest_url, "http://127.0.0.1:50052"),
            deployer: remote(given.deployer_url, env.deployer_url, "http://127.0.0.1:8080"),
            evaluator: remote(given.evaluator_url, env.evaluator_url, "http://127.0.0.1:9103"),
            monitor: remote(given.monitor_url, env.monitor_url, "http://127.0.0.1:9104"),
            admin_token: token,
            tls_ca,
            object_store: given.object_store.or(env.object_store),
        }
    }

    /// How to reach the bus: the URL, with the environment's credentials and CA.
    pub fn nats(&self) -> mlops_shared::config::NatsArgs {
        let mut nats = mlops_shared::config::NatsArgs::local(self.nats_url.clone());
        nats.creds = self.nats_creds.clone();
        nats.ca = self.nats_ca.clone();
        nats.object_store = self.object_store.clone();
        nats
    }

    /// The endpoints of the environment `name`, nothing given on the command line.
    pub fn of(name: &str) -> anyhow::Result<Self> {
        Ok(Self::resolve(Given::default(), Some(&load(name)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_endpoints_win_over_the_environments_and_defaults_fill_the_rest() {
        let env = Environment {
            registry_url: Some("http://staging:50051".into()),
            nats_url: Some("nats://staging:4222".into()),
            ..Default::default()
        };
        let given = Given { nats_url: Some("nats://here:4222".into()), ..Default::default() };
        let e = Endpoints::resolve(given, Some(&env));
        assert_eq!(e.nats_url, "nats://here:4222");
        assert_eq!(e.registry.url, "http://staging:50051");
        assert_eq!(e.ingest.url, "http://127.0.0.1:50052");
    }

    #[test]
    fn the_token_comes_from_the_variable_the_environment_names() {
        let env = Environment { admin_token_env: Some("PATH".into()), ..Default::default() };
        assert_eq!(Endpoints::resolve(Given::default(), Some(&env)).admin_token, std::env::var("PATH").ok());
        let unset = Environment { admin_token_env: Some("MLOPS_TEST_NO_SUCH_TOKEN_VAR".into()), ..Default::default() };
        assert_eq!(Endpoints::resolve(Given::default(), Some(&unset)).admin_token, None);
        let given = Given { admin_token: Some("t".into()), ..Default::default() };
        assert_eq!(Endpoints::resolve(given, Some(&env)).admin_token.as_deref(), Some("t"));
    }

    #[test]
    fn the_file_is_strict_about_its_keys() {
        let err = serde_norway::from_str::<File>("environments: {staging: {registry: x}}").unwrap_err();
        assert!(err.to_string().contains("unknown field `registry`"), "{err}");
    }
}
