//! Project tasks: `cargo xtask <build|up|test>`.
//!
//! - `build`: installs the `wasm32-wasip2` target if missing, builds every
//!   component and test fixture for it in release, and builds the host.
//! - `up [-- ARGS]`: `build`, then serves `spin.toml` on
//!   `http://127.0.0.1:3000` with state under `.spin/`; ARGS go to
//!   `runtime-host up` (`cargo xtask up -- --listen 127.0.0.1:4000`).
//!   On first run it generates development token keys under
//!   `<state-dir>/dev-keys/` and passes them as variables (and says so).
//! - `test [-- ARGS]`: `build`, installs what black-box tests need
//!   (`redis-server`, `mosquitto`, `postgresql`), then runs every test of the
//!   workspace, and the app's black-box suites again on PostgreSQL; ARGS go to
//!   `cargo test` (e.g. a test name filter).
//! - `bench [--quick] [--no-build] [--app-only] [--node DIR]`: `build`, then
//!   load-tests the host with `wrk` and writes `docs/benchmarks.md`.
//!   `--node DIR` measures the Node/Express baseline in DIR (e.g.
//!   `../shared/baselines/node-express`) in the same run and prints every
//!   route's ratio to it against issue 16's targets; `--app-only` measures
//!   only the app (and Node), for quick iterations.
//! - `soak [--minutes N]`: `build`, then N minutes (default 10) of mixed
//!   traffic with faults injected, reporting memory, files, descriptors and
//!   keys at start and end (`tests/tests/soak.rs`; not part of `test`).
//! - `fuzz [--iterations N]`: the fuzz targets (`fuzz_*` tests) with a long
//!   campaign each (default 1,000,000 inputs); `test` runs them briefly.
//! - `release <component> [--commit REV] [--out DIR]`: builds one component
//!   reproducibly from a commit into `dist/<component>-<version>.wasm` with
//!   its release manifest (see [`release`]).
//! - `compat <component> --against DIR [--candidate FILE]`: checks that the
//!   component keeps the contracts the releases in DIR rely on (see [`compat`]).

mod bench;
mod compat;
mod edge;
mod release;

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, rest)) => (t.as_str(), rest),
        None => ("help", &[][..]),
    };
    let passthrough: Vec<String> = match rest.iter().position(|a| a == "--") {
        Some(i) => rest[i + 1..].to_vec(),
        None => rest.to_vec(),
    };
    let root = workspace_root();
    match task {
        "build" => build(&root),
        "up" => {
            build(&root)?;
            up(&root, &passthrough)
        }
        "test" => {
            build(&root)?;
            test(&root, &passthrough)
        }
        "bench" => {
            let has = |flag: &str| rest.iter().any(|a| a == flag);
            let node = match flag_value(rest, "--node") {
                Some(dir) if !dir.starts_with("--") => Some(PathBuf::from(dir)),
                _ if has("--node") => bail!("--node needs the Node/Express baseline's directory"),
                _ => None,
            };
            let options = bench::Options {
                quick: has("--quick"),
                app_only: has("--app-only"),
                node,
            };
            if !has("--no-build") {
                build(&root)?;
            }
            bench::run(&root, &options)
        }
        "soak" => {
            build(&root)?;
            let minutes = flag_value(rest, "--minutes").unwrap_or("10");
            soak(&root, minutes)
        }
        "fuzz" => fuzz(&root, flag_value(rest, "--iterations").unwrap_or("1000000")),
        "edge-manifest" => edge::write(&root),
        "release" => {
            ensure_wasm_target()?;
            release::command(&root, rest)
        }
        "compat" => compat::command(&root, rest),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <build | up [-- runtime-host args] | test [-- cargo test args] | bench [--quick] [--no-build] [--app-only] [--node DIR] | soak [--minutes N] | fuzz [--iterations N] | edge-manifest | release <component> [--commit REV] [--out DIR] | compat <component> --against <release dir> [--candidate FILE]>"
            );
            Ok(())
        }
        other => bail!("unknown task `{other}`; try `cargo xtask help`"),
    }
}

