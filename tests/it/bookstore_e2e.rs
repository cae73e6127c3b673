//! The bundled example: the bookstore API behind folio with the repository's
//! own `policies/`, as the README's quick start runs it.

use folio::PolicySet;

use crate::support::{ACME, Folio, REPO_POLICIES, get, send, settings, start_bookstore};

async fn origin_requests(origin: std::net::SocketAddr) -> u64 {
    get(&format!("http://{origin}/_origin/stats"), &[])
        .await
        .json()["requests"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn the_bookstore_behind_folio_with_the_repository_policies() {
    let (origin, _stop) = start_bookstore().await;
    let policies = PolicySet::load_dir(REPO_POLICIES).unwrap();
    let folio = Folio::start_with_set(
        settings(format!("http://{origin}").parse().unwrap()),
        policies,
    )
    .await;

    let first = get(
        &folio.url("/api/v1/products/42"),
        &[("x-tenant-id", "globex")],
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.json()["tenant"], "globex");
    let second = get(
        &folio.url("/api/v1/products/42"),
        &[("x-tenant-id", "globex")],
    )
    .await;
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(origin_requests(origin).await, 1);

    let list = get(
        &folio.url("/api/v1/products?category=fiction&per_page=5"),
        ACME,
    )
    .await;
    assert_eq!(list.status, 200);
    assert_eq!(
        get(
            &folio.url("/api/v1/products?per_page=5&category=fiction"),
            ACME
        )
        .await
        .x_cache(),
        "HIT"
    );
    let categories = get(&folio.url("/api/v1/categories"), ACME).await;
    assert_eq!(categories.header("cache-control"), "public, max-age=60");
    // One spelling of each tenant and id: a write's purge reaches every
    // copy a client can be given.
    let no_tenant: &[(&str, &str)] = &[];
    for (path, headers) in [
        ("/api/v1/products/042", ACME),
        ("/api/v1/products/42", &[("x-tenant-id", "ACME")][..]),
        ("/api/v1/products/42", no_tenant),
    ] {
        let refused = get(&folio.url(path), headers).await;
        assert!(
            refused.status.is_client_error(),
            "{path} {headers:?}: {}",
            refused.status
        );
    }

    // A write passes through, changes the data, and drops the cached GET.
    let put = send(
        "PUT",
        &folio.url("/api/v1/products/42"),
        &[("x-tenant-id", "globex")],
        r#"{"name":"Renamed"}"#,
    )
    .await;
    assert_eq!(put.status, 200);
    let after = get(
        &folio.url("/api/v1/products/42"),
        &[("x-tenant-id", "globex")],
    )
    .await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(after.json()["name"], "Renamed");

    // Carts are never cached; user profiles are cached per caller.
    let cart = get(
        &folio.url("/api/v1/cart"),
        &[("x-tenant-id", "acme"), ("authorization", "Bearer alice")],
    )
    .await;
    assert_eq!(cart.x_cache(), "BYPASS");
    let alice = get(
        &folio.url("/api/v1/users/1"),
        &[("x-tenant-id", "acme"), ("authorization", "Bearer alice")],
    )
    .await;
    assert_eq!(alice.status, 200);
    assert_eq!(
        alice.header("cache-control"),
        "private, max-age=0, must-revalidate"
    );
    assert_eq!(
        get(
            &folio.url("/api/v1/users/1"),
            &[("x-tenant-id", "acme"), ("authorization", "Bearer alice")]
        )
        .await
        .x_cache(),
        "HIT"
    );
    assert_eq!(
        get(
            &folio.url("/api/v1/users/1"),
            &[("x-tenant-id", "acme"), ("authorization", "Bearer bob")]
        )
        .await
        .x_cache(),
        "MISS"
    );
}
