//! `cargo xtask bench`: drives the host with `wrk` and prints a table of
//! requests/s and latency percentiles, written to `docs/benchmarks.md` too.
//!
//! Every figure is also shown as a ratio to a baseline measured in the same
//! run (the first scenario of its group), so the numbers compare across
//! machines. The host and `wrk` share the machine's cores, as a developer's
//! laptop would.

use anyhow::{Context as _, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One load run's result.
#[derive(Debug, Clone, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

struct Row {
    group: &'static str,
    scenario: String,
    connections: u32,
    figures: Figures,
    baseline_rps: Option<f64>,
}

struct RunningHost {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory of the benchmark, removed on drop.
fn scratch_dir(tag: &str) -> Result<TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("xtask-bench-{tag}-"))
        .tempdir()?)
}

fn fixtures_manifest(target: &Path) -> String {
    let wasm = |n: &str| {
        target
            .join("wasm32-wasip2/release")
            .join(format!("{n}.wasm"))
    };
    format!(
        r#"spin_manifest_version = 2
[application]
name = "bench"
[[trigger.http]]
route = "/p3/..."
component = "p3"
[[trigger.http]]
route = "/..."
component = "p2"
[component.p2]
source = "{}"
key_value_stores = ["default"]
[component.p3]
source = "{}"
key_value_stores = ["default"]
"#,
        wasm("fixture_p2_app").display(),
        wasm("fixture_p3_app").display()
    )
}

fn start_host(
    root: &Path,
    manifest: &str,
    state: Option<&Path>,
    args: &[&str],
) -> Result<(RunningHost, Duration)> {
    let dir = scratch_dir(&format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ))?;
    let manifest_path = dir.path().join("spin.toml");
    std::fs::write(&manifest_path, manifest)?;
    let state = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.path().join(".spin"));
    let started = Instant::now();
    let mut child = Command::new(super::target_dir(root).join("release/runtime-host"))
        .arg("up")
        .arg("-f")
        .arg(&manifest_path)
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start runtime-host")?;
    let port = serving_port(&mut child, "runtime-host")?;
    let host = RunningHost {
        child,
        port,
        _dir: dir,
    };
    Ok((host, started.elapsed()))
}

