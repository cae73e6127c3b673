//! `TestCluster`: a real Redis Cluster on free loopback ports, joined with
//! `redis-cli --cluster create`: three masters, with or without a replica
//! each, in clear or over TLS. Killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ScratchDir;

#[derive(Debug)]
pub(crate) struct TestCluster {
    /// One per port, in the same order; `None` once killed.
    nodes: Vec<Option<Child>>,
    /// Removed after the servers are stopped (fields drop after `drop`).
    dir: ScratchDir,
    /// Every node's port, masters and replicas alike.
    pub(crate) ports: Vec<u16>,
    /// The CA file clients must trust, when the nodes speak only TLS.
    tls_ca: Option<std::path::PathBuf>,
}

/// One line of `CLUSTER NODES`, as the node asked sees its peers.
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) master: bool,
    /// Flagged `fail` (or `fail?`) by the node asked.
    pub(crate) failing: bool,
    /// For a replica, the id of its master.
    pub(crate) master_id: Option<String>,
    /// Slot ranges served, for a master.
    pub(crate) slots: Vec<(u16, u16)>,
}

/// A free loopback port at most 55535: a cluster node also listens on its
/// port + 10000 for the cluster bus.
pub(crate) fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl TestCluster {
    /// Runs `redis-cli` against one node; its stdout, or "" when it failed.
    fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(ca) = &self.tls_ca {
            command.arg("--tls").arg("--cacert").arg(ca);
        }
        command
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Three masters, no replicas.
    pub(crate) async fn start() -> Self {
        Self::launch(3, 0, None, None).await
    }

    /// Three masters, no replicas, speaking only TLS (clients, the cluster
    /// bus), with certificates for 127.0.0.1 from `ca`.
    pub(crate) async fn start_tls(ca: &super::tls::TestCa) -> Self {
        Self::launch(3, 0, None, Some(ca)).await
    }

    /// Three masters with one replica each. A node is judged failed after
    /// `node_timeout` without an answer, and its replica then takes over,
    /// so a failover takes about twice that plus an election (~1 s).
    pub(crate) async fn start_with_replicas(node_timeout: Duration) -> Self {
        let cluster = Self::launch(3, 1, Some(node_timeout), None).await;
        for view in cluster.view().into_iter().filter(|v| !v.master) {
            cluster
                .wait_for(view.port, "INFO replication", "master_link_status:up")
                .await;
        }
        cluster
    }

    async fn launch(
        masters: usize,
        replicas: usize,
        node_timeout: Option<Duration>,
        tls: Option<&super::tls::TestCa>,
    ) -> Self {
        let dir = ScratchDir::unique("cluster");
        let leaf = tls.map(|ca| ca.leaf("cluster-node", &["127.0.0.1", "localhost"]));
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            ports: Vec::new(),
            tls_ca: tls.map(super::tls::TestCa::ca_path),
        };
        let node_timeout = node_timeout.map_or(15_000, |t| t.as_millis()).to_string();
        for i in 0..masters * (1 + replicas) {
            let port = free_port();
            let node_dir = cluster.dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let mut command = Command::new("redis-server");
            match (&leaf, &cluster.tls_ca) {
                (Some(leaf), Some(ca)) => {
                    command
                        .args(["--port", "0", "--tls-port", &port.to_string()])
                        .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                        .arg("--tls-cert-file")
                        .arg(&leaf.cert_path)
                        .arg("--tls-key-file")
                        .arg(&leaf.key_path)
                        .arg("--tls-ca-cert-file")
                        .arg(ca)
                        .args(["--tls-auth-clients", "no"]);
                }
                _ => {
                    command.args(["--port", &port.to_string()]);
                }
            }
            let child = command
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    &node_timeout,
                ])
                .args([
                    "--cluster-config-file",
                    "nodes.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                ])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server ({e}); install redis-server")
                });
            cluster.nodes.push(Some(child));
            cluster.ports.push(port);
        }
        for port in &cluster.ports {
            cluster.wait_for(*port, "PING", "PONG").await;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(ca) = &cluster.tls_ca {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        let created = create
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli (it comes with redis-server)");
        assert!(
            created.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &cluster.ports {
            cluster
                .wait_for(*port, "CLUSTER INFO", "cluster_state:ok")
                .await;
        }
        // A node says `cluster_state:ok` before gossip has told it which
        // node replicates which: wait until the view the tests read (the
        // first node's) knows every replica's master.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while cluster
            .view()
            .iter()
            .filter(|node| node.master_id.is_some())
            .count()
            < masters * replicas
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster does not know its {} replicas",
                masters * replicas
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster
    }

    async fn wait_for(&self, port: u16, command: &str, expected: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let args: Vec<&str> = command.split(' ').collect();
            if self.cli(port, &args).contains(expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {port}: no '{expected}' for {command}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's URL, in start order (`rediss://` over TLS).
    pub(crate) fn urls(&self) -> Vec<String> {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect()
    }

    /// How many keys each node holds (replicas hold their master's keys).
    pub(crate) fn key_counts(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|port| self.cli(*port, &["DBSIZE"]).trim().parse().unwrap_or(0))
            .collect()
    }

    /// The ports of the nodes still running.
    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, node)| node.is_some())
            .map(|(port, _)| *port)
    }

    /// The cluster as the first live node sees it (`CLUSTER NODES`).
    pub(crate) fn view(&self) -> Vec<NodeView> {
        let port = self.live_ports().next().expect("no node is running");
        self.cli(port, &["CLUSTER", "NODES"])
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 8 {
                    return None;
                }
                let address = fields[1].split('@').next()?;
                let port = address.rsplit(':').next()?.parse().ok()?;
                let flags = fields[2];
                let slots = fields[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|range| {
                        let (low, high) = range.split_once('-').unwrap_or((range, range));
                        Some((low.parse().ok()?, high.parse().ok()?))
                    })
                    .collect();
                Some(NodeView {
                    id: fields[0].to_owned(),
                    port,
                    master: flags.contains("master"),
                    failing: flags.contains("fail"),
                    master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                    slots,
                })
            })
            .collect()
    }

    /// The port of the master serving `key`'s slot.
    pub(crate) fn master_of(&self, key: &str) -> u16 {
        let port = self.live_ports().next().expect("no node is running");
        let slot: u16 = self
            .cli(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT");
        self.view()
            .into_iter()
            .find(|v| {
                v.master && !v.failing && v.slots.iter().any(|(l, h)| (*l..=*h).contains(&slot))
            })
            .map(|v| v.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The port of the replica of the master on `port`.
    pub(crate) fn replica_of(&self, port: u16) -> u16 {
        let view = self.view();
        let master = view.iter().find(|v| v.port == port).expect("no such node");
        view.iter()
            .find(|v| v.master_id.as_deref() == Some(master.id.as_str()))
            .map(|v| v.port)
            .unwrap_or_else(|| panic!("node {port} has no replica"))
    }

    /// Kills the node on `port` (`SIGKILL`, as a crash would).
    pub(crate) fn kill(&mut self, port: u16) {
        let index = self
            .ports
            .iter()
            .position(|p| *p == port)
            .expect("no such node");
        if let Some(mut child) = self.nodes[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `replica` serves as a master and every live node reports
    /// the cluster healthy again.
    pub(crate) async fn wait_for_promotion(&self, replica: u16, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let promoted = self
                .view()
                .iter()
                .any(|v| v.port == replica && v.master && !v.slots.is_empty());
            if promoted
                && self.live_ports().all(|port| {
                    self.cli(port, &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                })
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica {replica} not promoted within {limit:?}: {:?}",
                self.view()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `keyspace_hits` of the node on `port` (GETs that found their key).
    pub(crate) fn keyspace_hits(&self, port: u16) -> u64 {
        self.cli(port, &["INFO", "stats"])
            .lines()
            .find_map(|l| l.trim().strip_prefix("keyspace_hits:")?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
