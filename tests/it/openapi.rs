//! The admin API against its description, `docs/admin-api.yaml`. Every
//! operation is called, built from its examples, against running folios
//! (with tokens and Redis; with no token; with Redis and the upstream
//! down), as each kind of caller and with each kind of bad request. Every
//! answer's status must be one the description lists for the operation,
//! with the headers and JSON body it describes; every status it lists must
//! turn up; and the routes the server answers are exactly the ones it
//! describes. So the description and the server cannot drift apart.

use std::collections::BTreeSet;
use std::sync::Mutex;

use folio::PolicySet;
use serde_json::Value;

use crate::support::schema::{problems, resolve, unknown_keywords};
use crate::support::upstream::closed_port;
use crate::support::{
    Folio, Got, REPO_POLICIES, ScratchDir, TestRedis, TestUpstream, send, settings,
};

const OPERATOR: &str = "op-secret";
/// The examples act for acme, so the tenant token is acme's.
const ACME_TOKEN: &str = "acme-secret";

/// Statuses the description lists that no call here produces, and why.
const NOT_PRODUCED: &[(&str, &str, u16, &str)] = &[
    (
        "POST",
        "/_folio/purge",
        408,
        "a body that stalls for the server's 10 s",
    ),
    (
        "POST",
        "/_folio/events",
        408,
        "a body that stalls for the server's 10 s",
    ),
];

/// The methods a client may try on any path.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// `docs/admin-api.yaml`, read as folio embeds it.
struct Spec {
    doc: Value,
}

/// One operation of the description: a method on a path.
struct Operation<'a> {
    method: String,
    path: String,
    op: &'a Value,
}

/// One request built from an operation's examples.
struct Call {
    example: String,
    query: String,
    body: Option<String>,
}

/// Who an operation lets in (its `security`).
struct Roles {
    public: bool,
    tenant: bool,
}

impl Spec {
    fn load() -> Self {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-api.yaml"))
                .unwrap();
        Self {
            doc: serde_yaml::from_str(&text).unwrap(),
        }
    }

    fn operations(&self) -> Vec<Operation<'_>> {
        let mut operations = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            let item = resolve(&self.doc, item);
            for (method, op) in item.as_object().unwrap() {
                if METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) || method == "trace" {
                    operations.push(Operation {
                        method: method.to_ascii_uppercase(),
                        path: path.clone(),
                        op,
                    });
                }
            }
        }
        operations
    }

    /// A component response, e.g. `NotFound`.
    fn component(&self, name: &str) -> &Value {
        &self.doc["components"]["responses"][name]
    }

    /// What is wrong with `value` against `schema`.
    fn problems(&self, schema: &Value, value: &Value) -> Vec<String> {
        problems(&self.doc, schema, value)
    }
}

