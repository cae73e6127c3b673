use super::*;

fn mark(tenant: Option<&str>, scope: Scope, at: u64, soft: bool) -> Mark {
    Mark {
        tenant: tenant.map(Into::into),
        scope,
        at,
        soft,
    }
}

fn tags(list: &[&str]) -> Vec<Box<str>> {
    list.iter().map(|t| (*t).into()).collect()
}

/// The key of the entries `check` asks about, and another.
const K: CacheKey = CacheKey::from_bytes([7; 32]);
const OTHER: CacheKey = CacheKey::from_bytes([8; 32]);

/// The verdict for an entry with these tags and path and key `K`.
fn check(marks: &Marks, tenant: &str, tags: &[Box<str>], path: &str, at: u64) -> Verdict {
    marks.verdict(
        tenant,
        &Covered {
            tags: Tags::Listed(tags),
            path,
            key: &K,
        },
        at,
    )
}

#[test]
fn a_tag_purge_covers_entries_requested_at_or_before_it() {
    let marks = Marks::default();
    marks.apply(&mark(
        Some("acme"),
        Scope::Tag("product:42".into()),
        1000,
        false,
    ));
    let t = tags(&["product:42", "products"]);
    assert_eq!(check(&marks, "acme", &t, "/p/42", 999), Verdict::Purged);
    assert_eq!(
        check(&marks, "acme", &t, "/p/42", 1000),
        Verdict::Purged,
        "same millisecond: purged"
    );
    assert_eq!(
        check(&marks, "acme", &t, "/p/42", 1001),
        Verdict::Valid,
        "refetched after the purge"
    );
    assert_eq!(
        check(&marks, "globex", &t, "/p/42", 999),
        Verdict::Valid,
        "other tenants untouched"
    );
    assert_eq!(
        check(&marks, "acme", &tags(&["product:7"]), "/p/7", 999),
        Verdict::Valid
    );
}

#[test]
fn paths_prefixes_tenants_and_every_tenant() {
    let marks = Marks::default();
    marks.apply(&mark(Some("acme"), Scope::Path("/p/1".into()), 100, false));
    marks.apply(&mark(
        Some("acme"),
        Scope::Prefix("/api/v1/search".into()),
        200,
        false,
    ));
    marks.apply(&mark(Some("globex"), Scope::All, 300, false));
    marks.apply(&mark(None, Scope::Tag("categories".into()), 400, false));
    assert_eq!(check(&marks, "acme", &[], "/p/1", 50), Verdict::Purged);
    assert_eq!(
        check(&marks, "acme", &[], "/p/10", 50),
        Verdict::Valid,
        "paths are exact"
    );
    assert_eq!(
        check(&marks, "acme", &[], "/api/v1/search", 150),
        Verdict::Purged
    );
    assert_eq!(
        check(&marks, "acme", &[], "/api/v1/searchx", 150),
        Verdict::Purged,
        "a plain prefix"
    );
    assert_eq!(
        check(&marks, "globex", &[], "/anything", 250),
        Verdict::Purged
    );
    assert_eq!(
        check(&marks, "initech", &tags(&["categories"]), "/c", 350),
        Verdict::Purged
    );
    assert_eq!(
        check(&marks, "initech", &tags(&["other"]), "/c", 350),
        Verdict::Valid
    );
}

#[test]
fn soft_purges_make_entries_stale_and_hard_wins() {
    let marks = Marks::default();
    marks.apply(&mark(Some("acme"), Scope::Tag("t".into()), 100, true));
    assert_eq!(
        check(&marks, "acme", &tags(&["t"]), "/", 50),
        Verdict::Stale
    );
    marks.apply(&mark(Some("acme"), Scope::Path("/".into()), 100, false));
    assert_eq!(
        check(&marks, "acme", &tags(&["t"]), "/", 50),
        Verdict::Purged
    );
}

