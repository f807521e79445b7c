//! Fuzz targets for the parsers that take outside input: manifests,
//! runtime configs, routes and request paths, and `--faults` specs.
//!
//! Under `cargo test` each target runs a short random campaign (bolero's
//! test engine; `FUZZ_ITERATIONS` makes it longer — see
//! `cargo xtask fuzz`). Property: any input gives a value or an error,
//! never a panic; a crash found becomes a named regression test here.

use crate::faults::Faults;
use crate::http::router::{RouteDecl, Router};
use crate::manifest::App;
use crate::runtime_config::RuntimeConfig;
use std::path::Path;

/// A campaign's length: `FUZZ_ITERATIONS` (`cargo xtask fuzz` sets it),
/// else a short run that fits in the test command.
fn iterations() -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

/// Text that looks like a manifest often enough to get past the TOML parser.
fn manifest_like(noise: &str) -> String {
    format!(
        "spin_manifest_version = 2\n[application]\nname = \"f\"\n[[trigger.http]]\nroute = \"{}\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n{noise}",
        noise
            .chars()
            .take(40)
            .filter(|c| *c != '"' && *c != '\\')
            .collect::<String>()
    )
}

#[test]
fn fuzz_manifests() {
    bolero::check!()
        .with_type::<String>()
        .with_iterations(iterations())
        .for_each(|text| {
            let _ = App::parse(text, Path::new("spin.toml"));
            let _ = App::parse(&manifest_like(text), Path::new("spin.toml"));
        });
}

#[test]
fn fuzz_runtime_configs() {
    bolero::check!()
        .with_type::<String>()
        .with_iterations(iterations())
        .for_each(|text| {
            let _ = RuntimeConfig::parse(text, Path::new("rc.toml"));
            let _ = RuntimeConfig::parse(
                &format!(
                    "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
                    text.escape_default()
                ),
                Path::new("rc.toml"),
            );
        });
}

#[test]
fn fuzz_routes_and_paths() {
    bolero::check!()
        .with_type::<(Vec<String>, String)>()
        .with_iterations(iterations())
        .for_each(|(routes, path)| {
            let decls = routes.iter().enumerate().map(|(i, r)| RouteDecl {
                component: "c",
                route: r,
                line: i + 1,
            });
            if let Ok(router) = Router::build(decls) {
                for p in [path.as_str(), "/", "/a/b", ""] {
                    if let Some(m) = router.route(p) {
                        // What a component is told must be a prefix-free tail of the path.
                        assert!(m.path_info.len() <= p.len() + 1, "{m:?} for {p:?}");
                    }
                }
            }
        });
}

#[test]
fn fuzz_fault_specs() {
    bolero::check!()
        .with_type::<String>()
        .with_iterations(iterations())
        .for_each(|spec| {
            if let Ok(faults) = Faults::parse(spec) {
                let _ = faults.describe();
            }
        });
}

#[test]
fn a_line_is_named_for_any_offset() {
    // Offsets inside a multi-byte character or past the end still name a line.
    assert_eq!(crate::manifest::line_of("aé\nb", 2), 1);
    assert_eq!(crate::manifest::line_of("aé\nb", 4), 2);
    assert_eq!(crate::manifest::line_of("a\nb", 99), 2);
}
