//! The example "online bookstore API" that folio is demoed, tested and benchmarked against.
//!
//! A small, self-contained hyper 1 server (HTTP/1.1 and h2c) with three tenants (`acme`,
//! `globex`, `initech`, chosen by the `X-Tenant-ID` header, required and exact), each with its own
//! deterministic in-memory catalogue of ~1 KB JSON products, plus reviews, user profiles, carts,
//! writes (POST/PUT/PATCH/DELETE) and origin-side request counters at `/_origin/stats`.
//! Every `/api/...` request first sleeps `--latency-ms` to model a database.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example bookstore -- --latency-ms 2
//! ```
//!
//! Integration tests include this file as a module and call [`serve`] directly.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const CATEGORIES: [&str; 8] = [
    "fiction", "science", "history", "travel", "cooking", "children", "poetry", "business",
];
const FIRST_NAMES: [&str; 6] = ["Ada", "Grace", "Alan", "Ken", "Barbara", "Dennis"];
const LAST_NAMES: [&str; 6] = [
    "Lovelace", "Hopper", "Turing", "Thompson", "Liskov", "Ritchie",
];
const REVIEWERS: [&str; 6] = [
    "bookworm", "nightowl", "inkwell", "dogear", "shelfie", "reader",
];
const REVIEW_TEXTS: [&str; 4] = [
    "Could not put it down.",
    "Solid, but the middle drags a little.",
    "Bought it as a gift and read it first.",
    "Clear, useful and surprisingly funny.",
];
const SENTENCES: [&str; 4] = [
    "A sweeping story told with warmth, wit and an eye for the small details of everyday life.",
    "Readers will find careful research, vivid characters and a pace that never lets up.",
    "This edition includes a new introduction, notes on the text and a short reading guide.",
    "Beautifully printed on acid-free paper with a sewn binding that lies flat when opened.",
];
/// Largest accepted request body.
const MAX_BODY: usize = 1024 * 1024;
/// Target length of a generated description, so a product serialises to roughly 1 KB.
const DESCRIPTION_LEN: usize = 860;

type Resp = Response<Full<Bytes>>;

/// How the bookstore behaves.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Delay added to every `/api/...` request (models a database round trip).
    pub(crate) latency: Duration,
    /// Number of products generated per tenant (ids `1..=products`).
    pub(crate) products: u32,
}

#[derive(Debug, Clone, Serialize)]
struct Product {
    id: u64,
    name: String,
    author: String,
    price: f64,
    category: String,
    stock: u32,
    tenant: &'static str,
    version: u64,
    description: String,
}

/// Fields a client may set with POST, PUT or PATCH; anything else in the body is ignored.
#[derive(Debug, Deserialize)]
struct ProductFields {
    name: Option<String>,
    author: Option<String>,
    price: Option<f64>,
    category: Option<String>,
    stock: Option<u32>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CartAdd {
    product_id: u64,
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize)]
struct CartLine {
    product_id: u64,
    name: String,
    price: f64,
    quantity: u32,
}

#[derive(Debug)]
struct Catalogue {
    products: BTreeMap<u64, Product>,
    next_id: u64,
    carts: HashMap<String, Vec<CartLine>>,
}

#[derive(Debug)]
struct State {
    tenants: HashMap<&'static str, Catalogue>,
    requests: u64,
    by_route: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct App {
    options: Options,
    state: Mutex<State>,
}

impl App {
    fn new(options: Options) -> Self {
        let tenants = TENANTS
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, Catalogue::generate(i as u64, t, options.products)));
        let state = State {
            tenants: tenants.collect(),
            requests: 0,
            by_route: BTreeMap::new(),
        };
        Self {
            options,
            state: Mutex::new(state),
        }
    }

    /// Locks the state; a panic elsewhere never leaves the data half-written, so poison is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// SplitMix64: a tiny, good-enough deterministic hash for generating data.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<T: Copy>(items: &[T], h: u64) -> T {
    items[(h % items.len() as u64) as usize]
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

