//! The admin API in one file: every route shares one dispatcher and refusal.
//!
//! On its own listener: the dashboard (`/_folio/`), metrics,
//! stats, health, explain and the API's own description (`openapi.json`),
//! read-only; purges, events and reload (mutations). `docs/admin-api.yaml`
//! describes every route, body and answer; `route.rs` lists them.
//!
//! Who may do what (`trust.rs` has the checks):
//! - with tokens configured, `Authorization: Bearer <token>`: the operator
//!   token (`--admin-token`) reads everything and acts for any tenant or all
//!   of them; a tenant token (`--tenant-token acme=…`) reads its tenant's
//!   figures and acts for its tenant only. Health, the dashboard's page,
//!   script and style, and `openapi.json` need no token;
//! - with no token configured, loopback may do everything, and the API only
//!   answers requests that name it as localhost, a loopback address or its
//!   own address (DNS rebinding);
//! - mutations need a JSON body and no foreign `Origin` (CSRF);
//! - every response carries a strict Content-Security-Policy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::Body;
use crate::invalidation::{Mark, NotPropagated, Scope, scopes_for_event};
use crate::key::{CacheKey, canonical_path};
use crate::proxy::State;
use crate::settings::{AdminAuth, Settings};

mod openapi;
mod route;
mod trust;

use route::Route;
pub use route::routes;
use trust::{Caller, Credential, authorize, check_mutation, reader, tenant_for, trusted_name};

/// Largest admin request body.
const MAX_BODY: usize = 64 << 10;
/// Longest wait for an admin request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Admin {
    pub(crate) state: Arc<State>,
    pub(crate) auth: AdminAuth,
    pub(crate) thresholds: crate::config::HealthThresholds,
    /// Where `POST /_folio/reload` reads the policies from.
    pub(crate) policies_dir: Option<std::path::PathBuf>,
    /// The admin listener's own address: a name pages may use for it.
    pub(crate) listen: Option<SocketAddr>,
}

impl Admin {
    pub(crate) fn new(state: Arc<State>, settings: &Settings, listen: Option<SocketAddr>) -> Self {
        if settings.admin.operator_token.is_none() && !settings.admin.is_open() {
            tracing::warn!(
                "admin API: tenant tokens but no --admin-token, so stats and metrics stay readable without a token"
            );
        }
        if settings.admin.is_open() {
            tracing::warn!(
                "admin API: no --admin-token configured, so purges and events are accepted from loopback only, and only requests naming localhost, a loopback address or the listener's address are answered"
            );
        }
        Self {
            state,
            auth: settings.admin.clone(),
            thresholds: settings.config.health.clone(),
            policies_dir: settings.policies_dir.clone(),
            listen,
        }
    }
}

/// The dashboard: a page, its script and its style, all served from here
/// (no CDN, no inline script or style, see [`CONTENT_SECURITY_POLICY`]).
const DASHBOARD_HTML: &str = include_str!("dashboard.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard.css");

/// Sent with every admin response. The dashboard shows names that clients
/// of the proxy chose (tenants, paths); it only ever inserts them as text,
/// and should that ever slip, this policy runs no script but the dashboard's
/// own file: no inline script, no event handler attributes, no inline style,
/// no framing, and data only from this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Why an admin call was refused: its status and short JSON body.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )
    }

    fn into_response(self) -> Response<Body> {
        let mut response = json_response(
            self.status,
            &json!({ "error": self.code, "message": self.message }),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"folio\""),
            );
        }
        response
    }
}

impl From<NotPropagated> for Refusal {
    fn from(e: NotPropagated) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_propagated",
            e.to_string(),
        )
    }
}

