//! Project tasks: `cargo xtask <build|up|test>`.
//!
//! - `build`: installs the `wasm32-wasip2` target if missing, builds every
//!   component and test fixture for it in release, and builds the host.
//! - `up [-- ARGS]`: `build`, then serves `spin.toml` on
//!   `http://127.0.0.1:3000` with state under `.spin/`; ARGS go to
//!   `runtime-host up` (`cargo xtask up -- --listen 127.0.0.1:4000`).
//! - `test [-- ARGS]`: `build`, installs what black-box tests need
//!   (`redis-server`), then runs every test of the workspace; ARGS go to
//!   `cargo test` (e.g. a test name filter).
//! - `bench [--quick]`: `build`, then load-tests the host with `wrk` and
//!   writes `docs/benchmarks.md`.

mod bench;

use anyhow::{bail, Context as _, Result};
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
            if !rest.iter().any(|a| a == "--no-build") {
                build(&root)?;
            }
            bench::run(&root, rest.iter().any(|a| a == "--quick"))
        }
        "help" | "--help" | "-h" => {
            println!("usage: cargo xtask <build | up [-- runtime-host args] | test [-- cargo test args] | bench [--quick] [--no-build]>");
            Ok(())
        }
        other => bail!("unknown task `{other}`; try `cargo xtask help`"),
    }
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
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
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
    let mut names = Vec::new();
    for dir in ["components", "tests/fixtures"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
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
    run_cmd(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "runtime-host"]),
    )
}

fn up(root: &Path, extra: &[String]) -> Result<()> {
    let host = target_dir(root).join("release/runtime-host");
    let mut cmd = Command::new(&host);
    cmd.current_dir(root).args(["up", "-f", "spin.toml"]);
    if !extra.iter().any(|a| a == "--listen") {
        cmd.args(["--listen", "127.0.0.1:3000"]);
    }
    if !extra.iter().any(|a| a == "--state-dir") {
        cmd.args(["--state-dir", ".spin"]);
    }
    cmd.args(extra);
    run_cmd(&mut cmd)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    ensure_redis()?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["test", "--release", "--workspace"])
        .args(
            wasm_packages(root)?
                .iter()
                .flat_map(|p| ["--exclude".to_string(), p.clone()]),
        )
        .args(extra)
        .env("APP_TARGET_DIR", target_dir(root));
    run_cmd(&mut cmd)
}

/// Black-box tests start their own `redis-server`; make sure there is one.
fn ensure_redis() -> Result<()> {
    if which("redis-server") {
        return Ok(());
    }
    apt_install("redis-server")
}

/// Installs a Debian package (as root, or with sudo), or explains how to.
fn apt_install(package: &str) -> Result<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let sudo = !is_root && which("sudo");
    if (!is_root && !sudo) || !which("apt-get") {
        bail!("this task needs `{package}`; install the Debian/Ubuntu package `{package}` (apt-get install {package}) and run again");
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
    apt(&["install", "-y", "-qq", package])?;
    if !which(package) {
        bail!("installed the `{package}` package but `{package}` is still not on PATH");
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}
