//! The one body type folio sends, to clients and to the upstream.
//!
//! An enum rather than a boxed trait object: a cache hit is a `Full` body
//! that costs no allocation, and a streamed upstream body passes through
//! without copying.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

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
    },
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    pub(crate) fn stream(rest: Incoming) -> Self {
        Self::Stream { prefix: None, rest }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream { prefix, rest } => match prefix.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream { prefix, rest } => {
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
