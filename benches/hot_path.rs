//! What does the per-request work cost? Key building, route matching over
//! 10, 100 and 1,000 routes, entry encode/decode (1 KiB and 64 KiB), an L1
//! lookup, and an L1 hit end to end (client, folio's server and proxy).
//! `cargo bench --bench hot_path`; `cargo test --benches` runs each once as
//! a smoke test.
#![allow(clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use folio::PolicySet;
use folio::bench::{EndToEnd, L1Hit, StoredEntry, compress, key, route};
use http::{HeaderMap, HeaderValue};
use std::hint::black_box;

fn policies(routes: usize) -> PolicySet {
    let mut yaml = String::new();
    for i in 0..routes {
        yaml.push_str(&format!(
            "\"/api/v{}/resource{i}/{{id}}\":\n  cache_ttl: 1m\n",
            i % 3
        ));
    }
    yaml.push_str(
        "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n  key:\n    headers: [Accept-Language]\n",
    );
    PolicySet::from_yaml("bench.yaml", &yaml).unwrap()
}

fn keys(c: &mut Criterion) {
    let set = policies(10);
    let mut headers = HeaderMap::new();
    headers.insert(
        "accept-language",
        HeaderValue::from_static("en-US, fr;q=0.5"),
    );
    c.bench_function("key: product with a varied header", |b| {
        b.iter(|| {
            key(
                &set,
                black_box("acme"),
                black_box("/api/v1/products/42"),
                None,
                &headers,
            )
        })
    });
    c.bench_function("key: query of 4 params, sorted", |b| {
        b.iter(|| {
            key(
                &set,
                "acme",
                black_box("/elsewhere"),
                Some(black_box("d=4&b=2&a=1&c=3")),
                &headers,
            )
        })
    });
}

fn routes(c: &mut Criterion) {
    let mut group = c.benchmark_group("route match");
    for n in [10, 100, 1000] {
        let set = policies(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &set, |b, set| {
            b.iter(|| route(set, black_box("/api/v1/products/42")))
        });
    }
    group.finish();
}

fn entries(c: &mut Criterion) {
    let mut group = c.benchmark_group("entry");
    for len in [1024, 64 * 1024] {
        let entry = StoredEntry::new(len);
        let encoded = entry.encode();
        group.bench_with_input(BenchmarkId::new("encode", len), &entry, |b, e| {
            b.iter(|| e.encode())
        });
        group.bench_with_input(BenchmarkId::new("decode", len), &encoded, |b, bytes| {
            b.iter(|| StoredEntry::decode(bytes.clone()))
        });
    }
    group.finish();
}

/// Storing pays for compression once per miss; this is what it costs for
/// a product and for a large list (a 32 MB table zeroed per call once made
/// the first 11 ms).
fn compression(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress for storing");
    for products in [1, 64] {
        let body = (0..products)
            .map(|n| {
                format!(
                    "{{\"id\":{n},\"title\":\"Book {n}\",\"author\":\"Author {}\",\"price\":{}.99,\
                     \"description\":\"{}\"}}",
                    n % 97,
                    n % 50,
                    "A story of people, places and the things between them. ".repeat(14)
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let body = format!("[{body}]");
        group.bench_with_input(BenchmarkId::from_parameter(body.len()), &body, |b, body| {
            b.iter(|| compress(black_box(body.as_bytes())))
        });
    }
    group.finish();
}

fn l1(c: &mut Criterion) {
    let hit = L1Hit::new();
    c.bench_function("L1 hit", |b| b.iter(|| hit.hit()));

    // The same hit through folio's HTTP server and proxy, and a client
    // connection on loopback: what one cached answer costs in full.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e2e = runtime.block_on(EndToEnd::start()).unwrap();
    c.bench_function("L1 hit end to end (loopback HTTP/1.1)", |b| {
        b.to_async(&runtime)
            .iter(|| async { e2e.get().await.unwrap() })
    });
}

criterion_group!(benches, keys, routes, entries, compression, l1);
criterion_main!(benches);
