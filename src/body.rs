//! The one body type folio sends, to clients and to the upstream.
//!
//! An enum rather than a boxed trait object: a cache hit is a `Full` body
//! that costs no allocation, and a streamed upstream body passes through
//! without copying.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Why a streamed body ended before its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error(transparent)]
    Read(#[from] hyper::Error),
    #[error("no part of the body came for {0:?}")]
    Stalled(Duration),
}

#[derive(Debug)]
pub(crate) enum Body {
    /// Nothing (HEAD answers, 304s, error-free empty requests).
    Empty,
    /// Bytes in memory: cached bodies and short JSON errors.
    Full(Option<Bytes>),
    /// A streamed body, after `prefix` (the part already read while deciding
    /// whether the body fits in the cache).
    Stream {
        prefix: Option<Bytes>,
        rest: Incoming,
        stall: Option<Stall>,
    },
}

/// How long a streamed body may keep its reader waiting for its next part,
/// counted from when the reader asks: a client that reads slowly does not
/// spend the source's time.
#[derive(Debug)]
pub(crate) struct Stall {
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    /// A client's body, passed on as it comes.
    pub(crate) fn stream(rest: Incoming) -> Self {
        Self::Stream {
            prefix: None,
            rest,
            stall: None,
        }
    }

    /// An upstream's body after `prefix`, ended with an error when its
    /// source sends nothing for `limit` while it is read: an upstream that
    /// stalls mid-body holds neither the client nor the connection forever.
    pub(crate) fn from_upstream(prefix: Option<Bytes>, rest: Incoming, limit: Duration) -> Self {
        Self::Stream {
            prefix,
            rest,
            stall: Some(Stall {
                limit,
                timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
                waiting: false,
            }),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream {
                prefix,
                rest,
                stall,
            } => {
                if let Some(bytes) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                if let Some(stall) = stall.as_mut().filter(|s| !s.waiting) {
                    // A limit past what the clock can hold waits a year.
                    let now = Instant::now();
                    let deadline = now
                        .checked_add(stall.limit)
                        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
                    stall.timer.as_mut().reset(deadline);
                    stall.waiting = true;
                }
                match Pin::new(rest).poll_frame(cx) {
                    Poll::Ready(frame) => {
                        if let Some(stall) = stall {
                            stall.waiting = false;
                        }
                        Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
                    }
                    Poll::Pending => match stall {
                        Some(stall) => match stall.timer.as_mut().poll(cx) {
                            Poll::Ready(()) => {
                                Poll::Ready(Some(Err(BodyError::Stalled(stall.limit))))
                            }
                            Poll::Pending => Poll::Pending,
                        },
                        None => Poll::Pending,
                    },
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream { prefix, rest, .. } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream { prefix, rest, .. } => {
                let already = prefix.as_ref().map_or(0, |b| b.len() as u64);
                let hint = rest.size_hint();
                let mut total = SizeHint::new();
                total.set_lower(hint.lower() + already);
                if let Some(upper) = hint.upper() {
                    total.set_upper(upper + already);
                }
                total
            }
        }
    }
}
