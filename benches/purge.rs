//! How long does purging one tag that covers N entries take, and what do
//! purge marks cost the hit path?
//!
//! Fills N entries (one tag) through a real folio in front of a real local
//! upstream, times `POST /_folio/purge` for that tag, checks the entries are
//! gone, then times hits with no marks and with 10,000 unrelated marks.
//!
//! `cargo bench --bench purge` runs it with N = 100,000 (release build);
//! `cargo test --benches` runs it with N = 2,000 as a smoke test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
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

const POLICY: &str = "\"/p/{id}\":\n  cache_ttl: 1h\n  tags: [catalogue, \"product:{id}\"]\n";
const CONCURRENCY: usize = 64;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let entries: usize = if full { 100_000 } else { 2_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(entries));
}

async fn run(entries: usize) {
    let upstream = upstream().await;
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (proxy_addr, admin_addr) = (
        proxy.local_addr().expect("addr"),
        admin.local_addr().expect("addr"),
    );
    let mut settings = Settings::new(format!("http://{upstream}").parse().expect("uri"));
    settings.l1_capacity = 2 << 30;
    let policies = PolicySet::from_yaml("bench.yaml", POLICY).expect("policy");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(folio::run(
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
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let started = Instant::now();
    fan_out(&client, proxy_addr, entries).await;
    println!("filled {entries} entries in {:?}", started.elapsed());
    assert_eq!(
        get(&client, proxy_addr, 7).await,
        "HIT",
        "entries are cached"
    );

    let started = Instant::now();
    let status = post(&client, admin_addr, r#"{"tags":["catalogue"]}"#).await;
    let purge = started.elapsed();
    assert_eq!(status, 200);
    println!(
        "purging one tag covering {entries} entries took {:.3} ms (admin API round trip)",
        ms(purge)
    );
    for id in [0, entries / 2, entries - 1] {
        assert_eq!(
            get(&client, proxy_addr, id).await,
            "MISS",
            "entry {id} purged"
        );
    }

    // The hit path, with and without many marks to consult.
    let sample = 2_000.min(entries);
    fan_out(&client, proxy_addr, sample).await;
    let without = time_hits(&client, proxy_addr, sample).await;
    for chunk in 0..100 {
        let tags: Vec<String> = (0..100)
            .map(|i| format!("\"other:{}\"", chunk * 100 + i))
            .collect();
        post(
            &client,
            admin_addr,
            &format!(r#"{{"tags":[{}]}}"#, tags.join(",")),
        )
        .await;
    }
    // These entries were requested before the marks: every hit consults them.
    let with = time_hits(&client, proxy_addr, sample).await;
    println!(
        "hit path: {:.1} µs per request with no newer marks, {:.1} µs with 10,000 newer unrelated marks to consult",
        without * 1e6,
        with * 1e6
    );
    let _ = stop.send(());
    let _ = server.await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// GETs ids 0..n with CONCURRENCY clients.
async fn fan_out(client: &HttpClient, proxy: SocketAddr, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        tasks.spawn(async move {
            for id in (worker..n).step_by(CONCURRENCY) {
                get(&client, proxy, id).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Mean seconds per hit over ids 0..n (sequential, one connection).
async fn time_hits(client: &HttpClient, proxy: SocketAddr, n: usize) -> f64 {
    let started = Instant::now();
    for id in 0..n {
        get(client, proxy, id).await;
    }
    started.elapsed().as_secs_f64() / n as f64
}

async fn get(client: &HttpClient, proxy: SocketAddr, id: usize) -> String {
    let uri = format!("http://{proxy}/p/{id}");
    let request = Request::get(uri)
        .header("x-tenant-id", "bench")
        .body(Full::default())
        .expect("request");
    let response = client.request(request).await.expect("folio answers");
    let x_cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let _ = response.into_body().collect().await;
    x_cache
}

async fn post(client: &HttpClient, admin: SocketAddr, json: &str) -> u16 {
    let request = Request::post(format!("http://{admin}/_folio/purge"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("admin answers");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// A local upstream answering every path with a 1 KB JSON body.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(Bytes::from(format!(r#"{{"data":"{}"}}"#, "x".repeat(1000))));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                    let body = Bytes::clone(&body);
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
