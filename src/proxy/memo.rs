//! What admission and keying made of requests sent lately, kept per thread:
//! a request sent again exactly as before is the same canonical request,
//! with the same tenant, policy and key, so it is not cleaned, matched,
//! admitted and hashed again. Most traffic of a hot API is a few requests
//! sent over and over.
//!
//! Admission reads only the request's method, version, target and headers,
//! the client's address and the policy set; everything else it reads is
//! fixed at start. A request is found again only when all of those are the
//! same: the target byte for byte, every header line with its value in the
//! same order, the same address and the same policy set. So what is found
//! is what admission would make now. A hash (seeded per thread) only picks
//! the slot; the comparison is in full. A reload empties the slots, so no
//! policy set outlives it here.
//!
//! Only GETs and HEADs are kept, the second time their slot sees them (so
//! one-off requests cost a hash, never a copy), and only small ones without
//! credentials: what is kept is copied out of the connection's buffers and
//! counted whole, so 128 slots a thread hold a few hundred KiB at most, and
//! no one's credentials outlive their request.

use std::cell::RefCell;
use std::hash::{BuildHasher as _, Hasher as _, RandomState};
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, header};
use rustc_hash::FxHasher;

use super::Keyed;
use crate::policy::PolicySet;

/// Slots per thread.
const SLOTS: usize = 128;
/// Requests bigger than this, counted as HTTP/2 counts a header list (32
/// bytes a line besides its name and value), are not kept.
const MAX_KEPT_BYTES: usize = 4 << 10;
/// What a header line costs beside its name and value.
const LINE_BYTES: usize = 32;

