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
            ca: None,
            cert: None,
            key: None,
            replicas: 1,
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
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("replicas", &self.replicas)
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

#[cfg(test)]
mod tests {
    use super::*;

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