#[test]
fn key_purges() {
    let marks = Marks::default();
    marks.apply(&mark(None, Scope::Key(K.hex().into()), 100, false));
    assert_eq!(check(&marks, "any", &[], "/", 50), Verdict::Purged);
    assert_eq!(
        marks.verdict(
            "any",
            &Covered {
                tags: Tags::Listed(&[]),
                path: "/",
                key: &OTHER
            },
            50
        ),
        Verdict::Valid
    );
}

#[test]
fn applying_twice_or_out_of_order_keeps_the_latest() {
    let marks = Marks::default();
    let late = mark(Some("acme"), Scope::Tag("t".into()), 500, false);
    marks.apply(&late);
    marks.apply(&mark(Some("acme"), Scope::Tag("t".into()), 100, false));
    marks.apply(&late);
    assert_eq!(
        check(&marks, "acme", &tags(&["t"]), "/", 400),
        Verdict::Purged
    );
    assert_eq!(marks.len(), 1);
}

#[test]
fn old_marks_are_trimmed() {
    let marks = Marks::default();
    for i in 0..1000u64 {
        marks.apply(&mark(
            Some("acme"),
            Scope::Tag(format!("product:{i}").into()),
            i,
            false,
        ));
    }
    marks.apply(&mark(Some("globex"), Scope::All, 10, false));
    assert_eq!(marks.len(), 1001);
    marks.trim(900);
    assert_eq!(marks.len(), 100);
}

