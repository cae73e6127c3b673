//! One test per rule, grouped by RFC area (as http-cache-semantics does).

use std::sync::Arc;

use super::*;
use crate::policy::PolicySet;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn policy(fields: &str) -> Arc<Policy> {
    let set = PolicySet::from_yaml("f.yaml", &format!("\"/p\":\n{fields}")).unwrap();
    Arc::clone(set.match_request(&http::Method::GET, "/p").unwrap().policy)
}

fn rfc() -> Policy {
    Policy::rfc()
}

fn now() -> SystemTime {
    httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap()
}

fn date(offset_secs: i64) -> String {
    let t = if offset_secs >= 0 {
        now() + Duration::from_secs(offset_secs as u64)
    } else {
        now() - Duration::from_secs((-offset_secs) as u64)
    };
    httpdate::fmt_http_date(t)
}

fn store(
    policy: &Policy,
    status: u16,
    response: &[(&'static str, &str)],
) -> Result<Storage, NotStored> {
    decide(
        policy,
        Asked::default(),
        StatusCode::from_u16(status).unwrap(),
        &headers(response),
        now(),
        true,
    )
}

fn fresh_secs(policy: &Policy, response: &[(&'static str, &str)]) -> Result<u64, NotStored> {
    store(policy, 200, response).map(|s| s.lifetime.fresh_for.as_secs())
}

mod freshness {
    use super::*;

    #[test]
    fn s_maxage_beats_max_age_beats_expires() {
        let d = date(0);
        let e = date(100);
        assert_eq!(
            fresh_secs(&rfc(), &[("date", &d), ("expires", &e)]),
            Ok(100)
        );
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[
                    ("date", &d),
                    ("expires", &e),
                    ("cache-control", "max-age=50")
                ]
            ),
            Ok(50)
        );
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[
                    ("date", &d),
                    ("expires", &e),
                    ("cache-control", "max-age=50, s-maxage=20")
                ]
            ),
            Ok(20)
        );
    }

    #[test]
    fn the_upstreams_age_is_counted_in() {
        assert_eq!(
            fresh_secs(&rfc(), &[("cache-control", "max-age=60"), ("age", "45")]),
            Ok(15)
        );
        let s = store(
            &rfc(),
            200,
            &[("cache-control", "max-age=60"), ("age", "45")],
        )
        .unwrap();
        assert_eq!(s.lifetime.initial_age, Duration::from_secs(45));
        assert_eq!(
            store(
                &rfc(),
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("age", "90"),
                    ("etag", "\"x\"")
                ]
            )
            .unwrap()
            .lifetime
            .fresh_for,
            Duration::ZERO,
            "already stale on arrival: kept only for revalidation"
        );
    }

    #[test]
    fn of_several_ages_the_first_counts() {
        let age = |lines: &[&'static str]| {
            let mut h = HeaderMap::new();
            for line in lines {
                h.append(header::AGE, HeaderValue::from_static(line));
            }
            age::age_value(&h)
        };
        assert_eq!(age(&["7200, 0"]), Some(7200));
        assert_eq!(age(&["0, 7200"]), Some(0));
        assert_eq!(age(&["7200", "0"]), Some(7200));
        assert_eq!(age(&["0", "7200"]), Some(0));
        assert_eq!(age(&[" 30 "]), Some(30));
        for ignored in ["abc", "-7200", "7200.0", "", "7200;foo=bar", "+5", "1 2"] {
            assert_eq!(age(&[ignored]), None, "{ignored:?}");
        }
        assert_eq!(age(&["2147483648"]), Some(1 << 31));
        assert_eq!(age(&["99999999999999999999999"]), Some(1 << 31));
        assert_eq!(age(&[]), None);
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[("cache-control", "max-age=3600"), ("age", "7200, 0")]
            ),
            Err(NotStored::NoLifetime),
            "stale on arrival"
        );
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[("cache-control", "max-age=3600"), ("age", "0, 7200")]
            ),
            Ok(3600)
        );
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[
                    ("cache-control", "max-age=3600"),
                    ("age", "99999999999999999999")
                ]
            ),
            Err(NotStored::NoLifetime),
            "an overflowing age is old, not absent"
        );
    }

    #[test]
    fn expires_in_obsolete_forms_and_any_case_counts() {
        let d = date(0);
        for expires in [
            "Sunday, 06-Nov-94 08:51:17 GMT",
            "Sun Nov  6 08:51:17 1994",
            "SUN, 06 NOV 1994 08:51:17 gmt",
        ] {
            assert_eq!(
                fresh_secs(&rfc(), &[("date", &d), ("expires", expires)]),
                Ok(100),
                "{expires}"
            );
        }
        for invalid in [
            "Sun, 06 Nov 1994 08:51:17 UTC",
            "Sun, 06 Nov 94 08:51:17 GMT",
            "Sun, 06 Nov 1994 8:51:17 GMT",
        ] {
            assert_eq!(
                fresh_secs(&rfc(), &[("date", &d), ("expires", invalid)]),
                Err(NotStored::NoLifetime),
                "{invalid}: already expired"
            );
        }
    }

    #[test]
    fn a_response_without_a_valid_date_is_dated_when_received() {
        let mut h = HeaderMap::new();
        date_received(&mut h, now());
        assert_eq!(
            h.get(header::DATE).unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        let mut bad = headers(&[("date", "yesterday")]);
        date_received(&mut bad, now());
        assert_eq!(
            bad.get(header::DATE).unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        let earlier = date(-30);
        let mut kept = headers(&[("date", &earlier)]);
        date_received(&mut kept, now());
        assert_eq!(kept.get(header::DATE).unwrap(), earlier.as_str());
    }

    #[test]
    fn apparent_age_from_date_is_counted_in() {
        let ten_ago = date(-10);
        let s = store(
            &rfc(),
            200,
            &[("cache-control", "max-age=60"), ("date", &ten_ago)],
        )
        .unwrap();
        assert_eq!(s.lifetime.initial_age, Duration::from_secs(10));
        assert_eq!(s.lifetime.fresh_for, Duration::from_secs(50));
    }

    #[test]
    fn a_date_in_the_same_second_adds_no_age() {
        // Date drops the fraction: a response made 900 ms into a second
        // and stored at once is not 900 ms old.
        let stored_at = now() + Duration::from_millis(900);
        let s = decide(
            &policy("  cache_ttl: 1s\n"),
            Asked::default(),
            StatusCode::OK,
            &headers(&[("date", &date(0))]),
            stored_at,
            true,
        )
        .unwrap();
        assert_eq!(s.lifetime.initial_age, Duration::ZERO);
        assert_eq!(s.lifetime.fresh_for, Duration::from_secs(1));
    }

    #[test]
    fn an_invalid_expires_means_stale() {
        assert_eq!(
            fresh_secs(&rfc(), &[("expires", "0")]),
            Err(NotStored::NoLifetime)
        );
        let s = store(&rfc(), 200, &[("expires", "soon"), ("etag", "\"v\"")]).unwrap();
        assert_eq!(s.lifetime.fresh_for, Duration::ZERO);
    }

    #[test]
    fn heuristic_freshness_is_a_tenth_of_the_last_modified_age() {
        let d = date(0);
        let lm = date(-1000);
        assert_eq!(
            fresh_secs(&rfc(), &[("date", &d), ("last-modified", &lm)]),
            Ok(100)
        );
        let long_ago = date(-100 * 86_400);
        assert_eq!(
            fresh_secs(&rfc(), &[("date", &d), ("last-modified", &long_ago)]),
            Ok(86_400),
            "capped at a day"
        );
    }

    #[test]
    fn heuristics_only_for_heuristically_cacheable_statuses() {
        let d = date(0);
        let lm = date(-1000);
        let response = [("date", d.as_str()), ("last-modified", lm.as_str())];
        assert!(store(&rfc(), 404, &response).is_ok());
        assert_eq!(store(&rfc(), 302, &response), Err(NotStored::Status));
        assert_eq!(store(&rfc(), 500, &response), Err(NotStored::Status));
        assert!(
            store(&rfc(), 302, &[("cache-control", "max-age=60")]).is_ok(),
            "explicit freshness: any final status"
        );
        assert!(store(&rfc(), 500, &[("cache-control", "max-age=60")]).is_ok());
        assert!(
            store(
                &rfc(),
                302,
                &[
                    ("cache-control", "public"),
                    ("date", &d),
                    ("last-modified", &lm)
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn nothing_is_stored_without_freshness_or_a_validator() {
        assert_eq!(fresh_secs(&rfc(), &[]), Err(NotStored::NoLifetime));
        let s = store(&rfc(), 200, &[("etag", "\"v1\"")]).unwrap();
        assert_eq!(
            s.lifetime.fresh_for,
            Duration::ZERO,
            "a validator alone: stored stale, for revalidation"
        );
    }

    #[test]
    fn must_understand_stores_understood_statuses_despite_no_store() {
        let cc = [("cache-control", "max-age=3600, no-store, must-understand")];
        assert_eq!(fresh_secs(&rfc(), &cc), Ok(3600));
        for status in [203, 301, 404, 410, 500] {
            assert!(store(&rfc(), status, &cc).is_ok(), "{status}");
        }
        for status in [299, 499, 599] {
            assert_eq!(
                store(&rfc(), status, &cc),
                Err(NotStored::Status),
                "{status}"
            );
            assert!(
                store(&rfc(), status, &[("cache-control", "max-age=3600")]).is_ok(),
                "{status} without must-understand"
            );
        }
        assert_eq!(
            store(
                &rfc(),
                599,
                &[("cache-control", "max-age=3600, must-understand")]
            ),
            Err(NotStored::Status),
            "must-understand alone limits storing to known statuses"
        );
        let d = date(0);
        let e = date(600);
        assert_eq!(
            store(
                &rfc(),
                200,
                &[
                    ("cdn-cache-control", "no-store, must-understand, max-age=60"),
                    ("date", &d),
                    ("expires", &e)
                ]
            )
            .map(|s| s.lifetime.fresh_for.as_secs()),
            Ok(60),
            "in CDN-Cache-Control too"
        );
    }

    #[test]
    fn partial_and_not_modified_answers_are_not_stored_as_such() {
        assert_eq!(
            store(&rfc(), 206, &[("cache-control", "max-age=60")]),
            Err(NotStored::Status)
        );
        assert_eq!(
            store(&rfc(), 304, &[("cache-control", "max-age=60")]),
            Err(NotStored::Status)
        );
    }
}

mod response_directives {
    use super::*;

    #[test]
    fn no_store_is_never_stored() {
        assert_eq!(
            store(&rfc(), 200, &[("cache-control", "no-store, max-age=60")]),
            Err(NotStored::NoStore)
        );
    }

    #[test]
    fn no_store_and_private_count_after_a_quoted_argument_with_an_escaped_quote() {
        for (field, refused) in [
            (r#"max-age=60, ext="a\"b", no-store"#, NotStored::NoStore),
            (r#"max-age=60, ext="\"", private"#, NotStored::Private),
            (r#"max-age=60, ext="open, no-store"#, NotStored::NoStore),
        ] {
            assert_eq!(
                store(&rfc(), 200, &[("cache-control", field)]),
                Err(refused),
                "{field}"
            );
        }
        assert_eq!(
            fresh_secs(&rfc(), &[("cache-control", r#"max-age="60", ext="a\"b""#)]),
            Ok(60)
        );
    }

    #[test]
    fn a_directive_given_twice_counts_as_first_given() {
        assert_eq!(
            fresh_secs(&rfc(), &[("cache-control", "max-age=0, max-age=60")]),
            Err(NotStored::NoLifetime)
        );
        assert_eq!(
            fresh_secs(&rfc(), &[("cache-control", "max-age=60, max-age=0")]),
            Ok(60)
        );
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[
                    ("cache-control", "max-age=30"),
                    ("cache-control", "max-age=90")
                ]
            ),
            Ok(30)
        );
    }

    #[test]
    fn no_cache_is_stored_and_always_revalidated() {
        let s = store(&rfc(), 200, &[("cache-control", "no-cache, max-age=60")]).unwrap();
        assert!(s.revalidate);
        assert!(
            s.no_stale && !s.grace && s.lifetime.stale_if_error.is_zero(),
            "never used without a successful validation, not even on errors"
        );
    }

    #[test]
    fn no_cache_with_fields_strips_them() {
        let s = store(
            &rfc(),
            200,
            &[("cache-control", "no-cache=\"x-token, x-other\", max-age=60")],
        )
        .unwrap();
        assert!(!s.revalidate);
        assert_eq!(
            s.strip,
            vec![
                HeaderName::from_static("x-token"),
                HeaderName::from_static("x-other")
            ]
        );
    }

    #[test]
    fn private_is_not_stored_by_a_shared_cache() {
        assert_eq!(
            store(&rfc(), 200, &[("cache-control", "private, max-age=60")]),
            Err(NotStored::Private)
        );
    }

    #[test]
    fn private_with_fields_strips_them() {
        let s = store(
            &rfc(),
            200,
            &[("cache-control", "private=\"x-user\", max-age=60")],
        )
        .unwrap();
        assert_eq!(s.strip, vec![HeaderName::from_static("x-user")]);
    }

    #[test]
    fn must_revalidate_proxy_revalidate_and_s_maxage_forbid_stale() {
        for cc in [
            "max-age=1, must-revalidate",
            "max-age=1, proxy-revalidate",
            "s-maxage=1",
        ] {
            let s = store(&rfc(), 200, &[("cache-control", cc)]).unwrap();
            assert!(s.no_stale, "{cc}");
            assert_eq!(s.lifetime.stale_if_error, Duration::ZERO, "{cc}");
        }
        let s = store(
            &rfc(),
            200,
            &[("cache-control", "max-age=1, stale-if-error=60")],
        )
        .unwrap();
        assert!(!s.no_stale);
        assert_eq!(s.lifetime.stale_if_error, Duration::from_secs(60));
    }

    #[test]
    fn public_makes_a_response_storable_for_authorized_requests() {
        let asked = Asked {
            authorization: true,
            ..Asked::default()
        };
        let ok = |cc: &str| {
            decide(
                &rfc(),
                asked,
                StatusCode::OK,
                &headers(&[("cache-control", cc)]),
                now(),
                true,
            )
            .map(|s| s.shared_ok)
        };
        assert_eq!(ok("max-age=60"), Err(NotStored::Authorization));
        assert_eq!(ok("public, max-age=60"), Ok(true));
        assert_eq!(ok("s-maxage=60"), Ok(true));
        assert_eq!(ok("max-age=60, must-revalidate"), Ok(true));
    }

    #[test]
    fn unknown_directives_are_ignored_and_values_parsed_as_the_rfc_says() {
        let cc = CacheControl::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=60, s-maxage=\"120\""),
            (
                "cache-control",
                "x-unknown=\"a, max-age=1\", stale-if-error=30, foo",
            ),
        ]));
        assert!(cc.public);
        assert_eq!(
            cc.max_age,
            Some(60),
            "a directive inside a quoted unknown value is not one"
        );
        assert_eq!(cc.s_maxage, Some(120), "quoted delta-seconds are accepted");
        assert_eq!(cc.stale_if_error, Some(30));
        assert_eq!(
            CacheControl::parse(&headers(&[("cache-control", "max-age=oops")])).max_age,
            Some(0)
        );
        assert_eq!(
            CacheControl::parse(&headers(&[("cache-control", "max-age=-5")])).max_age,
            Some(0)
        );
        assert_eq!(
            CacheControl::parse(&headers(&[(
                "cache-control",
                "max-age=99999999999999999999"
            )]))
            .max_age,
            Some(u64::from(u32::MAX)),
            "an overflow is a very long time"
        );
        assert!(CacheControl::parse(&headers(&[("cache-control", "immutable")])).immutable);
    }

    #[test]
    fn set_cookie_and_vary_star_are_not_stored() {
        assert_eq!(
            store(
                &rfc(),
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]
            ),
            Err(NotStored::SetCookie)
        );
        assert_eq!(
            store(
                &rfc(),
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept, *")]
            ),
            Err(NotStored::VaryStar)
        );
        assert_eq!(
            store(
                &rfc(),
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("vary", "Accept, X-Forwarded-For")
                ]
            ),
            Err(NotStored::VaryClientAddress),
            "folio writes X-Forwarded-For from the client's address"
        );
    }
}

mod cdn_cache_control {
    use super::*;

    #[test]
    fn cdn_cache_control_wins_over_cache_control() {
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=600")
                ]
            ),
            Ok(600)
        );
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "max-age=600")
                ]
            ),
            Ok(600)
        );
        assert_eq!(
            store(
                &rfc(),
                200,
                &[
                    ("cache-control", "max-age=600"),
                    ("cdn-cache-control", "no-store")
                ]
            ),
            Err(NotStored::NoStore)
        );
    }

    #[test]
    fn an_invalid_cdn_cache_control_is_ignored_as_a_whole() {
        for invalid in ["max-age=10000, &&&&&", "max-age =100", "MaX-aGe=3600", ""] {
            assert_eq!(
                store(
                    &rfc(),
                    200,
                    &[
                        ("cache-control", "no-store"),
                        ("cdn-cache-control", invalid)
                    ]
                ),
                Err(NotStored::NoStore),
                "{invalid:?}: Cache-Control decides"
            );
            assert_eq!(
                fresh_secs(
                    &rfc(),
                    &[
                        ("cache-control", "max-age=60"),
                        ("cdn-cache-control", invalid)
                    ]
                ),
                Ok(60),
                "{invalid:?}"
            );
        }
    }

    #[test]
    fn a_cdn_max_age_of_the_wrong_type_is_not_consumed() {
        for wrong in ["max-age=\"10000\"", "max-age=1.5", "max-age=-1"] {
            assert_eq!(
                fresh_secs(
                    &rfc(),
                    &[
                        ("cache-control", "max-age=60"),
                        ("cdn-cache-control", wrong)
                    ]
                ),
                Err(NotStored::NoLifetime),
                "{wrong}: a valid field, so Cache-Control is ignored; no lifetime left"
            );
        }
    }

    #[test]
    fn a_valid_cdn_cache_control_ignores_expires_too() {
        let d = date(0);
        let e = date(600);
        assert_eq!(
            fresh_secs(
                &rfc(),
                &[
                    ("date", &d),
                    ("expires", &e),
                    ("cdn-cache-control", "must-revalidate")
                ]
            ),
            Err(NotStored::NoLifetime)
        );
        assert_eq!(
            fresh_secs(&rfc(), &[("date", &d), ("expires", &e)]),
            Ok(600),
            "without it Expires counts"
        );
    }

    #[test]
    fn cache_control_counts_when_not_a_cdn() {
        let h = headers(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        let s = decide(&rfc(), Asked::default(), StatusCode::OK, &h, now(), false).unwrap();
        assert_eq!(s.lifetime.fresh_for, Duration::from_secs(60));
    }
}

