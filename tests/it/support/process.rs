//! `FolioProcess`: the real `folio` binary, as an operator runs it, on
//! ephemeral loopback ports (read back from what it prints). Killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct FolioProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    /// Everything it printed on stdout so far.
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FolioProcess {
    /// Starts `folio --upstream <upstream> --policies <dir> <extra…>`.
    pub(crate) fn start(upstream: &str, policies: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(upstream, policies, extra, &[])
    }

    /// The same, with environment variables set (`FOLIO_…`, `RUST_LOG`).
    pub(crate) fn start_with_env(
        upstream: &str,
        policies: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--policies",
            ])
            .arg(policies)
            .args(extra)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the folio binary");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = sender.send(line);
            }
        });
        let (mut addr, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = receiver
                .recv_timeout(left)
                .expect("folio printed its addresses");
            let address = |prefix: &str| -> Option<SocketAddr> {
                line.strip_prefix(prefix)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            };
            addr = addr
                .or_else(|| address("folio listening on http://"))
                .or_else(|| address("folio listening on https://"));
            admin = admin.or_else(|| address("folio admin API on http://"));
        }
        Self {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            lines,
        }
    }

    /// What it printed on stdout so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits, at most `limit`, for it to exit; whether it did.
    pub(crate) async fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Sends it a signal (`HUP`, `TERM`).
    pub(crate) fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for FolioProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