/// A request as it was sent, before admission made it canonical.
#[derive(Debug)]
pub(super) struct Sent {
    client: IpAddr,
    method: Method,
    version: Version,
    scheme: Option<Box<str>>,
    authority: Option<Box<str>>,
    target: Option<Box<str>>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Sent {
    /// A copy of `request` that holds none of its buffers, if it is small
    /// and carries no credentials.
    fn copy<B>(request: &Request<B>, client: IpAddr) -> Option<Self> {
        let uri = request.uri();
        let (scheme, authority) = (uri.scheme_str(), uri.authority().map(|a| a.as_str()));
        let target = uri.path_and_query().map(|p| p.as_str());
        let mut bytes = [scheme, authority, target]
            .iter()
            .map(|part| part.map_or(0, str::len))
            .sum::<usize>();
        for (name, value) in request.headers() {
            if is_credential(name) {
                return None;
            }
            bytes = bytes.saturating_add(name.as_str().len() + value.len() + LINE_BYTES);
        }
        if bytes > MAX_KEPT_BYTES {
            return None;
        }
        Some(Self {
            client,
            method: request.method().clone(),
            version: request.version(),
            scheme: scheme.map(Into::into),
            authority: authority.map(Into::into),
            target: target.map(Into::into),
            headers: copied(request.headers())?,
        })
    }

    /// Whether `request`, from `client`, was sent exactly as this one.
    fn is<B>(&self, request: &Request<B>, client: IpAddr) -> bool {
        let uri = request.uri();
        self.client == client
            && self.method == request.method()
            && self.version == request.version()
            && self.scheme.as_deref() == uri.scheme_str()
            && self.authority.as_deref() == uri.authority().map(|a| a.as_str())
            && self.target.as_deref() == uri.path_and_query().map(|p| p.as_str())
            && self.headers.len() == request.headers().len()
            && self.headers.iter().zip(request.headers()).all(
                |((name, value), (sent_name, sent_value))| {
                    name == sent_name && value.as_bytes() == sent_value.as_bytes()
                },
            )
    }
}

fn is_credential(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::COOKIE || name == header::PROXY_AUTHORIZATION
}

/// Every line of `headers`, in its own buffers.
fn copied(headers: &HeaderMap) -> Option<Vec<(HeaderName, HeaderValue)>> {
    headers
        .iter()
        .map(|(name, value)| {
            Some((
                name.clone(),
                HeaderValue::from_bytes(value.as_bytes()).ok()?,
            ))
        })
        .collect()
}

/// `keyed` in buffers of its own: its parts are slices of the connection's
/// read buffer, which may be far larger than they are.
fn detached(keyed: &Keyed) -> Option<Keyed> {
    let mut parts = Request::new(()).into_parts().0;
    parts.method = keyed.parts.method.clone();
    parts.version = keyed.parts.version;
    parts.uri = Uri::try_from(keyed.parts.uri.to_string()).ok()?;
    let mut headers = HeaderMap::with_capacity(keyed.parts.headers.len());
    for (name, value) in copied(&keyed.parts.headers)? {
        headers.append(name, value);
    }
    parts.headers = headers;
    Some(Keyed {
        policy: Arc::clone(&keyed.policy),
        policies: Arc::clone(&keyed.policies),
        parts,
        path: keyed.path.clone(),
        tenant: keyed.tenant.clone(),
        primary: keyed.primary,
        asked: keyed.asked.clone(),
    })
}

/// What `recall` found.
pub(super) enum Recalled {
    /// The request was sent before, and this is what it was made into.
    Found(Arc<Keyed>),
    /// Not found; when it is worth keeping, what to `keep` it with.
    Missed(Option<Ticket>),
}

/// A request seen twice in its slot, copied as it was sent.
pub(super) struct Ticket {
    at: usize,
    hash: u64,
    sent: Sent,
}

#[derive(Default)]
struct Slot {
    /// The hash of the last request this slot saw.
    seen: u64,
    kept: Option<(u64, Sent, Arc<Keyed>)>,
}

/// One thread's slots, and the policy set they were made under.
struct Memo {
    policies: Option<Arc<PolicySet>>,
    seed: usize,
    slots: Vec<Slot>,
}

thread_local! {
    static MEMO: RefCell<Memo> = const {
        RefCell::new(Memo { policies: None, seed: 0, slots: Vec::new() })
    };
}

/// What `request` from `client` was made into under `policies`, if it was
/// sent before exactly as now.
pub(super) fn recall<B>(
    request: &Request<B>,
    client: IpAddr,
    policies: &Arc<PolicySet>,
) -> Recalled {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Recalled::Missed(None);
    }
    MEMO.with_borrow_mut(|memo| {
        let current = memo.policies.as_ref();
        if !current.is_some_and(|set| Arc::ptr_eq(set, policies)) {
            // First use, or a reload: nothing made before may be found.
            memo.policies = Some(Arc::clone(policies));
            memo.slots.clear();
            memo.slots.resize_with(SLOTS, Slot::default);
            if memo.seed == 0 {
                memo.seed = usize::try_from(RandomState::new().hash_one(0u8) | 1).unwrap_or(1);
            }
        }
        let hash = hash_of(request, client, memo.seed);
        let at = usize::try_from(hash >> 32).unwrap_or(0) % SLOTS;
        let slot = &mut memo.slots[at];
        if let Some((kept_hash, sent, keyed)) = &slot.kept
            && *kept_hash == hash
            && Arc::ptr_eq(&keyed.policies, policies)
            && sent.is(request, client)
        {
            return Recalled::Found(Arc::clone(keyed));
        }
        if slot.seen != hash {
            slot.seen = hash;
            return Recalled::Missed(None);
        }
        Recalled::Missed(Sent::copy(request, client).map(|sent| Ticket { at, hash, sent }))
    })
}

/// Keeps what the request `ticket` copied was made into.
pub(super) fn keep(ticket: Ticket, keyed: &Keyed) {
    let Some(keyed) = detached(keyed) else {
        return;
    };
    MEMO.with_borrow_mut(|memo| {
        let current = memo.policies.as_ref();
        if !current.is_some_and(|set| Arc::ptr_eq(set, &keyed.policies)) {
            return; // made under a set since replaced
        }
        if let Some(slot) = memo.slots.get_mut(ticket.at) {
            slot.kept = Some((ticket.hash, ticket.sent, Arc::new(keyed)));
        }
    });
}

