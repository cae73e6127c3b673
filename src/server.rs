//! A listener: accepts connections, speaks HTTP/1.1 and h2c on each (or,
//! given a TLS acceptor, TLS with HTTP/2 and HTTP/1.1 by ALPN), hands every
//! request to a handler (the proxy, or the admin API), closes connections
//! left idle, and on shutdown stops accepting and lets in-flight requests
//! finish (bounded).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response, Version};
use hyper::body::Incoming;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use slab::Slab;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::body::Body;

/// Longest an HTTP/1.1 connection may wait for a request head, the next
/// one on a keep-alive connection included (slowloris guard); the idle
/// timeout, when shorter, wins.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams one HTTP/2 client may have open at once.
const MAX_STREAMS: u32 = 256;
/// Largest request head accepted over HTTP/2 (HTTP/1.1's limit is hyper's).
const MAX_HEADER_LIST: u32 = 64 << 10;

/// How long connections may live without work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1.1 keep-alive and HTTP/2 alike; also a client that opens a
    /// connection and never completes a request head).
    pub(crate) idle: Duration,
    /// After shutdown begins, how long requests in flight may finish.
    pub(crate) grace: Duration,
}

/// How much work a connection has had, and has now. Counted, not timed:
/// a request reads no clock; the watchdog does, once a check.
#[derive(Debug, Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Requests finished on the connection so far.
    finished: AtomicU64,
    /// Whether the connection speaks HTTP/2 (known from its first request).
    http2: AtomicBool,
    /// The watchdog's checks so far: the clock a response's progress is
    /// told by, so a request reads no clock.
    tick: AtomicU64,
    /// The response an HTTP/1.1 connection is sending (one at a time):
    /// its [`Progress`].
    h1_sending: AtomicU64,
    /// The responses of an HTTP/2 connection's streams, each its
    /// [`Progress`] in its own slot.
    h2_sending: Mutex<Slab<Progress>>,
}

/// A response being sent, as the watchdog sees it: 0 while it waits on its
/// source (or is done), else one more than the tick at which the client
/// last took a part of it.
type Progress = u64;

impl Activity {
    fn progress_now(&self) -> Progress {
        self.tick.load(Ordering::Relaxed).wrapping_add(1)
    }

    /// Whether some response has waited on the client for `ticks` checks
    /// without the client taking any of it.
    fn stalled(&self, ticks: u64) -> bool {
        let now = self.tick.load(Ordering::Relaxed);
        let stalled = |progress: Progress| {
            progress != 0 && now.saturating_sub(progress.wrapping_sub(1)) >= ticks
        };
        stalled(self.h1_sending.load(Ordering::Relaxed))
            || lock(&self.h2_sending).iter().any(|(_, p)| stalled(*p))
    }

    /// The finished count when nothing is in flight; `None` while busy.
    fn quiet_at(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| self.finished.load(Ordering::Acquire))
    }

    /// How long the connection may be quiet: an HTTP/1.1 one (or one that
    /// has not finished a request head yet) is waiting for a head, and
    /// gets at most [`HEADER_READ_TIMEOUT`].
    fn quiet_limit(&self, limits: Limits) -> Duration {
        if self.http2.load(Ordering::Relaxed) {
            limits.idle
        } else {
            limits.idle.min(HEADER_READ_TIMEOUT)
        }
    }
}

/// Counts a request in flight while it lives (also when it is cancelled):
/// until its response's last byte is written, as its body holds it.
struct Working(Arc<Activity>);