impl Catalogue {
    fn generate(tenant_index: u64, tenant: &'static str, count: u32) -> Self {
        let display = capitalised(tenant);
        let products = (1..=u64::from(count)).map(|id| {
            let h = mix(mix(tenant_index) ^ id);
            let mut description = format!("{display} Book {id}. ");
            let mut k = 0;
            while description.len() < DESCRIPTION_LEN {
                description.push_str(pick(&SENTENCES, mix(h ^ k)));
                description.push(' ');
                k += 1;
            }
            description.truncate(DESCRIPTION_LEN);
            let product = Product {
                id,
                name: format!("{display} Book {id}"),
                author: format!(
                    "{} {}",
                    pick(&FIRST_NAMES, h >> 8),
                    pick(&LAST_NAMES, h >> 16)
                ),
                price: (499 + (h >> 24) % 5000) as f64 / 100.0,
                category: pick(&CATEGORIES, h >> 40).to_owned(),
                stock: ((h >> 48) % 250) as u32,
                tenant,
                version: 1,
                description,
            };
            (id, product)
        });
        let products: BTreeMap<u64, Product> = products.collect();
        Self {
            products,
            next_id: u64::from(count) + 1,
            carts: HashMap::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving

/// Serves until `shutdown` resolves, then finishes in-flight requests (hyper_util
/// GracefulShutdown, bounded to ~5 s) and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    let app = Arc::new(App::new(options));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%error, "bookstore: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(handle(&app, req).await) }
        });
        let connection = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "bookstore: connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("bookstore: gave up waiting for in-flight requests after 5 s");
    }
}

/// The router: origin-control endpoints, then the API, then 404.
async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/_origin/stats") => return stats(app),
        (&Method::POST, "/_origin/reset") => return reset(app),
        (_, "/_origin/stats") => return method_not_allowed(&method, &path, "GET, HEAD"),
        (_, "/_origin/reset") => return method_not_allowed(&method, &path, "POST"),
        _ if path.starts_with("/api/") => {}
        _ => return ApiError::no_route(&method, &path).into_response(),
    }

    if !app.options.latency.is_zero() {
        tokio::time::sleep(app.options.latency).await;
    }
    let route = Route::parse(&path);
    count(app, &method, route.map_or("(no route)", Route::pattern));
    let Some(route) = route else {
        return ApiError::no_route(&method, &path).into_response();
    };
    let tenant = match tenant(req.headers()) {
        Ok(tenant) => tenant,
        Err(e) => return e.into_response(),
    };
    let user = authorization(req.headers());
    let query = req.uri().query().unwrap_or_default().to_owned();
    let get = method == Method::GET || method == Method::HEAD;
    let result = match route {
        Route::Products if get => list_products(app, tenant, &query),
        Route::Products if method == Method::POST => {
            create_product(app, tenant, req.into_body()).await
        }
        Route::Product(id) if get => get_product(app, tenant, id),
        Route::Product(id) if method == Method::PUT || method == Method::PATCH => {
            update_product(app, tenant, id, req.into_body()).await
        }
        Route::Product(id) if method == Method::DELETE => delete_product(app, tenant, id),
        Route::Reviews(id) if get => reviews(app, tenant, id),
        Route::Categories if get => Ok(categories(app, tenant)),
        Route::Search if get => search(app, tenant, &query),
        Route::User(id) if get => user_profile(tenant, user, id),
        Route::Cart if get => get_cart(app, tenant, user),
        Route::Cart if method == Method::POST => {
            add_to_cart(app, tenant, user, req.into_body()).await
        }
        _ => return method_not_allowed(&method, &path, route.allow()),
    };
    result.unwrap_or_else(ApiError::into_response)
}

#[derive(Debug, Clone, Copy)]
enum Route<'a> {
    Products,
    Product(&'a str),
    Reviews(&'a str),
    Categories,
    Search,
    User(&'a str),
    Cart,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let segments: Vec<&str> = path.strip_prefix("/api/v1/")?.split('/').collect();
        Some(match segments.as_slice() {
            ["products"] => Self::Products,
            ["products", id] if !id.is_empty() => Self::Product(id),
            ["products", id, "reviews"] if !id.is_empty() => Self::Reviews(id),
            ["categories"] => Self::Categories,
            ["search"] => Self::Search,
            ["users", id] if !id.is_empty() => Self::User(id),
            ["cart"] => Self::Cart,
            _ => return None,
        })
    }

    /// The label used in `/_origin/stats`.
    fn pattern(self) -> &'static str {
        match self {
            Self::Products => "/api/v1/products",
            Self::Product(_) => "/api/v1/products/{id}",
            Self::Reviews(_) => "/api/v1/products/{id}/reviews",
            Self::Categories => "/api/v1/categories",
            Self::Search => "/api/v1/search",
            Self::User(_) => "/api/v1/users/{id}",
            Self::Cart => "/api/v1/cart",
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Self::Products | Self::Cart => "GET, HEAD, POST",
            Self::Product(_) => "GET, HEAD, PUT, PATCH, DELETE",
            Self::Reviews(_) | Self::Categories | Self::Search | Self::User(_) => "GET, HEAD",
        }
    }
}