/// Picks the slot: the parts that tell requests apart in practice (the
/// target, the header values, the client); the comparison reads the rest.
fn hash_of<B>(request: &Request<B>, client: IpAddr, seed: usize) -> u64 {
    let mut hasher = FxHasher::with_seed(seed);
    let uri = request.uri();
    hasher.write(uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
    if let Some(authority) = uri.authority() {
        hasher.write(authority.as_str().as_bytes());
    }
    for value in request.headers().values() {
        hasher.write(value.as_bytes());
    }
    match client {
        IpAddr::V4(v4) => hasher.write_u32(v4.to_bits()),
        IpAddr::V6(v6) => hasher.write_u128(v6.to_bits()),
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use http::request::Parts;

    use super::*;
    use crate::freshness;
    use crate::key::CacheKey;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    fn policies() -> Arc<PolicySet> {
        let yaml = "\"/api/v1/products/{id}\":\n  cache_ttl: 1h\n";
        Arc::new(PolicySet::from_yaml("test.yaml", yaml).expect("policies"))
    }

    fn sent(headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::get("/api/v1/products/1?x=1");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request")
    }

    fn keyed(policies: &Arc<PolicySet>, tenant: &str) -> Arc<Keyed> {
        let parts: Parts = sent(&[]).into_parts().0;
        let policy = policies.rfc();
        let primary = CacheKey::new(tenant, "/api/v1/products/1", None, &parts.headers, policy);
        Arc::new(Keyed {
            policy: Arc::clone(policy),
            policies: Arc::clone(policies),
            parts,
            path: "/api/v1/products/1".into(),
            tenant: tenant.into(),
            primary,
            asked: freshness::Request::default(),
        })
    }

    /// Sends `request` until it is kept, as `acme`'s; what it was kept as.
    fn kept(request: &Request<()>, policies: &Arc<PolicySet>) -> Arc<Keyed> {
        assert!(matches!(
            recall(request, CLIENT, policies),
            Recalled::Missed(None)
        ));
        let Recalled::Missed(Some(ticket)) = recall(request, CLIENT, policies) else {
            panic!("a request seen twice is worth keeping");
        };
        let keyed = keyed(policies, "acme");
        keep(ticket, &keyed);
        keyed
    }

    fn found(request: &Request<()>, client: IpAddr, policies: &Arc<PolicySet>) -> Option<String> {
        match recall(request, client, policies) {
            Recalled::Found(keyed) => Some(keyed.tenant.clone()),
            Recalled::Missed(_) => None,
        }
    }

    #[test]
    fn a_request_sent_again_alike_is_found_once_kept() {
        let policies = policies();
        let request = sent(&[("host", "shop"), ("x-tenant-id", "acme")]);
        kept(&request, &policies);
        let again = sent(&[("host", "shop"), ("x-tenant-id", "acme")]);
        assert_eq!(found(&again, CLIENT, &policies).as_deref(), Some("acme"));
    }

    #[test]
    fn any_difference_in_what_admission_reads_is_another_request() {
        let policies = policies();
        let original = [("host", "shop"), ("x-tenant-id", "acme"), ("accept", "*/*")];
        kept(&sent(&original), &policies);
        let others = [
            sent(&[
                ("host", "shop"),
                ("x-tenant-id", "globex"),
                ("accept", "*/*"),
            ]),
            sent(&[("host", "shop"), ("x-tenant-id", "acmE"), ("accept", "*/*")]),
            sent(&[
                ("host", "shop"),
                ("x-tenant-id", "acme "),
                ("accept", "*/*"),
            ]),
            sent(&[("host", "shop"), ("x-tenant-id", "acme")]),
            sent(&[
                ("host", "shop"),
                ("x-tenant-id", "acme"),
                ("accept", "*/*"),
                ("x-tenant-id", "globex"),
            ]),
            sent(&[("host", "Shop"), ("x-tenant-id", "acme"), ("accept", "*/*")]),
            sent(&[("x-tenant-id", "acme"), ("host", "shop"), ("accept", "*/*")]),
            sent(&[
                ("host", "shop"),
                ("x-tenant-id", "acme"),
                ("accept", "*/*"),
                ("range", "bytes=0-1"),
            ]),
        ];
        // The hash only picks a slot: the comparison alone must tell.
        let copy = Sent::copy(&sent(&original), CLIENT).expect("small");
        assert!(copy.is(&sent(&original), CLIENT));
        for other in &others {
            assert_eq!(found(other, CLIENT, &policies), None, "{other:?}");
            assert!(!copy.is(other, CLIENT), "{other:?}");
        }
        let mut target = sent(&original);
        *target.uri_mut() = "/api/v1/products/1?x=2".parse().expect("uri");
        let mut absolute = sent(&original);
        *absolute.uri_mut() = "http://shop/api/v1/products/1?x=1".parse().expect("uri");
        let mut head = sent(&original);
        *head.method_mut() = Method::HEAD;
        let mut older = sent(&original);
        *older.version_mut() = Version::HTTP_10;
        for other in [&target, &absolute, &head, &older] {
            assert_eq!(found(other, CLIENT, &policies), None, "{other:?}");
            assert!(!copy.is(other, CLIENT), "{other:?}");
        }
        let mut other_host = sent(&original);
        *other_host.uri_mut() = "http://shoP/api/v1/products/1?x=1".parse().expect("uri");
        let absolute_copy = Sent::copy(&absolute, CLIENT).expect("small");
        assert!(absolute_copy.is(&absolute, CLIENT));
        assert!(!absolute_copy.is(&other_host, CLIENT));
        let elsewhere = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(found(&sent(&original), elsewhere, &policies), None);
        assert!(!copy.is(&sent(&original), elsewhere));
        assert_eq!(
            found(&sent(&original), CLIENT, &policies).as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn a_reload_forgets_every_request_kept() {
        let policies = policies();
        let request = sent(&[("x-tenant-id", "acme")]);
        kept(&request, &policies);
        let reloaded = self::policies();
        assert_eq!(found(&request, CLIENT, &reloaded), None);
        // Nothing of the old set is held, nor found under it again.
        assert_eq!(Arc::strong_count(&policies), 1);
        assert_eq!(found(&request, CLIENT, &policies), None);
    }

    fn never_kept(request: &Request<()>, policies: &Arc<PolicySet>) {
        for _ in 0..3 {
            let recalled = recall(request, CLIENT, policies);
            assert!(matches!(recalled, Recalled::Missed(None)), "{request:?}");
        }
    }

    #[test]
    fn a_large_request_is_never_kept() {
        let policies = policies();
        let value = "v".repeat(MAX_KEPT_BYTES);
        never_kept(
            &sent(&[("x-tenant-id", "acme"), ("x-big", &value)]),
            &policies,
        );
        // Counted whole: the authority, and what each line costs.
        let mut absolute = sent(&[("x-tenant-id", "acme")]);
        let uri = format!("http://{}/api/v1/products/1", "h".repeat(MAX_KEPT_BYTES));
        *absolute.uri_mut() = uri.parse().expect("uri");
        never_kept(&absolute, &policies);
        let mut empty_lines = sent(&[("x-tenant-id", "acme")]);
        for _ in 0..MAX_KEPT_BYTES / LINE_BYTES {
            empty_lines
                .headers_mut()
                .append("a", HeaderValue::from_static(""));
        }
        never_kept(&empty_lines, &policies);
    }

    #[test]
    fn credentials_and_other_methods_are_never_kept() {
        let policies = policies();
        for name in ["authorization", "cookie", "proxy-authorization"] {
            never_kept(
                &sent(&[("x-tenant-id", "acme"), (name, "secret")]),
                &policies,
            );
        }
        let mut post = sent(&[("x-tenant-id", "acme")]);
        *post.method_mut() = Method::POST;
        never_kept(&post, &policies);
    }

    #[test]
    fn what_is_kept_holds_no_buffer_of_the_connection() {
        let policies = policies();
        let request = sent(&[("x-tenant-id", "acme")]);
        assert!(matches!(
            recall(&request, CLIENT, &policies),
            Recalled::Missed(None)
        ));
        let Recalled::Missed(Some(ticket)) = recall(&request, CLIENT, &policies) else {
            panic!("a request seen twice is worth keeping");
        };
        // Admission's parts are slices of the connection's read buffer.
        let buffer = bytes::Bytes::from(vec![b'a'; 64 << 10]);
        let mut keyed = Arc::into_inner(keyed(&policies, "acme")).expect("one owner");
        let value = HeaderValue::from_maybe_shared(buffer.slice(0..4)).expect("value");
        keyed.parts.headers.insert("x-tenant-id", value);
        keep(ticket, &keyed);
        let Recalled::Found(found) = recall(&request, CLIENT, &policies) else {
            panic!("kept");
        };
        let held = found.parts.headers["x-tenant-id"].as_bytes();
        assert_eq!(held, b"aaaa");
        assert!(!buffer.as_ptr_range().contains(&held.as_ptr()));
        assert_eq!(found.primary, keyed.primary);
        assert_eq!(found.parts.uri, keyed.parts.uri);
    }
}