mod policies {
    use super::*;

    #[test]
    fn the_policy_ttl_is_bounded_by_the_upstream() {
        let p = policy("  cache_ttl: 1h\n");
        assert_eq!(fresh_secs(&p, &[]), Ok(3600));
        assert_eq!(fresh_secs(&p, &[("cache-control", "max-age=60")]), Ok(60));
        assert_eq!(
            store(&p, 200, &[("cache-control", "no-store")]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            store(&p, 200, &[("cache-control", "private")]),
            Err(NotStored::Private)
        );
    }

    #[test]
    fn override_upstream_keeps_the_policy_ttl() {
        let p = policy("  cache_ttl: 1h\n  override_upstream: true\n");
        assert_eq!(
            fresh_secs(&p, &[("cache-control", "private, max-age=5")]),
            Ok(3600)
        );
        assert_eq!(fresh_secs(&p, &[("cache-control", "no-store")]), Ok(3600));
        assert!(
            !store(&p, 200, &[("cache-control", "no-cache")])
                .unwrap()
                .revalidate
        );
    }

    #[test]
    fn the_policy_status_list_decides() {
        let p = policy("  cache_ttl: 1m\n  cache_statuses: [200]\n");
        assert!(store(&p, 200, &[]).is_ok());
        assert_eq!(store(&p, 404, &[]), Err(NotStored::Status));
    }

    #[test]
    fn policy_stale_windows_are_defaults_the_upstream_can_fill() {
        let p = policy("  cache_ttl: 1m\n  stale_if_error: 5m\n");
        let s = store(&p, 200, &[("cache-control", "stale-while-revalidate=7")]).unwrap();
        assert_eq!(s.lifetime.stale_if_error, Duration::from_secs(300));
        assert_eq!(s.lifetime.stale_while_revalidate, Duration::from_secs(7));
    }
}

mod request_directives {
    use super::*;

