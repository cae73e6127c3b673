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

mod rebinding {
    use super::*;

    #[tokio::test]
    async fn without_a_token_only_loopback_names_reach_the_admin_api() {
        let upstream = TestUpstream::json("{}").await;
        let folio = open_folio(&upstream).await;
        cached(&folio).await;
        let port = folio.admin.port();
        // A page on evil.example whose name now resolves to 127.0.0.1.
        let foreign = [
            format!("evil.example:{port}"),
            "evil.example".to_owned(),
            format!("localhost.evil.example:{port}"),
            format!("127.0.0.1.nip.io:{port}"),
            format!("10.1.2.3:{port}"),
        ];
        for host in &foreign {
            for path in [
                "/_folio/",
                "/_folio/dashboard.js",
                "/_folio/stats",
                "/_folio/metrics",
                "/_folio/explain?url=/api/v1/products/1",
            ] {
                let got = get(&admin_url(&folio, path), &[("host", host)]).await;
                assert_eq!(got.status, 421, "{host} {path}");
                assert_eq!(got.json()["error"], "misdirected_request");
            }
            let got = folio
                .admin_post("/_folio/purge", &[("host", host)], r#"{"all":true}"#)
                .await;
            assert_eq!(got.status, 421, "{host}");
        }
        assert_eq!(still(&folio).await, "HIT", "nothing was purged");
        let health = get(
            &admin_url(&folio, "/_folio/health"),
            &[("host", &foreign[0])],
        )
        .await;
        assert_eq!(health.status, 200, "load balancers probe by any name");

        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LocalHost:{port}"),
            format!("[::1]:{port}"),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ] {
            let got = get(&admin_url(&folio, "/_folio/stats"), &[("host", &host)]).await;
            assert_eq!(got.status, 200, "{host}");
        }
    }

    #[tokio::test]
    async fn a_token_lets_a_request_through_under_any_name() {
        let upstream = TestUpstream::json("{}").await;
        let folio = guarded_folio(&upstream).await;
        cached(&folio).await;
        let host = format!("folio-admin.internal:{}", folio.admin.port());
        let stats = admin_url(&folio, "/_folio/stats");
        assert_eq!(get(&stats, &[("host", &host)]).await.status, 421);
        for path in ["/_folio/", "/_folio/dashboard.js", "/_folio/health"] {
            let got = get(&admin_url(&folio, path), &[("host", &host)]).await;
            assert_eq!(
                got.status, 200,
                "{path}: no figures, and the page asks for the token"
            );
        }
        let bearer = format!("Bearer {OPERATOR}");
        let got = get(&stats, &[("host", &host), ("authorization", &bearer)]).await;
        assert_eq!(got.status, 200);
        let got = folio
            .admin_post(
                "/_folio/purge",
                &[("host", &host), ("authorization", &bearer)],
                r#"{"all":true}"#,
            )
            .await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(still(&folio).await, "MISS");
    }
}

mod bearer {
    use bytes::Bytes;
    use http::{Request, StatusCode, Version};
    use http_body_util::{BodyExt, Empty, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;

    const PURGE: &str = r#"{"tags":["products"]}"#;

    #[tokio::test]
    async fn bearer_tokens_are_read_strictly_over_http1() {
        let upstream = TestUpstream::json("{}").await;
        let folio = guarded_folio(&upstream).await;
        let purge = |headers: Vec<(&'static str, String)>| {
            let folio = &folio;
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                folio.admin_post("/_folio/purge", &headers, PURGE).await
            }
        };
        let auth = |value: &str| vec![("authorization", value.to_owned())];
        for value in [
            "Bearer op-secret",
            "bearer op-secret",
            "BEARER op-secret",
            "Bearer  op-secret",
        ] {
            let got = purge(auth(value)).await;
            assert_eq!(got.status, 200, "{value}: {}", got.text());
            assert_eq!(
                got.json()["tenant"],
                serde_json::Value::Null,
                "the operator"
            );
        }
        let got = purge(auth("bearer acme-secret")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["tenant"], "acme");

        for value in [
            "Bearer",
            "Bearer ",
            "Basic b3A6b3Atc2VjcmV0",
            "op-secret",
            "Bearerop-secret",
            "Bearer op-secret extra",
            "Bearer op-secret, Bearer acme-secret",
            "Bearer\top-secret",
        ] {
            let got = purge(auth(value)).await;
            assert_eq!(got.status, 401, "{value:?}");
            assert_eq!(got.json()["error"], "unauthorized");
            assert!(got.header("www-authenticate").starts_with("Bearer"));
        }
        let two = vec![
            ("authorization", "Bearer op-secret".to_owned()),
            ("authorization", "Bearer op-secret".to_owned()),
        ];
        assert_eq!(purge(two).await.status, 401, "two Authorization headers");

        for value in [
            "Bearer op-secre",
            "Bearer op-secretx",
            "Bearer OP-SECRET",
            "Bearer xp-secret",
            "Bearer acme-secretop-secret",
        ] {
            let got = purge(auth(value)).await;
            assert_eq!(got.status, 403, "{value:?}");
        }
    }

