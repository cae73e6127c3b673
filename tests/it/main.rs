//! Integration tests: the real folio server, in process, in front of real
//! HTTP upstreams and real `redis-server` processes, all on loopback.
//! One test binary (see STYLE.md); each module is a group of scenarios.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod support;

#[path = "../../examples/bookstore.rs"]
#[allow(dead_code, unreachable_pub)]
mod bookstore;

mod access_log;
mod admin_trust;
mod bookstore_e2e;
mod cache_flow;
mod coalescing;
mod compression;
mod drills;
mod failures;
mod forwarding;
mod hostile;
mod http_caching;
mod invalidation;
mod isolation;
mod openapi;
mod operations;
mod policies_cli;
mod shared_l2;
mod stale;
mod tls;
