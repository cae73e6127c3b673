//! Property tests: every parser, decoder and piece of time arithmetic that
//! reads what a client, an upstream or Redis sent, fed arbitrary input. None
//! may panic, and each keeps the invariant it states.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use proptest::prelude::*;

use crate::cache::entry::Entry;
use crate::compression::{self, Coding};
use crate::freshness::structured::{BareItem, Member, Parameters, parse_dictionary};
use crate::freshness::{self, Asked, Stored};
use crate::inbound;
use crate::key::{
    CacheKey, canonical_path, canonical_query, kept_query, normalized_header, vary_value,
};
use crate::policy::{Policy, PolicySet};
use crate::settings::{Cidr, TenantSource, valid_tenant};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Paths made of the characters that make paths ambiguous.
fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%".to_owned()),
            Just("%2e".to_owned()),
            Just("%2F".to_owned()),
            Just("%41".to_owned()),
            Just("%c3%a9".to_owned()),
            Just("\\".to_owned()),
            Just(";".to_owned()),
            "[a-z0-9]{1,3}",
        ],
        0..12,
    )
    .prop_map(|parts| format!("/{}", parts.concat()))
}

fn query() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just(";".to_owned()),
            Just("+".to_owned()),
            Just("%".to_owned()),
            Just("%20".to_owned()),
            Just("%ff".to_owned()),
            Just("%3B".to_owned()),
            "[a-c0-9]{1,2}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// A header value as a client or upstream may send it (any visible byte).
fn value() -> impl Strategy<Value = HeaderValue> {
    proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..40)
        .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap_or(HeaderValue::from_static("")))
}

fn rfc() -> Policy {
    Policy::rfc()
}

fn sf_key() -> impl Strategy<Value = String> {
    "[a-z*][a-z0-9_.*-]{0,5}"
}

