//! How soon does a purge on one instance stop another from serving the
//! entry? Two folio instances share a Redis (one server, then a
//! three-master Redis Cluster), both serve a steady load, and the purge log
//! already holds many marks (the burst that wrote them is over). For each
//! sample an entry is cached on both,
//! purged by tag through instance A's admin API, and instance B is asked
//! until it no longer answers from the cache; the time from sending the
//! purge to B's first miss is the sample.
//!
//! `cargo bench --bench coherence` runs 300,000 logged marks and 200 samples
//! per setup (release build); `cargo test --benches` runs 5,000 marks and 10
//! samples as a smoke test. Loopback only; every server is stopped at the end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use folio::{Listeners, PolicySet, Settings};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const POLICY: &str = "\"/p/{id}\":\n  cache_ttl: 1h\n  tags: [\"product:{id}\"]\n";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (marks, samples) = if full { (300_000, 200) } else { (5_000, 10) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for cluster in [false, true] {
            let redis = Redis::start(cluster).await;
            run(&redis, marks, samples).await;
        }
    });
}

/// redis-server processes on free loopback ports, killed on drop.
struct Redis {
    children: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Redis {
    async fn start(cluster: bool) -> Self {
        let dir =
            std::env::temp_dir().join(format!("folio-coherence-{}-{cluster}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut redis = Self {
            children: Vec::new(),
            ports: Vec::new(),
            dir,
        };
        for i in 0..if cluster { 3 } else { 1 } {
            let port = free_port();
            let node_dir = redis.dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("dir");
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if cluster {
                command.args(["--cluster-enabled", "yes"]);
            }
            redis.children.push(
                command
                    .spawn()
                    .expect("redis-server (apt-get install redis-server)"),
            );
            redis.ports.push(port);
        }
        for port in &redis.ports {
            wait_for(*port, "PING", "PONG").await;
        }
        if cluster {
            let nodes: Vec<String> = redis
                .ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect();
            let created = Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&nodes)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
                .expect("redis-cli");
            assert!(created.status.success(), "cluster create failed");
            for port in &redis.ports {
                wait_for(*port, "CLUSTER INFO", "cluster_state:ok").await;
            }
        }
        redis
    }

    fn describe(&self) -> &'static str {
        if self.ports.len() > 1 {
            "a three-master Redis Cluster"
        } else {
            "one Redis"
        }
    }

    fn configure(&self, settings: &mut Settings) {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        if urls.len() > 1 {
            settings.redis_cluster = urls;
        } else {
            settings.redis = urls.into_iter().next();
        }
        // The purge log is written in pages well within this; keep the
        // default so the figure is the one users get.
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster-bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

async fn wait_for(port: u16, command: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(command.split(' '))
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(expected)) {
            return;
        }
        assert!(Instant::now() < deadline, "redis {port}: no {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One folio instance in process.
struct Instance {
    proxy: SocketAddr,
    admin: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn instance(upstream: SocketAddr, redis: &Redis) -> Instance {
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addrs = (
        proxy.local_addr().expect("addr"),
        admin.local_addr().expect("addr"),
    );
    let mut settings = Settings::new(format!("http://{upstream}").parse().expect("uri"));
    redis.configure(&mut settings);
    let policies = PolicySet::from_yaml("bench.yaml", POLICY).expect("policy");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(folio::run(
        Listeners {
            proxy,
            admin: Some(admin),
        },
        settings,
        policies,
        async {
            let _ = stopped.await;
        },
    ));
    Instance {
        proxy: addrs.0,
        admin: addrs.1,
        _stop: stop,
    }
}

async fn run(redis: &Redis, marks: usize, samples: usize) {
    let upstream = upstream().await;
    let a = instance(upstream, redis).await;
    let b = instance(upstream, redis).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for folio in [&a, &b] {
        wait_subscribed(&client, folio.admin).await;
    }

    // The log already holds `marks` marks, of another tenant.
    let started = Instant::now();
    for round in 0..marks.div_ceil(5000) {
        let tags: Vec<String> = (0..5000).map(|i| format!("t{round}x{i}")).collect();
        let body = serde_json::json!({ "tags": tags, "tenant": "other" }).to_string();
        assert_eq!(post(&client, a.admin, &body).await, 200, "preloading marks");
    }
    println!(
        "logged {marks} marks through the admin API in {:?}",
        started.elapsed()
    );
    // Measured in the steady state that follows: the log holds the marks,
    // and the instances have taken in the burst of messages that made it.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Both instances serve a steady load meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for (n, folio) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (stop, served, client, addr) = (
            Arc::clone(&stop),
            Arc::clone(&served),
            client.clone(),
            folio.proxy,
        );
        load.push(tokio::spawn(async move {
            let mut id = n as u64;
            while !stop.load(Ordering::Relaxed) {
                id = (id + 7) % 1000;
                get(&client, addr, id).await;
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let load_started = Instant::now();
    let mut times = Vec::with_capacity(samples);
    for sample in 0..samples {
        let id = 100_000 + sample as u64;
        get(&client, a.proxy, id).await;
        let cached = Instant::now();
        while get(&client, b.proxy, id).await != "HIT" {
            assert!(
                cached.elapsed() < Duration::from_secs(5),
                "B never cached it"
            );
        }
        let body = format!(r#"{{"tags":["product:{id}"],"tenant":"acme"}}"#);
        // B is asked from the moment the purge is sent, not from when A
        // answers the admin call: what is timed is the purge reaching B.
        let purged = Instant::now();
        let sent = tokio::spawn({
            let client = client.clone();
            let admin = a.admin;
            async move { post(&client, admin, &body).await }
        });
        while get(&client, b.proxy, id).await == "HIT" {
            assert!(
                purged.elapsed() < Duration::from_secs(5),
                "B kept serving it"
            );
        }
        times.push(purged.elapsed());
        assert_eq!(sent.await.expect("purge task"), 200);
    }
    let rate = served.load(Ordering::Relaxed) as f64 / load_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let _ = task.await;
    }
    times.sort();
    let quantile = |q: f64| {
        let index = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[index].as_secs_f64() * 1000.0
    };
    println!(
        "coherence over {}: 2 instances, {marks} marks logged, under {rate:.0} req/s of load: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({samples} samples; purge sent on A to first miss on B)",
        redis.describe(),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0),
    );
}

async fn wait_subscribed(client: &HttpClient, admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = Request::get(format!("http://{admin}/_folio/health"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        if let Ok(response) = client.request(request).await {
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            if let Ok(body) = body
                && let Ok(health) = serde_json::from_slice::<serde_json::Value>(&body)
                && health["checks"]["invalidation"]["subscribed"] == true
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET of product `id` as tenant acme; its `X-Cache`.
async fn get(client: &HttpClient, addr: SocketAddr, id: u64) -> String {
    let request = Request::get(format!("http://{addr}/p/{id}"))
        .header("x-tenant-id", "acme")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("folio answers");
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let _ = response.into_body().collect().await;
    cache
}

async fn post(client: &HttpClient, admin: SocketAddr, body: &str) -> u16 {
    let request = Request::post(format!("http://{admin}/_folio/purge"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("admin answers");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// An upstream answering every request with a cacheable 1 KB product.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Bytes::from(format!("{{\"description\":\"{}\"}}", "x".repeat(1000)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let mut response = Response::new(Full::new(body));
                        response.headers_mut().insert(
                            "cache-control",
                            http::HeaderValue::from_static("max-age=3600"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
