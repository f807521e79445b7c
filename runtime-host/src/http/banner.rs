//! The start-up banner: where the app is served, its routes, state
//! directory and variables.

use super::trigger::{HttpKind, HttpTrigger};
use crate::manifest::{App, RouteSpec};
use crate::state::AppContext;
use std::net::SocketAddr;
use std::path::Path;

pub fn print_banner(
    app: &App,
    trigger: &HttpTrigger,
    ctx: &AppContext,
    local: SocketAddr,
    state_dir: &Path,
) {
    println!("Serving http://{local}");
    println!("Application: {}", app.name);
    println!("Available Routes:");
    for r in trigger.router().routes() {
        let shown = r.raw.strip_suffix("/...").unwrap_or(&r.raw);
        let wildcard = if r.wildcard { " (wildcard)" } else { "" };
        let kind = match trigger.kind_of(&r.component) {
            Some(HttpKind::P3) => "wasip3",
            _ => "wasip2",
        };
        println!(
            "  {}: http://{local}{shown}{wildcard} [{kind}]",
            r.component
        );
    }
    for t in &app.http_triggers {
        if t.route == RouteSpec::Private {
            println!(
                "  {}: private (reachable as http://{}.spin.internal)",
                t.component, t.component
            );
        }
    }
    println!("State directory: {}", state_dir.display());
    for line in ctx.variables.describe() {
        println!("  variable {line}");
    }
}
