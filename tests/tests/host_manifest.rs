//! Start-up errors: each names the file and line, or the name, at fault.

use app_tests::{start_failure, wasm};

fn good() -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "m"
[[trigger.http]]
route = "/a/..."
component = "a"
[component.a]
source = "{}"
"#,
        wasm("fixture-p2-app").display()
    )
}

#[test]
fn invalid_toml_names_the_line() {
    let err = start_failure(&good().replace("name = \"m\"", "name = \"m"), &[]);
    assert!(err.contains("spin.toml") && err.contains("line 3"), "{err}");
}

#[test]
fn unknown_fields_are_rejected() {
    let err = start_failure(
        &good().replace("component = \"a\"", "component = \"a\"\nroutee = 1"),
        &[],
    );
    assert!(err.contains("routee"), "{err}");
}

#[test]
fn a_missing_wasm_names_the_component_and_the_fix() {
    let err = start_failure(&good().replace("fixture_p2_app.wasm", "nope.wasm"), &[]);
    assert!(
        err.contains("component `a`") && err.contains("nope.wasm"),
        "{err}"
    );
    assert!(err.contains("cargo xtask build"), "{err}");
}

#[test]
fn a_route_conflict_names_both_lines() {
    let dup = good().replace(
        "[component.a]",
        "[[trigger.http]]\nroute = \"/a/...\"\ncomponent = \"b\"\n[component.b]\nsource = \"SRC\"\n[component.a]",
    );
    let dup = dup.replace("SRC", &wasm("fixture-p2-app").display().to_string());
    let err = start_failure(&dup, &[]);
    assert!(
        err.contains("route conflict") && err.contains("line 5") && err.contains("line 8"),
        "{err}"
    );
}

#[test]
fn a_trigger_for_an_unknown_component_names_the_line() {
    let err = start_failure(
        &good().replace("component = \"a\"", "component = \"ghost\""),
        &[],
    );
    assert!(
        err.contains("spin.toml:5") && err.contains("ghost"),
        "{err}"
    );
}

#[test]
fn an_undeclared_store_label_is_a_startup_error() {
    let err = start_failure(
        &good().replace(
            "[component.a]\n",
            "[component.a]\nkey_value_stores = [\"cache\"]\n",
        ),
        &[],
    );
    assert!(
        err.contains("`cache`") && err.contains("runtime-config"),
        "{err}"
    );
}

#[test]
fn a_component_that_is_not_wasm_is_reported() {
    let dir = app_tests::TempDir::new("notwasm");
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm").unwrap();
    let m = good().replace(
        &wasm("fixture-p2-app").display().to_string(),
        &bogus.display().to_string(),
    );
    let err = start_failure(&m, &[]);
    assert!(err.contains("not a valid WebAssembly component"), "{err}");
}