/// The port a server we started prints in its `Serving http://…` line.
/// Its stdout keeps being drained afterwards, so it never blocks on a full
/// pipe.
fn serving_port(child: &mut Child, what: &str) -> Result<u16> {
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let Some(line) = lines.next() else {
            bail!("{what} exited before serving");
        };
        if let Some(addr) = line?.strip_prefix("Serving http://") {
            break addr.rsplit(':').next().unwrap_or("").parse::<u16>()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(port)
}

/// Time from process start to the first 200 on `path`.
fn first_ok(host: &RunningHost, path: &str, since: Instant) -> Result<Duration> {
    loop {
        if let Ok(status) = http_status(host.port, path)
            && status == 200
        {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(120) {
            bail!("no 200 from {path} within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn http_status(port: u16, path: &str) -> Result<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    Ok(exchange(port, &request)?.0)
}

/// Sends one raw HTTP/1 request that closes the connection; the status and body.
fn exchange(port: u16, request: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(request.as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

fn wrk(
    port: u16,
    path: &str,
    method: &str,
    body: &str,
    connections: u32,
    seconds: u32,
) -> Result<Figures> {
    wrk_with(port, path, method, body, &[], connections, seconds)
}

fn wrk_with(
    port: u16,
    path: &str,
    method: &str,
    body: &str,
    headers: &[(&str, &str)],
    connections: u32,
    seconds: u32,
) -> Result<Figures> {
    let script = std::env::temp_dir().join(format!("xtask-wrk-{}.lua", std::process::id()));
    let mut lua = format!(
        "wrk.method = {method:?}\nwrk.body = {body:?}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    for (k, v) in headers {
        lua.push_str(&format!("wrk.headers[{k:?}] = {v:?}\n"));
    }
    std::fs::write(&script, lua)?;
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            // Slow answers count in the latency figures, not as errors.
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

fn parse_ms(v: &str) -> Option<f64> {
    let v = v.trim();
    if let Some(n) = v.strip_suffix("us") {
        return n.parse::<f64>().ok().map(|x| x / 1000.0);
    }
    if let Some(n) = v.strip_suffix("ms") {
        return n.parse().ok();
    }
    if let Some(n) = v.strip_suffix('s') {
        return n.parse::<f64>().ok().map(|x| x * 1000.0);
    }
    None
}

fn parse_wrk(text: &str) -> Option<Figures> {
    let mut f = Figures::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            f.rps = v.trim().parse().ok()?;
        } else if let Some(v) = t.strip_prefix("50%") {
            f.p50_ms = parse_ms(v)?;
        } else if let Some(v) = t.strip_prefix("99%") {
            f.p99_ms = parse_ms(v)?;
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            f.errors += v.trim().parse::<u64>().ok()?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            f.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    (f.rps > 0.0).then_some(f)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn run(root: &Path, quick: bool) -> Result<()> {
    if which::which("wrk").is_err() {
        super::apt_install("wrk")?;
    }
    let seconds = if quick { 2 } else { 5 };
    let target = super::target_dir(root);
    let manifest = fixtures_manifest(&target);
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // Group 1: instance strategy and allocator, on the smallest request.
    let strategies: [(&str, &[&str], &str); 5] = [
        (
            "p2, fresh instance per request (Spin's behaviour, default)",
            &[],
            "/hello?headers",
        ),
        (
            "p2, instance reuse (--reuse-p2-instances)",
            &["--reuse-p2-instances"],
            "/hello?headers",
        ),
        (
            "p2, fresh instances, on-demand allocator (--no-pooling)",
            &["--no-pooling"],
            "/hello?headers",
        ),
        (
            "p3, concurrent instance reuse (default)",
            &[],
            "/p3/x/headers",
        ),
        (
            "p3, fresh instance per request (--fresh-instances)",
            &["--fresh-instances"],
            "/p3/x/headers",
        ),
    ];
    for (name, args, path) in strategies {
        let (host, _) = start_host(root, &manifest, None, args)?;
        for c in [32, 256] {
            wrk(host.port, path, "GET", "", c, 1)?; // warm-up
            let f = wrk(host.port, path, "GET", "", c, seconds)?;
            rows.push(Row {
                group: "instance strategy (GET, echo headers)",
                scenario: name.to_string(),
                connections: c,
                figures: f,
                baseline_rps: None,
            });
        }
    }

    // Group 2: the key-value write path.
    let (host, _) = start_host(root, &manifest, None, &[])?;
    for (name, method, path) in [
        (
            "key-value set (fermyon:spin/key-value)",
            "PUT",
            "/kv/default/bench",
        ),
        (
            "atomic increment (wasi:keyvalue/atomics)",
            "POST",
            "/incr/default/bench-counter",
        ),
    ] {
        for c in [32, 256] {
            let f = wrk(host.port, path, method, "value", c, seconds)?;
            rows.push(Row {
                group: "key-value writes (p2, fresh instance each)",
                scenario: name.to_string(),
                connections: c,
                figures: f,
                baseline_rps: None,
            });
        }
    }
    // Memory under load.
    let idle = rss_kib(host.child.id()).unwrap_or(0);
    let pid = host.child.id();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    });
    wrk(host.port, "/hello?headers", "GET", "", 256, 2)?;
    let peak = sampler.join().unwrap_or(0);
    notes.push(format!(
        "Host RSS: {:.1} MiB idle (after the runs above), {:.1} MiB peak at 256 connections.",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    ));
    drop(host);

    // The real app (spin.toml): health, an authenticated cached read, login.
    app_scenarios(root, seconds, &mut rows, &mut notes)?;

    // Cold start: empty compiled-code cache, then warm.
    let state = scratch_dir("cold")?;
    let t0 = Instant::now();
    let (host, _) = start_host(root, &manifest, Some(state.path()), &[])?;
    let cold = first_ok(&host, "/hello?headers", t0)?;
    drop(host);
    let t1 = Instant::now();
    let (host, _) = start_host(root, &manifest, Some(state.path()), &[])?;
    let warm = first_ok(&host, "/hello?headers", t1)?;
    drop(host);
    notes.push(format!(
        "Cold start (process start → first 200, 2 components): {:.0} ms with an empty compiled-code cache, {:.0} ms with a warm one ({:.1}× faster).",
        cold.as_secs_f64() * 1000.0,
        warm.as_secs_f64() * 1000.0,
        cold.as_secs_f64() / warm.as_secs_f64().max(1e-9)
    ));

    // Baselines: first row of each group at the same connection count.
    let baselines: Vec<(&str, u32, f64)> = rows
        .iter()
        .map(|r| (r.group, r.connections, r.figures.rps))
        .fold(Vec::new(), |mut acc, (g, c, rps)| {
            if !acc.iter().any(|(ag, ac, _)| *ag == g && *ac == c) {
                acc.push((g, c, rps));
            }
            acc
        });
    for r in &mut rows {
        r.baseline_rps = baselines
            .iter()
            .find(|(g, c, _)| *g == r.group && *c == r.connections)
            .map(|b| b.2);
    }

    let report = render(&rows, &notes);
    println!("{report}");
    let errors: u64 = rows.iter().map(|r| r.figures.errors).sum();
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(root.join("docs/benchmarks.md"), report)?;
    eprintln!("xtask: wrote docs/benchmarks.md");
    if errors > 0 {
        bail!("{errors} requests failed during the benchmark");
    }
    Ok(())
}

/// `spin.toml` with absolute component paths, so it runs from a temp dir.
fn app_manifest(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("spin.toml")).context("read spin.toml")?;
    let target = super::target_dir(root);
    Ok(text
        .lines()
        .map(
            |line| match line.trim().strip_prefix("source = \"target/") {
                Some(rest) => format!("source = \"{}/{}", target.display(), rest),
                None => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n"))
}

fn http_json(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(port, &request)
}

/// The same work as the components' `/health` and `/api/users/me`, compiled
/// natively behind plain hyper (`bench/native-baseline`).
fn native_baseline(
    root: &Path,
    public_keys: &str,
    profile: &str,
    bearer: &str,
    seconds: u32,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let state = scratch_dir("native")?;
    let mut child = Command::new(super::target_dir(root).join("release/native-baseline"))
        .args(["127.0.0.1:0"])
        .arg(state.path())
        .args([public_keys, profile])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(state.path().join("stderr.log"))?)
        .spawn()
        .context("start native-baseline (cargo build --release -p native-baseline)")?;
    let port = serving_port(&mut child, "native-baseline")?;
    let group = "native baseline (same logic, no WebAssembly)";
    let auth = [("Authorization", bearer)];
    let result = (|| -> Result<()> {
        for c in [32, 256] {
            wrk(port, "/health", "GET", "", c, 1)?;
            let f = wrk(port, "/health", "GET", "", c, seconds)?;
            rows.push(Row {
                group,
                scenario: "GET /health".into(),
                connections: c,
                figures: f,
                baseline_rps: None,
            });
            let f = wrk_with(port, "/api/users/me", "GET", "", &auth, c, seconds)?;
            rows.push(Row {
                group,
                scenario: "GET /api/users/me (EdDSA verify + cached read)".into(),
                connections: c,
                figures: f,
                baseline_rps: None,
            });
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.with_context(|| {
        format!(
            "native baseline failed; its stderr:\n{}",
            std::fs::read_to_string(state.path().join("stderr.log")).unwrap_or_default()
        )
    })
}

fn http_json_auth(port: u16, path: &str, bearer: &str) -> Result<(u16, String)> {
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: {bearer}\r\n\r\n");
    exchange(port, &request)
}

/// A valid order: two items, totals computed by the server.
const ORDER: &str = r#"{"items":[{"productId":"sku-1","quantity":2,"unitPrice":1250},{"productId":"sku-2","quantity":1,"unitPrice":399}],"shippingAddress":{"street":"1 Main St","city":"Springfield","state":"IL","zipCode":"62701","country":"US"},"currency":"USD"}"#;

/// Reference figures for the same routes on this kind of machine (2 cores,
/// `wrk -t2 -c64`): a 2-worker Node.js/Express cluster written the seeds'
/// way, and the released Spin 4.0.2 (issue 8 of the project).
const REFERENCES: [(&str, &str, f64); 5] = [
    ("GET /health", "Node.js/Express cluster", 16_700.0),
    ("GET /api/users/me", "Node.js/Express cluster", 7_700.0),
    ("POST /api/orders", "Node.js/Express cluster", 3_400.0),
    (
        "p2, fresh instance per request",
        "Spin 4.0.2, hello component",
        10_000.0,
    ),
    (
        "key-value set",
        "Spin 4.0.2, one set + one increment",
        800.0,
    ),
];

fn app_scenarios(
    root: &Path,
    seconds: u32,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let manifest = app_manifest(root)?;
    let keys_dir = scratch_dir("keys")?;
    let mut args: Vec<String> = Vec::new();
    let mut public_keys = String::new();
    for (name, value) in super::dev_token_keys(keys_dir.path(), &[])? {
        if name == "jwt_public_keys" {
            public_keys = value.clone();
        }
        args.push("--variable".into());
        args.push(format!("{name}={value}"));
    }
    // Benchmarks measure throughput, not the rate limiter's refusals.
    for v in [
        "api_rate_limit=100000000",
        "credentials_rate_limit=100000000",
    ] {
        args.push("--variable".into());
        args.push(v.into());
    }
    const FRESH: &str = "app: fresh instance per request (default)";
    const NO_METRICS: &str = "app: fresh instances, metrics recording off";
    for (group, extra) in [
        (FRESH, &[][..]),
        (
            "app: instance reuse (--reuse-p2-instances)",
            &["--reuse-p2-instances"][..],
        ),
        (NO_METRICS, &["--variable", "metrics_recording=off"][..]),
    ] {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        let (host, _) = start_host(root, &manifest, None, &all)?;
        let credentials = r#"{"email":"bench@example.com","password":"a long and unusual passphrase for load tests"}"#;
        let register = r#"{"name":"Bench","email":"bench@example.com","password":"a long and unusual passphrase for load tests"}"#;
        let (status, body) = http_json(host.port, "POST", "/api/auth/register", register)?;
        if status != 201 {
            bail!("bench user registration failed: {status} {body}");
        }
        let (status, body) = http_json(host.port, "POST", "/api/auth/login", credentials)?;
        let token = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["accessToken"].as_str().map(str::to_string))
            .with_context(|| format!("login failed: {status} {body}"))?;
        let bearer = format!("Bearer {token}");
        if group == FRESH {
            let (_, profile) = http_json_auth(host.port, "/api/users/me", &bearer)?;
            native_baseline(root, &public_keys, &profile, &bearer, seconds, rows)?;
        }
        for c in [32, 256] {
            wrk(host.port, "/health", "GET", "", c, 1)?;
            let f = wrk(host.port, "/health", "GET", "", c, seconds)?;
            rows.push(Row {
                group,
                scenario: "GET /health".into(),
                connections: c,
                figures: f,
                baseline_rps: None,
            });
            let auth = [("Authorization", bearer.as_str())];
            let f = wrk_with(host.port, "/api/users/me", "GET", "", &auth, c, seconds)?;
            rows.push(Row {
                group,
                scenario: "GET /api/users/me (EdDSA verify + cached read)".into(),
                connections: c,
                figures: f,
                baseline_rps: None,
            });
            let f = wrk_with(host.port, "/api/orders", "POST", ORDER, &auth, c, seconds)?;
            rows.push(Row {
                group,
                scenario: "POST /api/orders (SQLite transaction + outbox + publish)".into(),
                connections: c,
                figures: f,
                baseline_rps: None,
            });
        }
        if group == NO_METRICS {
            continue;
        }
        // Login is bound by Argon2id (19 MiB, t=2): a few connections saturate it.
        let f = wrk(
            host.port,
            "/api/auth/login",
            "POST",
            credentials,
            4,
            seconds,
        )?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        notes.push(format!(
            "POST /api/auth/login, {group}: {:.1} logins/s, {:.1} per core, p50 {:.0} ms (Argon2id m=19 MiB, t=2, p=1).",
            f.rps,
            f.rps / cores,
            f.p50_ms
        ));
        rows.push(Row {
            group,
            scenario: "POST /api/auth/login (Argon2id)".into(),
            connections: 4,
            figures: f,
            baseline_rps: None,
        });
    }
    // Against the reference figures (best of the two instance strategies,
    // at 32 connections, the closest to their -c64).
    for (prefix, reference, rps) in REFERENCES {
        let best = rows
            .iter()
            .filter(|r| {
                r.scenario.starts_with(prefix)
                    && r.connections == 32
                    && r.group != NO_METRICS
                    && !r.group.starts_with("native")
            })
            .map(|r| r.figures.rps)
            .fold(0.0, f64::max);
        if best > 0.0 {
            notes.push(format!(
                "{prefix}: {best:.0} req/s, {:.2}× {reference} ({rps:.0} req/s).",
                best / rps
            ));
        }
    }
    // What WebAssembly isolation costs: the app against the native baseline.
    for scenario in [
        "GET /health",
        "GET /api/users/me (EdDSA verify + cached read)",
    ] {
        let find = |group: &str| {
            rows.iter().find(|r| {
                r.group.starts_with(group) && r.scenario == scenario && r.connections == 32
            })
        };
        if let (Some(native), Some(fresh), Some(reuse)) = (
            find("native baseline"),
            find(FRESH),
            find("app: instance reuse"),
        ) {
            notes.push(format!(
                "WebAssembly isolation, {scenario} at 32 connections: p50 {:.2} ms native, {:.2} ms with a fresh instance ({:.1}× native latency), {:.2} ms with reuse ({:.1}×); throughput {:.0} / {:.0} / {:.0} req/s.",
                native.figures.p50_ms,
                fresh.figures.p50_ms,
                fresh.figures.p50_ms / native.figures.p50_ms.max(1e-9),
                reuse.figures.p50_ms,
                reuse.figures.p50_ms / native.figures.p50_ms.max(1e-9),
                native.figures.rps,
                fresh.figures.rps,
                reuse.figures.rps
            ));
        }
    }
    // What recording request metrics costs: the same requests with it off.
    for r in rows
        .iter()
        .filter(|r| r.group == FRESH && r.connections == 32)
    {
        if let Some(off) = rows
            .iter()
            .find(|o| o.group == NO_METRICS && o.scenario == r.scenario && o.connections == 32)
        {
            notes.push(format!(
                "Metric recording, {} at 32 connections: {:.0} req/s with it, {:.0} without ({:.2}× the throughput, p50 {:.2} ms vs {:.2} ms).",
                r.scenario,
                r.figures.rps,
                off.figures.rps,
                r.figures.rps / off.figures.rps.max(1e-9),
                r.figures.p50_ms,
                off.figures.p50_ms
            ));
        }
    }
    Ok(())
}

fn render(rows: &[Row], notes: &[String]) -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = format!(
        "# Benchmarks\n\nMeasured by `cargo xtask bench` on {date}, {cores} cores; `wrk -t2` on the same machine as the host.\nRatios compare with the first scenario of each group at the same connection count, measured in the same run.\nWhere the time goes: [performance.md](performance.md).\n\n"
    );
    let mut group = "";
    for r in rows {
        if r.group != group {
            group = r.group;
            out.push_str(&format!("\n## {group}\n\n| scenario | conns | req/s | vs baseline | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|\n"));
        }
        let ratio = r.baseline_rps.map(|b| r.figures.rps / b).unwrap_or(1.0);
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.2}× | {:.2} | {:.2} | {} |\n",
            r.scenario,
            r.connections,
            r.figures.rps,
            ratio,
            r.figures.p50_ms,
            r.figures.p99_ms,
            r.figures.errors
        ));
    }
    out.push_str("\n## Start-up and memory\n\n");
    for n in notes {
        out.push_str(&format!("- {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "  Latency Distribution\n     50%  412.00us\n     75%    1.10ms\n     90%    2.00ms\n     99%    5.21ms\n  100 requests in 1.00s\n  Non-2xx or 3xx responses: 3\nRequests/sec:  12345.67\n";
        let f = parse_wrk(text).unwrap();
        assert_eq!(f.rps, 12345.67);
        assert!((f.p50_ms - 0.412).abs() < 1e-9);
        assert_eq!(f.p99_ms, 5.21);
        assert_eq!(f.errors, 3);
    }
}
