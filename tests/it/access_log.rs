//! The access log, as an operator runs it: the real binary, its stdout or a
//! file, SIGHUP and SIGTERM.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{ACME, FolioProcess, ScratchDir, TestUpstream, eventually, get};

const POLICIES: &str = "\"/p/{id}\":\n  cache_ttl: 1h\n";

fn policies() -> ScratchDir {
    let dir = ScratchDir::unique("access-policies");
    std::fs::write(dir.join("p.yaml"), POLICIES).unwrap();
    dir
}

fn access_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|json| json["target"] == "folio::access")
        .collect()
}

#[tokio::test]
async fn json_lines_are_complete_and_none_is_lost_on_shutdown() {
    let upstream = TestUpstream::json("{}").await;
    let dir = policies();
    let mut folio = FolioProcess::start(
        &format!("http://{}", upstream.addr),
        &dir,
        &["--log-format", "json"],
    );
    for id in 0..50 {
        assert_eq!(get(&folio.url(&format!("/p/{id}")), ACME).await.status, 200);
    }
    // Stopped at once: the last lines are still in the buffer.
    folio.signal("TERM");
    assert!(
        folio.exited_within(Duration::from_secs(15)).await,
        "folio stopped"
    );
    eventually(Duration::from_secs(5), "all lines read", || async {
        access_lines(&folio.lines()).len() >= 50
    })
    .await;
    let lines = access_lines(&folio.lines());
    assert_eq!(lines.len(), 50, "one line per request, none lost");
    for line in &lines {
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["tenant"], "acme");
        assert_eq!(line["method"], "GET");
        assert!(line["path"].as_str().unwrap().starts_with("/p/"));
        assert!(line["ms"].as_f64().is_some());
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn a_file_is_reopened_on_sighup_as_logrotate_expects() {
    let upstream = TestUpstream::json("{}").await;
    let dir = policies();
    let logs = ScratchDir::unique("access-logs");
    let path = logs.join("access.log");
    let mut folio = FolioProcess::start(
        &format!("http://{}", upstream.addr),
        &dir,
        &["--access-log", path.to_str().unwrap()],
    );
    let count = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    for id in 0..5 {
        get(&folio.url(&format!("/p/{id}")), ACME).await;
    }
    eventually(
        Duration::from_secs(5),
        "lines written within a second",
        || async { count(&path) == 5 },
    )
    .await;
    let rotated = logs.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    folio.signal("HUP");
    eventually(Duration::from_secs(5), "a new file at the path", || async {
        path.exists()
    })
    .await;
    for id in 5..12 {
        get(&folio.url(&format!("/p/{id}")), ACME).await;
    }
    folio.signal("TERM");
    assert!(folio.exited_within(Duration::from_secs(15)).await);
    assert_eq!(count(&rotated), 5, "the old file keeps its lines");
    assert_eq!(count(&path), 7, "the new one gets the rest");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"GET /p/11\" 200 "), "{text}");
}

#[tokio::test]
async fn a_stalled_stdout_never_stalls_requests_and_drops_are_counted() {
    let upstream = TestUpstream::json("{}").await;
    let dir = policies();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (addr, admin) = (free(), free());
    // stdout is a pipe nobody reads: it fills after 64 KiB.
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(["--upstream", &format!("http://{}", upstream.addr)])
        .args(["--access-log-buffer", "16KB", "--policies"])
        .arg(&*dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stalled = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "folio did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    for id in 0..3000 {
        let got = get(&format!("http://{addr}/p/{}", id % 50), ACME).await;
        assert_eq!(got.status, 200);
    }
    let metrics = get(&format!("http://{admin}/_folio/metrics"), &[])
        .await
        .text();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("folio_access_log_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(dropped > 0.0, "drops are counted:\n{metrics}");
    println!(
        "3000 requests with a stalled stdout in {:?}; {dropped} lines dropped",
        started.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();
    let mut unread = Vec::new();
    let _ = { stalled }.read_to_end(&mut unread);
}