impl Working {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Largest part of a response handed to hyper at once. hyper asks for the
/// next part once the client has taken (most of) this one, so that is when
/// a response makes progress, also one stored whole.
const PART: usize = 16 << 10;

/// A response body being sent: its request counts as in flight (the
/// connection is busy, not quiet) until hyper has written it all, or
/// dropped it. Unless its source has nothing for it yet, it waits on the
/// client, and a client that takes none of it for too long is dropped
/// (see [`watchdog`]).
struct Sending {
    body: Body,
    /// What is left of a data frame larger than [`PART`].
    rest: Option<Bytes>,
    /// Where the watchdog sees this response's progress.
    slot: Slot,
    working: Working,
}

enum Slot {
    Http1,
    Http2(usize),
}

impl Sending {
    fn new(body: Body, working: Working, http2: bool) -> Self {
        let activity = &working.0;
        let now = activity.progress_now();
        let slot = if http2 {
            Slot::Http2(lock(&activity.h2_sending).insert(now))
        } else {
            activity.h1_sending.store(now, Ordering::Relaxed);
            Slot::Http1
        };
        Self {
            body,
            rest: None,
            slot,
            working,
        }
    }

    fn note(&self, progress: Progress) {
        let activity = &self.working.0;
        match self.slot {
            Slot::Http1 => activity.h1_sending.store(progress, Ordering::Relaxed),
            Slot::Http2(key) => {
                if let Some(held) = lock(&activity.h2_sending).get_mut(key) {
                    *held = progress;
                }
            }
        }
    }

