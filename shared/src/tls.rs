//! TLS on every service's one port, gRPC and HTTP alike: a service given `--tls-cert` and
//! `--tls-key` (PEM) serves only TLS, offering h2 and http/1.1 by ALPN; a client reaching an
//! `https://` URL trusts the CA file named by `--tls-ca` / `MLOPS_TLS_CA`, passed to it
//! explicitly ([`endpoint`]), or the system's roots.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client that has not finished its handshake by then is dropped, so it holds no slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings of a service: its own certificate, and the CA it trusts when it calls another.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate chain: serve gRPC and HTTP over TLS on the listen port (needs --tls-key).
    #[arg(long = "tls-cert", env = "MLOPS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key", env = "MLOPS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates to trust when calling another service at an https:// URL (default:
    /// the system's roots).
    #[arg(long = "tls-ca", env = "MLOPS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The server configuration, `None` without a certificate; a half-given pair or an unreadable
    /// file is an error naming the setting.
    pub fn server_config(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => return Ok(None),
            (Some(_), None) => bail!("MLOPS_TLS_CERT (--tls-cert) is set but MLOPS_TLS_KEY (--tls-key) is not"),
            (None, Some(_)) => bail!("MLOPS_TLS_KEY (--tls-key) is set but MLOPS_TLS_CERT (--tls-cert) is not"),
            (Some(c), Some(k)) => (c, k),
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| anyhow::anyhow!("MLOPS_TLS_CERT {}: {e}", cert.display()))?;
        if chain.is_empty() {
            bail!("MLOPS_TLS_CERT {}: no PEM certificate in the file", cert.display());
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("MLOPS_TLS_KEY {}: {e}", key.display()))?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .context("MLOPS_TLS_CERT and MLOPS_TLS_KEY do not make a usable certificate")?;
        // gRPC clients insist on h2 by ALPN; browsers and curl may take either.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// The PEM bytes of the CA file at `path`, or an error naming the setting.
pub fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the TLS CA file {} (MLOPS_TLS_CA)", path.display()))
}

/// A gRPC endpoint for `url`: plain for `http://`, TLS for `https://` trusting the PEM CA
/// certificates in the file `ca` or, without one, the system's roots.
pub fn endpoint(url: &str, ca: Option<&Path>) -> anyhow::Result<tonic::transport::Endpoint> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let endpoint = Endpoint::from_shared(url.to_owned()).with_context(|| format!("invalid URL {url:?}"))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let tls = match ca.map(read_ca).transpose()? {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    endpoint.tls_config(tls).with_context(|| format!("TLS settings for {url}"))
}

/// Accepts TCP connections and completes their TLS handshakes off the accept loop, so one slow
/// or hostile client never holds up the others.
pub(crate) struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, handshaken) = mpsc::channel(256);
        let accept_loop = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { handshaken, local, accept_loop })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(conn) => conn,
            // The accept loop holds a sender until this listener drops it, so this never comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_pair_and_unreadable_files_are_refused_by_name() {
        let only_cert = TlsArgs { tls_cert: Some("/nonexistent/cert.pem".into()), ..TlsArgs::default() };
        let e = only_cert.server_config().unwrap_err().to_string();
        assert!(e.contains("MLOPS_TLS_KEY"), "{e}");
        let only_key = TlsArgs { tls_key: Some("/nonexistent/key.pem".into()), ..TlsArgs::default() };
        let e = only_key.server_config().unwrap_err().to_string();
        assert!(e.contains("MLOPS_TLS_CERT"), "{e}");
        let missing = TlsArgs {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            tls_ca: None,
        };
        let e = missing.server_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
        let dir = tempfile::tempdir().expect("temp dir");
        let not_pem = dir.path().join("cert.pem");
        std::fs::write(&not_pem, "hello").expect("write");
        let e = TlsArgs { tls_cert: Some(not_pem), tls_key: Some("/nonexistent/key.pem".into()), tls_ca: None }
            .server_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        assert!(TlsArgs::default().server_config().expect("no tls is fine").is_none());
    }
}