impl<'a> Operation<'a> {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn statuses(&self) -> BTreeSet<u16> {
        self.op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|status| status.parse().unwrap())
            .collect()
    }

    fn response(&self, spec: &'a Spec, status: u16) -> Option<&'a Value> {
        let response = self.op["responses"].get(status.to_string())?;
        Some(resolve(&spec.doc, response))
    }

    fn roles(&self) -> Roles {
        let requirements = self.op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{} says nothing of security", self.name()));
        let roles: Vec<&str> = requirements
            .iter()
            .flat_map(|r| r["token"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        Roles {
            public: requirements.is_empty(),
            tenant: roles.contains(&"tenant"),
        }
    }

    fn body(&self) -> Option<&Value> {
        self.op.get("requestBody")
    }

    fn body_required(&self) -> bool {
        self.body().is_some_and(|b| b["required"] == true)
    }

    /// A call per request body example (or one without a body), its query
    /// made of the parameters' examples.
    fn calls(&self) -> Vec<Call> {
        let mut query = Vec::new();
        for parameter in self.op["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap();
            let Some(example) = parameter.get("example") else {
                assert!(
                    parameter["required"] != true,
                    "{}: the required parameter {name} needs an example",
                    self.name()
                );
                continue;
            };
            let values = match example {
                Value::Array(values) => values.clone(),
                one => vec![one.clone()],
            };
            for value in values {
                let value = value.as_str().unwrap();
                query.push(format!("{name}={}", encode(value)));
            }
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let Some(body) = self.body() else {
            return vec![Call {
                example: "(no body)".into(),
                query,
                body: None,
            }];
        };
        let json = &body["content"]["application/json"];
        let mut calls: Vec<Call> = json["examples"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, example)| Call {
                example: name.clone(),
                query: query.clone(),
                body: Some(example["value"].to_string()),
            })
            .collect();
        if let Some(example) = json.get("example") {
            calls.push(Call {
                example: "example".into(),
                query,
                body: Some(example.to_string()),
            });
        }
        assert!(
            !calls.is_empty(),
            "{}: a request body needs an example",
            self.name()
        );
        calls
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Checks answers against the description and remembers which statuses
/// each operation gave.
struct Checker<'a> {
    spec: &'a Spec,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl<'a> Checker<'a> {
    fn new(spec: &'a Spec) -> Self {
        Self {
            spec,
            seen: Mutex::default(),
        }
    }

    /// Sends `call` to `op` on `folio` with `headers`, checks the answer,
    /// and returns it.
    async fn call(
        &self,
        folio: &Folio,
        op: &Operation<'_>,
        call: &Call,
        headers: &[(&str, &str)],
        who: &str,
    ) -> Got {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if call.body.is_some() && !headers.iter().any(|(n, _)| *n == "content-type") {
            all.push(("content-type", "application/json"));
        }
        let url = format!("http://{}{}{}", folio.admin, op.path, call.query);
        let body = call.body.as_deref().unwrap_or("");
        let got = send(&op.method, &url, &all, body).await;
        let what = format!("{} ({}, {who})", op.name(), call.example);
        self.check(op, &got, &what);
        if op.method == "GET" {
            let head = send("HEAD", &url, &all, "").await;
            assert_eq!(head.status, got.status, "HEAD of {what}");
            assert!(head.body.is_empty(), "HEAD of {what} has a body");
        }
        got
    }

    fn check(&self, op: &Operation<'_>, got: &Got, what: &str) {
        let status = got.status.as_u16();
        let response = op.response(self.spec, status).unwrap_or_else(|| {
            panic!(
                "{what}: {status} is not among the statuses the description lists ({:?}): {}",
                op.statuses(),
                got.text()
            )
        });
        self.verify(response, got, what);
        self.seen
            .lock()
            .unwrap()
            .insert((op.method.clone(), op.path.clone(), status));
    }

    /// The answer has the headers and body `response` describes.
    fn verify(&self, response: &Value, got: &Got, what: &str) {
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            if resolve(&self.spec.doc, header)["required"] == true {
                assert!(!got.header(name).is_empty(), "{what}: no {name} header");
            }
        }
        assert_eq!(got.header("cache-control"), "no-store", "{what}");
        assert!(
            got.header("content-security-policy")
                .starts_with("default-src 'none'"),
            "{what}"
        );
        assert_eq!(got.header("x-content-type-options"), "nosniff", "{what}");
        let media = got.header("content-type").split(';').next().unwrap().trim();
        let content = response["content"]
            .get(media)
            .unwrap_or_else(|| panic!("{what}: {media} is not a content the description lists"));
        if media == "application/json" {
            let body = got.json();
            let found = self.spec.problems(&content["schema"], &body);
            assert!(found.is_empty(), "{what}: {found:#?}\n{body}");
        } else {
            assert!(!got.body.is_empty(), "{what}: an empty {media}");
        }
    }

    fn seen(&self) -> BTreeSet<(String, String, u16)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A copy of the repository's policies, for a folio that reloads them.
fn policies_dir() -> ScratchDir {
    let dir = ScratchDir::unique("openapi-policies");
    for file in std::fs::read_dir(REPO_POLICIES).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, dir.join(file.file_name().unwrap())).unwrap();
    }
    dir
}

/// folio with an operator token, tenant tokens, Redis and a policy
/// directory: every operation can succeed.
async fn guarded(upstream: &TestUpstream, redis: &TestRedis, dir: &ScratchDir) -> Folio {
    let mut settings = settings(upstream.uri());
    settings.admin.operator_token = Some(OPERATOR.into());
    settings.admin.tenant_tokens = vec![
        ("acme".into(), ACME_TOKEN.into()),
        ("globex".into(), "globex-secret".into()),
    ];
    settings.redis = Some(redis.url.clone());
    settings.policies_dir = Some(dir.to_path_buf());
    Folio::start_with_set(settings, PolicySet::load_dir(&**dir).unwrap()).await
}

/// A status is a success.
fn ok(got: &Got) -> bool {
    got.status.is_success()
}

#[tokio::test]
async fn every_operation_answers_as_described() {
    let spec = Spec::load();
    let checker = Checker::new(&spec);
    let upstream = TestUpstream::json("{}").await;
    let redis = TestRedis::start().await;
    let dir = policies_dir();
    let folio = guarded(&upstream, &redis, &dir).await;
    let port = folio.admin.port();
    let rebound = format!("evil.example:{port}");
    let operator = format!("Bearer {OPERATOR}");
    let tenant = format!("Bearer {ACME_TOKEN}");
    let as_operator = [("authorization", operator.as_str())];

    for op in spec.operations() {
        let roles = op.roles();
        let name = op.name();
        for call in op.calls() {
            let got = checker
                .call(&folio, &op, &call, &as_operator, "operator")
                .await;
            assert!(ok(&got), "the operator may call {name}: {}", got.text());
            let got = checker
                .call(
                    &folio,
                    &op,
                    &call,
                    &[("authorization", &operator), ("host", &rebound)],
                    "operator, under a rebound name",
                )
                .await;
            assert!(ok(&got), "a token lifts the name rule: {name}");

            let got = checker
                .call(&folio, &op, &call, &[("authorization", &tenant)], "tenant")
                .await;
            if roles.public {
                assert!(ok(&got), "{name}: {}", got.text());
            } else if roles.tenant {
                assert!(
                    ok(&got) || got.status == 403,
                    "{name}, tenant: {}",
                    got.text()
                );
            } else {
                assert_eq!(got.status, 403, "{name} is not a tenant's");
            }

            for (who, headers, refused) in [
                ("no token", vec![], 401),
                (
                    "a token that is nobody's",
                    vec![("authorization", "Bearer nobody")],
                    403,
                ),
                (
                    "a Basic credential",
                    vec![("authorization", "Basic b3A6c2VjcmV0")],
                    401,
                ),
                (
                    "no token, a rebound name",
                    vec![("host", rebound.as_str())],
                    421,
                ),
            ] {
                let got = checker.call(&folio, &op, &call, &headers, who).await;
                if roles.public {
                    assert!(ok(&got), "{name} with {who}: {}", got.text());
                } else {
                    assert_eq!(got.status, refused, "{name} with {who}");
                }
            }

            if op.body().is_some() {
                let bad_type = [
                    ("authorization", operator.as_str()),
                    ("content-type", "text/plain"),
                ];
                let got = checker
                    .call(&folio, &op, &call, &bad_type, "text/plain")
                    .await;
                assert_eq!(got.status, 415, "{name}");
                let foreign = [
                    ("authorization", operator.as_str()),
                    ("origin", "http://evil.example"),
                ];
                let got = checker
                    .call(&folio, &op, &call, &foreign, "foreign Origin")
                    .await;
                assert_eq!(got.status, 403, "{name}");
                assert_eq!(got.json()["error"], "foreign_origin");
                for (what, body, refused) in [
                    ("not JSON", "not json".to_owned(), 400),
                    ("65 KB", format!("\"{}\"", "x".repeat(65 << 10)), 413),
                ] {
                    let bad = Call {
                        example: what.into(),
                        query: call.query.clone(),
                        body: Some(body),
                    };
                    let got = checker
                        .call(&folio, &op, &bad, &as_operator, "operator")
                        .await;
                    if op.body_required() {
                        assert_eq!(got.status, refused, "{name}: {what}");
                    } else {
                        assert!(ok(&got), "{name} ignores its body: {}", got.text());
                    }
                }
            }
        }
    }

    // What only some states of the server give.
    let explain = spec
        .operations()
        .into_iter()
        .find(|op| op.path == "/_folio/explain")
        .unwrap();
    for query in ["", "?url=/a&colour=red", "?url=/a&header=nocolon"] {
        let call = Call {
            example: query.into(),
            query: query.into(),
            body: None,
        };
        let got = checker
            .call(&folio, &explain, &call, &as_operator, "operator")
            .await;
        assert_eq!(got.status, 400, "explain{query}");
    }
    let reload = spec
        .operations()
        .into_iter()
        .find(|op| op.path == "/_folio/reload")
        .unwrap();
    std::fs::write(dir.join("broken.yaml"), "\"/x\":\n  cache_ttl: soon\n").unwrap();
    let got = checker
        .call(
            &folio,
            &reload,
            &reload.calls()[0],
            &as_operator,
            "broken policies",
        )
        .await;
    assert_eq!(got.status, 422);
    assert!(
        got.json()["message"]
            .as_str()
            .unwrap()
            .contains("broken.yaml:2")
    );

    // The served description is the file.
    let served = crate::support::get(&format!("http://{}/_folio/openapi.json", folio.admin), &[])
        .await
        .json();
    assert_eq!(
        served, spec.doc,
        "/_folio/openapi.json is docs/admin-api.yaml"
    );

    // Paths and methods the description does not list.
    for op in spec.operations() {
        let mut allowed: BTreeSet<String> = spec
            .operations()
            .into_iter()
            .filter(|other| other.path == op.path)
            .map(|other| other.method)
            .collect();
        if allowed.contains("GET") {
            allowed.insert("HEAD".into());
        }
        for method in METHODS.iter().filter(|m| !allowed.contains(**m)) {
            let url = format!("http://{}{}", folio.admin, op.path);
            let got = send(method, &url, &as_operator, "").await;
            let what = format!("{method} {}", op.path);
            assert_eq!(got.status, 405, "{what}");
            let allow: BTreeSet<String> =
                got.header("allow").split(", ").map(str::to_owned).collect();
            assert_eq!(allow, allowed, "{what}: Allow");
            if *method != "HEAD" {
                checker.verify(spec.component("MethodNotAllowed"), &got, &what);
            }
        }
    }
    for path in ["/_folio/nope", "/_folio/stats/", "/", "/api/v1/products/1"] {
        let got = send(
            "GET",
            &format!("http://{}{path}", folio.admin),
            &as_operator,
            "",
        )
        .await;
        assert_eq!(got.status, 404, "{path}");
        checker.verify(spec.component("NotFound"), &got, path);
    }
    folio.stop().await;

    // No token configured: loopback is the operator, under loopback names.
    let open = Folio::start_with_set(
        settings(upstream.uri()),
        PolicySet::load_dir(REPO_POLICIES).unwrap(),
    )
    .await;
    let rebound = format!("evil.example:{}", open.admin.port());
    for op in spec.operations() {
        for call in op.calls() {
            let got = checker
                .call(&open, &op, &call, &[], "no token configured")
                .await;
            if op.path == "/_folio/reload" {
                assert_eq!(got.status, 409, "started without a policy directory");
            } else {
                assert!(ok(&got), "{}: {}", op.name(), got.text());
            }
            let got = checker
                .call(&open, &op, &call, &[("host", &rebound)], "a rebound name")
                .await;
            if op.path == "/_folio/health" {
                assert!(ok(&got), "load balancers probe health by any name");
            } else {
                assert_eq!(got.status, 421, "{}", op.name());
            }
        }
    }
    open.stop().await;

    // Redis and the upstream down.
    let down = format!("http://{}", closed_port().await).parse().unwrap();
    let mut broken = settings(down);
    broken.redis = Some(format!("redis://{}", closed_port().await));
    let broken = Folio::start_with_set(broken, PolicySet::load_dir(REPO_POLICIES).unwrap()).await;
    for op in spec.operations() {
        let expected = match op.path.as_str() {
            "/_folio/health" => 503,
            "/_folio/purge" | "/_folio/events" => 503,
            _ => continue,
        };
        for call in op.calls() {
            let got = checker
                .call(&broken, &op, &call, &[], "Redis and the upstream down")
                .await;
            assert_eq!(got.status, expected, "{} ({})", op.name(), call.example);
        }
    }
    broken.stop().await;

    // Every status the description lists turned up.
    let seen = checker.seen();
    let mut missing = Vec::new();
    for op in spec.operations() {
        for status in op.statuses() {
            let exempt = NOT_PRODUCED
                .iter()
                .any(|(m, p, s, _)| *m == op.method && *p == op.path && *s == status);
            if !exempt && !seen.contains(&(op.method.clone(), op.path.clone(), status)) {
                missing.push(format!("{} {status}", op.name()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "listed in docs/admin-api.yaml, never answered: {missing:?}"
    );
}

#[test]
fn the_routes_the_server_answers_are_the_described_ones() {
    let spec = Spec::load();
    let described: BTreeSet<(String, String)> = spec
        .operations()
        .into_iter()
        .map(|op| (op.method, op.path))
        .collect();
    let served: BTreeSet<(String, String)> = folio::admin_routes()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect();
    assert_eq!(
        served, described,
        "the admin router's routes and docs/admin-api.yaml's differ"
    );
}

#[test]
fn the_description_is_complete_and_its_examples_fit_it() {
    let spec = Spec::load();
    let doc = &spec.doc;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let mut ids = BTreeSet::new();
    for op in spec.operations() {
        let name = op.name();
        let id = op.op["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id.to_owned()),
            "{name}: operationId '{id}' again"
        );
        assert!(op.op["summary"].is_string(), "{name}: no summary");
        op.roles();
        for status in op.statuses() {
            let response = op.response(&spec, status).unwrap();
            assert!(response["description"].is_string(), "{name} {status}");
            let content = response["content"].as_object();
            assert!(
                content.is_some_and(|c| !c.is_empty()),
                "{name} {status}: no content"
            );
            for (media, entry) in content.into_iter().flatten() {
                assert!(
                    entry["schema"].is_object(),
                    "{name} {status} {media}: no schema"
                );
                let unknown = unknown_keywords(&entry["schema"], &format!("{name} {status}"));
                assert!(
                    unknown.is_empty(),
                    "keywords the checker does not know: {unknown:?}"
                );
            }
        }
        for parameter in op.op["parameters"].as_array().into_iter().flatten() {
            if let Some(example) = parameter.get("example") {
                let found = spec.problems(&parameter["schema"], example);
                assert!(found.is_empty(), "{name} {}: {found:?}", parameter["name"]);
            }
        }
        if let Some(body) = op.body() {
            let schema = &body["content"]["application/json"]["schema"];
            for call in op.calls() {
                let example: Value = serde_json::from_str(call.body.as_deref().unwrap()).unwrap();
                let found = spec.problems(schema, &example);
                assert!(
                    found.is_empty(),
                    "{name} example {}: {found:?}",
                    call.example
                );
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let unknown = unknown_keywords(schema, name);
        assert!(
            unknown.is_empty(),
            "keywords the checker does not know: {unknown:?}"
        );
    }
    for (method, path, status, why) in NOT_PRODUCED {
        let listed = spec
            .operations()
            .into_iter()
            .any(|op| op.method == *method && op.path == *path && op.statuses().contains(status));
        assert!(
            listed,
            "{method} {path} {status} ({why}) is no longer listed"
        );
    }
}
