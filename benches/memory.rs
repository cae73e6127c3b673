//! Does memory stay bounded when keys do not? The folio binary runs with
//! `--l1-capacity 64MB` in front of an upstream answering every path with a
//! distinct cacheable 1 KB body, and 1,000,000 distinct keys are requested.
//! The process's RSS after that, over its RSS when empty, is compared with
//! the capacity: it should stay within capacity × 1.3.
//!
//! `cargo bench --bench memory` runs 1,000,000 keys at 64 MB (release
//! build); `cargo test --benches` runs 20,000 keys at 4 MB as a smoke test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const CONCURRENCY: u64 = 64;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (keys, capacity_mb) = if full { (1_000_000, 64) } else { (20_000, 4) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(keys, capacity_mb));
    if !full {
        println!(
            "(a smoke run, debug build, sizes too small to judge: the figure is `cargo bench --bench memory`)"
        );
    }
}

/// The folio binary, killed on drop.
struct Folio(Child);

impl Drop for Folio {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn run(keys: u64, capacity_mb: u64) {
    let upstream = upstream().await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let policies = std::env::temp_dir().join(format!("folio-memory-{}", std::process::id()));
    std::fs::create_dir_all(&policies).expect("dir");
    std::fs::write(policies.join("p.yaml"), "\"/p/{id}\":\n  cache_ttl: 1h\n").expect("policy");
    let child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            "off",
        ])
        .args(["--upstream", &format!("http://{upstream}")])
        .args([
            "--l1-capacity",
            &format!("{capacity_mb}MB"),
            "--access-log",
            "off",
        ])
        .arg("--policies")
        .arg(&policies)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("folio binary");
    let pid = child.id();
    let folio = Folio(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok(&client, addr, 0).await {
        assert!(Instant::now() < deadline, "folio did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let baseline = rss_kb(pid);

    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, client) = (Arc::clone(&next), client.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id > keys {
                    return;
                }
                assert!(ok(&client, addr, id).await, "request {id} failed");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kb(pid);
    drop(folio);
    let _ = std::fs::remove_dir_all(&policies);
    let growth_mb = after.saturating_sub(baseline) as f64 / 1024.0;
    let ratio = growth_mb / capacity_mb as f64;
    println!(
        "memory: {keys} distinct 1 KB keys in {took:?} with --l1-capacity {capacity_mb}MB: \
         RSS {:.1} MB empty, {:.1} MB after; growth {growth_mb:.1} MB = {ratio:.2} × capacity (bound 1.30)",
        baseline as f64 / 1024.0,
        after as f64 / 1024.0,
    );
}

async fn ok(client: &HttpClient, addr: SocketAddr, id: u64) -> bool {
    let request = Request::get(format!("http://{addr}/p/{id}"))
        .header("x-tenant-id", "acme")
        .body(Full::new(Bytes::new()))
        .expect("request");
    match client.request(request).await {
        Ok(response) => {
            let fine = response.status().is_success();
            fine && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// An upstream answering each path with its own cacheable 1 KB body.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let path = request.uri().path().to_owned();
                    let body = format!("{{\"path\":\"{path}\",\"pad\":\"{}\"}}", "x".repeat(980));
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    response.headers_mut().insert(
                        "cache-control",
                        http::HeaderValue::from_static("max-age=3600"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