/// The value after `name` in `args`.
fn flag_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = redact_secrets(&format!("{cmd:?}"));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// `shown` with the value of every secret variable argument hidden, so a
/// failed command's message never prints a signing key.
fn redact_secrets(shown: &str) -> String {
    const SECRET: &str = "jwt_signing_key=";
    let mut out = String::new();
    let mut rest = shown;
    while let Some(at) = rest.find(SECRET) {
        out.push_str(&rest[..at + SECRET.len()]);
        out.push_str("<secret>");
        rest = &rest[at + SECRET.len()..];
        rest = &rest[rest.find('"').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context(
            "`rustup` is needed to install the wasm32-wasip2 target; install Rust with rustup",
        )?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {WASM_TARGET} target");
    run_cmd(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// Package names of every WebAssembly crate: `components/*` (except the
/// shared library) and `tests/fixtures/*`.
fn wasm_packages(root: &Path) -> Result<Vec<String>> {
    let mut names = packages_in(root, "components")?;
    names.extend(packages_in(root, "tests/fixtures")?);
    Ok(names)
}

/// Package names of the component (cdylib) crates directly under `dir`.
fn packages_in(root: &Path, dir: &str) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut names = Vec::new();
    for path in paths {
        let manifest = path.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        if !text.contains("cdylib") {
            continue; // a library, not a component
        }
        let name = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("name = \"")
                    .and_then(|r| r.strip_suffix('"'))
            })
            .with_context(|| format!("no package name in {}", manifest.display()))?;
        names.push(name.to_string());
    }
    Ok(names)
}

fn build(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let packages = wasm_packages(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--release", "--target", WASM_TARGET]);
    for p in &packages {
        cmd.args(["-p", p]);
    }
    eprintln!("xtask: building {} WebAssembly components", packages.len());
    run_cmd(&mut cmd)?;
    eprintln!("xtask: building runtime-host");
    // The host with the same feature set `cargo test --workspace` resolves,
    // so the test run reuses this build instead of compiling it again.
    run_cmd(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "--workspace"])
            .args(exclude_args(&packages)),
    )
}

fn exclude_args(packages: &[String]) -> Vec<String> {
    packages
        .iter()
        .flat_map(|p| ["--exclude".to_string(), p.clone()])
        .collect()
}

fn up(root: &Path, extra: &[String]) -> Result<()> {
    let host = target_dir(root).join("release/runtime-host");
    let mut cmd = Command::new(&host);
    cmd.current_dir(root).args(["up", "-f", "spin.toml"]);
    if !extra.iter().any(|a| a == "--listen") {
        cmd.args(["--listen", "127.0.0.1:3000"]);
    }
    let state_dir = match extra.iter().position(|a| a == "--state-dir") {
        Some(i) => PathBuf::from(extra.get(i + 1).context("--state-dir needs a value")?),
        None => {
            cmd.args(["--state-dir", ".spin"]);
            PathBuf::from(".spin")
        }
    };
    for (name, value) in dev_token_keys(&root.join(&state_dir), extra)? {
        // In the environment, not the arguments: other local users can list
        // a process's arguments (`ps`), not its environment.
        cmd.env(
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value,
        );
    }
    // The relay and sweeper run on a schedule, as a platform's cron would
    // call them (docs: README, "Records in PostgreSQL").
    if !extra.iter().any(|a| a == "--schedule") {
        if let Some(token) = dev_maintenance_token(&root.join(&state_dir), extra)? {
            cmd.env("SPIN_VARIABLE_MAINTENANCE_TOKEN", token);
        }
        cmd.args(["--schedule", MAINTENANCE_SCHEDULE]).args([
            "--schedule-header",
            "authorization: Bearer {{ maintenance_token }}",
        ]);
    }
    cmd.args(extra);
    run_cmd(&mut cmd)
}

/// How often `cargo xtask up` has the host call `POST /maintenance/run`.
const MAINTENANCE_SCHEDULE: &str = "30s=/maintenance/run";

/// A development `maintenance_token` under `<state-dir>/dev-keys/`, made on
/// first use; `None` when one is given explicitly.
fn dev_maintenance_token(state_dir: &Path, extra: &[String]) -> Result<Option<String>> {
    let given = extra.iter().any(|a| a.starts_with("maintenance_token="))
        || std::env::var_os("SPIN_VARIABLE_MAINTENANCE_TOKEN").is_some();
    if given {
        return Ok(None);
    }
    let path = state_dir.join("dev-keys/maintenance_token");
    if !path.is_file() {
        let seed = ed25519_compact::Seed::generate();
        let token: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(path.parent().unwrap())
            .with_context(|| format!("create {}", path.display()))?;
        write_private(&path, &token)?;
    }
    let token =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(Some(token.trim().to_string()))
}

