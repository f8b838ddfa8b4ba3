//! NATS itself locked down: mutual TLS with a private CA and nkey logins, and token logins. The
//! whole cascade runs through a server configured so; a client without a certificate, with an
//! unknown nkey, speaking plain text or with a wrong token is refused; no secret reaches a log.

use std::time::Duration;

use mlops_cli::stack::SERVICES;
use mlops_integration_tests::{Certificates, TestApp, sample};
use sample::Variant;

const T: Duration = Duration::from_secs(120);

async fn refused(opts: async_nats::ConnectOptions, url: &str) -> String {
    let addrs = mlops_shared::bus::server_addrs(url).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), opts.connect(addrs)).await {
        Ok(Ok(_)) => panic!("a client that should be refused connected"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".into(),
    }
}

/// What a server answers a client that sends CONNECT in plain text.
async fn plain_text_connect(url: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = url.rsplit("://").next().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut said = Vec::new();
    let _ = tcp.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await;
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut said)).await;
    assert!(closed.is_ok(), "the server kept a plain-text client connected");
    String::from_utf8_lossy(&said).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_nkeys_let_only_the_platform_in() {
    let dir = tempfile::tempdir().unwrap();
    let c = Certificates::make(dir.path());
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}\n\
             authorization {{\n  users: [ {{ nkey: {} }} ]\n}}\n",
            c.server_cert,
            c.server_key,
            c.ca,
            user.public_key()
        ),
    )
    .unwrap();
    let env = [
        ("MLOPS_NATS_CA", c.ca.as_str()),
        ("MLOPS_NATS_CERT", c.client_cert.as_str()),
        ("MLOPS_NATS_KEY", c.client_key.as_str()),
        ("MLOPS_NATS_NKEY", seed.as_str()),
    ];
    let client = |with_cert: bool, seed: String| {
        let opts =
            async_nats::ConnectOptions::new().add_root_certificates(c.ca.clone().into()).require_tls(true).nkey(seed);
        if with_cert {
            opts.add_client_certificate(c.client_cert.clone().into(), c.client_key.clone().into())
        } else {
            opts
        }
    };
    let app = TestApp::start_custom(
        &env,
        |opts| opts.nats_config = Some((config.clone(), vec![])),
        client(true, seed.clone()),
    )
    .await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 701, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    assert!(app.nats.server_info().tls_required, "the server does not require TLS");

    let url = app.stack.nats_url.clone();
    let no_cert = refused(client(false, seed.clone()), &url).await;
    assert!(no_cert.to_lowercase().contains("certificate"), "no client certificate: {no_cert}");
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let unknown = refused(client(true, stranger), &url).await;
    assert!(unknown.to_lowercase().contains("authoriz"), "an unknown nkey: {unknown}");
    let untrusting = refused(async_nats::ConnectOptions::new().nkey(seed.clone()), &url).await;
    assert!(untrusting.contains("UnknownIssuer"), "a client not trusting the CA: {untrusting}");
    // Plain text, as a client that never starts TLS: the server asks for TLS, never answers the
    // PING, and hangs up.
    let said = plain_text_connect(&url).await;
    assert!(said.contains("\"tls_required\":true") && !said.contains("PONG"), "{said}");
    for s in SERVICES {
        assert!(!app.log(s).contains(&seed), "{s} logged its nkey seed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lets_the_platform_in_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = "tok-9d2c-4b1e-a7f0";
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "authorization {\n  token: $MLOPS_NATS_SERVER_TOKEN\n}\n").unwrap();
    let server_env = vec![("MLOPS_NATS_SERVER_TOKEN".to_owned(), token.to_owned())];
    let app = TestApp::start_custom(
        &[("MLOPS_NATS_TOKEN", token)],
        |opts| opts.nats_config = Some((config.clone(), server_env.clone())),
        async_nats::ConnectOptions::with_token(token.into()),
    )
    .await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    app.upload("churn", &sample::csv(2000, 711, Variant::Normal)).await;
    app.wait_event("model.promoted", T, |s| s.summary.starts_with("v1 ")).await;
    let url = app.stack.nats_url.clone();
    let wrong = refused(async_nats::ConnectOptions::with_token("guess".into()), &url).await;
    assert!(wrong.to_lowercase().contains("authoriz"), "{wrong}");
    let none = refused(async_nats::ConnectOptions::new(), &url).await;
    assert!(none.to_lowercase().contains("authoriz"), "{none}");
    for s in SERVICES {
        assert!(!app.log(s).contains(token), "{s} logged the token");
    }
}
