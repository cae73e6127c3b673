//! Whole answers made lately, kept per thread: a hot entry asked for again
//! within the same second, in the same form, gets a copy of the answer
//! made last time instead of having its headers decoded, its `Age` and
//! `Cache-Status` formatted, its coded form looked up and its ETag tagged
//! again.
//!
//! An answer is kept only for a plain GET (no `Range`, no conditional), and
//! found again only for the same stored entry (the same buffer, which the
//! kept answer holds, so its address cannot name another entry while it is
//! kept), served the same way, with the same `Age` and `ttl` in seconds,
//! the same `Accept-Encoding` and the same policy headers: everything the
//! answer is made from. So a kept answer is byte for byte the one that
//! would be made now. Per thread, so finding one takes no lock; a few
//! slots, and small entries only, so what they keep alive stays small.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::outcome::Served;
use crate::policy::Policy;

/// Slots per thread.
const SLOTS: usize = 32;
/// Larger entries are not kept: a slot holds its buffer (and coded form).
const MAX_KEPT: usize = 64 << 10;

/// What an answer is made from, borrowed from the request being answered.
pub(super) struct Asked<'a> {
    source: &'a Arc<[u8]>,
    served: Served,
    age: u64,
    ttl: i64,
    accept_encoding: Option<&'a HeaderValue>,
    policy: &'a Policy,
}

impl<'a> Asked<'a> {
    /// The inputs of the answer to `request` from the entry encoded in
    /// `source`, when it is one that may be kept: a GET for the whole
    /// body, without conditionals, of a small entry.
    pub(super) fn of(
        request: &'a Parts,
        source: &'a Arc<[u8]>,
        policy: &'a Policy,
        served: Served,
        age: u64,
        ttl: i64,
    ) -> Option<Self> {
        if request.method != Method::GET || source.len() > MAX_KEPT {
            return None;
        }
        // One pass over the (few) request headers, not a lookup per name.
        let mut accept_encoding = None;
        for (name, value) in &request.headers {
            if name == header::RANGE
                || name == header::IF_NONE_MATCH
                || name == header::IF_MODIFIED_SINCE
            {
                return None;
            }
            if name == header::ACCEPT_ENCODING {
                if accept_encoding.is_some() {
                    return None; // several lines: not worth comparing
                }
                accept_encoding = Some(value);
            }
        }
        Some(Self {
            source,
            served,
            age,
            ttl,
            accept_encoding,
            policy,
        })
    }

    fn slot(&self) -> usize {
        // Buffers are allocator-aligned: the low bits say little.
        (self.source.as_ptr() as usize >> 6) % SLOTS
    }
}

/// A kept answer and what it was made from.
struct Kept {
    source: Arc<[u8]>,
    served: Served,
    age: u64,
    ttl: i64,
    accept_encoding: Option<HeaderValue>,
    cache_control: Option<HeaderValue>,
    cdn_cache_control: Option<HeaderValue>,
    max_body: usize,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Kept {
    fn made_from(&self, asked: &Asked<'_>) -> bool {
        Arc::ptr_eq(&self.source, asked.source)
            && self.age == asked.age
            && self.ttl == asked.ttl
            && self.served == asked.served
            && self.accept_encoding.as_ref() == asked.accept_encoding
            && self.cache_control == asked.policy.cache_control
            && self.cdn_cache_control == asked.policy.cdn_cache_control
            && self.max_body == asked.policy.max_body
    }
}

thread_local! {
    static RECENT: RefCell<Vec<Option<Kept>>> = const { RefCell::new(Vec::new()) };
}

/// The answer kept for `asked`: status, headers and body.
pub(super) fn find(asked: &Asked<'_>) -> Option<(StatusCode, HeaderMap, Bytes)> {
    RECENT.with_borrow(|slots| {
        let kept = slots.get(asked.slot())?.as_ref()?;
        kept.made_from(asked)
            .then(|| (kept.status, kept.headers.clone(), kept.body.clone()))
    })
}

/// Keeps the answer just made for `asked`.
pub(super) fn keep(asked: &Asked<'_>, status: StatusCode, headers: &HeaderMap, body: &Bytes) {
    if body.len() > MAX_KEPT {
        return;
    }
    let kept = Kept {
        source: Arc::clone(asked.source),
        served: asked.served,
        age: asked.age,
        ttl: asked.ttl,
        accept_encoding: asked.accept_encoding.cloned(),
        cache_control: asked.policy.cache_control.clone(),
        cdn_cache_control: asked.policy.cdn_cache_control.clone(),
        max_body: asked.policy.max_body,
        status,
        headers: headers.clone(),
        body: body.clone(),
    };
    let slot = asked.slot();
    RECENT.with_borrow_mut(|slots| {
        if slots.is_empty() {
            slots.resize_with(SLOTS, || None);
        }
        slots[slot] = Some(kept);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Layer;

    fn request(headers: &[(&str, &str)], method: Method) -> Parts {
        let mut builder = http::Request::builder().method(method).uri("/p/1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn keep_one(asked: &Asked<'_>, body: &'static [u8]) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AGE, HeaderValue::from(asked.age));
        keep(asked, StatusCode::OK, &headers, &Bytes::from_static(body));
    }

    #[test]
    fn a_kept_answer_is_found_only_for_what_it_was_made_from() {
        let policy = Policy::rfc();
        let source: Arc<[u8]> = Arc::from(&b"an encoded entry"[..]);
        let hit = Served::Hit(Layer::L1);
        let plain = request(&[("accept-encoding", "br")], Method::GET);
        let asked = Asked::of(&plain, &source, &policy, hit, 5, 60).unwrap();
        assert!(find(&asked).is_none(), "nothing kept yet");
        keep_one(&asked, b"made");
        let (status, headers, body) = find(&asked).unwrap();
        assert_eq!(
            (status, &headers[header::AGE], &body[..]),
            (StatusCode::OK, &HeaderValue::from(5u64), &b"made"[..])
        );

        let older = Asked::of(&plain, &source, &policy, hit, 6, 59).unwrap();
        assert!(find(&older).is_none(), "another Age");
        let gzip = request(&[("accept-encoding", "gzip")], Method::GET);
        let other_coding = Asked::of(&gzip, &source, &policy, hit, 5, 60).unwrap();
        assert!(find(&other_coding).is_none(), "another Accept-Encoding");
        let l2 = Asked::of(&plain, &source, &policy, Served::Hit(Layer::L2), 5, 60).unwrap();
        assert!(find(&l2).is_none(), "served another way");
        let copy: Arc<[u8]> = Arc::from(&b"an encoded entry"[..]);
        let same_bytes = Asked::of(&plain, &copy, &policy, hit, 5, 60).unwrap();
        assert!(find(&same_bytes).is_none(), "equal bytes, another entry");
    }

    #[test]
    fn ranges_conditionals_and_heads_are_never_kept() {
        let policy = Policy::rfc();
        let source: Arc<[u8]> = Arc::from(&b"entry"[..]);
        let hit = Served::Hit(Layer::L1);
        for headers in [
            &[("range", "bytes=0-1")][..],
            &[("if-none-match", "\"x\"")],
            &[("if-modified-since", "Tue, 01 Dec 2026 17:58:38 GMT")],
            &[("accept-encoding", "br"), ("accept-encoding", "gzip")],
        ] {
            let asked = request(headers, Method::GET);
            assert!(
                Asked::of(&asked, &source, &policy, hit, 0, 1).is_none(),
                "{headers:?}"
            );
        }
        let head = request(&[], Method::HEAD);
        assert!(Asked::of(&head, &source, &policy, hit, 0, 1).is_none());
    }
}