    fn stored(age: u64, lifetime: u64) -> Stored {
        Stored {
            age: Duration::from_secs(age),
            lifetime: Duration::from_secs(lifetime),
            stale_while_revalidate: Duration::ZERO,
            revalidate: false,
            no_stale: false,
            immutable: false,
        }
    }

    #[test]
    fn immutable_answers_reloads_while_fresh() {
        let mut entry = stored(10, 60);
        entry.immutable = true;
        assert_eq!(asking("no-cache").allows(&entry), Use::Fresh);
        assert_eq!(asking("max-age=0").allows(&entry), Use::Fresh);
        entry.age = Duration::from_secs(70);
        assert_eq!(
            asking("no-cache").allows(&entry),
            Use::Revalidate,
            "not once stale"
        );
    }

    fn asking(cc: &str) -> Request {
        Request::new(&headers(&[("cache-control", cc)]))
    }

    #[test]
    fn no_cache_revalidates_even_a_fresh_entry() {
        assert_eq!(asking("no-cache").allows(&stored(1, 60)), Use::Revalidate);
    }

    #[test]
    fn pragma_no_cache_counts_without_cache_control() {
        assert_eq!(
            Request::new(&headers(&[("pragma", "no-cache")])).allows(&stored(1, 60)),
            Use::Revalidate
        );
        let both = Request::new(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=600"),
        ]));
        assert_eq!(
            both.allows(&stored(1, 60)),
            Use::Fresh,
            "Cache-Control wins over Pragma"
        );
    }

    #[test]
    fn max_age_limits_the_age_accepted() {
        assert_eq!(asking("max-age=10").allows(&stored(5, 60)), Use::Fresh);
        assert_eq!(
            asking("max-age=10").allows(&stored(20, 60)),
            Use::Revalidate
        );
        assert_eq!(asking("max-age=0").allows(&stored(0, 60)), Use::Revalidate);
    }

    #[test]
    fn min_fresh_asks_for_freshness_left() {
        assert_eq!(asking("min-fresh=30").allows(&stored(10, 60)), Use::Fresh);
        assert_eq!(
            asking("min-fresh=30").allows(&stored(40, 60)),
            Use::Revalidate
        );
    }

    #[test]
    fn max_stale_accepts_stale_entries() {
        assert_eq!(
            asking("max-stale=30").allows(&stored(80, 60)),
            Use::StaleAccepted
        );
        assert_eq!(
            asking("max-stale=10").allows(&stored(80, 60)),
            Use::Revalidate
        );
        assert_eq!(
            asking("max-stale").allows(&stored(10_000, 60)),
            Use::StaleAccepted
        );
        let mut strict = stored(80, 60);
        strict.no_stale = true;
        assert_eq!(
            asking("max-stale").allows(&strict),
            Use::Revalidate,
            "must-revalidate wins"
        );
    }

    #[test]
    fn stale_while_revalidate_only_within_its_window() {
        let mut entry = stored(70, 60);
        entry.stale_while_revalidate = Duration::from_secs(30);
        assert_eq!(Request::default().allows(&entry), Use::StaleWhileRevalidate);
        assert_eq!(asking("max-age=5").allows(&entry), Use::Revalidate);
        entry.age = Duration::from_secs(100);
        assert_eq!(Request::default().allows(&entry), Use::Revalidate);
    }

    #[test]
    fn only_if_cached_is_read() {
        assert!(asking("only-if-cached").cc.only_if_cached);
    }

    #[test]
    fn a_no_store_request_does_not_store() {
        let asked = Asked {
            no_store: true,
            ..Asked::default()
        };
        let h = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(
            decide(&rfc(), asked, StatusCode::OK, &h, now(), true),
            Err(NotStored::RequestNoStore)
        );
    }
}