/// Development token keys for a local run: an Ed25519 key pair generated
/// under `<state-dir>/dev-keys/` on first use (never in the repository),
/// given to the app as the `jwt_signing_key` and `jwt_public_keys`
/// variables. Keys passed explicitly (`--variable jwt_signing_key=...` or
/// `SPIN_VARIABLE_JWT_SIGNING_KEY`) win and nothing is generated.
fn dev_token_keys(state_dir: &Path, extra: &[String]) -> Result<Vec<(&'static str, String)>> {
    let given = |name: &str| {
        extra.iter().any(|a| a.starts_with(&format!("{name}=")))
            || std::env::var_os(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())).is_some()
    };
    if given("jwt_signing_key") {
        return Ok(Vec::new());
    }
    let dir = state_dir.join("dev-keys");
    let signing_path = dir.join("jwt_signing_key");
    let public_path = dir.join("jwt_public_keys");
    if signing_path.is_file() && public_path.is_file() {
        eprintln!(
            "xtask: using the development token keys in {}",
            dir.display()
        );
    } else {
        use ct_codecs::{Base64, Encoder};
        let key_pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::generate());
        let kid = format!(
            "dev-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        let encode = |bytes: &[u8]| {
            Base64::encode_to_string(bytes).map_err(|e| anyhow::anyhow!("base64: {e}"))
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        write_private(&signing_path, &format!("{kid}:{}", encode(&key_pair[..])?))?;
        write_private(
            &public_path,
            &format!("{kid}:{}", encode(&key_pair.pk[..])?),
        )?;
        eprintln!(
            "xtask: generated a development Ed25519 token key pair (kid {kid}) in {}; \
             it is passed to the app with --variable, for local use only",
            dir.display()
        );
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .with_context(|| format!("read {}", p.display()))
    };
    let mut variables = vec![("jwt_signing_key", read(&signing_path)?)];
    if !given("jwt_public_keys") {
        variables.push(("jwt_public_keys", read(&public_path)?));
    }
    Ok(variables)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("write {}", path.display()))
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    ensure_test_servers()?;
    // The components' business rules, compiled natively. Only the library
    // test harness: a component's cdylib does not link for the host target.
    let components = packages_in(root, "components")?;
    if !components.is_empty() {
        let mut cmd = cargo();
        cmd.current_dir(root).args(["test", "--release", "--lib"]);
        for p in &components {
            cmd.args(["-p", p]);
        }
        run_cmd(&mut cmd)?;
    }
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["test", "--release", "--workspace"])
        .args(exclude_args(&wasm_packages(root)?))
        .args(extra)
        .env("APP_TARGET_DIR", target_dir(root));
    run_cmd(&mut cmd)?;
    // The same black-box suites again with every record in PostgreSQL.
    run_suites(
        root,
        BOTH_ENGINE_SUITES,
        extra,
        &[("APP_TEST_DATABASE", "postgres")],
    )?;
    // And as on the edge platform: the edge manifest under
    // `runtime-host up --platform edge`, PostgreSQL and Redis.
    run_suites(root, EDGE_SUITES, extra, &[("APP_TEST_PLATFORM", "edge")])?;
    // Mixed versions: the releases recorded in `releases/`, rebuilt from
    // their commits (which proves them reproducible), served over HTTP and
    // pinned by digest: the previous `users` among the current others, then
    // the current `users` among the others' releases.
    let releases = target_dir(root).join("releases");
    let _ = std::fs::remove_dir_all(&releases);
    let recorded = release::reproduce(root, &root.join(release::RECORD_DIR), &releases)?;
    let others: Vec<&str> = recorded
        .iter()
        .filter_map(|m| m["name"].as_str())
        .filter(|name| *name != "users")
        .collect();
    let releases = releases.to_string_lossy();
    for from_release in ["users".to_string(), others.join(",")] {
        eprintln!("xtask: black-box suites with {from_release} from releases/");
        run_suites(
            root,
            MIXED_VERSION_SUITES,
            extra,
            &[
                ("APP_TEST_RELEASES", &releases),
                ("APP_TEST_FROM_RELEASE", &from_release),
            ],
        )?;
    }
    Ok(())
}

/// Runs black-box `suites` of app-tests with more environment variables
/// (`mode`) choosing how the harness starts the app.
fn run_suites(root: &Path, suites: &[&str], extra: &[String], mode: &[(&str, &str)]) -> Result<()> {
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["test", "--release", "-p", "app-tests"]);
    for suite in suites {
        cmd.args(["--test", suite]);
    }
    cmd.args(extra).env("APP_TARGET_DIR", target_dir(root));
    for (name, value) in mode {
        cmd.env(name, value);
    }
    run_cmd(&mut cmd)
}

