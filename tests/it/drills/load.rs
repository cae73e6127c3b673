//! A bounded load for the drills, and the figures taken from it.
//!
//! A few clients, each with its own keep-alive pool, send requests one
//! after another until told to stop, or at most [`Load::max_requests`] or
//! [`Load::limit`], whichever comes first. Every answer is timed and
//! checked against the body the origin stamps for its tenant and path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::origin::stamp;
use crate::support::REQUEST_TIMEOUT;

/// How hard and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Concurrent clients.
    pub(crate) clients: usize,
    /// Requests over all clients.
    pub(crate) max_requests: usize,
    /// From the start, whatever the drill does.
    pub(crate) limit: Duration,
    /// Each client's pause between requests, so that two cores serve folio
    /// and Redis rather than the clients.
    pub(crate) pause: Duration,
}

/// What a key is to the drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Cached before the fault.
    Warm,
    /// First asked for during the fault: no entry can answer for it.
    Cold,
    /// A pass-through route: never cached, the body is streamed.
    Live,
}

/// One request a client sends.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// Which folio instance (0 = A, 1 = B).
    pub(crate) instance: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) tenant: &'static str,
    pub(crate) path: String,
    pub(crate) class: Class,
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 200 with the body the origin stamps for this tenant and path.
    Good { x_cache: String, layer: String },
    /// A 2xx whose body is not the one asked for.
    WrongBody { status: u16 },
    /// An error status: folio's JSON (`error` code), or the upstream's 5xx.
    Status { status: u16, code: String },
    /// The head arrived, then the body broke off (a streamed pass-through).
    Aborted,
    /// No answer at all (connection refused or closed before a head).
    NoAnswer(String),
    /// Nothing within [`REQUEST_TIMEOUT`].
    Hang,
}

impl Outcome {
    /// A short name for the figures: `ok`, `502/upstream_body`, `aborted`…
    pub(crate) fn kind(&self) -> String {
        match self {
            Self::Good { .. } => "ok".into(),
            Self::WrongBody { status } => format!("wrong-body/{status}"),
            Self::Status { status, code } if code.is_empty() => status.to_string(),
            Self::Status { status, code } => format!("{status}/{code}"),
            Self::Aborted => "aborted".into(),
            Self::NoAnswer(_) => "no-answer".into(),
            Self::Hang => "hang".into(),
        }
    }

    pub(crate) fn is_good(&self) -> bool {
        matches!(self, Self::Good { .. })
    }

    /// A good answer served from Redis.
    pub(crate) fn is_l2_hit(&self) -> bool {
        matches!(self, Self::Good { layer, x_cache } if layer == "L2" && x_cache == "HIT")
    }
}

/// One request and its answer; times from the drill's start.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) ask: Ask,
    pub(crate) start: Duration,
    pub(crate) took: Duration,
    pub(crate) outcome: Outcome,
}

impl Sample {
    pub(crate) fn end(&self) -> Duration {
        self.start + self.took
    }
}

/// A running load; [`Running::stop`] ends it and returns every sample.
#[derive(Debug)]
pub(crate) struct Running {
    stop: Arc<AtomicBool>,
    clients: tokio::task::JoinSet<Vec<Sample>>,
}

impl Running {
    pub(crate) async fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        let mut samples = Vec::new();
        while let Some(done) = self.clients.join_next().await {
            samples.extend(done.unwrap());
        }
        samples.sort_by_key(|s| s.start);
        samples
    }
}

/// Starts `load`; client `c` sends `pick(c, n)` as its `n`-th request.
pub(crate) fn start(
    load: Load,
    t0: Instant,
    pick: impl Fn(usize, usize) -> Ask + Send + Sync + 'static,
) -> Running {
    let pick = Arc::new(pick);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..load.clients {
        let (pick, stop, sent) = (Arc::clone(&pick), Arc::clone(&stop), Arc::clone(&sent));
        clients.spawn(async move {
            let client: Client<_, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let mut samples = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::SeqCst)
                    || t0.elapsed() >= load.limit
                    || sent.fetch_add(1, Ordering::SeqCst) >= load.max_requests
                {
                    break;
                }
                let ask = pick(c, n);
                let start = t0.elapsed();
                let outcome = ask_once(&client, &ask).await;
                samples.push(Sample {
                    took: t0.elapsed() - start,
                    ask,
                    start,
                    outcome,
                });
                tokio::time::sleep(load.pause).await;
            }
            samples
        });
    }
    Running { stop, clients }
}

