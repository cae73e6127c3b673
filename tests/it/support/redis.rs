//! `TestRedis`: a real `redis-server` per test, on a unix socket in a fresh
//! temporary directory (no TCP port, so no port races and nothing off the
//! machine). Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ScratchDir;

#[derive(Debug)]
pub(crate) struct TestRedis {
    child: Option<Child>,
    /// Removed after the servers are stopped (fields drop after `drop`).
    dir: ScratchDir,
    pub(crate) url: String,
}

impl TestRedis {
    pub(crate) async fn start() -> Self {
        let dir = ScratchDir::unique("redis");
        let url = format!("redis+unix://{}", dir.join("redis.sock").display());
        let mut redis = Self {
            child: None,
            dir,
            url,
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let socket = self.dir.join("redis.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
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
        let client = redis::Client::open(self.url.as_str()).ok()?;
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
