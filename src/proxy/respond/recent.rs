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
    source: &'a Bytes,
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
        source: &'a Bytes,
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
    source: Bytes,
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
        self.source.as_ptr() == asked.source.as_ptr()
            && self.source.len() == asked.source.len()
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
        source: asked.source.clone(),
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