type Pool = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

async fn ask_once(client: &Pool, ask: &Ask) -> Outcome {
    let request = Request::get(format!("http://{}{}", ask.addr, ask.path))
        .header("x-tenant-id", ask.tenant)
        .body(Empty::new())
        .unwrap();
    let exchange = async {
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(error) => {
                let cause = std::error::Error::source(&error)
                    .map_or_else(|| error.to_string(), ToString::to_string);
                return Outcome::NoAnswer(cause);
            }
        };
        let (head, body) = response.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return Outcome::Aborted;
        };
        let header = |name: &str| {
            head.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        if head.status.is_success() {
            if body == stamp(ask.tenant, &ask.path).as_bytes() {
                Outcome::Good {
                    x_cache: header("x-cache"),
                    layer: header("x-cache-layer"),
                }
            } else {
                Outcome::WrongBody {
                    status: head.status.as_u16(),
                }
            }
        } else {
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Outcome::Status {
                status: head.status.as_u16(),
                code,
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or(Outcome::Hang)
}

/// One drill's figures, printed as one `DRILL key=value …` line.
#[derive(Debug)]
pub(crate) struct Figures {
    pub(crate) name: &'static str,
    pub(crate) samples: Vec<Sample>,
    /// When the fault began and ended (ended = the drill undid it).
    pub(crate) fault: (Duration, Duration),
    /// From the end of the fault until the drill's recovery signal.
    pub(crate) recover: Option<Duration>,
    /// Extra `key=value` pairs for this drill.
    pub(crate) extra: Vec<(&'static str, String)>,
}

/// A fault shorter than this (a `FLUSHALL`) is measured over this long.
const MIN_WINDOW: Duration = Duration::from_secs(1);

impl Figures {
    /// Answers that were not good, by kind.
    pub(crate) fn errors(&self) -> BTreeMap<String, usize> {
        let mut errors = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| !s.outcome.is_good()) {
            *errors.entry(sample.outcome.kind()).or_insert(0) += 1;
        }
        errors
    }

    /// Whether a request started while the fault lasted.
    pub(crate) fn during_fault(&self, sample: &Sample) -> bool {
        let (start, end) = self.fault;
        sample.start >= start && sample.start <= end.max(start + MIN_WINDOW)
    }

    /// Good answers by `X-Cache` and layer, e.g. `HIT/L1`, `STALE/L1`, `MISS`.
    fn served(&self) -> String {
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        for sample in &self.samples {
            if let Outcome::Good { x_cache, layer } = &sample.outcome {
                let key = if layer.is_empty() {
                    x_cache.clone()
                } else {
                    format!("{x_cache}/{layer}")
                };
                *served.entry(key).or_insert(0) += 1;
            }
        }
        join(&served)
    }

    pub(crate) fn line(&self) -> String {
        let errors = self.errors();
        let ms = |d: Duration| d.as_millis();
        let mut line = format!(
            "DRILL name={} requests={} errors={} kinds={} served={} base_p99_ms={} fault_p99_ms={} max_ms={} fault_ms={} recover_ms={}",
            self.name,
            self.samples.len(),
            errors.values().sum::<usize>(),
            join(&errors),
            self.served(),
            ms(p99(self.samples.iter().filter(|s| s.end() < self.fault.0))),
            ms(p99(self.samples.iter().filter(|s| self.during_fault(s)))),
            ms(self
                .samples
                .iter()
                .map(|s| s.took)
                .max()
                .unwrap_or_default()),
            ms(self.fault.1.saturating_sub(self.fault.0)),
            self.recover
                .map_or_else(|| "never".to_owned(), |d| ms(d).to_string()),
        );
        for (key, value) in &self.extra {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    }
}

/// The 99th percentile of the samples' latencies (0 for none).
pub(crate) fn p99<'a>(samples: impl Iterator<Item = &'a Sample>) -> Duration {
    let mut took: Vec<Duration> = samples.map(|s| s.took).collect();
    if took.is_empty() {
        return Duration::ZERO;
    }
    took.sort();
    took[(took.len() * 99).div_ceil(100).saturating_sub(1)]
}

fn join(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return "-".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}