/// The black-box suites run with components taken from their releases:
/// the ones that exercise what users and the others share (tokens auth
/// issues and every component verifies, profiles read by orders,
/// `user.deleted` consumed by order-events).
const MIXED_VERSION_SUITES: &[&str] = &["users", "orders", "notifications"];

/// The black-box suites of every component, run a third time as on the
/// edge platform.
const EDGE_SUITES: &[&str] = &[
    "api_common",
    "auth",
    "users",
    "orders",
    "order_status_preconditions",
    "notifications",
    "uploads",
    "metrics",
];

/// The black-box suites that run on SQLite and again on PostgreSQL.
const BOTH_ENGINE_SUITES: &[&str] = &[
    "auth",
    "users",
    "orders",
    "order_status_preconditions",
    "notifications",
    "uploads",
];

/// The soak test: long mixed traffic with faults, a report at the end.
fn soak(root: &Path, minutes: &str) -> Result<()> {
    let minutes: u64 = minutes
        .parse()
        .with_context(|| format!("--minutes `{minutes}` is not a whole number"))?;
    ensure_test_servers()?;
    run_cmd(
        cargo()
            .current_dir(root)
            .args(["test", "--release", "-p", "app-tests", "--test", "soak"])
            .args(["--", "--ignored", "--nocapture"])
            .env("SOAK_SECONDS", (minutes * 60).to_string())
            .env("APP_TARGET_DIR", target_dir(root)),
    )
}

/// Every `fuzz_*` target with a long random campaign.
fn fuzz(root: &Path, iterations: &str) -> Result<()> {
    let _: u64 = iterations
        .parse()
        .with_context(|| format!("--iterations `{iterations}` is not a whole number"))?;
    // The host is a binary crate; the components' libraries are tested as
    // libraries (their cdylib does not link natively).
    let host = ["--bin", "runtime-host", "-p", "runtime-host"];
    let libraries = ["--lib", "-p", "app-common", "-p", "uploads"];
    for selection in [&host[..], &libraries[..]] {
        run_cmd(
            cargo()
                .current_dir(root)
                .args(["test", "--release"])
                .args(selection)
                .args(["fuzz_", "--", "--nocapture"])
                .env("FUZZ_ITERATIONS", iterations),
        )?;
    }
    Ok(())
}

/// Whether a Debian package's programs are installed.
type Installed = fn() -> bool;

/// The servers black-box tests start on their own: (Debian package, whether
/// it is installed).
const TEST_SERVERS: &[(&str, Installed)] = &[
    ("redis-server", || which::which("redis-server").is_ok()),
    ("mosquitto", || {
        which::which("mosquitto").is_ok() || Path::new("/usr/sbin/mosquitto").is_file()
    }),
    ("postgresql", postgres_installed),
];

/// PostgreSQL's server programs live outside PATH on Debian.
fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            versions
                .flatten()
                .any(|v| v.path().join("bin/initdb").is_file())
        })
        .unwrap_or(false)
}

/// Black-box tests start their own `redis-server`, `mosquitto` and
/// PostgreSQL; make sure they are installed.
fn ensure_test_servers() -> Result<()> {
    for (package, installed) in TEST_SERVERS {
        if !installed() {
            apt_install(package)?;
            if !installed() {
                bail!(
                    "installed the Debian package `{package}` but its programs are still missing"
                );
            }
        }
    }
    Ok(())
}

/// Installs a Debian package (as root, or with sudo), or explains how to.
fn apt_install(package: &str) -> Result<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let sudo = !is_root && which::which("sudo").is_ok();
    if (!is_root && !sudo) || which::which("apt-get").is_err() {
        bail!(
            "this task needs `{package}`; install the Debian/Ubuntu package `{package}` (apt-get install {package}) and run again"
        );
    }
    eprintln!("xtask: installing {package} (Debian package)");
    let apt = |args: &[&str]| {
        let mut c = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_cmd(&mut c)
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", package])
}

#[cfg(test)]
mod tests {
    #[test]
    fn failed_commands_never_show_the_signing_key() {
        let shown = r#""runtime-host" "up" "--variable" "jwt_signing_key=dev-1:c2VjcmV0" "--variable" "jwt_public_keys=dev-1:cHVi""#;
        let redacted = super::redact_secrets(shown);
        assert!(!redacted.contains("c2VjcmV0"), "{redacted}");
        assert!(
            redacted.contains("jwt_signing_key=<secret>\""),
            "{redacted}"
        );
        assert!(
            redacted.contains("jwt_public_keys=dev-1:cHVi"),
            "{redacted}"
        );
    }
}