mod conditionals {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison_and_wins_over_if_modified_since() {
        let etag = HeaderValue::from_static("\"v1\"");
        let stored = headers(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        let check =
            |pairs: &[(&'static str, &str)]| not_modified(&headers(pairs), &etag, &stored, now());
        assert!(check(&[("if-none-match", "\"v1\"")]));
        assert!(check(&[("if-none-match", "\"x\", W/\"v1\"")]));
        assert!(check(&[("if-none-match", "*")]));
        assert!(!check(&[("if-none-match", "\"v2\"")]));
        assert!(check(&[(
            "if-modified-since",
            "Sun, 06 Nov 1994 08:49:37 GMT"
        )]));
        assert!(!check(&[(
            "if-modified-since",
            "Sat, 05 Nov 1994 08:49:37 GMT"
        )]));
        assert!(!check(&[
            ("if-none-match", "\"v2\""),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")
        ]));
        assert!(!check(&[]));
    }

    #[test]
    fn if_modified_since_without_last_modified_compares_the_stored_date() {
        let etag = HeaderValue::from_static("\"v1\"");
        let stored = headers(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        let since = |value: &str| {
            not_modified(
                &headers(&[("if-modified-since", value)]),
                &etag,
                &stored,
                now(),
            )
        };
        assert!(since("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(
            since("Sunday, 06-Nov-94 09:00:00 GMT"),
            "any HTTP-date form"
        );
        assert!(!since("Sat, 05 Nov 1994 08:49:37 GMT"));
        assert!(!since("yesterday"));
        let neither = HeaderMap::new();
        assert!(!not_modified(
            &headers(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &etag,
            &neither,
            now()
        ));
    }

    #[test]
    fn body_etags_are_strong_and_stable() {
        assert_eq!(etag_for(b"abc"), etag_for(b"abc"));
        assert_ne!(etag_for(b"abc"), etag_for(b"abd"));
        assert!(etag_for(b"").to_str().unwrap().starts_with('"'));
    }
}
