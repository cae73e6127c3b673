//! RFC 9111 / 9110 / 5861 / 9211 / 9213 shared-cache rules, one test each,
//! against a real upstream whose answers the test scripts. Unless a test
//! says otherwise folio runs with no policies: a plain RFC 9111 cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use crate::support::{Folio, Reply, TestUpstream, get, send, settings};

/// folio with an empty policy set in front of `upstream`.
async fn rfc(upstream: &TestUpstream) -> Folio {
    Folio::start(upstream, "").await
}

/// Has `/` stored, then waits for its `max-age=1` to run out.
async fn stored_then_stale(folio: &Folio) {
    get(&folio.url("/"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// An upstream answering `/` with `body` under `etag` for a second, and
/// `not_modified` (fresh for a minute) to a request naming that ETag.
async fn revalidating(etag: &'static str, body: &'static str, not_modified: Reply) -> TestUpstream {
    TestUpstream::start(move |seen| {
        if seen.header("if-none-match") == etag {
            not_modified.clone().header("cache-control", "max-age=60")
        } else {
            Reply::json(body)
                .header("etag", etag)
                .header("cache-control", "max-age=1")
        }
    })
    .await
}

/// An upstream answering `/` with these headers and a counter in the body.
async fn answering(headers: &'static [(&'static str, &'static str)]) -> TestUpstream {
    let count = Arc::new(AtomicUsize::new(0));
    TestUpstream::start(move |_| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let mut reply = Reply::json(format!(r#"{{"n":{n}}}"#));
        for (name, value) in headers {
            reply = reply.header(name, value);
        }
        reply
    })
    .await
}

fn http_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs((-offset_secs) as u64)
    };
    httpdate::fmt_http_date(t)
}

/// `secs` from now in the two obsolete HTTP-date forms (RFC 9110 §5.6.7):
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`).
fn obsolete_dates(offset_secs: i64) -> (String, String) {
    let imf = http_date(offset_secs); // Sun, 06 Nov 1994 08:49:37 GMT
    let (day, month, year, time) = (&imf[5..7], &imf[8..11], &imf[12..16], &imf[17..25]);
    let long_day = [
        ("Mon", "Monday"),
        ("Tue", "Tuesday"),
        ("Wed", "Wednesday"),
        ("Thu", "Thursday"),
        ("Fri", "Friday"),
        ("Sat", "Saturday"),
        ("Sun", "Sunday"),
    ]
    .iter()
    .find(|(short, _)| imf.starts_with(short))
    .unwrap()
    .1;
    let rfc850 = format!("{long_day}, {day}-{month}-{} {time} GMT", &year[2..]);
    let padded_day = format!("{:>2}", day.trim_start_matches('0'));
    let asctime = format!("{} {month} {padded_day} {time} {year}", &imf[..3]);
    (rfc850, asctime)
}

async fn twice(folio: &Folio, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let first = get(&folio.url(path), headers).await.x_cache().to_owned();
    let second = get(&folio.url(path), headers).await.x_cache().to_owned();
    (first, second)
}

mod modes {
    use super::*;

    #[tokio::test]
    async fn without_policies_folio_is_a_plain_rfc9111_cache() {
        let upstream = answering(&[("cache-control", "max-age=60")]).await;
        let folio = rfc(&upstream).await;
        assert_eq!(
            twice(&folio, "/anything", &[]).await,
            ("MISS".into(), "HIT".into())
        );
        let silent = answering(&[]).await;
        let folio = rfc(&silent).await;
        assert_eq!(
            twice(&folio, "/x", &[]).await,
            ("MISS".into(), "MISS".into()),
            "no freshness, no validator"
        );
    }

    #[tokio::test]
    async fn a_matching_policy_still_yields_to_upstream_no_store_and_private() {
        let upstream = TestUpstream::start(|seen| match seen.uri.path() {
            "/a" => Reply::json("{}").header("cache-control", "no-store"),
            _ => Reply::json("{}").header("cache-control", "private"),
        })
        .await;
        let folio = Folio::start(
            &upstream,
            "\"/a\":\n  cache_ttl: 1h\n\"/b\":\n  cache_ttl: 1h\n",
        )
        .await;
        assert_eq!(twice(&folio, "/a", &[]).await.1, "MISS");
        assert_eq!(twice(&folio, "/b", &[]).await.1, "MISS");
        let overriding = Folio::start(
            &upstream,
            "\"/a\":\n  cache_ttl: 1h\n  override_upstream: true\n",
        )
        .await;
        assert_eq!(twice(&overriding, "/a", &[]).await.1, "HIT");
    }
}

mod freshness {
    use super::*;

    #[tokio::test]
    async fn s_maxage_wins_over_max_age() {
        let upstream = answering(&[("cache-control", "max-age=60, s-maxage=0")]).await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "MISS");
    }

    #[tokio::test]
    async fn max_age_wins_over_expires() {
        let upstream = answering(&[
            ("cache-control", "max-age=60"),
            ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ])
        .await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "HIT");
    }

    #[tokio::test]
    async fn expires_minus_date_gives_the_lifetime() {
        let date = http_date(0);
        let expires = http_date(60);
        let upstream = TestUpstream::start(move |_| {
            Reply::json("{}")
                .header("date", &date)
                .header("expires", &expires)
        })
        .await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "HIT");
    }

    #[tokio::test]
    async fn an_invalid_expires_means_stale() {
        let upstream = answering(&[("expires", "0")]).await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "MISS");
    }

    #[tokio::test]
    async fn the_upstreams_age_is_counted_in() {
        let upstream = answering(&[("cache-control", "max-age=60"), ("age", "50")]).await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let hit = get(&folio.url("/"), &[]).await;
        assert_eq!(hit.x_cache(), "HIT");
        assert!(
            hit.header("age").parse::<u64>().unwrap() >= 50,
            "Age on a hit: {}",
            hit.header("age")
        );
        let stale = answering(&[("cache-control", "max-age=60"), ("age", "61")]).await;
        assert_eq!(
            twice(&rfc(&stale).await, "/", &[]).await.1,
            "MISS",
            "already stale on arrival"
        );
    }

    #[tokio::test]
    async fn of_several_age_values_the_first_counts() {
        // RFC 9111 §5.1 (Age is a singleton), RFC 9110 §5.5: the first value.
        let upstream = TestUpstream::start(|seen| {
            let reply = Reply::json("{}").header("cache-control", "max-age=3600");
            match seen.uri.path() {
                "/old-first" => reply.header("age", "7200, 0"),
                "/young-first" => reply.header("age", "0, 7200"),
                "/old-first-line" => reply.header("age", "7200").header("age", "0"),
                _ => reply.header("age", "0").header("age", "7200"),
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        assert_eq!(twice(&folio, "/old-first", &[]).await.1, "MISS", "stale");
        assert_eq!(
            twice(&folio, "/old-first-line", &[]).await.1,
            "MISS",
            "stale"
        );
        assert_eq!(twice(&folio, "/young-first", &[]).await.1, "HIT");
        assert_eq!(twice(&folio, "/young-first-line", &[]).await.1, "HIT");
    }

    #[tokio::test]
    async fn expires_in_obsolete_formats_and_any_case_is_understood() {
        // RFC 9110 §5.6.7: recipients parse all three HTTP-date forms.
        let (rfc850, asctime) = obsolete_dates(600);
        let upper = http_date(600).to_uppercase();
        let upstream = TestUpstream::start(move |seen| {
            let expires = match seen.uri.path() {
                "/rfc850" => rfc850.as_str(),
                "/asctime" => asctime.as_str(),
                "/upper-case" => upper.as_str(),
                // The conformance suite's: an asctime date whose day name
                // is not the date's (8 Aug 2050 is a Monday), and a
                // two-digit year within 50 years.
                "/wrong-day-name" => "Thu Aug  8 02:01:18 2050",
                "/two-digit-year" => "Thursday, 18-Aug-50 02:01:18 GMT",
                "/lower-case" => "thu, 18 aug 2050 02:01:18 gmt",
                // Not HTTP-dates: already expired.
                "/utc" => "Thu, 18 Aug 2050 02:01:18 UTC",
                _ => "Thu, 18 Aug 50 02:01:18 GMT",
            };
            Reply::json("{}").header("expires", expires)
        })
        .await;
        let folio = rfc(&upstream).await;
        for path in [
            "/rfc850",
            "/asctime",
            "/upper-case",
            "/wrong-day-name",
            "/two-digit-year",
            "/lower-case",
        ] {
            assert_eq!(twice(&folio, path, &[]).await.1, "HIT", "{path}");
        }
        for path in ["/utc", "/imf-with-two-digit-year"] {
            assert_eq!(twice(&folio, path, &[]).await.1, "MISS", "{path}");
        }
    }

    #[tokio::test]
    async fn age_is_sent_on_every_response_from_cache_and_grows() {
        let upstream = answering(&[("cache-control", "max-age=60")]).await;
        let folio = rfc(&upstream).await;
        assert_eq!(get(&folio.url("/"), &[]).await.header("age"), "0");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let hit = get(&folio.url("/"), &[]).await;
        assert!(hit.header("age").parse::<u64>().unwrap() >= 1);
    }

    #[tokio::test]
    async fn heuristic_freshness_only_for_heuristically_cacheable_statuses() {
        let modified = http_date(-10 * 86_400);
        let upstream = TestUpstream::start(move |seen| match seen.uri.path() {
            "/ok" => Reply::json("{}").header("last-modified", &modified),
            "/gone" => Reply::json("{}")
                .status(410)
                .header("last-modified", &modified),
            _ => Reply::json("{}")
                .status(302)
                .header("location", "/ok")
                .header("last-modified", &modified),
        })
        .await;
        let folio = rfc(&upstream).await;
        assert_eq!(twice(&folio, "/ok", &[]).await.1, "HIT");
        assert_eq!(twice(&folio, "/gone", &[]).await.1, "HIT");
        assert_eq!(
            twice(&folio, "/moved", &[]).await.1,
            "MISS",
            "302 needs explicit freshness"
        );
    }
}

mod date {
    use super::*;
    use crate::support::raw::RawOrigin;

    #[tokio::test]
    async fn date_is_the_stored_responses_own() {
        // RFC 9110 §6.6.1: Date is when the origin made the response; a
        // cache passes it on, it does not make up another (RFC 9111 §4).
        let sent = http_date(-5);
        let expires = http_date(600);
        let upstream = TestUpstream::start(move |seen| {
            let reply = Reply::json("{}").header("date", &sent);
            match seen.uri.path() {
                "/expires" => reply.header("expires", &expires),
                _ => reply.header("cache-control", "max-age=60"),
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        let sent = http_date(-5);
        get(&folio.url("/max-age"), &[]).await;
        get(&folio.url("/expires"), &[]).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for path in ["/max-age", "/expires"] {
            let hit = get(&folio.url(path), &[]).await;
            assert_eq!(hit.x_cache(), "HIT", "{path}");
            // The upstream's Date, give or take the second it was sent in.
            let date = httpdate::parse_http_date(hit.header("date")).unwrap();
            let sent = httpdate::parse_http_date(&sent).unwrap();
            let apart = date.duration_since(sent).unwrap_or_else(|e| e.duration());
            assert!(
                apart <= Duration::from_secs(1),
                "{path}: Date {}",
                hit.header("date")
            );
            let age: u64 = hit.header("age").parse().unwrap();
            assert!(age >= 6, "{path}: Age {age} counts the 5 s before storing");
        }
    }

    #[tokio::test]
    async fn a_response_without_date_is_dated_once_when_received() {
        // RFC 9110 §6.6.1: a recipient adds the Date a response lacks; the
        // stored response keeps it. The raw origin sends no Date.
        let origin = RawOrigin::start().await;
        let folio = Folio::start_with(settings(origin.uri()), "").await;
        let miss = get(&folio.url("/"), &[]).await;
        assert_eq!(miss.x_cache(), "MISS");
        assert!(!miss.header("date").is_empty());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let hit = get(&folio.url("/"), &[]).await;
        assert_eq!(hit.x_cache(), "HIT");
        assert_eq!(hit.header("date"), miss.header("date"));
        assert!(hit.header("age").parse::<u64>().unwrap() >= 1);
    }
}

mod response_directives {
    use super::*;

    #[tokio::test]
    async fn no_store_is_never_stored() {
        let upstream = answering(&[("cache-control", "no-store, max-age=60")]).await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "MISS");
    }

    #[tokio::test]
    async fn no_cache_is_stored_and_revalidated_before_every_use() {
        let upstream = TestUpstream::start(|seen| {
            if seen.header("if-none-match") == "\"v1\"" {
                Reply::json("").status(304).header("etag", "\"v1\"")
            } else {
                Reply::json(r#"{"full":true}"#)
                    .header("etag", "\"v1\"")
                    .header("cache-control", "no-cache")
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let second = get(&folio.url("/"), &[]).await;
        assert_eq!(second.status, 200, "the client gets the full response");
        assert_eq!(second.text(), r#"{"full":true}"#);
        assert_eq!(second.x_cache(), "EXPIRED");
        assert!(
            second.header("cache-status").contains("fwd-status=304"),
            "{}",
            second.header("cache-status")
        );
        assert_eq!(upstream.last().header("if-none-match"), "\"v1\"");
    }

    #[tokio::test]
    async fn revalidations_do_not_pile_up_via_entries() {
        let upstream = TestUpstream::start(|seen| {
            if seen.header("if-none-match") == "\"v1\"" {
                Reply::json("").status(304).header("etag", "\"v1\"")
            } else {
                Reply::json("{}")
                    .header("etag", "\"v1\"")
                    .header("cache-control", "no-cache")
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        for _ in 0..3 {
            get(&folio.url("/"), &[]).await;
        }
        let answer = get(&folio.url("/"), &[]).await;
        assert_eq!(answer.x_cache(), "EXPIRED", "revalidated once more");
        assert_eq!(answer.header("via"), "1.1 folio");
    }

    #[tokio::test]
    async fn private_is_not_stored() {
        let upstream = answering(&[("cache-control", "private, max-age=60")]).await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "MISS");
    }

    #[tokio::test]
    async fn private_with_field_names_strips_those_fields() {
        let upstream = answering(&[
            ("cache-control", "private=\"x-user\", max-age=60"),
            ("x-user", "alice"),
        ])
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let hit = get(&folio.url("/"), &[]).await;
        assert_eq!(hit.x_cache(), "HIT");
        assert_eq!(
            hit.header("x-user"),
            "",
            "never served from the shared cache"
        );
    }

    #[tokio::test]
    async fn must_revalidate_forbids_serving_stale_on_error() {
        let upstream = answering(&[(
            "cache-control",
            "max-age=1, must-revalidate, stale-if-error=60",
        )])
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        upstream.answer(|_| Reply::json("{}").status(503));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(get(&folio.url("/"), &[]).await.status, 503);
    }

    #[tokio::test]
    async fn proxy_revalidate_and_s_maxage_forbid_stale_too() {
        for cc in [
            "max-age=1, proxy-revalidate, stale-if-error=60",
            "s-maxage=1, stale-if-error=60",
        ] {
            let upstream =
                TestUpstream::start(move |_| Reply::json("{}").header("cache-control", cc)).await;
            let folio = rfc(&upstream).await;
            get(&folio.url("/"), &[]).await;
            upstream.answer(|_| Reply::json("{}").status(503));
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert_eq!(get(&folio.url("/"), &[]).await.status, 503, "{cc}");
        }
    }

    /// folio in front of an origin that answers with `cache_control`
    /// once, then closes every connection; what a second request gets after
    /// `wait`.
    async fn after_the_upstream_closes(cache_control: &'static str, wait: Duration) -> u16 {
        let (uri, down) = crate::support::raw::closing_origin(cache_control).await;
        let folio = Folio::start_with(settings(uri), "").await;
        assert_eq!(get(&folio.url("/"), &[]).await.status, 200);
        down.store(true, Ordering::SeqCst);
        tokio::time::sleep(wait).await;
        get(&folio.url("/"), &[]).await.status.as_u16()
    }

    #[tokio::test]
    async fn a_closed_connection_is_covered_by_a_stale_entry_by_default() {
        // RFC 9111 §4.2.4: a cache that cannot reach the origin may serve stale.
        let late = Duration::from_millis(1100);
        assert_eq!(after_the_upstream_closes("max-age=1", late).await, 200);
    }

    #[tokio::test]
    async fn must_revalidate_refuses_stale_on_a_closed_connection() {
        // RFC 9111 §5.2.2.2.
        let late = Duration::from_millis(1100);
        let cc = "max-age=1, must-revalidate";
        assert_eq!(after_the_upstream_closes(cc, late).await, 502);
    }

    #[tokio::test]
    async fn proxy_revalidate_refuses_stale_on_a_closed_connection() {
        // RFC 9111 §5.2.2.8.
        let late = Duration::from_millis(1100);
        let cc = "max-age=1, proxy-revalidate";
        assert_eq!(after_the_upstream_closes(cc, late).await, 502);
    }

    #[tokio::test]
    async fn s_maxage_refuses_stale_on_a_closed_connection() {
        // RFC 9111 §5.2.2.10: s-maxage implies proxy-revalidate.
        let late = Duration::from_millis(1100);
        assert_eq!(after_the_upstream_closes("s-maxage=1", late).await, 502);
    }

    #[tokio::test]
    async fn no_cache_refuses_stale_on_a_closed_connection() {
        // RFC 9111 §5.2.2.4: never used without a successful validation,
        // however fresh its max-age says it is.
        let late = Duration::from_millis(1100);
        assert_eq!(
            after_the_upstream_closes("max-age=1, no-cache", late).await,
            502
        );
        let fresh = "no-cache, max-age=600";
        assert_eq!(after_the_upstream_closes(fresh, Duration::ZERO).await, 502);
    }

    #[tokio::test]
    async fn stale_if_error_serves_stale_when_allowed() {
        let upstream = answering(&[("cache-control", "max-age=1, stale-if-error=60")]).await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        upstream.answer(|_| Reply::json("{}").status(500));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let stale = get(&folio.url("/"), &[]).await;
        assert_eq!(stale.status, 200);
        assert_eq!(stale.x_cache(), "STALE");
    }

    #[tokio::test]
    async fn stale_while_revalidate_from_the_upstream() {
        let upstream =
            answering(&[("cache-control", "max-age=1, stale-while-revalidate=60")]).await;
        let folio = rfc(&upstream).await;
        stored_then_stale(&folio).await;
        assert_eq!(get(&folio.url("/"), &[]).await.x_cache(), "STALE");
    }

    #[tokio::test]
    async fn immutable_answers_client_reloads_from_cache() {
        let upstream = answering(&[("cache-control", "max-age=60, immutable")]).await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        assert_eq!(
            get(&folio.url("/"), &[("cache-control", "no-cache")])
                .await
                .x_cache(),
            "HIT"
        );
        assert_eq!(upstream.total_hits(), 1);
    }

    #[tokio::test]
    async fn unknown_directives_are_ignored() {
        let upstream = answering(&[(
            "cache-control",
            "x-made-up=\"no-store\", max-age=60, another",
        )])
        .await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "HIT");
    }

    #[tokio::test]
    async fn public_allows_storing_an_answer_to_an_authorized_request() {
        let upstream = answering(&[("cache-control", "public, max-age=60")]).await;
        let folio = rfc(&upstream).await;
        let auth = [("authorization", "Bearer a")];
        assert_eq!(
            twice(&folio, "/", &auth).await,
            ("MISS".into(), "HIT".into())
        );
    }
}

mod request_directives {
    use super::*;

    async fn cached() -> (TestUpstream, Folio) {
        let upstream = answering(&[("cache-control", "max-age=60"), ("etag", "\"e\"")]).await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        (upstream, folio)
    }

    #[tokio::test]
    async fn no_cache_in_the_request_goes_to_the_upstream() {
        let (upstream, folio) = cached().await;
        let got = get(&folio.url("/"), &[("cache-control", "no-cache")]).await;
        assert!(
            got.header("cache-status").contains("fwd=request"),
            "{}",
            got.header("cache-status")
        );
        assert_eq!(upstream.total_hits(), 2);
        assert_eq!(
            upstream.last().header("if-none-match"),
            "\"e\"",
            "revalidated with the stored validator"
        );
    }

    #[tokio::test]
    async fn pragma_no_cache_counts_when_there_is_no_cache_control() {
        let (upstream, folio) = cached().await;
        get(&folio.url("/"), &[("pragma", "no-cache")]).await;
        assert_eq!(upstream.total_hits(), 2);
        get(
            &folio.url("/"),
            &[("pragma", "no-cache"), ("cache-control", "max-age=600")],
        )
        .await;
        assert_eq!(upstream.total_hits(), 2, "Cache-Control wins");
    }

    #[tokio::test]
    async fn no_store_in_the_request_stores_nothing() {
        let upstream = answering(&[("cache-control", "max-age=60")]).await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[("cache-control", "no-store")]).await;
        assert_eq!(get(&folio.url("/"), &[]).await.x_cache(), "MISS");
    }

    #[tokio::test]
    async fn max_age_in_the_request_limits_the_age_accepted() {
        let (upstream, folio) = cached().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            get(&folio.url("/"), &[("cache-control", "max-age=30")])
                .await
                .x_cache(),
            "HIT"
        );
        get(&folio.url("/"), &[("cache-control", "max-age=0")]).await;
        assert_eq!(upstream.total_hits(), 2);
    }

    #[tokio::test]
    async fn max_stale_accepts_a_stale_entry() {
        let upstream = answering(&[("cache-control", "max-age=1")]).await;
        let folio = rfc(&upstream).await;
        stored_then_stale(&folio).await;
        let got = get(&folio.url("/"), &[("cache-control", "max-stale=60")]).await;
        assert_eq!(got.x_cache(), "STALE");
        assert_eq!(upstream.total_hits(), 1);
    }

    #[tokio::test]
    async fn min_fresh_asks_for_freshness_left() {
        let (upstream, folio) = cached().await;
        assert_eq!(
            get(&folio.url("/"), &[("cache-control", "min-fresh=10")])
                .await
                .x_cache(),
            "HIT"
        );
        get(&folio.url("/"), &[("cache-control", "min-fresh=3600")]).await;
        assert_eq!(upstream.total_hits(), 2);
    }

    #[tokio::test]
    async fn only_if_cached_is_a_504_when_nothing_is_stored() {
        let (upstream, folio) = cached().await;
        assert_eq!(
            get(&folio.url("/"), &[("cache-control", "only-if-cached")])
                .await
                .x_cache(),
            "HIT"
        );
        let none = get(&folio.url("/other"), &[("cache-control", "only-if-cached")]).await;
        assert_eq!(none.status, 504);
        assert_eq!(none.json()["error"], "only_if_cached");
        assert_eq!(upstream.total_hits(), 1, "nothing forwarded");
    }
}

mod vary {
    use super::*;

    async fn by_language() -> TestUpstream {
        TestUpstream::start(|seen| {
            Reply::json(format!(
                r#"{{"lang":"{}"}}"#,
                seen.header("accept-language")
            ))
            .header("vary", "Accept-Language")
            .header("cache-control", "max-age=60")
        })
        .await
    }

    #[tokio::test]
    async fn each_variant_is_stored_under_its_own_key() {
        let upstream = by_language().await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[("accept-language", "en")]).await;
        get(&folio.url("/"), &[("accept-language", "fr")]).await;
        let en = get(&folio.url("/"), &[("accept-language", "en")]).await;
        let fr = get(&folio.url("/"), &[("accept-language", "fr")]).await;
        assert_eq!(
            (en.x_cache(), fr.x_cache()),
            ("HIT", "HIT"),
            "both variants kept"
        );
        assert_eq!(en.json()["lang"], "en");
        assert_eq!(fr.json()["lang"], "fr");
        assert_eq!(
            get(&folio.url("/"), &[]).await.x_cache(),
            "MISS",
            "no header is a variant of its own"
        );
    }

    #[tokio::test]
    async fn vary_values_are_normalized_before_keying() {
        let upstream = TestUpstream::start(|_| {
            Reply::json("{}")
                .header("vary", "Accept-Encoding, Accept-Language")
                .header("cache-control", "max-age=60")
        })
        .await;
        let folio = rfc(&upstream).await;
        get(
            &folio.url("/"),
            &[
                ("accept-encoding", "gzip, br"),
                ("accept-language", "en-US"),
            ],
        )
        .await;
        let same = get(
            &folio.url("/"),
            &[("accept-encoding", "br,gzip"), ("accept-language", "en-us")],
        )
        .await;
        assert_eq!(same.x_cache(), "HIT");
    }

    #[tokio::test]
    async fn accept_language_preferences_share_an_entry_whatever_their_spelling() {
        // RFC 9110 §12.5.4, §12.4.2: a set of ranges with weights; order
        // and the spelling of a weight state nothing more.
        let upstream = by_language().await;
        let folio = rfc(&upstream).await;
        let asking = |value: &'static str| [("accept-language", value)];
        assert_eq!(
            get(&folio.url("/"), &asking("en, fr;q=0.8"))
                .await
                .x_cache(),
            "MISS"
        );
        for same in ["fr;q=0.8, en", "en;q=1.0, fr;q=0.80", "EN, Fr; q=0.800"] {
            assert_eq!(
                get(&folio.url("/"), &asking(same)).await.x_cache(),
                "HIT",
                "{same}"
            );
        }
        for other in ["en, fr;q=0.5", "fr, en;q=0.8", "en"] {
            assert_eq!(
                get(&folio.url("/"), &asking(other)).await.x_cache(),
                "MISS",
                "{other}"
            );
        }
        get(&folio.url("/"), &asking("en, de")).await;
        assert_eq!(
            get(&folio.url("/"), &asking("de, en")).await.x_cache(),
            "HIT",
            "equal weights are one preference"
        );
    }

    #[tokio::test]
    async fn vary_star_is_never_reused() {
        let upstream = answering(&[("vary", "*"), ("cache-control", "max-age=60")]).await;
        assert_eq!(twice(&rfc(&upstream).await, "/", &[]).await.1, "MISS");
    }
}

mod validation {
    use super::*;

    #[tokio::test]
    async fn if_modified_since_without_last_modified_is_answered_from_the_date() {
        // RFC 9111 §4.3.2: the stored Date stands in for Last-Modified.
        let date = http_date(-100);
        let upstream = TestUpstream::start(move |_| {
            Reply::json("{}")
                .header("date", &date)
                .header("cache-control", "max-age=600")
        })
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let later = http_date(-50);
        let not_modified = get(&folio.url("/"), &[("if-modified-since", &later)]).await;
        assert_eq!(not_modified.status, 304);
        assert_eq!(not_modified.x_cache(), "HIT");
        let earlier = http_date(-200);
        let modified = get(&folio.url("/"), &[("if-modified-since", &earlier)]).await;
        assert_eq!(modified.status, 200);
        assert_eq!(upstream.total_hits(), 1);
    }

    #[tokio::test]
    async fn a_stale_entry_is_revalidated_and_a_304_refreshes_its_headers() {
        let upstream = TestUpstream::start(|seen| {
            if seen.header("if-none-match") == "\"v1\""
                && !seen.header("if-modified-since").is_empty()
            {
                Reply::json("")
                    .status(304)
                    .header("etag", "\"v1\"")
                    .header("x-version", "2")
                    .header("cache-control", "max-age=60")
            } else {
                Reply::json(r#"{"body":1}"#)
                    .header("etag", "\"v1\"")
                    .header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
                    .header("x-version", "1")
                    .header("cache-control", "max-age=1")
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        stored_then_stale(&folio).await;
        let revalidated = get(&folio.url("/"), &[]).await;
        assert_eq!(revalidated.status, 200);
        assert_eq!(revalidated.text(), r#"{"body":1}"#);
        assert_eq!(
            revalidated.header("x-version"),
            "2",
            "the 304's headers replace the stored ones"
        );
        let hit = get(&folio.url("/"), &[]).await;
        assert_eq!(hit.x_cache(), "HIT", "fresh again for the 304's max-age");
        assert_eq!(hit.header("x-version"), "2");
        assert_eq!(upstream.total_hits(), 2);
    }

    #[tokio::test]
    async fn a_304_naming_another_representation_updates_nothing() {
        // An upstream now at v2 that still answers v1's validator with a
        // 304, naming v2: the stored v1 body must not become "v2".
        let first = Arc::new(AtomicUsize::new(0));
        let upstream = TestUpstream::start(move |seen| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                return Reply::json(r#"{"version":1}"#)
                    .header("etag", "\"v1\"")
                    .header("cache-control", "max-age=1");
            }
            if !seen.header("if-none-match").is_empty() {
                Reply::json("")
                    .status(304)
                    .header("etag", "\"v2\"")
                    .header("content-encoding", "gzip")
                    .header("cache-control", "max-age=60")
            } else {
                Reply::json(r#"{"version":2}"#)
                    .header("etag", "\"v2\"")
                    .header("cache-control", "max-age=60")
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        stored_then_stale(&folio).await;
        let after = get(&folio.url("/"), &[]).await;
        assert_eq!(after.text(), r#"{"version":2}"#);
        assert_eq!(after.header("etag"), "\"v2\"");
        assert_eq!(after.header("content-encoding"), "");
        assert_eq!(upstream.total_hits(), 3, "asked again, without validators");
        assert!(upstream.last().header("if-none-match").is_empty());
        let hit = get(&folio.url("/"), &[]).await;
        assert_eq!(
            (hit.x_cache(), hit.text().as_str()),
            ("HIT", r#"{"version":2}"#)
        );
    }

    #[tokio::test]
    async fn asking_again_after_a_304_for_another_representation_keeps_to_the_timeout() {
        let first = Arc::new(AtomicUsize::new(0));
        let upstream = TestUpstream::start(move |seen| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                return Reply::json(r#"{"version":1}"#)
                    .header("etag", "\"v1\"")
                    .header("cache-control", "max-age=1");
            }
            let reply = if seen.header("if-none-match").is_empty() {
                Reply::json(r#"{"version":2}"#).header("etag", "\"v2\"")
            } else {
                Reply::json("").status(304).header("etag", "\"v2\"")
            };
            reply.delay(Duration::from_millis(700))
        })
        .await;
        let mut settings = settings(upstream.uri());
        settings.upstream_timeout = Duration::from_secs(1);
        let folio = Folio::start_with(settings, "").await;
        stored_then_stale(&folio).await;
        let started = std::time::Instant::now();
        let after = get(&folio.url("/"), &[]).await;
        // Two asks of 700 ms do not fit in one timeout of 1 s: the stored
        // answer is served stale on the timeout, as on any upstream error.
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1300), "{took:?}");
        assert_eq!(after.status, 200);
        assert_eq!(after.x_cache(), "STALE");
    }

    #[tokio::test]
    async fn a_strong_304_for_a_weakened_etag_refreshes_the_entry() {
        // nginx with gzip: the 200 goes out as W/"x", its 304 as "x".
        let not_modified = Reply::json("").status(304).header("etag", "\"x\"");
        let upstream = revalidating("W/\"x\"", r#"{"v":1}"#, not_modified).await;
        let folio = rfc(&upstream).await;
        stored_then_stale(&folio).await;
        let revalidated = get(&folio.url("/"), &[]).await;
        assert_eq!(revalidated.text(), r#"{"v":1}"#);
        assert_eq!(upstream.total_hits(), 2, "refreshed, not fetched again");
        assert_eq!(get(&folio.url("/"), &[]).await.x_cache(), "HIT");
    }

    #[tokio::test]
    async fn a_304_cannot_relabel_the_coding_of_a_stored_body() {
        let not_modified = Reply::json("")
            .status(304)
            .header("etag", "\"v1\"")
            .header("content-encoding", "gzip");
        let upstream = revalidating("\"v1\"", r#"{"plain":true}"#, not_modified).await;
        let folio = rfc(&upstream).await;
        stored_then_stale(&folio).await;
        for _ in 0..2 {
            let got = get(&folio.url("/"), &[]).await;
            assert_eq!(got.text(), r#"{"plain":true}"#);
            assert_eq!(got.header("content-encoding"), "");
        }
        assert_eq!(upstream.total_hits(), 2);
    }

    #[tokio::test]
    async fn a_validator_only_answer_is_revalidated_on_use() {
        let upstream = TestUpstream::start(|seen| {
            if seen.header("if-none-match") == "\"only\"" {
                Reply::json("").status(304).header("etag", "\"only\"")
            } else {
                Reply::json(r#"{"x":1}"#).header("etag", "\"only\"")
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let second = get(&folio.url("/"), &[]).await;
        assert_eq!(second.text(), r#"{"x":1}"#);
        assert_eq!(second.x_cache(), "EXPIRED");
    }

    #[tokio::test]
    async fn clients_conditionals_get_304_from_a_fresh_entry() {
        let upstream = answering(&[
            ("cache-control", "max-age=60"),
            ("etag", "W/\"w1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ])
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        assert_eq!(
            get(&folio.url("/"), &[("if-none-match", "\"w1\"")])
                .await
                .status,
            304,
            "weak comparison"
        );
        assert_eq!(
            get(
                &folio.url("/"),
                &[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]
            )
            .await
            .status,
            304
        );
        let both = [
            ("if-none-match", "\"other\""),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ];
        assert_eq!(
            get(&folio.url("/"), &both).await.status,
            200,
            "If-Modified-Since only without If-None-Match"
        );
        assert_eq!(upstream.total_hits(), 1);
    }
}

mod methods {
    use super::*;

    #[tokio::test]
    async fn head_is_answered_from_a_stored_get() {
        let upstream = answering(&[("cache-control", "max-age=60")]).await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let head = send("HEAD", &folio.url("/"), &[], "").await;
        assert_eq!(head.x_cache(), "HIT");
        assert_eq!(head.header("content-length"), "7");
    }

    #[tokio::test]
    async fn a_head_response_updates_stored_headers() {
        let upstream = TestUpstream::start(|seen| {
            let version = if seen.method == "HEAD" { "2" } else { "1" };
            Reply::json(r#"{"v":1}"#)
                .header("etag", "\"same\"")
                .header("x-version", version)
                .header("cache-control", "max-age=1")
        })
        .await;
        let folio = rfc(&upstream).await;
        stored_then_stale(&folio).await;
        let head = send("HEAD", &folio.url("/"), &[], "").await;
        assert_eq!(upstream.last().method, "HEAD");
        assert_eq!(head.header("x-version"), "2");
        assert!(
            head.header("cache-status").contains("fwd-status=200"),
            "the upstream's answer was a 200: {}",
            head.header("cache-status")
        );
        let hit = get(&folio.url("/"), &[]).await;
        assert_eq!(hit.x_cache(), "HIT");
        assert_eq!(hit.header("x-version"), "2");
        assert_eq!(hit.text(), r#"{"v":1}"#);
    }

    #[tokio::test]
    async fn unsafe_methods_invalidate_the_target_and_location_uris() {
        let upstream = TestUpstream::start(|seen| match (seen.method.as_str(), seen.uri.path()) {
            ("POST", _) => Reply::json("{}")
                .status(201)
                .header("location", "/items/9")
                .header("content-location", "/items/latest"),
            ("FROB", _) => Reply::json("{}"),
            _ => Reply::json("{}").header("cache-control", "max-age=60"),
        })
        .await;
        let folio = rfc(&upstream).await;
        for path in ["/items", "/items/9", "/items/latest", "/other"] {
            get(&folio.url(path), &[]).await;
            assert_eq!(get(&folio.url(path), &[]).await.x_cache(), "HIT");
        }
        send("POST", &folio.url("/items"), &[], "{}").await;
        for path in ["/items", "/items/9", "/items/latest"] {
            assert_eq!(get(&folio.url(path), &[]).await.x_cache(), "MISS", "{path}");
        }
        assert_eq!(get(&folio.url("/other"), &[]).await.x_cache(), "HIT");
        send("FROB", &folio.url("/other"), &[], "").await;
        assert_eq!(
            get(&folio.url("/other"), &[]).await.x_cache(),
            "MISS",
            "an unknown method is unsafe"
        );
    }

    #[tokio::test]
    async fn absolute_locations_count_only_on_the_same_host() {
        let upstream = TestUpstream::start(|seen| match (seen.method.as_str(), seen.uri.path()) {
            ("POST", "/a") => Reply::json("{}")
                .header("location", &format!("http://{}/same", seen.header("host"))),
            ("POST", _) => Reply::json("{}").header("location", "http://elsewhere.example/other"),
            _ => Reply::json("{}").header("cache-control", "max-age=60"),
        })
        .await;
        let folio = rfc(&upstream).await;
        for path in ["/same", "/other"] {
            get(&folio.url(path), &[]).await;
        }
        send("POST", &folio.url("/a"), &[], "").await;
        send("POST", &folio.url("/b"), &[], "").await;
        assert_eq!(get(&folio.url("/same"), &[]).await.x_cache(), "MISS");
        assert_eq!(
            get(&folio.url("/other"), &[]).await.x_cache(),
            "HIT",
            "another host's URI is not ours"
        );
    }

    #[tokio::test]
    async fn locations_with_a_port_or_relative_to_the_request_count_too() {
        let upstream = TestUpstream::start(|seen| match seen.method.as_str() {
            "POST" => Reply::json("{}")
                .status(201)
                .header(
                    "location",
                    &format!("http://{}:8080/items/3", seen.header("host")),
                )
                .header("content-location", "items/6"),
            _ => Reply::json("{}").header("cache-control", "max-age=60"),
        })
        .await;
        let folio = rfc(&upstream).await;
        for path in ["/items/3", "/items/6"] {
            get(&folio.url(path), &[]).await;
            assert_eq!(get(&folio.url(path), &[]).await.x_cache(), "HIT");
        }
        send("POST", &folio.url("/items"), &[], "{}").await;
        for path in ["/items/3", "/items/6"] {
            assert_eq!(get(&folio.url(path), &[]).await.x_cache(), "MISS", "{path}");
        }
    }

    #[tokio::test]
    async fn a_failed_write_invalidates_nothing() {
        let upstream = TestUpstream::start(|seen| match seen.method.as_str() {
            "DELETE" => Reply::json("{}").status(500),
            _ => Reply::json("{}").header("cache-control", "max-age=60"),
        })
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/x"), &[]).await;
        send("DELETE", &folio.url("/x"), &[], "").await;
        assert_eq!(get(&folio.url("/x"), &[]).await.x_cache(), "HIT");
    }
}

mod authorization {
    use super::*;

    #[tokio::test]
    async fn an_answer_to_an_authorized_request_is_not_reused_without_public() {
        let upstream = answering(&[("cache-control", "max-age=60")]).await;
        let folio = rfc(&upstream).await;
        let auth = [("authorization", "Bearer a")];
        assert_eq!(
            twice(&folio, "/", &auth).await,
            ("MISS".into(), "MISS".into())
        );
        assert_eq!(
            get(&folio.url("/"), &[]).await.x_cache(),
            "MISS",
            "nor given to anyone else"
        );
    }

    #[tokio::test]
    async fn s_maxage_or_must_revalidate_allow_reuse_too() {
        for cc in ["s-maxage=60", "max-age=60, must-revalidate"] {
            let upstream =
                TestUpstream::start(move |_| Reply::json("{}").header("cache-control", cc)).await;
            let folio = rfc(&upstream).await;
            assert_eq!(
                twice(&folio, "/", &[("authorization", "Bearer a")]).await.1,
                "HIT",
                "{cc}"
            );
        }
    }

    #[tokio::test]
    async fn set_cookie_is_never_served_to_another_client() {
        let upstream = answering(&[
            ("cache-control", "public, max-age=60"),
            ("set-cookie", "session=alice"),
        ])
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let other = get(&folio.url("/"), &[]).await;
        assert_eq!(other.x_cache(), "MISS");
        assert_eq!(upstream.total_hits(), 2);
    }
}

mod status_codes {
    use super::*;

    #[tokio::test]
    async fn interim_responses_are_not_forwarded_but_the_final_one_is() {
        // An exception (docs/http-caching.md): RFC 9110 §15.2 has 1xx
        // forwarded, which hyper's server cannot do yet. The client still
        // gets the final answer, and it is cached as usual.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {
                        let answer = "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n\
                            HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let folio =
            Folio::start_with(settings(format!("http://{addr}").parse().unwrap()), "").await;
        let first = get(&folio.url("/"), &[]).await;
        assert_eq!((first.status.as_u16(), first.text().as_str()), (200, "{}"));
        assert_eq!(first.header("link"), "", "the hint is not passed on");
        assert_eq!(get(&folio.url("/"), &[]).await.x_cache(), "HIT");
    }

    #[tokio::test]
    async fn must_understand_stores_a_known_status_despite_no_store() {
        // RFC 9111 §5.2.2.3: a cache that knows the status's rules ignores
        // no-store; one that does not, does not store.
        let upstream = TestUpstream::start(|seen| {
            let status = if seen.uri.path() == "/known" {
                200
            } else {
                599
            };
            Reply::json("{}")
                .status(status)
                .header("cache-control", "max-age=3600, no-store, must-understand")
        })
        .await;
        let folio = rfc(&upstream).await;
        assert_eq!(twice(&folio, "/known", &[]).await.1, "HIT");
        assert_eq!(twice(&folio, "/unknown", &[]).await.1, "MISS");
    }

    #[tokio::test]
    async fn other_statuses_only_with_explicit_freshness() {
        let upstream = TestUpstream::start(|seen| match seen.uri.path() {
            "/fresh-302" => Reply::json("{}")
                .status(302)
                .header("location", "/")
                .header("cache-control", "max-age=60"),
            "/plain-302" => Reply::json("{}").status(302).header("location", "/"),
            "/fresh-500" => Reply::json("{}")
                .status(500)
                .header("cache-control", "max-age=60"),
            _ => Reply::json("{}")
                .status(404)
                .header("cache-control", "max-age=60"),
        })
        .await;
        let folio = rfc(&upstream).await;
        assert_eq!(twice(&folio, "/fresh-302", &[]).await.1, "HIT");
        assert_eq!(twice(&folio, "/plain-302", &[]).await.1, "MISS");
        assert_eq!(twice(&folio, "/fresh-500", &[]).await.1, "HIT");
        assert_eq!(twice(&folio, "/missing", &[]).await.1, "HIT");
    }
}

mod cdn_cache_control {
    use super::*;

    #[tokio::test]
    async fn cdn_cache_control_is_honoured_over_cache_control() {
        let upstream = answering(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ])
        .await;
        let folio = rfc(&upstream).await;
        let (_, second) = twice(&folio, "/", &[]).await;
        assert_eq!(second, "HIT");
        let hit = get(&folio.url("/"), &[]).await;
        assert_eq!(
            hit.header("cache-control"),
            "no-store",
            "clients still see the origin's Cache-Control"
        );
        assert_eq!(
            hit.header("cdn-cache-control"),
            "max-age=60",
            "and CDNs downstream their field"
        );
    }

    #[tokio::test]
    async fn an_invalid_cdn_cache_control_is_ignored_and_cache_control_decides() {
        // RFC 9213 §2.1: not a valid RFC 8941 Dictionary, so as if absent.
        let upstream = TestUpstream::start(|seen| {
            let path = seen.uri.path();
            let cache_control = if path.starts_with("/no-store/") {
                "no-store"
            } else {
                "max-age=60"
            };
            let cdn = if path.ends_with("/space") {
                "max-age =10000"
            } else if path.ends_with("/case") {
                "MaX-aGe=10000"
            } else {
                "max-age=10000, &&&&&"
            };
            Reply::json("{}")
                .header("cache-control", cache_control)
                .header("cdn-cache-control", cdn)
        })
        .await;
        let folio = rfc(&upstream).await;
        for cdn in ["junk", "space", "case"] {
            let no_store = format!("/no-store/{cdn}");
            assert_eq!(twice(&folio, &no_store, &[]).await.1, "MISS", "{cdn}");
            let fresh = format!("/fresh/{cdn}");
            assert_eq!(twice(&folio, &fresh, &[]).await.1, "HIT", "{cdn}");
        }
    }

    #[tokio::test]
    async fn a_cdn_directive_of_the_wrong_type_is_not_used() {
        // RFC 9213 §2.1: values that violate a directive's type are not
        // consumed; the field is still valid, so Cache-Control stays ignored.
        let upstream = TestUpstream::start(|seen| {
            let cdn = if seen.uri.path() == "/string" {
                "max-age=\"10000\""
            } else {
                "max-age=1.5"
            };
            Reply::json("{}")
                .header("cache-control", "max-age=60")
                .header("cdn-cache-control", cdn)
        })
        .await;
        let folio = rfc(&upstream).await;
        assert_eq!(twice(&folio, "/string", &[]).await.1, "MISS");
        assert_eq!(twice(&folio, "/decimal", &[]).await.1, "MISS");
    }

    #[tokio::test]
    async fn a_valid_cdn_cache_control_makes_expires_ignored_too() {
        // RFC 9213 §2.2: the targeted field's directives stand alone.
        let date = http_date(0);
        let expires = http_date(600);
        let upstream = TestUpstream::start(move |seen| {
            let reply = Reply::json("{}")
                .header("date", &date)
                .header("expires", &expires);
            if seen.uri.path() == "/targeted" {
                reply.header("cdn-cache-control", "must-revalidate")
            } else {
                reply
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        assert_eq!(twice(&folio, "/targeted", &[]).await.1, "MISS");
        assert_eq!(twice(&folio, "/plain", &[]).await.1, "HIT");
    }

    #[tokio::test]
    async fn not_when_folio_is_told_it_is_no_cdn() {
        let upstream = answering(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ])
        .await;
        let mut settings = settings(upstream.uri());
        settings.cdn = false;
        let folio = Folio::start_with(settings, "").await;
        assert_eq!(twice(&folio, "/", &[]).await.1, "MISS");
    }

    #[tokio::test]
    async fn a_policy_can_emit_cdn_cache_control() {
        let upstream = answering(&[]).await;
        let folio = Folio::start(
            &upstream,
            "\"/\":\n  cache_ttl: 1m\n  cdn_cache_control: \"max-age=600\"\n",
        )
        .await;
        get(&folio.url("/"), &[]).await;
        assert_eq!(
            get(&folio.url("/"), &[]).await.header("cdn-cache-control"),
            "max-age=600"
        );
    }
}

mod cache_status {
    use super::*;

    #[tokio::test]
    async fn cache_status_names_what_happened() {
        let upstream = answering(&[("cache-control", "max-age=60")]).await;
        let folio = rfc(&upstream).await;
        let status = |got: &crate::support::Got| got.header("cache-status").to_owned();
        let miss = get(&folio.url("/"), &[]).await;
        assert!(
            status(&miss).starts_with("folio; fwd=uri-miss; stored; fwd-status=200; ttl=59"),
            "{}",
            status(&miss)
        );
        let hit = get(&folio.url("/"), &[]).await;
        assert!(
            status(&hit).starts_with("folio; hit; detail=L1; ttl="),
            "{}",
            status(&hit)
        );
        let forced = get(&folio.url("/"), &[("cache-control", "no-cache")]).await;
        assert!(
            status(&forced).starts_with("folio; fwd=request; stored; fwd-status=200"),
            "{}",
            status(&forced)
        );
        let bypass = send("DELETE", &folio.url("/"), &[], "").await;
        assert_eq!(status(&bypass), "folio; fwd=method; fwd-status=200");
    }
}

mod ranges {
    use super::*;

    #[tokio::test]
    async fn a_range_of_a_cached_200_is_answered_206_from_cache() {
        let upstream = TestUpstream::start(|_| {
            Reply::json("0123456789").header("cache-control", "max-age=60")
        })
        .await;
        let folio = rfc(&upstream).await;
        get(&folio.url("/"), &[]).await;
        let part = get(&folio.url("/"), &[("range", "bytes=2-5")]).await;
        assert_eq!(part.status, 206);
        assert_eq!(part.text(), "2345");
        assert_eq!(part.header("content-range"), "bytes 2-5/10");
        assert_eq!(
            get(&folio.url("/"), &[("range", "bytes=-3")]).await.text(),
            "789"
        );
        assert_eq!(
            get(&folio.url("/"), &[("range", "bytes=7-")]).await.text(),
            "789"
        );
        let beyond = get(&folio.url("/"), &[("range", "bytes=20-30")]).await;
        assert_eq!(beyond.status, 416);
        assert_eq!(beyond.header("content-range"), "bytes */10");
        let changed = get(
            &folio.url("/"),
            &[("range", "bytes=0-1"), ("if-range", "\"not-it\"")],
        )
        .await;
        assert_eq!(
            changed.status, 200,
            "If-Range that does not match: the whole body"
        );
        assert_eq!(upstream.total_hits(), 1);
    }

    #[tokio::test]
    async fn a_range_request_on_a_miss_is_forwarded_and_its_part_never_answers_for_the_whole() {
        let upstream = TestUpstream::start(|seen| {
            if seen.header("range").is_empty() {
                Reply::json("0123456789").header("cache-control", "max-age=60")
            } else {
                Reply::json("23")
                    .status(206)
                    .header("content-range", "bytes 2-3/10")
                    .header("cache-control", "max-age=60")
            }
        })
        .await;
        let folio = rfc(&upstream).await;
        let part = get(&folio.url("/"), &[("range", "bytes=2-3")]).await;
        assert_eq!(part.status, 206);
        assert_eq!(upstream.last().header("range"), "bytes=2-3");
        let full = get(&folio.url("/"), &[]).await;
        assert_eq!(
            full.x_cache(),
            "MISS",
            "the partial answer was not stored as the full one"
        );
        assert_eq!(full.text(), "0123456789");
    }

    /// An upstream serving `body` with `etag`, fresh for a minute, that
    /// answers a single byte range with a `206`, as file servers do.
    async fn ranged(body: &'static str, etag: &'static str) -> TestUpstream {
        TestUpstream::start(move |seen| {
            let reply = |text: &str| {
                let reply = Reply::json(text).header("cache-control", "max-age=60");
                if etag.is_empty() {
                    reply
                } else {
                    reply.header("etag", etag)
                }
            };
            let Some(spec) = seen.header("range").strip_prefix("bytes=") else {
                return reply(body);
            };
            let len = body.len();
            let (first, last) = match spec.split_once('-').unwrap() {
                ("", n) => (len - n.parse::<usize>().unwrap(), len - 1),
                (a, "") => (a.parse().unwrap(), len - 1),
                (a, b) => (a.parse().unwrap(), b.parse::<usize>().unwrap().min(len - 1)),
            };
            reply(&body[first..=last])
                .status(206)
                .header("content-range", &format!("bytes {first}-{last}/{len}"))
        })
        .await
    }

    async fn range(folio: &Folio, spec: &str, extra: &[(&str, &str)]) -> crate::support::Got {
        let mut headers = vec![("range", spec)];
        headers.extend_from_slice(extra);
        get(&folio.url("/"), &headers).await
    }

    #[tokio::test]
    async fn a_partial_answer_is_stored_and_answers_the_ranges_it_covers() {
        // RFC 9111 §3.3: a 206 may be stored, and answers requests for
        // ranges wholly within it.
        let upstream = ranged("0123456789", "\"v1\"").await;
        let folio = rfc(&upstream).await;
        let first = range(&folio, "bytes=4-9", &[]).await;
        assert_eq!((first.status.as_u16(), first.x_cache()), (206, "MISS"));
        assert_eq!(first.text(), "456789");
        assert!(first.header("cache-status").contains("stored"));
        for (spec, text, content_range) in [
            ("bytes=4-9", "456789", "bytes 4-9/10"),
            ("bytes=6-8", "678", "bytes 6-8/10"),
            ("bytes=6-", "6789", "bytes 6-9/10"),
            ("bytes=-1", "9", "bytes 9-9/10"),
            ("bytes=8-20", "89", "bytes 8-9/10"),
        ] {
            let part = range(&folio, spec, &[]).await;
            assert_eq!(
                (part.status.as_u16(), part.x_cache()),
                (206, "HIT"),
                "{spec}"
            );
            assert_eq!(part.text(), text, "{spec}");
            assert_eq!(part.header("content-range"), content_range, "{spec}");
            assert_eq!(part.header("etag"), "\"v1\"");
        }
        let beyond = range(&folio, "bytes=10-", &[]).await;
        assert_eq!((beyond.status.as_u16(), beyond.x_cache()), (416, "HIT"));
        assert_eq!(beyond.header("content-range"), "bytes */10");
        assert_eq!(upstream.total_hits(), 1);

        let not_covered = range(&folio, "bytes=0-1", &[]).await;
        assert_eq!(
            (not_covered.status.as_u16(), not_covered.x_cache()),
            (206, "MISS")
        );
        assert_eq!(not_covered.text(), "01");
        assert_eq!(
            range(&folio, "bytes=0-1", &[]).await.x_cache(),
            "HIT",
            "kept instead"
        );
        let other_version = range(&folio, "bytes=0-1", &[("if-range", "\"v0\"")]).await;
        assert_eq!(
            other_version.x_cache(),
            "MISS",
            "If-Range names another representation"
        );
        let whole = get(&folio.url("/"), &[]).await;
        assert_eq!(
            (whole.status.as_u16(), whole.x_cache()),
            (200, "MISS"),
            "a part never answers for the whole"
        );
        assert_eq!(whole.text(), "0123456789");
        assert_eq!(upstream.total_hits(), 4);
    }

    #[tokio::test]
    async fn two_parts_of_one_representation_are_combined_into_the_whole() {
        // RFC 9111 §3.4, RFC 9110 §15.3.7.3: parts with the same strong
        // validator combine; a combination that is all of it is a 200.
        let upstream = ranged("0123456789", "\"v1\"").await;
        let folio = rfc(&upstream).await;
        assert_eq!(range(&folio, "bytes=0-3", &[]).await.text(), "0123");
        assert_eq!(range(&folio, "bytes=2-6", &[]).await.text(), "23456");
        let joined = range(&folio, "bytes=1-5", &[]).await;
        assert_eq!((joined.x_cache(), joined.text().as_str()), ("HIT", "12345"));
        assert_eq!(upstream.total_hits(), 2);
        assert_eq!(range(&folio, "bytes=7-", &[]).await.text(), "789");
        let whole = get(&folio.url("/"), &[]).await;
        assert_eq!((whole.status.as_u16(), whole.x_cache()), (200, "HIT"));
        assert_eq!(whole.text(), "0123456789");
        assert_eq!(whole.header("etag"), "\"v1\"");
        assert_eq!(upstream.total_hits(), 3, "the whole was never asked for");
    }

    #[tokio::test]
    async fn parts_without_one_strong_validator_are_not_combined() {
        for etag in ["W/\"v1\"", ""] {
            let upstream = ranged("0123456789", etag).await;
            let folio = rfc(&upstream).await;
            range(&folio, "bytes=0-4", &[]).await;
            range(&folio, "bytes=5-9", &[]).await;
            assert_eq!(
                range(&folio, "bytes=5-9", &[]).await.x_cache(),
                "HIT",
                "{etag}"
            );
            assert_eq!(
                range(&folio, "bytes=3-6", &[]).await.x_cache(),
                "MISS",
                "{etag}: the newer part only"
            );
            let part = range(&folio, "bytes=3-6", &[]).await;
            assert_eq!(part.x_cache(), "HIT");
            assert_eq!(part.header("etag"), etag, "never an ETag made from a part");
            assert_eq!(get(&folio.url("/"), &[]).await.x_cache(), "MISS", "{etag}");
        }
    }

    #[tokio::test]
    async fn a_stored_part_answers_only_its_tenant_and_fresh() {
        let upstream = ranged("0123456789", "\"v1\"").await;
        let folio = Folio::start(&upstream, "\"/\":\n  cache_ttl: 1s\n").await;
        let acme = [("x-tenant-id", "acme")];
        let globex = [("x-tenant-id", "globex")];
        assert_eq!(range(&folio, "bytes=0-4", &acme).await.x_cache(), "MISS");
        assert_eq!(range(&folio, "bytes=0-4", &acme).await.x_cache(), "HIT");
        assert_eq!(range(&folio, "bytes=0-4", &globex).await.x_cache(), "MISS");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            range(&folio, "bytes=0-4", &acme).await.x_cache(),
            "MISS",
            "stale"
        );
        let purged = folio
            .admin_post("/_folio/purge", &[], r#"{"tenant":"acme","urls":["/"]}"#)
            .await;
        assert_eq!(purged.status, 200, "{}", purged.text());
        assert_eq!(
            range(&folio, "bytes=0-4", &acme).await.x_cache(),
            "MISS",
            "purged"
        );
    }

    #[tokio::test]
    async fn a_partial_answer_that_may_not_be_stored_is_not() {
        let upstream = TestUpstream::start(|_| {
            Reply::json("0123")
                .status(206)
                .header("content-range", "bytes 0-3/10")
                .header("cache-control", "no-store")
        })
        .await;
        let folio = rfc(&upstream).await;
        range(&folio, "bytes=0-3", &[]).await;
        let again = range(&folio, "bytes=0-3", &[]).await;
        assert_eq!((again.status.as_u16(), again.x_cache()), (206, "MISS"));
        assert!(
            again
                .header("cache-status")
                .contains("detail=upstream-no-store")
        );
        let unknown_length = TestUpstream::start(|_| {
            Reply::json("0123")
                .status(206)
                .header("content-range", "bytes 0-3/*")
                .header("cache-control", "max-age=60")
        })
        .await;
        let folio = rfc(&unknown_length).await;
        range(&folio, "bytes=0-3", &[]).await;
        assert_eq!(range(&folio, "bytes=0-3", &[]).await.x_cache(), "BYPASS");
    }
}