fn count(app: &App, method: &Method, pattern: &str) {
    let mut state = app.lock();
    state.requests += 1;
    *state
        .by_route
        .entry(format!("{method} {pattern}"))
        .or_default() += 1;
}

/// The tenant, spelt exactly: a cache in front keys on the spelling, so an
/// API that also answered `ACME`, or no tenant, for `acme` would have a
/// write to `acme` leave those copies cached (docs/security.md).
fn tenant(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    let Some(value) = headers.get("x-tenant-id") else {
        return Err(ApiError::bad_request("send the X-Tenant-ID header"));
    };
    let name = String::from_utf8_lossy(value.as_bytes());
    let name = name.trim();
    let found = TENANTS.iter().find(|t| **t == name);
    found.copied().ok_or_else(|| ApiError::no_tenant(name))
}

/// The caller's identity: the whole `Authorization` header value, if present and non-empty.
fn authorization(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
    (!value.trim().is_empty()).then_some(value)
}

// ---------------------------------------------------------------------------------------------
// Endpoints

fn get_product(app: &App, tenant: &str, id: &str) -> ApiResult {
    let id = parse_id(id)?;
    let state = app.lock();
    let product = state.tenants[tenant]
        .products
        .get(&id)
        .ok_or_else(|| ApiError::product_not_found(id))?;
    Ok(json_response(StatusCode::OK, product))
}

fn list_products(app: &App, tenant: &str, query: &str) -> ApiResult {
    let params = parse_query(query)?;
    let page = number_param(&params, "page", 1, 1_000_000)?;
    let per_page = number_param(&params, "per_page", 20, 100)?;
    let sort = param(&params, "sort").unwrap_or("id");
    if !["id", "price", "-price", "name"].contains(&sort) {
        return Err(ApiError::bad_request(
            "'sort' must be one of id, price, -price, name",
        ));
    }
    let category = param(&params, "category");

    let state = app.lock();
    let products = state.tenants[tenant].products.values();
    let mut items: Vec<&Product> = products
        .filter(|p| category.is_none_or(|c| p.category.eq_ignore_ascii_case(c)))
        .collect();
    match sort {
        "price" => items.sort_by(|a, b| a.price.total_cmp(&b.price).then(a.id.cmp(&b.id))),
        "-price" => items.sort_by(|a, b| b.price.total_cmp(&a.price).then(a.id.cmp(&b.id))),
        "name" => items.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        _ => {} // already in id order
    }
    let total = items.len();
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let items: Vec<&Product> = items
        .into_iter()
        .skip(skip)
        .take(per_page as usize)
        .collect();
    let body = json!({ "items": items, "page": page, "per_page": per_page, "total": total });
    Ok(json_response(StatusCode::OK, &body))
}

fn categories(app: &App, tenant: &str) -> Resp {
    let state = app.lock();
    let mut counts: BTreeMap<&str, u64> = CATEGORIES.iter().map(|&c| (c, 0)).collect();
    for product in state.tenants[tenant].products.values() {
        *counts.entry(product.category.as_str()).or_default() += 1;
    }
    let list: Vec<_> = counts
        .iter()
        .map(|(name, count)| json!({ "name": name, "count": count }))
        .collect();
    json_response(StatusCode::OK, &json!({ "categories": list }))
}

fn search(app: &App, tenant: &str, query: &str) -> ApiResult {
    let params = parse_query(query)?;
    let q = param(&params, "q").filter(|q| !q.trim().is_empty());
    let q = q.ok_or_else(|| ApiError::bad_request("query parameter 'q' is required"))?;
    let needle = q.to_lowercase();
    let state = app.lock();
    let matches: Vec<&Product> = state.tenants[tenant]
        .products
        .values()
        .filter(|p| {
            [&p.name, &p.category, &p.author]
                .iter()
                .any(|f| f.to_lowercase().contains(&needle))
        })
        .collect();
    let items = &matches[..matches.len().min(20)];
    Ok(json_response(
        StatusCode::OK,
        &json!({ "query": q, "items": items, "total": matches.len() }),
    ))
}

fn reviews(app: &App, tenant: &str, id: &str) -> ApiResult {
    let id = parse_id(id)?;
    if !app.lock().tenants[tenant].products.contains_key(&id) {
        return Err(ApiError::product_not_found(id));
    }
    let seed = mix(tenant.bytes().fold(id, |h, b| mix(h ^ u64::from(b))));
    let reviews: Vec<_> = (0..3 + seed % 3)
        .map(|i| {
            let h = mix(seed ^ i);
            json!({
                "user": pick(&REVIEWERS, h),
                "rating": pick(&[5, 4, 4, 3, 5, 2, 4, 5, 1, 4], h >> 8),
                "text": pick(&REVIEW_TEXTS, h >> 16),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "product_id": id, "reviews": reviews }),
    ))
}