#[test]
fn marks_travel_as_compact_json() {
    let m = mark(Some("acme"), Scope::Tag("product:42".into()), 1234, false);
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(
        text,
        r#"{"tenant":"acme","scope":"tag","value":"product:42","at":1234,"soft":false}"#
    );
    assert_eq!(serde_json::from_str::<Mark>(&text).unwrap(), m);
    let all: Mark = serde_json::from_str(r#"{"tenant":null,"scope":"all","at":5}"#).unwrap();
    assert_eq!(all.scope, Scope::All);
}

#[test]
fn marks_are_bounded_and_overflow_widens_never_loses() {
    let marks = Marks::default();
    for i in 0..(MAX_SCOPES_PER_TENANT as u64 + 10) {
        marks.apply(&mark(
            Some("acme"),
            Scope::Path(format!("/p/{i}").into()),
            1000 + i,
            false,
        ));
    }
    assert!(marks.len() <= MAX_SCOPES_PER_TENANT + 1, "{}", marks.len());
    assert_eq!(
        check(&marks, "acme", &[], "/p/3", 500),
        Verdict::Purged,
        "an early purge still holds, now tenant-wide"
    );
    assert_eq!(
        check(&marks, "acme", &[], "/never-written", 500),
        Verdict::Purged,
        "wider"
    );
    assert_eq!(
        check(&marks, "globex", &[], "/p/3", 500),
        Verdict::Valid,
        "other tenants untouched"
    );

    let long = format!("/p/{}", "x".repeat(5000));
    marks.apply(&mark(
        Some("globex"),
        Scope::Path(long.clone().into()),
        7000,
        false,
    ));
    assert_eq!(check(&marks, "globex", &[], &long, 6000), Verdict::Purged);
}

#[test]
fn writes_for_many_tenants_never_purge_another_tenant() {
    // Clients name their tenant: writes for invented tenants past the
    // bound once folded into a purge of every tenant.
    let many = Marks::default();
    let past = MAX_TENANTS as u64 + 1000;
    for i in 0..past {
        many.apply(&mark(
            Some(&format!("t{i}")),
            Scope::Tag("x".into()),
            100_000_000 + i,
            false,
        ));
    }
    assert!(many.len() <= MAX_TENANTS, "{}", many.len());
    for tenant in ["t1", "victim", "acme"] {
        assert_eq!(
            check(&many, tenant, &tags(&["y"]), "/", 50_000_000),
            Verdict::Valid,
            "{tenant}"
        );
    }
    for i in [MAX_TENANTS as u64, past - 1] {
        let tenant = format!("t{i}");
        assert_eq!(
            check(&many, &tenant, &tags(&["y"]), "/", 50_000_000),
            Verdict::Purged,
            "{tenant}'s own purge holds, tenant-wide"
        );
        assert_eq!(
            check(&many, &tenant, &tags(&["y"]), "/", 200_000_000),
            Verdict::Valid,
            "{tenant}: an entry requested after the purge"
        );
    }
    many.trim(300_000_000);
    assert_eq!(many.len(), 0);

    // A tenant the operator named keeps its own marks past the bound.
    let named = Marks::default().with_known_tenants(["acme"]);
    for i in 0..past {
        named.apply(&mark(
            Some(&format!("t{i}")),
            Scope::All,
            100_000_000,
            false,
        ));
    }
    named.apply(&mark(
        Some("acme"),
        Scope::Path("/a".into()),
        100_000_000,
        false,
    ));
    assert_eq!(
        check(&named, "acme", &[], "/a", 50_000_000),
        Verdict::Purged
    );
    assert_eq!(
        check(&named, "acme", &[], "/b", 50_000_000),
        Verdict::Valid,
        "not widened to all of acme"
    );
    assert_eq!(
        check(&many, &format!("t{}", past - 1), &[], "/", 50_000_000),
        Verdict::Valid,
        "trimmed with the rest"
    );
}

#[test]
fn the_tenant_with_the_most_marks_folds_when_all_of_them_are_too_many() {
    // Past the bound in all, the tenant being marked used to fold: ten
    // tenants writing to ever new paths made every other tenant's next
    // write purge all of that tenant.
    let marks = Marks::default();
    let writers = MAX_SCOPES / MAX_SCOPES_PER_TENANT;
    for w in 0..writers {
        for i in 0..MAX_SCOPES_PER_TENANT {
            marks.apply(&mark(
                Some(&format!("writer{w}")),
                Scope::Path(format!("/p/{i}").into()),
                1000,
                false,
            ));
        }
    }
    marks.apply(&mark(Some("acme"), Scope::Path("/a".into()), 1000, false));
    marks.apply(&mark(Some("acme"), Scope::Path("/b".into()), 1000, false));
    assert_eq!(check(&marks, "acme", &[], "/a", 500), Verdict::Purged);
    assert_eq!(check(&marks, "acme", &[], "/b", 500), Verdict::Purged);
    assert_eq!(
        check(&marks, "acme", &[], "/c", 500),
        Verdict::Valid,
        "acme's marks stay as they were written"
    );
    assert!(marks.len() <= MAX_SCOPES + 2, "{}", marks.len());
    let folded = (0..writers)
        .filter(|w| check(&marks, &format!("writer{w}"), &[], "/elsewhere", 500) == Verdict::Purged)
        .count();
    assert_eq!(folded, 1, "one writer folded, tenant-wide");
}

#[test]
fn writes_to_long_paths_purge_only_those_paths() {
    // A long path was once held as a prefix of its first bytes, and 257 of
    // them folded into a purge of the whole tenant.
    let marks = Marks::default();
    let long = |i: usize| format!("/w/{i:04}{}", "a".repeat(1100));
    for i in 0..(MAX_PREFIXES_PER_TENANT + 1) {
        marks.apply(&mark(
            Some("acme"),
            Scope::Path(long(i).into()),
            1000,
            false,
        ));
    }
    assert_eq!(
        check(&marks, "acme", &[], "/products/1", 500),
        Verdict::Valid
    );
    assert_eq!(check(&marks, "acme", &[], &long(7), 500), Verdict::Purged);
    assert_eq!(
        check(&marks, "acme", &[], &long(MAX_PREFIXES_PER_TENANT + 5), 500),
        Verdict::Valid
    );
    let tag = "t".repeat(2000);
    marks.apply(&mark(
        Some("acme"),
        Scope::Tag(tag.clone().into()),
        1000,
        false,
    ));
    assert_eq!(
        check(&marks, "acme", &tags(&[&tag]), "/x", 500),
        Verdict::Purged
    );
    assert_eq!(
        check(&marks, "acme", &tags(&["t"]), "/x", 500),
        Verdict::Valid
    );
}
