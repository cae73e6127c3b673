use std::time::UNIX_EPOCH;

use super::*;

pub(crate) fn sample_parts(body: &'static [u8]) -> EntryParts {
    let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "last-modified",
        HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
    );
    headers.append("x-multi", HeaderValue::from_static("a"));
    headers.append("x-multi", HeaderValue::from_static("b"));
    EntryParts {
        status: StatusCode::OK,
        headers,
        body: Bytes::from_static(body),
        etag: HeaderValue::from_static("\"abc\""),
        requested_at: now - Duration::from_millis(20),
        stored_at: now,
        fresh_until: now + Duration::from_secs(60),
        initial_age: Duration::from_secs(3),
        stale_while_revalidate: Duration::from_secs(10),
        stale_if_error: Duration::from_secs(300),
        tenant: "acme".into(),
        path: "/api/v1/products/42".into(),
        tags: vec!["product:42".into(), "products".into()],
        vary: vec![
            (
                HeaderName::from_static("accept-encoding"),
                Some(HeaderValue::from_static("gzip")),
            ),
            (HeaderName::from_static("x-absent"), None),
        ],
        revalidate: false,
        no_stale: false,
        shared_ok: true,
        upstream_etag: true,
        vary_index: false,
        immutable: false,
        grace: false,
        compressed: false,
    }
}

pub(crate) fn sample(body: &'static [u8]) -> Entry {
    sample_parts(body)
        .seal()
        .unwrap_or_else(|| panic!("the sample seals"))
}

#[test]
fn an_entry_is_for_its_own_tenant_and_path_only() {
    let entry = sample(b"{\"id\":42}");
    assert!(entry.is_for("acme", "/api/v1/products/42"));
    for (tenant, path) in [
        ("globex", "/api/v1/products/42"),
        ("acm", "/api/v1/products/42"),
        ("acme ", "/api/v1/products/42"),
        ("ACME", "/api/v1/products/42"),
        ("acme", "/api/v1/products/4"),
        ("acme", "/api/v1/products/42/"),
        ("", ""),
        ("\"abc\"", "acme"),
    ] {
        assert!(!entry.is_for(tenant, path), "{tenant} {path}");
    }
}

#[test]
fn every_field_reads_back_as_sealed() {
    let parts = sample_parts(b"{\"id\":42}");
    let entry = sample(b"{\"id\":42}");
    assert_eq!(entry.status(), StatusCode::OK);
    assert_eq!(entry.etag(), parts.etag);
    assert_eq!(entry.etag_bytes(), b"\"abc\"");
    assert_eq!(entry.tenant(), "acme");
    assert_eq!(entry.path(), "/api/v1/products/42");
    assert_eq!(entry.tags().collect::<Vec<_>>(), ["product:42", "products"]);
    assert_eq!(entry.headers(0), parts.headers);
    assert_eq!(
        entry.header(&http::header::CONTENT_TYPE),
        Some(HeaderValue::from_static("application/json"))
    );
    assert_eq!(entry.header(&http::header::ETAG), None);
    assert_eq!(entry.body(), Bytes::from_static(b"{\"id\":42}"));
    assert_eq!(entry.body_len(), 9);
    assert_eq!(entry.requested_at_us(), unix_us(parts.requested_at));
    assert_eq!(entry.stale_while_revalidate(), Duration::from_secs(10));
    assert_eq!(
        entry.vary_names(),
        [
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("x-absent")
        ]
    );
    assert!(entry.has_vary() && entry.has_validators());
    assert!(entry.shared_ok() && entry.upstream_etag());
    assert!(!entry.revalidate() && !entry.no_stale() && !entry.immutable());
}

#[test]
fn the_encoding_is_exactly_as_long_as_announced_and_decodes_to_the_same() {
    let parts = sample_parts(b"{\"id\":42}");
    let encoded = parts.encode().unwrap_or_default();
    assert_eq!(encoded.len(), parts.encoded_len());
    let (decoded, sealed) = (Entry::decode(encoded), parts.seal());
    assert_eq!(decoded, sealed);
    let (decoded, sealed) = (decoded.unwrap(), sealed.unwrap());
    // The offsets sealing notes are the ones decoding finds.
    assert_eq!(
        decoded.tags().collect::<Vec<_>>(),
        sealed.tags().collect::<Vec<_>>()
    );
    assert_eq!(decoded.vary_names(), sealed.vary_names());
    assert_eq!(decoded.headers(0), sealed.headers(0));
    assert_eq!(decoded.body(), sealed.body());
    let empty = sample_parts(b"");
    assert_eq!(empty.seal().map(|e| e.body_len()), Some(0));
}

#[test]
fn a_field_too_long_for_the_encoding_is_not_sealed() {
    let mut parts = sample_parts(b"");
    parts.tags.push("t".repeat(70_000).into());
    assert_eq!(parts.seal(), None);
}

#[test]
fn fields_over_64_kib_before_the_body_are_not_sealed() {
    let mut parts = sample_parts(b"body");
    parts.tags.push("t".repeat(40_000).into());
    parts.tags.push("u".repeat(40_000).into());
    assert_eq!(parts.seal(), None);
}

