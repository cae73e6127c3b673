use super::labels::{LABEL_IDLE, MAX_LABEL_LEN};
use super::render::escape;
use super::*;

fn count(metrics: &Metrics, tenant: &str) {
    let endpoint: Arc<str> = Arc::from("/p/{id}");
    let label = metrics.tenant_label(tenant);
    metrics.request(&endpoint, &label, Result::Hit, Layer::L1, Duration::ZERO);
}

#[test]
fn the_anonymous_tenant_has_its_own_label_outside_the_slots() {
    let metrics = Metrics::new(1);
    for tenant in ["", "", "a", "b"] {
        count(&metrics, tenant);
    }
    let text = metrics.render(&[]);
    assert!(
        text.contains("tenant=\"-\",result=\"hit\",layer=\"l1\"} 2"),
        "{text}"
    );
    assert!(text.contains("tenant=\"a\""), "{text}");
    assert!(text.contains("tenant=\"other\""), "{text}");
}

#[test]
fn known_tenants_keep_their_label_when_strangers_took_every_slot() {
    let metrics = Metrics::new(2).with_known_tenants(["acme", "globex"]);
    for i in 0..50 {
        count(&metrics, &format!("squatter{i}"));
    }
    assert_eq!(&*metrics.tenant_label("acme"), "acme");
    assert_eq!(&*metrics.tenant_label("globex"), "globex");
    assert_eq!(&*metrics.tenant_label("squatter1"), "squatter1");
    assert_eq!(&*metrics.tenant_label("squatter2"), "other");
}

#[test]
fn only_plain_names_become_labels() {
    let metrics = Metrics::new(100).with_known_tenants(["<b>known</b>"]);
    let long = "x".repeat(MAX_LABEL_LEN + 1);
    for hostile in [
        "<img src=x onerror=alert(1)>",
        "a\"b",
        "a\\b",
        "a b",
        "caf\u{e9}",
        "other",
        "-",
        "<b>known</b>",
        long.as_str(),
    ] {
        assert_eq!(&*metrics.tenant_label(hostile), "other", "{hostile:?}");
    }
    let longest = "x".repeat(MAX_LABEL_LEN);
    for plain in ["acme", "acme.example.com", "t_1-2", longest.as_str()] {
        assert_eq!(&*metrics.tenant_label(plain), plain);
    }
}

#[test]
fn an_idle_slot_goes_to_a_newcomer_and_its_counts_to_other() {
    let metrics = Metrics::new(2);
    let endpoint: Arc<str> = Arc::from("/p/{id}");
    let idle = LABEL_IDLE.as_secs();
    let at = |tenant: &str, now: u64| {
        let label = metrics.tenant_label_at(tenant, now);
        metrics.request(&endpoint, &label, Result::Hit, Layer::L1, Duration::ZERO);
        label
    };
    assert_eq!(&*at("quiet", 0), "quiet");
    assert_eq!(&*at("busy", 0), "busy");
    assert_eq!(&*at("late", 10), "other", "every slot is held");
    assert_eq!(&*at("busy", idle - 1), "busy");
    assert_eq!(&*at("late", idle - 1), "other", "nobody is idle yet");
    assert_eq!(&*at("late", idle), "late", "quiet's slot was idle");
    assert_eq!(&*at("quiet", idle), "other", "and quiet lost it");
    assert_eq!(&*at("busy", idle), "busy", "the busy tenant kept its own");

    let text = metrics.render(&[]);
    assert!(!text.contains("tenant=\"quiet\""), "{text}");
    assert!(
        text.contains("tenant=\"other\",result=\"hit\",layer=\"l1\"} 4"),
        "quiet's count moved to other: {text}"
    );
    assert_eq!(metrics.totals().requests(), 8, "nothing lost");
}

#[test]
fn a_request_finishing_after_its_label_was_recycled_counts_as_other() {
    let metrics = Metrics::new(1);
    let endpoint: Arc<str> = Arc::from("/p/{id}");
    let first = metrics.tenant_label_at("first", 0);
    // Counted once: this thread now holds first's series (see `lately`).
    metrics.request(&endpoint, &first, Result::Hit, Layer::L1, Duration::ZERO);
    assert_eq!(
        &*metrics.tenant_label_at("second", LABEL_IDLE.as_secs()),
        "second"
    );
    metrics.request(&endpoint, &first, Result::Hit, Layer::L1, Duration::ZERO);
    let text = metrics.render(&[]);
    assert!(!text.contains("tenant=\"first\""), "{text}");
    assert!(text.contains("tenant=\"other\""), "{text}");
    assert!(
        text.contains("tenant=\"other\",result=\"hit\",layer=\"l1\"} 2"),
        "both counted, as other: {text}"
    );
    assert_eq!(metrics.totals().requests(), 2, "nothing lost");
}

#[test]
fn each_metrics_counts_its_own_requests() {
    let (one, two) = (Metrics::new(4), Metrics::new(4));
    let endpoint: Arc<str> = Arc::from("/p/{id}");
    let anonymous = one.tenant_label("");
    for _ in 0..3 {
        one.request(
            &endpoint,
            &anonymous,
            Result::Hit,
            Layer::L1,
            Duration::ZERO,
        );
    }
    // The same labels, handed to another `Metrics` on the same thread.
    two.request(
        &endpoint,
        &anonymous,
        Result::Hit,
        Layer::L1,
        Duration::ZERO,
    );
    assert_eq!(one.totals().requests(), 3);
    assert_eq!(two.totals().requests(), 1);
}

#[test]
fn tenants_beyond_the_limit_fold_into_other() {
    let metrics = Metrics::new(2);
    let endpoint: Arc<str> = Arc::from("/p/{id}");
    for tenant in ["a", "b", "c", "d", "a"] {
        metrics.request(
            &endpoint,
            &metrics.tenant_label(tenant),
            Result::Hit,
            Layer::L1,
            Duration::from_millis(1),
        );
    }
    let text = metrics.render(&[]);
    assert!(
        text.contains("tenant=\"a\",result=\"hit\",layer=\"l1\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("tenant=\"other\",result=\"hit\",layer=\"l1\"} 2"),
        "{text}"
    );
    assert!(!text.contains("tenant=\"c\""));
}

#[test]
fn histograms_are_cumulative_and_quantiles_pick_buckets() {
    let h = Histogram::default();
    for ms in [1, 1, 1, 30] {
        h.observe(Duration::from_millis(ms));
    }
    let mut out = String::new();
    h.render(&mut out, "x", "");
    assert!(out.contains("x_bucket{le=\"0.001\"} 3"), "{out}");
    assert!(out.contains("x_bucket{le=\"+Inf\"} 4"), "{out}");
    assert!(out.contains("x_count 4"));
    assert_eq!(h.quantile(0.5), 0.001);
    assert_eq!(h.quantile(0.99), 0.05);
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

#[test]
fn refusals_do_not_pull_the_latency_of_what_is_served_down() {
    let metrics = Metrics::new(4);
    let (endpoint, tenant) = (Arc::from("/p"), Arc::from("acme"));
    metrics.request(
        &endpoint,
        &tenant,
        Result::Hit,
        Layer::L1,
        Duration::from_millis(50),
    );
    for _ in 0..100 {
        metrics.request(
            &endpoint,
            &tenant,
            Result::Refused,
            Layer::None,
            Duration::from_micros(10),
        );
    }
    assert!(
        metrics.latency_quantile(0.5) >= 0.025,
        "{}",
        metrics.latency_quantile(0.5)
    );
}