fn user_profile(tenant: &str, user: Option<String>, id: &str) -> ApiResult {
    user.ok_or_else(ApiError::unauthorized)?;
    let id = parse_id(id)?;
    let h = mix(id);
    let profile = json!({
        "id": id,
        "tenant": tenant,
        "username": format!("user{id}"),
        "display_name": format!("{} {}", pick(&FIRST_NAMES, h), pick(&LAST_NAMES, h >> 8)),
        "email": format!("user{id}@{tenant}.example"),
        "tier": pick(&["bronze", "silver", "gold"], h >> 16),
        "member_since": 2015 + (h >> 24) % 10,
    });
    Ok(with_header(
        json_response(StatusCode::OK, &profile),
        CACHE_CONTROL,
        "private",
    ))
}

fn get_cart(app: &App, tenant: &str, user: Option<String>) -> ApiResult {
    let user = user.ok_or_else(ApiError::unauthorized)?;
    let state = app.lock();
    let lines = state.tenants[tenant]
        .carts
        .get(&user)
        .map_or(&[][..], Vec::as_slice);
    Ok(cart_response(&user, lines))
}

async fn add_to_cart(app: &App, tenant: &str, user: Option<String>, body: Incoming) -> ApiResult {
    let user = user.ok_or_else(ApiError::unauthorized)?;
    let add: CartAdd = read_json(body).await?;
    if !(1..=999).contains(&add.quantity) {
        return Err(ApiError::bad_request(
            "'quantity' must be between 1 and 999",
        ));
    }
    let mut state = app.lock();
    let catalogue = state
        .tenants
        .get_mut(tenant)
        .ok_or_else(|| ApiError::no_tenant(tenant))?;
    let product = catalogue.products.get(&add.product_id);
    let product = product.ok_or_else(|| ApiError::product_not_found(add.product_id))?;
    let (name, price) = (product.name.clone(), product.price);
    let lines = catalogue.carts.entry(user.clone()).or_default();
    match lines
        .iter_mut()
        .find(|line| line.product_id == add.product_id)
    {
        Some(line) => {
            line.quantity = line.quantity.saturating_add(add.quantity);
            (line.name, line.price) = (name, price);
        }
        None => lines.push(CartLine {
            product_id: add.product_id,
            name,
            price,
            quantity: add.quantity,
        }),
    }
    Ok(cart_response(&user, lines))
}

fn cart_response(user: &str, lines: &[CartLine]) -> Resp {
    let total = lines
        .iter()
        .fold(0.0, |sum, l| sum + l.price * f64::from(l.quantity));
    let body = json!({ "user": user, "items": lines, "total": (total * 100.0).round() / 100.0 });
    with_header(
        json_response(StatusCode::OK, &body),
        CACHE_CONTROL,
        "private, no-store",
    )
}

async fn create_product(app: &App, tenant: &'static str, body: Incoming) -> ApiResult {
    let fields: ProductFields = read_json(body).await?;
    if fields.name.is_none() || fields.price.is_none() {
        return Err(ApiError::bad_request(
            "fields 'name' and 'price' are required",
        ));
    }
    let mut state = app.lock();
    let catalogue = state
        .tenants
        .get_mut(tenant)
        .ok_or_else(|| ApiError::no_tenant(tenant))?;
    let mut product = Product {
        id: catalogue.next_id,
        name: String::new(),
        author: "Unknown".to_owned(),
        price: 0.0,
        category: CATEGORIES[0].to_owned(),
        stock: 0,
        tenant,
        version: 1,
        description: String::new(),
    };
    apply(&mut product, fields)?;
    catalogue.next_id += 1;
    let location = format!("/api/v1/products/{}", product.id);
    let response = json_response(StatusCode::CREATED, &product);
    catalogue.products.insert(product.id, product);
    Ok(with_header(response, LOCATION, &location))
}

/// PUT and PATCH: fields present in the body replace the stored ones; the version is bumped.
async fn update_product(app: &App, tenant: &str, id: &str, body: Incoming) -> ApiResult {
    let id = parse_id(id)?;
    let fields: ProductFields = read_json(body).await?;
    let mut state = app.lock();
    let product = state
        .tenants
        .get_mut(tenant)
        .and_then(|c| c.products.get_mut(&id));
    let product = product.ok_or_else(|| ApiError::product_not_found(id))?;
    let mut updated = product.clone();
    apply(&mut updated, fields)?;
    updated.version += 1;
    *product = updated;
    Ok(json_response(StatusCode::OK, product))
}