#[test]
fn a_header_value_too_long_for_the_encoding_is_not_sealed() {
    let mut parts = sample_parts(b"");
    let long = HeaderValue::from_str(&"v".repeat(70_000)).unwrap_or_else(|_| panic!("a value"));
    parts.headers.insert("x-long", long);
    assert_eq!(parts.seal(), None);
}

#[test]
fn known_header_names_cost_one_byte_and_others_are_spelled_out() {
    let mut parts = sample_parts(b"");
    parts.headers.clear();
    parts
        .headers
        .insert("content-type", HeaderValue::from_static("a"));
    let known = parts.encoded_len();
    parts.headers.clear();
    parts
        .headers
        .insert("x-custom-type", HeaderValue::from_static("a"));
    assert_eq!(parts.encoded_len() - known, 2 + "x-custom-type".len());
    assert_eq!(parts.seal().map(|e| e.headers(0)), Some(parts.headers));
}

#[test]
fn a_header_name_code_past_the_known_names_decodes_to_none() {
    let entry = sample(b"body");
    let mut encoded = entry.encoded().to_vec();
    // The first header (content-type) is a one-byte code after the count.
    let code = usize::from(entry.headers_at) + 2;
    assert_eq!(encoded[code], 1);
    encoded[code] = u8::try_from(KNOWN_HEADERS.len() + 1).unwrap_or(u8::MAX);
    assert_eq!(Entry::decode(Bytes::from(encoded)), None);
}

#[test]
fn damaged_or_foreign_values_decode_to_none() {
    let encoded = sample_parts(b"body").encode().unwrap_or_default();
    for cut in [0, 1, 5, 30, 60] {
        assert_eq!(Entry::decode(encoded.slice(..cut)), None, "cut at {cut}");
    }
    let mut wrong_version = encoded.to_vec();
    wrong_version[0] = 99;
    assert_eq!(Entry::decode(Bytes::from(wrong_version)), None);
    let mut bad_tenant = encoded.to_vec();
    let tenant = ETAG_AT + 2 + 5 + 2;
    bad_tenant[tenant] = 0xff;
    assert_eq!(Entry::decode(Bytes::from(bad_tenant)), None, "not UTF-8");
    assert_eq!(Entry::decode(Bytes::from_static(b"{\"json\":true}")), None);
}

#[test]
fn far_future_or_past_times_do_not_overflow() {
    let mut encoded = sample_parts(b"").encode().unwrap_or_default().to_vec();
    encoded[4..28].fill(0xff);
    let entry = Entry::decode(Bytes::from(encoded)).unwrap_or_else(|| panic!("decodes"));
    let now = SystemTime::now();
    assert!(entry.retain_for(now) > Duration::ZERO);
    assert!(entry.ttl_secs(now) > 0);
    let _ = (entry.age(now), entry.lifetime(), entry.index());
}

#[test]
fn lifetimes_ages_and_windows() {
    let entry = sample(b"");
    let stored_at = sample_parts(b"").stored_at;
    let at = |secs| stored_at + Duration::from_secs(secs);
    assert_eq!(
        entry.lifetime(),
        Duration::from_secs(63),
        "fresh for 60 s after arriving 3 s old"
    );
    assert_eq!(entry.age(at(10)), Duration::from_secs(13));
    assert_eq!(entry.ttl_secs(at(10)), 50);
    assert!(entry.ttl_secs(at(70)) < 0);
    assert!(entry.may_serve_on_error(at(100)));
    assert!(!entry.may_serve_on_error(at(400)));
    assert_eq!(
        entry.retain_for(at(0)),
        Duration::from_secs(660),
        "validators: kept to revalidate"
    );
    assert_eq!(entry.retain_for(at(1000)), Duration::ZERO);
    let mut strict = sample_parts(b"");
    strict.no_stale = true;
    let strict = strict.seal().unwrap_or_else(|| panic!("seals"));
    assert!(!strict.may_serve_on_error(at(100)));
}

#[test]
fn vary_values_must_match() {
    let entry = sample(b"");
    let mut headers = HeaderMap::new();
    assert!(!entry.vary_matches(&headers));
    headers.insert("accept-encoding", HeaderValue::from_static("gzip"));
    assert!(entry.vary_matches(&headers));
    headers.insert("x-absent", HeaderValue::from_static("now present"));
    assert!(!entry.vary_matches(&headers));
}

#[test]
fn the_vary_index_names_the_headers_and_keeps_the_tags() {
    let index = sample(b"body").index().unwrap_or_else(|| panic!("seals"));
    assert_eq!(index.vary_names(), sample(b"").vary_names());
    assert!(index.vary_matches(&HeaderMap::new()), "values are not kept");
    assert_eq!(index.tags().count(), 2);
    assert_eq!(index.body_len(), 0);
}

#[test]
fn the_body_and_header_values_are_views_of_the_one_buffer() {
    let entry = sample(b"the body");
    let buffer = entry.encoded().as_ptr_range();
    let inside = |bytes: &[u8]| buffer.contains(&bytes.as_ptr());
    assert!(inside(&entry.body()), "body");
    assert!(inside(entry.etag().as_bytes()), "etag");
    let headers = entry.headers(0);
    assert!(headers.values().all(|value| inside(value.as_bytes())));
    // Views keep the buffer alive past the entry.
    let body = entry.body();
    drop(entry);
    assert_eq!(&body[..], b"the body");
}