    /// One admin request over h2c (HTTP/2 with prior knowledge).
    async fn h2(
        folio: &Folio,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> (StatusCode, Version, serde_json::Value) {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let mut request = Request::builder()
            .method(method)
            .uri(admin_url(folio, path))
            .header("content-type", "application/json");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let (status, version) = (response.status(), response.version());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, version, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn bearer_tokens_and_names_are_checked_over_h2c() {
        let upstream = TestUpstream::json("{}").await;
        let folio = guarded_folio(&upstream).await;
        cached(&folio).await;
        let purge = |auth| h2(&folio, "POST", "/_folio/purge", auth, PURGE);
        let (status, version, _) = purge(Some("Bearer op-secret")).await;
        assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
        assert_eq!(purge(Some("bEARER op-secret")).await.0, 200);
        let (status, _, body) = purge(Some("bearer acme-secret")).await;
        assert_eq!(status, 200);
        assert_eq!(body["tenant"], "acme");
        assert_eq!(purge(None).await.0, 401);
        assert_eq!(purge(Some("Bearer op-secret x")).await.0, 401);
        assert_eq!(purge(Some("Basic op-secret")).await.0, 401);
        assert_eq!(purge(Some("Bearer op-secrex")).await.0, 403);
        let (status, version, body) =
            h2(&folio, "GET", "/_folio/stats", Some("Bearer op-secret"), "").await;
        assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
        assert!(body["endpoints"].is_array());

        // HTTP/2 names the server in :authority, not Host: a rebound name
        // is refused there too, unless a token vouches for the request.
        let stream = tokio::net::TcpStream::connect(folio.admin).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let uri = format!("http://evil.example:{}/_folio/stats", folio.admin.port());
        for (authorization, expected) in [(None, 421), (Some("Bearer op-secret"), 200)] {
            let mut request = Request::get(&uri);
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = sender
                .send_request(request.body(Empty::<Bytes>::new()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.version(), Version::HTTP_2);
            assert_eq!(response.status(), expected, "{authorization:?}");
        }
    }
}

mod tokens {
    use std::time::Duration;

    use folio::PolicySet;

    use super::*;
    use crate::support::REPO_POLICIES;

    /// An operator token, tenant tokens, and what the refusal must say.
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

    #[tokio::test]
    async fn empty_or_unusable_tokens_are_refused_at_start_up() {
        let upstream = TestUpstream::json("{}").await;
        let cases: [Case<'_>; 6] = [
            (Some(""), &[], "empty"),
            (None, &[("acme", "")], "empty"),
            (None, &[("", "secret")], "tenant"),
            (Some("two words"), &[], "visible ASCII"),
            (None, &[("acme", "s\u{e9}cret")], "visible ASCII"),
            (Some("shared"), &[("acme", "shared")], "same token"),
        ];
        for (operator, tenants, expected) in cases {
            let mut settings = settings(upstream.uri());
            settings.admin.operator_token = operator.map(str::to_owned);
            settings.admin.tenant_tokens = tenants
                .iter()
                .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
                .collect();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let policies = PolicySet::from_yaml("t.yaml", POLICIES).unwrap();
            let run = folio::run(listener, settings, policies, std::future::pending());
            let error = tokio::time::timeout(Duration::from_secs(5), run)
                .await
                .unwrap_or_else(|_| panic!("{operator:?} {tenants:?}: served instead of refusing"))
                .expect_err("refused");
            assert!(
                error.to_string().contains(expected),
                "{operator:?} {tenants:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn the_command_line_refuses_empty_tokens() {
        for (args, env, expected) in [
            (vec!["--admin-token", ""], None, "--admin-token"),
            (vec!["--tenant-token", "acme="], None, "acme"),
            (vec![], Some(("FOLIO_ADMIN_TOKEN", "")), "FOLIO_ADMIN_TOKEN"),
        ] {
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_folio"));
            command
                .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
                .args([
                    "--upstream",
                    "http://127.0.0.1:9",
                    "--policies",
                    REPO_POLICIES,
                ])
                .args(&args)
                .env_remove("FOLIO_ADMIN_TOKEN")
                .env_remove("FOLIO_TENANT_TOKENS")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            if let Some((name, value)) = env {
                command.env(name, value);
            }
            let out = tokio::time::timeout(Duration::from_secs(10), command.output())
                .await
                .unwrap_or_else(|_| panic!("{args:?} {env:?}: served instead of refusing"))
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} {env:?}");
            assert!(
                stderr.contains("empty") && stderr.contains(expected),
                "{args:?} {env:?}: {stderr}"
            );
        }
    }
}

mod reading {
    use super::*;
    use crate::support::{GLOBEX, Got};

    async fn read(folio: &Folio, path: &str, token: Option<&str>) -> Got {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| ("authorization", b))
            .into_iter()
            .collect();
        get(&admin_url(folio, path), &headers).await
    }

    fn tenants(rows: &serde_json::Value) -> Vec<String> {
        let mut tenants: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["tenant"].as_str().unwrap().to_owned())
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }

    #[tokio::test]
    async fn with_tokens_configured_the_figures_need_one_and_a_tenant_sees_its_own() {
        let upstream = TestUpstream::json("{}").await;
        let folio = guarded_folio(&upstream).await;
        // Eight each: the top paths sample one request in eight.
        for _ in 0..8 {
            get(&folio.url("/api/v1/products/1"), ACME).await;
        }
        for _ in 0..8 {
            get(&folio.url("/api/v1/products/2"), GLOBEX).await;
        }

        for path in ["/_folio/stats", "/_folio/metrics", "/_folio/explain?url=/a"] {
            let none = read(&folio, path, None).await;
            assert_eq!(none.status, 401, "{path}");
            assert!(none.header("www-authenticate").starts_with("Bearer"));
            assert_eq!(read(&folio, path, Some("nope")).await.status, 403, "{path}");
        }
        for path in ["/_folio/", "/_folio/dashboard.js", "/_folio/health"] {
            assert_eq!(
                read(&folio, path, None).await.status,
                200,
                "{path} holds no figures"
            );
        }
        // Health tells a load balancer the levels; the figures behind them
        // (every tenant's requests, L1 entries) are the operator's.
        for token in [None, Some(ACME_TOKEN)] {
            let health = read(&folio, "/_folio/health", token).await.json();
            assert_eq!(health["status"], "healthy", "{health}");
            assert_eq!(health["checks"]["hit_rate"]["status"], "ok", "{health}");
            for check in health["checks"].as_object().unwrap().values() {
                assert_eq!(
                    check.as_object().unwrap().len(),
                    1,
                    "only a level: {health}"
                );
            }
        }
        let operator = read(&folio, "/_folio/health", Some(OPERATOR)).await.json();
        assert_eq!(operator["checks"]["l1"]["entries"], 2, "{operator}");

        let all = read(&folio, "/_folio/stats", Some(OPERATOR)).await.json();
        assert_eq!(tenants(&all["endpoints"]), ["acme", "globex"]);
        assert_eq!(tenants(&all["top_paths"]), ["acme", "globex"]);

        let own = read(&folio, "/_folio/stats", Some(ACME_TOKEN)).await.json();
        assert_eq!(tenants(&own["endpoints"]), ["acme"]);
        assert_eq!(tenants(&own["top_paths"]), ["acme"]);
        assert_eq!(own["tenant"], "acme");
        let requests: u64 = ["hit", "miss", "stale", "bypass", "error"]
            .iter()
            .map(|r| own["totals"][r].as_u64().unwrap())
            .sum();
        assert_eq!(requests, 8, "acme's totals are acme's");
        for instance_wide in ["rates_per_s", "latency_ms", "l1"] {
            assert!(
                own[instance_wide].is_null(),
                "{instance_wide} counts other tenants' requests and entries: {own}"
            );
        }
        assert!(all["l1"]["entries"].as_u64().is_some());

        assert_eq!(
            read(&folio, "/_folio/metrics", Some(ACME_TOKEN))
                .await
                .status,
            403,
            "the metrics are the operator's"
        );
        let metrics = read(&folio, "/_folio/metrics", Some(OPERATOR)).await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.text().contains("tenant=\"globex\""));
        assert_eq!(
            read(&folio, "/_folio/explain?url=/a", Some(ACME_TOKEN))
                .await
                .status,
            200
        );
    }

    #[tokio::test]
    async fn with_tenant_tokens_only_loopback_reads_everything_and_a_tenant_its_own() {
        let upstream = TestUpstream::json("{}").await;
        let mut settings = settings(upstream.uri());
        settings.admin.tenant_tokens = vec![("acme".into(), ACME_TOKEN.into())];
        let folio = Folio::start_with(settings, POLICIES).await;
        get(&folio.url("/api/v1/products/1"), ACME).await;
        get(&folio.url("/api/v1/products/1"), GLOBEX).await;
        let all = read(&folio, "/_folio/stats", None).await;
        assert_eq!(
            all.status, 200,
            "no operator token: the figures stay open to loopback"
        );
        assert_eq!(tenants(&all.json()["endpoints"]), ["acme", "globex"]);
        let own = read(&folio, "/_folio/stats", Some(ACME_TOKEN)).await.json();
        assert_eq!(tenants(&own["endpoints"]), ["acme"]);
        assert_eq!(
            read(&folio, "/_folio/stats", Some("nope")).await.status,
            403
        );
        assert_eq!(read(&folio, "/_folio/metrics", None).await.status, 200);
    }

    #[tokio::test]
    async fn without_tokens_loopback_reads_everything() {
        let upstream = TestUpstream::json("{}").await;
        let folio = open_folio(&upstream).await;
        for _ in 0..8 {
            get(&folio.url("/api/v1/products/1"), ACME).await;
        }
        let stats = read(&folio, "/_folio/stats", None).await;
        assert_eq!(stats.status, 200);
        assert_eq!(tenants(&stats.json()["endpoints"]), ["acme"]);
        assert_eq!(read(&folio, "/_folio/metrics", None).await.status, 200);
    }
}