    /// The next part of `data`, keeping the rest for the next poll.
    fn part(&mut self, mut data: Bytes) -> Bytes {
        if data.len() > PART {
            self.rest = Some(data.split_off(PART));
        }
        data
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        match self.slot {
            Slot::Http1 => self.working.0.h1_sending.store(0, Ordering::Relaxed),
            Slot::Http2(key) => {
                lock(&self.working.0.h2_sending).try_remove(key);
            }
        }
    }
}

impl http_body::Body for Sending {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        // Asked for more: the client took what it was given.
        let now = this.working.0.progress_now();
        if let Some(rest) = this.rest.take() {
            this.note(now);
            let part = this.part(rest);
            return Poll::Ready(Some(Ok(http_body::Frame::data(part))));
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => {
                this.note(0); // waiting on the source, not on the client
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.note(now);
                let frame = match frame.into_data() {
                    Ok(data) => http_body::Frame::data(this.part(data)),
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            done @ Poll::Ready(_) => {
                this.note(0);
                done
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let rest = self.rest.as_ref().map_or(0, |rest| rest.len() as u64);
        let inner = self.body.size_hint();
        let mut hint = http_body::SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint.set_lower(inner.lower().saturating_add(rest));
        hint
    }
}

pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
    tls: Option<TlsAcceptor>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header read timeout arms a timer for every request head;
    // the connection's watchdog bounds a stalled head instead (see
    // `Activity::quiet_limit`), with no work per request.
    builder.http1().header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .keep_alive_interval(Some(limits.idle.min(HEADER_READ_TIMEOUT)))
        .keep_alive_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    // Each connection holds a sender; when all are gone, all have closed.
    let (stop, stopping) = watch::channel(false);
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let activity = Arc::new(Activity::default());
                let working = Arc::clone(&activity);
                let service = service_fn(move |request: Request<Incoming>| {
                    let http2 = request.version() == Version::HTTP_2;
                    if http2 {
                        working.http2.store(true, Ordering::Relaxed);
                    }
                    let in_flight = Working::start(&working);
                    let response = handler(request, peer);
                    async move {
                        let response = response.await;
                        Ok::<_, Infallible>(response.map(|body| Sending::new(body, in_flight, http2)))
                    }
                });
                match &tls {
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        tokio::spawn(drive(connection, peer, activity, stopping.clone(), limits, open.clone()));
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's own task:
                        // a slow client never holds up the accept loop.
                        let (acceptor, builder) = (acceptor.clone(), Arc::clone(&builder));
                        let (stopping, open) = (stopping.clone(), open.clone());
                        tokio::spawn(async move {
                            let Some(stream) = handshake(&acceptor, stream, peer, limits, stopping.clone()).await else {
                                return;
                            };
                            let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                            drive(connection, peer, activity, stopping, limits, open).await;
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    info!(
        "shutting down: no new connections; waiting up to {:?} for requests in flight",
        limits.grace
    );
    let _ = stop.send(true);
    drop(open);
    if tokio::time::timeout(limits.grace, all_closed.recv())
        .await
        .is_err()
    {
        warn!(
            "requests still in flight after {:?}; closing them",
            limits.grace
        );
    }
}

/// The TLS handshake of a new connection, bounded like a request head: a
/// client that opens a connection and never finishes the handshake is
/// dropped after the idle timeout (at most [`HEADER_READ_TIMEOUT`]), and so
/// is one still shaking hands when the server stops.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let limit = limits.idle.min(HEADER_READ_TIMEOUT);
    tokio::select! {
        accepted = tokio::time::timeout(limit, acceptor.accept(stream)) => match accepted {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                debug!(%peer, %error, "TLS handshake failed");
                None
            }
            Err(_) => {
                debug!(%peer, ?limit, "TLS handshake not finished in time; closed");
                None
            }
        },
        _ = stopping.wait_for(|stop| *stop) => None,
    }
}

/// Runs one connection until it ends. A watchdog task beside it asks for a
/// graceful close when the connection has been quiet too long or the server
/// stops, and for a drop if it then lingers; being a task of its own, it
/// keeps timers and the stop channel out of the connection's wake-ups, so
/// a request's work polls the connection alone.
async fn drive<C>(
    connection: C,
    peer: SocketAddr,
    activity: Arc<Activity>,
    stopping: watch::Receiver<bool>,
    limits: Limits,
    _open: mpsc::Sender<()>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let asked = Arc::new(Asked::default());
    let watchdog = tokio::spawn(watchdog(
        Arc::clone(&asked),
        activity,
        stopping,
        limits,
        peer,
    ));
    let _watchdog = AbortOnDrop(watchdog.abort_handle());
    tokio::pin!(connection);
    let mut closing = false;
    let ended = std::future::poll_fn(|cx| {
        asked.waker.register(cx.waker());
        match asked.what.load(Ordering::Acquire) {
            DROP => return Poll::Ready(None),
            CLOSE if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        connection.as_mut().poll(cx).map(Some)
    })
    .await;
    if let Some(Err(error)) = ended {
        debug!(%peer, %error, "connection ended with an error");
    }
}

/// What the watchdog asks of its connection: nothing yet, a graceful
/// close, or a drop.
#[derive(Debug, Default)]
struct Asked {
    what: AtomicU8,
    waker: AtomicWaker,
}

const CLOSE: u8 = 1;
const DROP: u8 = 2;

impl Asked {
    fn ask(&self, what: u8) {
        self.what.store(what, Ordering::Release);
        self.waker.wake();
    }
}

/// Ends the watchdog with its connection.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches one connection: asks it to close when it has been quiet for its
/// limit or the server stops, and to drop when it has not closed within
/// the grace period, or when a response has waited on the client for
/// [`send_limit`] without the client taking any of it: one that stops
/// reading, or opens no HTTP/2 window, would otherwise hold the
/// connection, and for a streamed answer an upstream connection, for ever.
/// (hyper cannot reset one HTTP/2 stream from here: the connection goes.)
async fn watchdog(
    asked: Arc<Asked>,
    activity: Arc<Activity>,
    mut stopping: watch::Receiver<bool>,
    limits: Limits,
    peer: SocketAddr,
) {
    let check_every = (limits.idle.min(HEADER_READ_TIMEOUT) / 8).max(Duration::from_millis(50));
    let send_limit = send_limit(limits);
    let stall_ticks = send_limit
        .as_millis()
        .div_ceil(check_every.as_millis().max(1));
    let stall_ticks = u64::try_from(stall_ticks).unwrap_or(u64::MAX);
    // Quiet since when, at which finished count.
    let mut quiet: Option<(Instant, u64)> = None;
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep(check_every) => {
                activity.tick.fetch_add(1, Ordering::Relaxed);
                quiet = match (activity.quiet_at(), quiet) {
                    (None, _) => None,
                    (Some(count), Some((since, seen))) if count == seen => Some((since, seen)),
                    (Some(count), _) => Some((Instant::now(), count)),
                };
                let limit = activity.quiet_limit(limits);
                if quiet.is_some_and(|(since, _)| since.elapsed() >= limit) {
                    debug!(%peer, "idle connection closed");
                    break;
                }
                if activity.stalled(stall_ticks) {
                    // Nothing it is sent is taken: a close could not finish.
                    debug!(%peer, ?send_limit, "a client took none of its response; dropped");
                    asked.ask(DROP);
                    return;
                }
            }
        }
    }
    asked.ask(CLOSE);
    // A close lets a request in flight finish; with none, nothing is lost by
    // dropping the connection (a head still arriving, say: hyper's close
    // waits for it), so it is dropped at the next check.
    let grace = tokio::time::Instant::now() + limits.grace;
    loop {
        tokio::time::sleep_until(grace.min(tokio::time::Instant::now() + check_every)).await;
        if tokio::time::Instant::now() >= grace || activity.quiet_at().is_some() {
            break;
        }
    }
    debug!(%peer, "connection did not close in time; dropped");
    asked.ask(DROP);
}

/// How long a response may wait on a client that takes none of it: the
/// quiet limit, but not under [`MIN_SEND_LIMIT`], so a short keep-alive
/// does not cut slow clients off.
fn send_limit(limits: Limits) -> Duration {
    limits.idle.min(HEADER_READ_TIMEOUT).max(MIN_SEND_LIMIT)
}

const MIN_SEND_LIMIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_waiting_for_a_head_is_held_to_the_header_timeout() {
        let limits = |idle| Limits {
            idle,
            grace: Duration::from_secs(1),
        };
        let activity = Activity::default();
        // HTTP/1.1, or nothing known yet: waiting for a head.
        let long = limits(Duration::from_secs(75));
        assert_eq!(activity.quiet_limit(long), HEADER_READ_TIMEOUT);
        let short = limits(Duration::from_secs(5));
        assert_eq!(activity.quiet_limit(short), Duration::from_secs(5));
        // HTTP/2 keeps its own framing alive: the idle timeout alone.
        activity.http2.store(true, Ordering::Relaxed);
        assert_eq!(activity.quiet_limit(long), Duration::from_secs(75));
    }

    fn poll(sending: &mut Sending) -> Poll<Option<usize>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        http_body::Body::poll_frame(Pin::new(sending), &mut cx)
            .map(|frame| frame.map(|f| f.unwrap().into_data().unwrap().len()))
    }