pub(crate) async fn handle(
    admin: Arc<Admin>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let mut response = answer(&admin, request, peer).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn answer(admin: &Admin, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let credential = Credential::of(&admin.auth, &request);
    let route = Route::of(request.uri().path());
    if !matches!(credential, Credential::Valid(_))
        && route.is_none_or(|route| route.needs_trusted_name(&admin.auth))
        && !trusted_name(&request, admin.listen)
    {
        return Refusal::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "without a token the admin API answers only to localhost, 127.0.0.1, [::1] \
             or its own address (a page whose name was pointed here is refused); \
             use one of those, or send Authorization: Bearer <token>",
        )
        .into_response();
    }
    let Some(route) = route else {
        return Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin endpoint {}", request.uri().path()),
        )
        .into_response();
    };
    if !route.allows(request.method()) {
        let mut response = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("use {}", route.allow_header()),
        )
        .into_response();
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(route.allow_header()),
        );
        return response;
    }
    let outcome = match route {
        Route::Dashboard => {
            return text(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD_HTML);
        }
        Route::DashboardScript => {
            return text(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                DASHBOARD_JS,
            );
        }
        Route::DashboardStyle => {
            return text(StatusCode::OK, "text/css; charset=utf-8", DASHBOARD_CSS);
        }
        Route::OpenApi => match openapi::json() {
            Ok(spec) => return text(StatusCode::OK, "application/json", spec),
            Err(error) => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error,
            )),
        },
        Route::Metrics => match reader(&admin.auth, &credential) {
            Ok(Caller::Operator) => {
                return text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    crate::ops::metrics_text(&admin.state).await,
                );
            }
            Ok(Caller::Tenant(_)) => Err(Refusal::forbidden(
                "the metrics are the operator's; a tenant token reads /_folio/stats",
            )),
            Err(refusal) => Err(refusal),
        },
        Route::Stats => match reader(&admin.auth, &credential) {
            Ok(Caller::Operator) => Ok(crate::ops::stats(&admin.state, None).await),
            Ok(Caller::Tenant(own)) => Ok(crate::ops::stats(&admin.state, Some(&own)).await),
            Err(refusal) => Err(refusal),
        },
        Route::Health => {
            let (level, mut body) = crate::ops::health(&admin.state, &admin.thresholds).await;
            // Load balancers ask without a token: they get the levels; the
            // figures behind them count every tenant's traffic.
            if !matches!(reader(&admin.auth, &credential), Ok(Caller::Operator)) {
                body = crate::ops::levels_only(&body);
            }
            let status = if level == crate::ops::Level::Critical {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            return json_response(status, &body);
        }
        Route::Explain => {
            reader(&admin.auth, &credential).and_then(|_| explain(admin, request.uri().query()))
        }
        Route::Reload => match check_mutation(&request, admin.listen)
            .and_then(|()| authorize(&admin.auth, &credential, peer))
        {
            Ok(Caller::Operator) => reload(admin).await,
            Ok(Caller::Tenant(_)) => Err(Refusal::forbidden("reloading needs the operator token")),
            Err(refusal) => Err(refusal),
        },
        Route::Purge => match authorized_body(admin, request, &credential, peer).await {
            Ok((caller, body)) => purge(admin, &caller, body).await,
            Err(refusal) => Err(refusal),
        },
        Route::Events => match authorized_body(admin, request, &credential, peer).await {
            Ok((caller, body)) => event(admin, &caller, body).await,
            Err(refusal) => Err(refusal),
        },
    };
    match outcome {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(refusal) => refusal.into_response(),
    }
}

/// Authorizes the caller, then reads and parses the JSON body.
async fn authorized_body<T: for<'de> Deserialize<'de>>(
    admin: &Admin,
    request: Request<Incoming>,
    credential: &Credential,
    peer: SocketAddr,
) -> Result<(Caller, T), Refusal> {
    check_mutation(&request, admin.listen)?;
    let caller = authorize(&admin.auth, credential, peer)?;
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(request.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is over 64KB or broke off",
            ));
        }
        Err(_) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body took too long",
            ));
        }
    };
    let parsed = serde_json::from_slice(&body)
        .map_err(|e| Refusal::bad_request("bad_json", e.to_string()))?;
    Ok((caller, parsed))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    prefix: Option<String>,
    /// Everything of the tenant (or of every tenant, for operators).
    #[serde(default)]
    all: bool,
    tenant: Option<String>,
    #[serde(default)]
    soft: bool,
}

/// `path` as the proxy keys a request on it (`//a` is `/a`), or a refusal
/// naming `given` when no request can have it.
fn served_path<'a>(
    path: &'a str,
    given: &str,
    code: &'static str,
) -> Result<std::borrow::Cow<'a, str>, Refusal> {
    canonical_path(path).map_err(|why| {
        Refusal::bad_request(
            code,
            format!("'{given}' has {why}: no request with that path is served"),
        )
    })
}

