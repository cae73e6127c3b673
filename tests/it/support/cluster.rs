//! `TestCluster`: a real three-master Redis Cluster on free loopback ports,
//! joined with `redis-cli --cluster create`. Killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ScratchDir;

#[derive(Debug)]
pub(crate) struct TestCluster {
    nodes: Vec<Child>,
    /// Removed after the servers are stopped (fields drop after `drop`).
    dir: ScratchDir,
    pub(crate) ports: Vec<u16>,
}

/// A free loopback port at most 55535: a cluster node also listens on its
/// port + 10000 for the cluster bus.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl TestCluster {
    pub(crate) async fn start() -> Self {
        let dir = ScratchDir::unique("cluster");
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            ports: Vec::new(),
        };
        for i in 0..3 {
            let port = free_port();
            let node_dir = cluster.dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
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
            cluster.nodes.push(child);
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
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
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
        cluster
    }

    async fn wait_for(&self, port: u16, command: &str, expected: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(command.split(' '))
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(expected)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {port}: no '{expected}' for {command}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// How many keys each master holds.
    pub(crate) fn key_counts(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|port| {
                let out = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "DBSIZE"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
