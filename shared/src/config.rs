//! Configuration shared by every service, from flags and `MLOPS_*` environment variables.
//! Secrets (passwords, tokens) are never printed: their env values are hidden from `--help` and
//! `Debug` redacts them.

use std::fmt;
use std::path::PathBuf;

/// How to reach NATS.
#[derive(clap::Args, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long = "nats-url", env = "MLOPS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,
    /// A NATS credentials file (JWT + nkey seed).
    #[arg(long = "nats-creds", env = "MLOPS_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// User name for user/password authentication.
    #[arg(long = "nats-user", env = "MLOPS_NATS_USER")]
    pub user: Option<String>,
    /// Password for user/password authentication.
    #[arg(long = "nats-password", env = "MLOPS_NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Token authentication.
    #[arg(long = "nats-token", env = "MLOPS_NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An nkey seed (`SU…`) for nkey authentication: the server knows only its public key.
    #[arg(long = "nats-nkey", env = "MLOPS_NATS_NKEY", hide_env_values = true)]
    pub nkey: Option<String>,
    /// A PEM file of CA certificates to trust for TLS.
    #[arg(long = "nats-ca", env = "MLOPS_NATS_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `--nats-key`.
    #[arg(long = "nats-cert", env = "MLOPS_NATS_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long = "nats-key", env = "MLOPS_NATS_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Replicas of each stream and bucket created at start-up: 1 on one server, 3 on a cluster.
    #[arg(long = "nats-replicas", env = "MLOPS_NATS_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Where datasets, artifacts, code bundles and batch outputs live, when not in the NATS
    /// object store: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///path`, with credentials from the provider's usual environment variables.
    #[arg(long = "object-store", env = "MLOPS_OBJECT_STORE")]
    pub object_store: Option<String>,
}

impl NatsArgs {
    /// Settings for a server at `url` with no authentication, as tests and `mlops up` use.
    pub fn local(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            creds: None,
            user: None,
            password: None,
            token: None,
            nkey: None,
            ca: None,
            cert: None,
            key: None,
            replicas: 1,
            object_store: None,
        }
    }
}

impl fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsArgs")
            .field("url", &self.url)
            .field("creds", &self.creds)
            .field("user", &self.user)
            .field("password", &redact(&self.password))
            .field("token", &redact(&self.token))
            .field("nkey", &redact(&self.nkey))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("replicas", &self.replicas)
            .field("object_store", &self.object_store)
            .finish()
    }
}

/// The registry's gRPC address, for services that ask it about models.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Registry gRPC endpoint.
    #[arg(long = "registry-url", env = "MLOPS_REGISTRY_URL", default_value = "http://127.0.0.1:50051")]
    pub registry_url: String,
}

/// Who may change what a service does: mutating calls need `authorization: Bearer <token>`
/// when a token is configured.
#[derive(clap::Args, Clone, Default)]
pub struct AdminArgs {
    /// The bearer token that mutating calls (deploy, rollback, traffic, …) must carry; none
    /// needed when unset.
    #[arg(long = "admin-token", env = "MLOPS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl fmt::Debug for AdminArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminArgs").field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl AdminArgs {
    /// Lets a request through when no token is configured or it carries the token; otherwise
    /// UNAUTHENTICATED, naming what is missing (never the token).
    pub fn authorize(&self, metadata: &tonic::metadata::MetadataMap, call: &str) -> Result<(), tonic::Status> {
        let Some(token) = self.admin_token.as_deref().filter(|t| !t.is_empty()) else { return Ok(()) };
        let given = metadata.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(tonic::Status::unauthenticated(format!("{call}: the bearer token is not the admin token"))),
            None => Err(tonic::Status::unauthenticated(format!(
                "{call} needs `authorization: Bearer <admin token>` (mlops --admin-token, MLOPS_ADMIN_TOKEN)"
            ))),
        }
    }
}

/// Equality that takes as long whatever the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `message` as a request carrying `token` as a bearer token, when there is one.
pub fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = crate::telemetry::traced(message);
    if let Some(t) = token.filter(|t| !t.is_empty())
        && let Ok(v) = format!("Bearer {t}").parse()
    {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_calls_need_the_token_when_one_is_set() {
        let open = AdminArgs::default();
        let empty = tonic::metadata::MetadataMap::new();
        assert!(open.authorize(&empty, "Deploy").is_ok());
        let guarded = AdminArgs { admin_token: Some("s3cret".into()) };
        let err = guarded.authorize(&empty, "Deploy").unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("Deploy needs `authorization: Bearer"), "{}", err.message());
        let wrong = with_token((), Some("guess"));
        assert!(guarded.authorize(wrong.metadata(), "Deploy").unwrap_err().message().contains("not the admin token"));
        assert!(guarded.authorize(with_token((), Some("s3cret")).metadata(), "Deploy").is_ok());
        assert!(!format!("{guarded:?}").contains("s3cret"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut args = NatsArgs::local("nats://x");
        args.password = Some("hunter2".into());
        args.token = Some("s3cret-token".into());
        let shown = format!("{args:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