async fn purge(admin: &Admin, caller: &Caller, request: PurgeRequest) -> Result<Value, Refusal> {
    let tenant = tenant_for(&admin.state.tenant, caller, request.tenant)?;
    let mut scopes: Vec<Scope> = request
        .tags
        .iter()
        .map(|t| Scope::Tag(t.as_str().into()))
        .collect();
    for url in &request.urls {
        let uri = url.parse::<http::Uri>().map_err(|_| {
            Refusal::bad_request("bad_url", format!("'{url}' is not a URL or path"))
        })?;
        scopes.push(Scope::Path(served_path(uri.path(), url, "bad_url")?.into()));
    }
    if let Some(prefix) = &request.prefix {
        if !prefix.starts_with('/') {
            return Err(Refusal::bad_request(
                "bad_prefix",
                "a prefix is a path starting with '/'",
            ));
        }
        scopes.push(Scope::Prefix(
            served_path(prefix, prefix, "bad_prefix")?.into(),
        ));
    }
    if request.all {
        scopes.push(Scope::All);
    }
    let mut keys = Vec::new();
    for text in &request.keys {
        let key = CacheKey::from_hex(text).ok_or_else(|| {
            Refusal::bad_request(
                "bad_key",
                format!("'{text}' is not a 64-digit hex cache key"),
            )
        })?;
        keys.push(key);
    }
    if scopes.is_empty() && keys.is_empty() {
        return Err(Refusal::bad_request(
            "nothing_to_purge",
            "give tags, urls, keys, prefix or all: true",
        ));
    }
    if *caller != Caller::Operator && !keys.is_empty() {
        // A key names no tenant, so it could be anyone's entry.
        return Err(Refusal::forbidden(
            "purging by key needs the operator token",
        ));
    }
    let invalidator = &admin.state.invalidator;
    let at = invalidator.now_us();
    let marks: Vec<Mark> = scopes
        .into_iter()
        .map(|scope| Mark {
            tenant: tenant.clone(),
            scope,
            at,
            soft: request.soft,
        })
        .collect();
    // Both apply here whatever Redis says; then the first failure to tell
    // Redis is the answer.
    let told = invalidator.purge(&marks).await;
    let removed = if keys.is_empty() {
        Ok(0)
    } else {
        invalidator.purge_keys(&keys, at).await
    };
    told?;
    let removed = removed?;
    crate::proxy::rewarm::after_purge(&admin.state, &marks);
    Ok(json!({
        "tenant": tenant.as_deref(),
        "soft": request.soft,
        "at_us": at,
        "invalidated": {
            "tags": request.tags.len(),
            "urls": request.urls.len(),
            "prefix": request.prefix.is_some(),
            "all": request.all,
            "keys": keys.len(),
        },
        "removed": removed,
        "note": "every matching entry stops being served on every instance at once; memory is reclaimed as entries are read or expire, so only key purges count entries",
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRequest {
    event: String,
    tenant: Option<String>,
    #[serde(default)]
    params: HashMap<String, Value>,
    #[serde(default)]
    soft: bool,
}

async fn event(admin: &Admin, caller: &Caller, request: EventRequest) -> Result<Value, Refusal> {
    let tenant = tenant_for(&admin.state.tenant, caller, request.tenant)?;
    let params: HashMap<String, String> = request
        .params
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(s) => (name, s),
            other => (name, other.to_string()),
        })
        .collect();
    let scopes = scopes_for_event(&admin.state.policies.load(), &request.event, &params);
    let at = admin.state.invalidator.now_us();
    let marks: Vec<Mark> = scopes
        .iter()
        .map(|scope| Mark {
            tenant: tenant.clone(),
            scope: scope.clone(),
            at,
            soft: request.soft,
        })
        .collect();
    admin.state.invalidator.purge(&marks).await?;
    crate::proxy::rewarm::after_purge(&admin.state, &marks);
    let purged: Vec<Value> = scopes
        .iter()
        .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
        .collect();
    Ok(
        json!({ "event": request.event, "tenant": tenant.as_deref(), "at_us": at, "purged": purged }),
    )
}

/// `GET /_folio/explain?method=GET&url=/path&header=Name:%20value`.
fn explain(admin: &Admin, query: Option<&str>) -> Result<Value, Refusal> {
    let mut method = Method::GET;
    let mut url = None;
    let mut headers = http::HeaderMap::new();
    for (name, value) in crate::key::query_pairs(query) {
        match &*name {
            "method" => {
                method = Method::from_bytes(value.as_bytes()).map_err(|_| {
                    Refusal::bad_request("bad_method", format!("'{value}' is not a method"))
                })?;
            }
            "url" => url = Some(value.into_owned()),
            "header" => {
                let (n, v) = value
                    .split_once(':')
                    .ok_or_else(|| Refusal::bad_request("bad_header", "header=Name: value"))?;
                let n = http::HeaderName::from_bytes(n.trim().as_bytes()).map_err(|_| {
                    Refusal::bad_request("bad_header", format!("'{n}' is not a header name"))
                })?;
                let v = HeaderValue::from_str(v.trim()).map_err(|_| {
                    Refusal::bad_request("bad_header", "the header value is not valid")
                })?;
                headers.append(n, v);
            }
            other => {
                return Err(Refusal::bad_request(
                    "bad_query",
                    format!("unknown parameter '{other}': use method, url, header"),
                ));
            }
        }
    }
    let url = url.ok_or_else(|| Refusal::bad_request("bad_query", "give url=/path?query"))?;
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Refusal::bad_request("bad_url", format!("'{url}' is not a URL")))?;
    let policies = admin.state.policies.load();
    let explanation =
        crate::explain::explain(&policies, &admin.state.tenant, &method, &uri, &headers);
    serde_json::to_value(explanation)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// `POST /_folio/reload`: re-reads the policies; refuses an invalid set.
async fn reload(admin: &Admin) -> Result<Value, Refusal> {
    let dir = admin.policies_dir.as_ref().ok_or_else(|| {
        Refusal::new(
            StatusCode::CONFLICT,
            "no_policies_dir",
            "folio was started without a policies directory",
        )
    })?;
    match crate::reload::reload(&admin.state, dir).await {
        Ok(report) => serde_json::to_value(report).map_err(|e| {
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }),
        Err(errors) => {
            let problems: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            Err(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_policies",
                format!(
                    "the running policies stay; {} problem(s): {}",
                    problems.len(),
                    problems.join("; ")
                ),
            ))
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::full(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