fn bare_item() -> impl Strategy<Value = BareItem> {
    prop_oneof![
        (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(BareItem::Integer),
        (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(BareItem::Decimal),
        "[ -~]{0,8}".prop_map(BareItem::String),
        "[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]{0,6}".prop_map(BareItem::Token),
        "[A-Za-z0-9+/]{0,8}={0,2}".prop_map(BareItem::ByteSequence),
        any::<bool>().prop_map(BareItem::Boolean),
    ]
}

fn parameters() -> impl Strategy<Value = Parameters> {
    proptest::collection::vec((sf_key(), bare_item()), 0..3).prop_map(dedup)
}

/// Later duplicates overwrite earlier ones in place, as a parser keeps them.
fn dedup<T>(pairs: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut out: Vec<(String, T)> = Vec::new();
    for (key, value) in pairs {
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => out.push((key, value)),
        }
    }
    out
}

fn member() -> impl Strategy<Value = Member> {
    prop_oneof![
        (bare_item(), parameters()).prop_map(|(item, params)| Member::Item(item, params)),
        (
            proptest::collection::vec((bare_item(), parameters()), 0..3),
            parameters()
        )
            .prop_map(|(items, params)| Member::InnerList(items, params)),
    ]
}

/// RFC 8941 §4.1 serialization, members written in order.
fn serialize(dictionary: &[(String, Member)]) -> String {
    fn item(out: &mut String, item: &BareItem) {
        match item {
            BareItem::Integer(n) => out.push_str(&n.to_string()),
            BareItem::Decimal(thousandths) => {
                let sign = if *thousandths < 0 { "-" } else { "" };
                let (whole, fraction) = (thousandths.abs() / 1000, thousandths.abs() % 1000);
                let fraction = format!("{fraction:03}");
                let fraction = fraction.trim_end_matches('0');
                let fraction = if fraction.is_empty() { "0" } else { fraction };
                out.push_str(&format!("{sign}{whole}.{fraction}"));
            }
            BareItem::String(text) => {
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            BareItem::Token(token) => out.push_str(token),
            BareItem::ByteSequence(text) => out.push_str(&format!(":{text}:")),
            BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
        }
    }
    fn params(out: &mut String, params: &Parameters) {
        for (key, value) in params {
            out.push(';');
            out.push_str(key);
            if *value != BareItem::Boolean(true) {
                out.push('=');
                item(out, value);
            }
        }
    }
    let mut out = String::new();
    for (i, (key, member)) in dictionary.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(key);
        match member {
            Member::Item(BareItem::Boolean(true), p) => params(&mut out, p),
            Member::Item(value, p) => {
                out.push('=');
                item(&mut out, value);
                params(&mut out, p);
            }
            Member::InnerList(items, p) => {
                out.push_str("=(");
                for (j, (value, ip)) in items.iter().enumerate() {
                    if j > 0 {
                        out.push(' ');
                    }
                    item(&mut out, value);
                    params(&mut out, ip);
                }
                out.push(')');
                params(&mut out, p);
            }
        }
    }
    out
}

/// `Accept-Language` preferences: a language range and a weight in
/// thousandths.
fn preferences() -> impl Strategy<Value = Vec<(String, u16)>> {
    let range = prop_oneof![Just("*".to_owned()), "[a-z]{1,3}(-[a-z0-9]{1,3}){0,2}",];
    proptest::collection::vec((range, prop_oneof![Just(1000u16), 0u16..=1000]), 1..5)
}

/// One way of writing preferences: `style` picks each member's case, the
/// spelling of its weight and the separator after it.
fn spelled(preferences: &[(String, u16)], style: u64) -> HeaderValue {
    let mut out = String::new();
    for (i, (range, weight)) in preferences.iter().enumerate() {
        let bits = style.rotate_left(u32::try_from(i * 7).unwrap_or(0));
        if i > 0 {
            out.push_str([",", ", ", " ,  "][usize::try_from(bits % 3).unwrap_or(0)]);
        }
        if bits & 4 == 0 {
            out.push_str(range);
        } else {
            out.push_str(&range.to_ascii_uppercase());
        }
        let padded = format!("{weight:03}");
        let weight = match (weight, bits & 24) {
            (1000, 0) => String::new(),
            (1000, 8) => ";q=1".to_owned(),
            (1000, _) => "; q=1.000".to_owned(),
            (_, 0) => format!(";q=0.{padded}"),
            (_, 8) => format!(";Q=0.{}", padded.trim_end_matches('0')),
            _ => format!("; q=0.{padded}"),
        };
        out.push_str(weight.trim_end_matches('.'));
    }
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nothing_before_it_hides_a_no_store_or_private(prefix in "[ -~]{0,40}", private in any::<bool>()) {
        let directive = if private { "private" } else { "no-store" };
        let field = format!("max-age=60, {prefix}, {directive}");
        let Ok(value) = HeaderValue::from_str(&field) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, value);
        let cc = freshness::CacheControl::parse(&headers);
        prop_assert!(if private { cc.private } else { cc.no_store }, "{}", field);
    }

    #[test]
    fn a_canonical_path_is_its_own_canonical_form(path in path()) {
        if let Ok(canonical) = canonical_path(&path) {
            let again = canonical_path(&canonical).map(|c| c.into_owned());
            prop_assert_eq!(again, Ok(canonical.clone().into_owned()));
            prop_assert!(canonical.starts_with('/'));
            prop_assert!(!canonical.contains("//"));
            prop_assert!(!canonical.split('/').any(|s| s == "." || s == ".."));
            let lower = canonical.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains('\\'));
        }
    }

    #[test]
    fn any_numbers_in_a_policy_load_or_fail_where_they_stand(
        numbers in prop::collection::vec((any::<u64>(), prop::sample::select(vec!["", "ms", "s", "m", "h", "d", "KB", "GB"])), 4),
    ) {
        let fields = ["cache_ttl", "stale_while_revalidate", "stale_if_error", "max_body"];
        let mut yaml = String::from("\"/p\":\n");
        for (field, (number, unit)) in fields.iter().zip(&numbers) {
            yaml.push_str(&format!("  {field}: {number}{unit}\n"));
        }
        if let Err(errors) = PolicySet::from_yaml("p.yaml", &yaml) {
            prop_assert!(!errors.0.is_empty());
            for error in &errors.0 {
                prop_assert!((2..=5).contains(&error.line), "{}", error);
                prop_assert!(fields.contains(&error.field.as_str()), "{}", error);
            }
        }
    }

    #[test]
    fn the_forwarded_query_keys_as_the_request_did(query in query(), keep_all in any::<bool>()) {
        let set = PolicySet::from_yaml(
            "p.yaml",
            "\"/p\":\n  cache_ttl: 1m\n  key:\n    query: [a, b]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let only = set.match_request(&Method::GET, "/p").map(|m| m.policy.clone());
        let policy = if keep_all { std::sync::Arc::new(rfc()) } else { only.unwrap_or_else(|| std::sync::Arc::new(rfc())) };
        let forwarded = canonical_query(&policy, Some(&query));
        // What the upstream gets keys the same as what the client sent, and
        // is already canonical.
        prop_assert_eq!(
            kept_query(&policy, Some(&query)),
            kept_query(&policy, forwarded.as_deref())
        );
        if let Some(forwarded) = &forwarded {
            let again = canonical_query(&policy, Some(forwarded)).map(|q| q.into_owned());
            prop_assert_eq!(again.as_deref(), Some(&**forwarded));
            prop_assert!(!forwarded.contains(';') && !forwarded.contains('+'));
        }
    }

    #[test]
    fn tenants_are_valid_or_refused(value in value(), twice in any::<bool>()) {
        let mut request = Request::get("/p").header("x-tenant-id", value.clone());
        if twice {
            request = request.header("x-tenant-id", value);
        }
        let (parts, ()) = request.body(()).unwrap_or_default().into_parts();
        if let Ok(tenant) = TenantSource::default().tenant(&parts) {
            prop_assert!(!twice);
            prop_assert!(valid_tenant(&tenant));
        }
    }

    #[test]
    fn tenants_never_share_a_key(a in "[a-z]{1,6}", b in "[a-z]{1,6}", path in path()) {
        prop_assume!(a != b);
        let headers = HeaderMap::new();
        let policy = rfc();
        prop_assert_ne!(
            CacheKey::new(&a, &path, None, &headers, &policy),
            CacheKey::new(&b, &path, None, &headers, &policy)
        );
    }

    #[test]
    fn cleaned_headers_hold_nothing_connection_named(named in "[a-z-]{1,12}", other in value()) {
        let mut headers = HeaderMap::new();
        let Ok(name) = HeaderName::from_bytes(named.as_bytes()) else { return Ok(()) };
        headers.insert(header::CONNECTION, HeaderValue::from_str(&format!("keep-alive, {named}")).unwrap_or(HeaderValue::from_static("close")));
        headers.insert(name.clone(), other);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        let tenant = HeaderName::from_static("x-tenant-id");
        let decided = inbound::DecidedOn { tenant: Some(&tenant), keyed: &[] };
        if inbound::clean_headers(&mut headers, &Method::GET, decided, false).is_ok() {
            prop_assert!(!headers.contains_key(header::CONNECTION));
            prop_assert!(!headers.contains_key(&name));
            prop_assert!(!headers.contains_key(header::CONTENT_LENGTH));
        } else {
            prop_assert!(["host", "authorization", "cookie", "x-tenant-id"].contains(&named.as_str()));
        }
    }

    #[test]
    fn header_normalization_never_panics_and_settles(values in proptest::collection::vec(value(), 0..4)) {
        let name = HeaderName::from_static("accept-language");
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name.clone(), value);
        }
        let once = normalized_header(&headers, &name);
        let mut again = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&once) {
            again.insert(name.clone(), value);
            prop_assert_eq!(normalized_header(&again, &name), once);
        }
    }

    #[test]
    fn accept_language_keys_on_the_preferences_alone(
        (mine, reordered) in preferences().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
        theirs in preferences(),
        style in any::<u64>(),
        other_style in any::<u64>(),
    ) {
        let name = header::ACCEPT_LANGUAGE;
        let of = |value: HeaderValue| {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), value);
            vary_value(&headers, &name)
        };
        let (a, b) = (of(spelled(&mine, style)), of(spelled(&reordered, other_style)));
        prop_assert_eq!(&a, &b, "the same preferences share a variant");
        let set = |p: &[(String, u16)]| {
            p.iter().cloned().collect::<std::collections::BTreeSet<_>>()
        };
        if set(&mine) != set(&theirs) {
            prop_assert_ne!(a, of(spelled(&theirs, style)), "other preferences do not");
        }
    }

    #[test]
    fn a_serialized_dictionary_parses_back(
        members in proptest::collection::vec((sf_key(), member()), 0..5)
    ) {
        let members = dedup(members);
        let text = serialize(&members);
        prop_assert_eq!(parse_dictionary(&text), Ok(members), "{}", text);
    }

    #[test]
    fn the_dictionary_parser_takes_any_text(text in "[ -~\t]{0,40}") {
        if let Ok(members) = parse_dictionary(&text) {
            // What parses is what it serializes to.
            prop_assert_eq!(parse_dictionary(&serialize(&members)), Ok(members));
        }
    }

    #[test]
    fn http_dates_read_back_as_written(secs in 0u64..253_402_300_799, any_text in "[ -~]{0,32}") {
        let time = UNIX_EPOCH + Duration::from_secs(secs);
        let now = UNIX_EPOCH + Duration::from_secs(1_795_219_200);
        prop_assert_eq!(freshness::date::parse(&httpdate::fmt_http_date(time), now), Some(time));
        let _ = freshness::date::parse(&any_text, now);
    }

    #[test]
    fn freshness_arithmetic_never_panics(
        age in any::<u64>(),
        max_age in any::<u64>(),
        date_secs in 0u64..253_402_300_799,
        delay_ms in 0u64..10_000_000,
        cache_control in value(),
        request_cc in value(),
    ) {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let asked_at = now.checked_sub(Duration::from_millis(delay_ms)).unwrap_or(now);
        // Any date httpdate can write: far past to year 9999.
        let date = UNIX_EPOCH.checked_add(Duration::from_secs(date_secs));
        let mut headers = HeaderMap::new();
        headers.insert(header::AGE, HeaderValue::from(age));
        headers.insert(header::CACHE_CONTROL, cache_control);
        headers.append(header::CACHE_CONTROL, HeaderValue::from_str(&format!("max-age={max_age}")).unwrap_or(HeaderValue::from_static("")));
        if let Some(date) = date
            && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(date))
        {
            headers.insert(header::DATE, value);
        }
        let asked = Asked { authorization: false, no_store: false, at: Some(asked_at) };
        if let Ok(storage) = freshness::decide(&rfc(), asked, StatusCode::OK, &headers, now, true) {
            let _ = now.checked_add(storage.lifetime.fresh_for);
        }
        let mut request = HeaderMap::new();
        request.insert(header::CACHE_CONTROL, request_cc);
        let stored = Stored {
            age: Duration::from_secs(age),
            lifetime: Duration::from_secs(max_age),
            stale_while_revalidate: Duration::from_secs(age / 2),
            revalidate: false,
            no_stale: false,
            immutable: age % 2 == 0,
        };
        let _ = freshness::Request::new(&request).allows(&stored);
    }

    #[test]
    fn the_entry_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Some(entry) = Entry::decode(Bytes::from(bytes)) {
            let now = SystemTime::now();
            let _ = (entry.headers(0), entry.body(), entry.etag(), entry.tenant());
            let _ = (entry.age(now), entry.lifetime(), entry.ttl_secs(now), entry.vary_names());
            let _ = entry.may_serve_on_error(now);
        }
    }

    #[test]
    fn a_damaged_entry_is_refused_or_read_whole(flip in 0usize..4096, byte in any::<u8>()) {
        let sealed = crate::cache::entry::tests::sample(b"{\"id\":42}");
        let mut bytes = sealed.encoded().to_vec();
        let at = flip % bytes.len();
        bytes[at] = byte;
        if let Some(entry) = Entry::decode(Bytes::from(bytes)) {
            let _ = (entry.headers(0), entry.body(), entry.tags(), entry.age(SystemTime::now()));
        }
    }

    #[test]
    fn opening_takes_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        id_len in 0u8..8,
        sealed_prefix in any::<bool>(),
    ) {
        let keyring = crate::cache::encryption::tests::keyring(&[("k1", 1), ("k", 2)]);
        // Arbitrary bytes, and arbitrary bytes behind a plausible header
        // (version, an id length, a known id).
        let mut value = bytes.clone();
        if sealed_prefix {
            let mut framed = vec![crate::cache::encryption::SEALED_V1, id_len, b'k', b'1'];
            framed.extend_from_slice(&bytes);
            value = framed;
        }
        prop_assert!(keyring.open(b"folio:v1:aa", value).is_none());
    }

    #[test]
    fn a_sealed_value_with_any_byte_changed_does_not_open(at in 0usize..4096, xor in 1u8..=255) {
        let keyring = crate::cache::encryption::tests::keyring(&[("k1", 1)]);
        let mut sealed = keyring.seal(b"folio:v1:aa", b"{\"id\":42}").unwrap_or_default();
        let at = at % sealed.len();
        sealed[at] ^= xor;
        prop_assert!(keyring.open(b"folio:v1:aa", sealed).is_none());
    }

    #[test]
    fn address_ranges_parse_or_refuse(text in "[0-9a-f:./]{0,24}") {
        if let Ok(range) = text.parse::<Cidr>() {
            let _ = range.contains("127.0.0.1".parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])));
        }
    }

    #[test]
    fn stored_bodies_decode_whole_or_refuse_within_the_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        limit in 0usize..4096,
    ) {
        for coding in [Coding::Br, Coding::Gzip] {
            if let Ok(decoded) = compression::decode(coding, &bytes, limit) {
                prop_assert!(decoded.len() <= limit);
            }
        }
    }

    #[test]
    fn compressed_bodies_round_trip(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Some(stored) = compression::compress(&body) {
            let decoded = compression::decode(Coding::Br, &stored, body.len()).ok();
            prop_assert_eq!(decoded.as_deref(), Some(&body[..]));
        }
    }

    #[test]
    fn any_accept_encoding_picks_a_form(value in "[a-zA-Z0-9*;=., ]{0,40}") {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::ACCEPT_ENCODING, value);
        }
        let _ = compression::negotiate(&headers, Coding::Br);
    }
}