    #[test]
    fn a_response_stalls_only_while_the_client_takes_none_of_it() {
        for http2 in [false, true] {
            let activity = Arc::new(Activity::default());
            let body = Body::full(Bytes::from(vec![b'x'; 2 * PART + 10]));
            let mut sending = Sending::new(body, Working::start(&activity), http2);
            assert_eq!(
                http_body::Body::size_hint(&sending).exact(),
                Some(2 * PART as u64 + 10)
            );
            let tick = |n| activity.tick.fetch_add(n, Ordering::Relaxed);
            tick(3);
            assert!(!activity.stalled(4), "handed over, not yet asked for more");
            tick(1);
            assert!(activity.stalled(4), "four checks without a part taken");
            // Parts of at most PART bytes: each one asked for is progress.
            assert_eq!(poll(&mut sending), Poll::Ready(Some(PART)));
            assert!(!activity.stalled(4));
            assert_eq!(
                http_body::Body::size_hint(&sending).exact(),
                Some(PART as u64 + 10)
            );
            assert!(!http_body::Body::is_end_stream(&sending));
            assert_eq!(poll(&mut sending), Poll::Ready(Some(PART)));
            assert_eq!(poll(&mut sending), Poll::Ready(Some(10)));
            tick(10);
            drop(sending);
            assert!(!activity.stalled(4), "done");
            assert!(lock(&activity.h2_sending).is_empty());
        }
    }
}
