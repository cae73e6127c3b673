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
//! same order, the same address and the same policy set (held, so its
//! address cannot name a later set). So what is found is what admission
//! would make now. A hash only picks the slot; the comparison is in full.
//!
//! A request is kept the second time its slot sees it, so one-off requests
//! cost a hash and never a copy; small requests only, one per slot, so what
//! the slots hold stays small.

use std::cell::RefCell;
use std::hash::Hasher as _;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Request, Version};
use rustc_hash::FxHasher;

use super::Keyed;
use crate::policy::PolicySet;

/// Slots per thread.
const SLOTS: usize = 128;
/// Requests with more bytes of target and headers are not kept.
const MAX_KEPT_BYTES: usize = 4 << 10;

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
    /// A copy of `request` that holds none of its buffers, if it is small.
    fn copy<B>(request: &Request<B>, client: IpAddr) -> Option<Self> {
        let uri = request.uri();
        let mut bytes = uri.path_and_query().map_or(0, |p| p.as_str().len());
        for (name, value) in request.headers() {
            bytes = bytes.saturating_add(name.as_str().len() + value.len());
        }
        if bytes > MAX_KEPT_BYTES {
            return None;
        }
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                let mut copy = HeaderValue::from_bytes(value.as_bytes()).ok()?;
                copy.set_sensitive(value.is_sensitive());
                Some((name.clone(), copy))
            })
            .collect::<Option<_>>()?;
        Some(Self {
            client,
            method: request.method().clone(),
            version: request.version(),
            scheme: uri.scheme_str().map(Into::into),
            authority: uri.authority().map(|a| a.as_str().into()),
            target: uri.path_and_query().map(|p| p.as_str().into()),
            headers,
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

thread_local! {
    static SLOTS_OF_THREAD: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// What `request` from `client` was made into under `policies`, if it was
/// sent before exactly as now.
pub(super) fn recall<B>(
    request: &Request<B>,
    client: IpAddr,
    policies: &Arc<PolicySet>,
) -> Recalled {
    let hash = hash_of(request, client);
    let at = (hash >> 32) as usize % SLOTS;
    SLOTS_OF_THREAD.with_borrow_mut(|slots| {
        if slots.is_empty() {
            slots.resize_with(SLOTS, Slot::default);
        }
        let slot = &mut slots[at];
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
pub(super) fn keep(ticket: Ticket, keyed: &Arc<Keyed>) {
    SLOTS_OF_THREAD.with_borrow_mut(|slots| {
        if let Some(slot) = slots.get_mut(ticket.at) {
            slot.kept = Some((ticket.hash, ticket.sent, Arc::clone(keyed)));
        }
    });
}

fn hash_of<B>(request: &Request<B>, client: IpAddr) -> u64 {
    let mut hasher = FxHasher::default();
    let uri = request.uri();
    hasher.write(request.method().as_str().as_bytes());
    hasher.write(uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
    hasher.write(uri.authority().map_or("", |a| a.as_str()).as_bytes());
    for (name, value) in request.headers() {
        hasher.write(name.as_str().as_bytes());
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
        // Policies reloaded: the same request may be another now.
        assert_eq!(found(&sent(&original), CLIENT, &self::policies()), None);
        assert_eq!(
            found(&sent(&original), CLIENT, &policies).as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn a_large_request_is_never_kept() {
        let policies = policies();
        let cookie = "c".repeat(MAX_KEPT_BYTES);
        let request = sent(&[("x-tenant-id", "acme"), ("cookie", &cookie)]);
        for _ in 0..3 {
            assert!(matches!(
                recall(&request, CLIENT, &policies),
                Recalled::Missed(None)
            ));
        }
    }
}
