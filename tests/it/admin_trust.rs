//! Who the admin API trusts: cross-site forms (CSRF), DNS rebinding, Bearer
//! tokens over HTTP/1.1 and h2c, empty tokens, and who may read the stats.

use crate::support::{ACME, Folio, TestUpstream, get, send, settings};

const POLICIES: &str = r#"
"/api/v1/products/{id}":
  cache_ttl: 1h
  tags: ["products"]
"#;

const OPERATOR: &str = "op-secret";
const ACME_TOKEN: &str = "acme-secret";

fn admin_url(folio: &Folio, path: &str) -> String {
    format!("http://{}{path}", folio.admin)
}

/// folio with no token at all: the admin API trusts loopback.
async fn open_folio(upstream: &TestUpstream) -> Folio {
    Folio::start(upstream, POLICIES).await
}

/// folio with an operator token and tokens for acme and globex.
async fn guarded_folio(upstream: &TestUpstream) -> Folio {
    let mut settings = settings(upstream.uri());
    settings.admin.operator_token = Some(OPERATOR.into());
    settings.admin.tenant_tokens = vec![
        ("acme".into(), ACME_TOKEN.into()),
        ("globex".into(), "globex-secret".into()),
    ];
    Folio::start_with(settings, POLICIES).await
}

/// Stores acme's product 1 and says so.
async fn cached(folio: &Folio) {
    get(&folio.url("/api/v1/products/1"), ACME).await;
    assert_eq!(still(folio).await, "HIT");
}

async fn still(folio: &Folio) -> String {
    get(&folio.url("/api/v1/products/1"), ACME)
        .await
        .x_cache()
        .to_owned()
}

mod csrf {
    use super::*;

    #[tokio::test]
    async fn a_cross_site_form_cannot_purge_send_events_or_reload() {
        let upstream = TestUpstream::json("{}").await;
        let folio = open_folio(&upstream).await;
        cached(&folio).await;
        // What an HTML form or a "simple" fetch from any web page can send.
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("text/json"),
            Some("application/jsonp"),
        ] {
            for (path, body) in [
                ("/_folio/purge", r#"{"all":true}"#),
                ("/_folio/events", r#"{"event":"x"}"#),
                ("/_folio/reload", ""),
            ] {
                let headers: Vec<(&str, &str)> = content_type
                    .map(|t| ("content-type", t))
                    .into_iter()
                    .collect();
                let got = send("POST", &admin_url(&folio, path), &headers, body).await;
                assert_eq!(got.status, 415, "{path} with {content_type:?}");
                assert_eq!(got.json()["error"], "unsupported_media_type");
            }
        }
        assert_eq!(still(&folio).await, "HIT", "nothing was purged");

        for json in ["application/json", "Application/JSON; charset=utf-8"] {
            let got = send(
                "POST",
                &admin_url(&folio, "/_folio/purge"),
                &[("content-type", json)],
                r#"{"tags":["products"],"tenant":"acme"}"#,
            )
            .await;
            assert_eq!(got.status, 200, "{json}: {}", got.text());
        }
        assert_eq!(still(&folio).await, "MISS");
    }

    #[tokio::test]
    async fn a_foreign_origin_cannot_mutate() {
        let upstream = TestUpstream::json("{}").await;
        let folio = open_folio(&upstream).await;
        cached(&folio).await;
        let body = r#"{"all":true}"#;
        for origin in [
            "http://evil.example".to_owned(),
            "null".to_owned(),
            "https://127.0.0.1".to_owned(),
            format!("http://127.0.0.1:{}", folio.admin.port() ^ 1),
            format!("http://evil.example:{}", folio.admin.port()),
        ] {
            let got = folio
                .admin_post("/_folio/purge", &[("origin", &origin)], body)
                .await;
            assert_eq!(got.status, 403, "{origin}");
            assert_eq!(got.json()["error"], "foreign_origin", "{origin}");
        }
        assert_eq!(still(&folio).await, "HIT", "nothing was purged");

        let own = format!("http://{}", folio.admin);
        let got = folio
            .admin_post("/_folio/purge", &[("origin", &own)], body)
            .await;
        assert_eq!(
            got.status,
            200,
            "the dashboard's own origin: {}",
            got.text()
        );
        assert_eq!(still(&folio).await, "MISS");
        cached(&folio).await;
        let got = folio.admin_post("/_folio/purge", &[], body).await;
        assert_eq!(got.status, 200, "no Origin: not a browser");
    }
}
