//! The `folio` binary as an operator runs it: `folio check`, and refusing to
//! start on a broken policy set.

use std::process::{Command, Output};

use crate::support::ScratchDir;

fn folio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .output()
        .expect("run folio")
}

fn policy_dir(name: &str, files: &[(&str, &str)]) -> ScratchDir {
    let dir = ScratchDir::new("cli", name);
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

const OPERATORS_FORMAT: &str = include_str!("../fixtures/operators.yaml");

#[test]
fn the_operators_yaml_checks_clean() {
    let dir = policy_dir("ok", &[("bookstore.yaml", OPERATORS_FORMAT)]);
    let out = folio(&["check", "--policies", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 policies, all valid"));
}

#[test]
fn the_repository_policies_check_clean() {
    let dir = crate::support::REPO_POLICIES;
    let out = folio(&["check", "--policies", dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_broken_policy_file_is_rejected_with_file_line_and_field() {
    let broken = "\"/api/v1/products\":\n  cache_ttl: 5m\n\"/api/v1/products/{id}\":\n  cache_ttl: soon\n  tags: [\"product:{sku}\"]\n  colour: blue\n";
    let dir = policy_dir(
        "broken",
        &[
            ("bookstore.yaml", broken),
            ("more.yaml", "\"/api/v1/products\":\n  cache_ttl: 1m\n"),
        ],
    );
    let out = folio(&["check", "--policies", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = dir.join("bookstore.yaml");
    let file = file.display();
    assert!(
        stderr.contains(&format!("{file}:4: cache_ttl: bad duration 'soon'")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:5: tags: '{{sku}}'")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:6: colour: unknown field")),
        "{stderr}"
    );
    assert!(
        stderr.contains("more.yaml:1: route: two policies for one route"),
        "{stderr}"
    );

    let serve = folio(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--policies",
        dir.to_str().unwrap(),
    ]);
    assert!(!serve.status.success(), "folio must refuse to start");
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains(":4: cache_ttl:"), "{stderr}");
}

#[test]
fn missing_upstream_and_bad_flags_are_explained() {
    let out = folio(&["--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream URL is required"));
    let out = folio(&["--upstream", "http://127.0.0.1:9", "--l1-capacity", "lots"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad size 'lots'"));
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["check"])
        .env("FOLIO_POLICIES", "/nonexistent/folio-policies")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the policies directory"));
}
