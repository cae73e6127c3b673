//! `TestRedis`: a real `redis-server` per test, on a unix socket in a fresh
//! temporary directory (no TCP port, so no port races and nothing off the
//! machine), or over TLS on a free loopback port. Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ScratchDir;

#[derive(Debug)]
pub(crate) struct TestRedis {
    child: Option<Child>,
    /// Removed after the servers are stopped (fields drop after `drop`).
    dir: ScratchDir,
    pub(crate) url: String,
    tls: Option<Tls>,
}

/// How a TLS server listens, and what a client must trust.
#[derive(Debug)]
struct Tls {
    port: u16,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    ca: std::path::PathBuf,
    ca_pem: Vec<u8>,
    /// An ACL user (`user`, `password`) instead of the default user.
    user: Option<(String, String)>,
}

impl TestRedis {
    pub(crate) async fn start() -> Self {
        let dir = ScratchDir::unique("redis");
        let url = format!("redis+unix://{}", dir.join("redis.sock").display());
        let mut redis = Self {
            child: None,
            dir,
            url,
            tls: None,
        };
        redis.spawn().await;
        redis
    }

    /// A server speaking only TLS on a free loopback port, with a
    /// certificate for 127.0.0.1 and localhost from `ca`; with `user`, the
    /// default user is off and only that ACL user (`name`, `password`) may
    /// connect. `url` names the user and password.
    pub(crate) async fn start_tls(ca: &super::tls::TestCa, user: Option<(&str, &str)>) -> Self {
        let dir = ScratchDir::unique("redis");
        let leaf = ca.leaf("redis", &["127.0.0.1", "localhost"]);
        let port = super::cluster::free_port();
        let url = match user {
            Some((name, password)) => format!("rediss://{name}:{password}@127.0.0.1:{port}"),
            None => format!("rediss://127.0.0.1:{port}"),
        };
        let mut redis = Self {
            child: None,
            dir,
            url,
            tls: Some(Tls {
                port,
                cert: leaf.cert_path,
                key: leaf.key_path,
                ca: ca.ca_path(),
                ca_pem: ca.pem.clone().into_bytes(),
                user: user.map(|(n, p)| (n.to_owned(), p.to_owned())),
            }),
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let socket = self.dir.join("redis.sock");
        let _ = std::fs::remove_file(&socket);
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => {
                command
                    .args(["--port", "0", "--unixsocket"])
                    .arg(&socket)
                    .args(["--unixsocketperm", "700"]);
            }
            Some(tls) => {
                command
                    .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
                    .arg(tls.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no"]);
                if let Some((name, password)) = &tls.user {
                    command
                        .args(["--user", name, "on"])
                        .arg(format!(">{password}"))
                        .args(["~*", "&*", "+@all"])
                        .args(["--user", "default", "off"]);
                }
            }
        }
        let child = command
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&*self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). Install it with `apt-get install -y redis-server`; \
                     the README's test command (scripts/test.sh) does this for you"
                )
            });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = match &self.tls {
            None => redis::Client::open(self.url.as_str()).ok()?,
            Some(tls) => {
                super::tls::use_ring();
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(tls.ca_pem.clone()),
                };
                redis::Client::build_with_tls(self.url.as_str(), certificates).ok()?
            }
        };
        tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()
    }

    async fn ping(&self) -> bool {
        let Some(mut conn) = self.connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// The keys Redis holds now.
    pub(crate) async fn keys(&self) -> Vec<String> {
        let mut conn = self.connection().await.expect("redis is not reachable");
        redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// The raw value stored under `key`.
    pub(crate) async fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        let mut conn = self.connection().await.expect("redis is not reachable");
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// Stores a raw value under `key` (as someone with access to Redis could).
    pub(crate) async fn set_raw(&self, key: &str, value: &[u8]) {
        let mut conn = self.connection().await.expect("redis is not reachable");
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    /// Every value Redis holds under a `folio:v1:` entry key, as stored.
    pub(crate) async fn entry_values(&self) -> Vec<Vec<u8>> {
        let mut conn = self.connection().await.expect("redis is not reachable");
        let mut values = Vec::new();
        for key in self.keys().await {
            if key.starts_with("folio:v1:") && key.len() == "folio:v1:".len() + 64 {
                let value: Vec<u8> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                values.push(value);
            }
        }
        values
    }

    /// Takes `categories` (ACL syntax, e.g. `-@scripting`) from the default
    /// user, as a locked-down managed Redis does.
    pub(crate) async fn restrict(&self, categories: &str) {
        let mut conn = self.connection().await.expect("redis is not reachable");
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg(categories)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    /// Empties every database, as an operator's `FLUSHALL` would.
    pub(crate) async fn flushall(&self) {
        let mut conn = self.connection().await.expect("redis is not reachable");
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    /// Freezes the server (`SIGSTOP`): its socket stays open and accepts,
    /// but nothing is answered until [`Self::resume`], as with a host that
    /// stalls (swap, a long fork, a paused VM).
    pub(crate) fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub(crate) fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("redis-server is not running")
            .id();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    /// Stops the server (as a crash would).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same socket, empty.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