fn delete_product(app: &App, tenant: &str, id: &str) -> ApiResult {
    let id = parse_id(id)?;
    let mut state = app.lock();
    let removed = state
        .tenants
        .get_mut(tenant)
        .and_then(|c| c.products.remove(&id));
    removed.ok_or_else(|| ApiError::product_not_found(id))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Copies the given fields into `product`, validating them.
fn apply(product: &mut Product, fields: ProductFields) -> Result<(), ApiError> {
    if let Some(name) = fields.name {
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("'name' must not be empty"));
        }
        product.name = name;
    }
    if let Some(price) = fields.price {
        if !price.is_finite() || price < 0.0 {
            return Err(ApiError::bad_request(
                "'price' must be a non-negative number",
            ));
        }
        product.price = price;
    }
    if let Some(category) = fields.category {
        if category.trim().is_empty() {
            return Err(ApiError::bad_request("'category' must not be empty"));
        }
        product.category = category.to_lowercase();
    }
    product.author = fields
        .author
        .unwrap_or_else(|| std::mem::take(&mut product.author));
    product.stock = fields.stock.unwrap_or(product.stock);
    product.description = fields
        .description
        .unwrap_or_else(|| std::mem::take(&mut product.description));
    Ok(())
}

fn stats(app: &App) -> Resp {
    let state = app.lock();
    json_response(
        StatusCode::OK,
        &json!({ "requests": state.requests, "by_route": state.by_route }),
    )
}

fn reset(app: &App) -> Resp {
    let mut state = app.lock();
    state.requests = 0;
    state.by_route.clear();
    empty(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Helpers

type ApiResult = Result<Resp, ApiError>;

/// A client error, answered as `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authorization required")
    }

    fn product_not_found(id: u64) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("product {id} not found"))
    }

    fn no_tenant(tenant: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("unknown tenant '{tenant}'"))
    }

    fn no_route(method: &Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no route for {method} {path}"),
        )
    }

    fn into_response(self) -> Resp {
        json_response(self.status, &json!({ "error": self.message }))
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Resp {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(bytes) => (status, bytes),
        Err(e) => {
            let body = json!({ "error": e.to_string() }).to_string();
            (StatusCode::INTERNAL_SERVER_ERROR, body.into_bytes())
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    with_header(response, CONTENT_TYPE, "application/json")
}

fn empty(status: StatusCode) -> Resp {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn with_header(mut response: Resp, name: HeaderName, value: &str) -> Resp {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

fn method_not_allowed(method: &Method, path: &str, allow: &str) -> Resp {
    let message = format!("method {method} not allowed on {path}");
    let response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response();
    with_header(response, ALLOW, allow)
}

/// An id in its one spelling (`44`, never `044` or `+44`), for the same
/// reason as [`tenant`].
fn parse_id(raw: &str) -> Result<u64, ApiError> {
    let canonical = raw.bytes().all(|b| b.is_ascii_digit()) && !raw.starts_with('0');
    raw.parse()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| ApiError::bad_request(format!("invalid id '{raw}'")))
}

/// Reads a body of at most [`MAX_BODY`] bytes and parses it as JSON.
async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, ApiError> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body exceeds 1 MiB",
            ));
        }
        Err(e) => return Err(ApiError::bad_request(format!("could not read body: {e}"))),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Splits and percent-decodes a query string (`+` means space).
fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = query.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("malformed query string");
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The last non-empty value of a query parameter.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let found = params
        .iter()
        .rev()
        .find(|(k, v)| k == name && !v.is_empty());
    found.map(|(_, v)| v.as_str())
}

fn number_param(
    params: &[(String, String)],
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(raw) = param(params, name) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "'{name}' must be an integer in 1..={max}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Binary entry point

#[derive(Debug, Parser)]
#[command(about = "The example online bookstore API that folio is demoed and benchmarked against")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "BOOKSTORE_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Artificial latency added to every /api request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Number of products generated per tenant.
    #[arg(long, default_value_t = 10_000)]
    products: u32,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("failed to build the tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .expect("failed to bind the listen address");
        let addr = listener
            .local_addr()
            .expect("listener has no local address");
        println!(
            "bookstore API listening on http://{addr} (latency {} ms, {} products per tenant)",
            args.latency_ms, args.products
        );
        let options = Options {
            latency: Duration::from_millis(args.latency_ms),
            products: args.products,
        };
        serve(listener, options, shutdown_signal()).await;
    });
}

/// Resolves on ctrl-c or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
