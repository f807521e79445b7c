//! `cargo xtask bench`: drives the host with `wrk` and prints a table of
//! requests/s and latency percentiles, written to `docs/benchmarks.md` too.
//!
//! Every figure is also shown as a ratio to a baseline measured in the same
//! run (the first scenario of its group), so the numbers compare across
//! machines. The host and `wrk` share the machine's cores, as a developer's
//! laptop would.
//!
//! With `--node DIR` the Node/Express baseline (issue 16) runs in the same
//! run under the same load, and every route's ratio to it is printed with
//! the issue's targets.

use anyhow::{Context as _, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// What `cargo xtask bench` measures.
#[derive(Debug, Default)]
pub struct Options {
    /// 2-second runs instead of 5.
    pub quick: bool,
    /// Only the app's groups (and Node/Express when asked): no instance
    /// strategy, key-value, cold-start or native-baseline figures.
    pub app_only: bool,
    /// The Node/Express baseline's directory, measured in the same run.
    pub node: Option<PathBuf>,
}

/// One load run's result.
#[derive(Debug, Clone, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The slowest request.
    max_ms: f64,
    errors: u64,
}

struct Row {
    group: &'static str,
    scenario: String,
    connections: u32,
    figures: Figures,
    /// What "vs baseline" divides by; left `None`, the first row of the
    /// group at the same connection count.
    baseline_rps: Option<f64>,
}

impl Row {
    fn new(group: &'static str, scenario: &str, connections: u32, figures: Figures) -> Self {
        Row {
            group,
            scenario: scenario.to_string(),
            connections,
            figures,
            baseline_rps: None,
        }
    }
}

/// A route of the app under load, with issue 16's target for it.
struct Route {
    scenario: &'static str,
    method: &'static str,
    path: &'static str,
    body: &'static str,
    /// Sent with the bench user's bearer token.
    auth: bool,
    /// At least this multiple of Node/Express's throughput.
    target_vs_node: f64,
}

const HEALTH: Route = Route {
    scenario: "GET /health",
    method: "GET",
    path: "/health",
    body: "",
    auth: false,
    target_vs_node: 2.0,
};

const ORDERS: Route = Route {
    scenario: "POST /api/orders (SQLite transaction + outbox + publish)",
    method: "POST",
    path: "/api/orders",
    body: ORDER,
    auth: true,
    target_vs_node: 1.5,
};

/// The routes every app group measures; the native baseline has the first two.
const ROUTES: [Route; 3] = [
    HEALTH,
    Route {
        scenario: "GET /api/users/me (EdDSA verify + cached read)",
        method: "GET",
        path: "/api/users/me",
        body: "",
        auth: true,
        target_vs_node: 1.5,
    },
    ORDERS,
];

/// The connection count of the Node/Express comparison: issue 16's figure.
const NODE_CONNECTIONS: u32 = 64;
const NODE_GROUP: &str = "Node/Express vs runtime-host (64 connections, same run)";
/// Issue 16: p99 at most this multiple of p50 on every route.
const MAX_TAIL: f64 = 5.0;
/// Issue 16: no request slower than this.
const MAX_LATENCY_MS: f64 = 1000.0;

const CREDENTIALS: &str =
    r#"{"email":"bench@example.com","password":"a long and unusual passphrase for load tests"}"#;
const REGISTRATION: &str = r#"{"name":"Bench","email":"bench@example.com","password":"a long and unusual passphrase for load tests"}"#;

/// A server under load: its port and process, and the bench user's
/// `Authorization` value.
struct Target<'a> {
    port: u16,
    pid: u32,
    bearer: &'a str,
}

impl Target<'_> {
    /// Loads each of `routes` in turn at `connections` (after a 1 s warm-up
    /// on the first), a row each in `group`. With `sample_memory`, the peak
    /// RSS of the server's process tree during the orders run.
    fn load_routes(
        &self,
        routes: &[Route],
        connections: u32,
        seconds: u32,
        group: &'static str,
        rows: &mut Vec<Row>,
        sample_memory: bool,
    ) -> Result<Option<Rss>> {
        let auth = [("Authorization", self.bearer)];
        let mut memory = None;
        for (i, route) in routes.iter().enumerate() {
            let headers = if route.auth { &auth[..] } else { &[] };
            let load = |seconds| {
                let (port, path, method, body) = (self.port, route.path, route.method, route.body);
                wrk_with(port, path, method, body, headers, connections, seconds)
            };
            if i == 0 {
                load(1)?;
            }
            let figures = if sample_memory && route.path == ORDERS.path {
                let (figures, peak) = peak_rss_during(self.pid, || load(seconds));
                memory = Some(peak);
                figures?
            } else {
                load(seconds)?
            };
            rows.push(Row::new(group, route.scenario, connections, figures));
        }
        Ok(memory)
    }
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
        } else if let Some(v) = t.strip_prefix("Latency") {
            // Thread stats: "Latency  avg  stdev  max  +/- stdev"; the
            // "Latency Distribution" heading has no figures.
            if let Some(max) = v.split_whitespace().nth(2).and_then(parse_ms) {
                f.max_ms = max;
            }
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

/// Resident memory of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Rss {
    kib: u64,
    processes: usize,
}

impl Rss {
    fn mib(self) -> f64 {
        self.kib as f64 / 1024.0
    }
}

/// The pid and parent pid in a `/proc/<pid>/stat` line. The command name
/// between them is in parentheses and may hold spaces and parentheses.
fn stat_parent(stat: &str) -> Option<(u32, u32)> {
    let (pid, rest) = stat.split_once(" (")?;
    let after_name = &rest[rest.rfind(") ")? + 2..];
    let ppid = after_name.split_whitespace().nth(1)?.parse().ok()?;
    Some((pid.trim().parse().ok()?, ppid))
}

/// `root` and every process descending from it, given (pid, parent) pairs.
fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        let children: Vec<u32> = parents
            .iter()
            .filter(|&&(pid, ppid)| ppid == parent && !tree.contains(&pid))
            .map(|&(pid, _)| pid)
            .collect();
        tree.extend(children);
        next += 1;
    }
    tree
}

/// `pid` and its descendants (a Node cluster's primary and its workers), by
/// the parent pids in `/proc/*/stat` (this kernel may lack
/// `/proc/<pid>/task/*/children`).
fn process_tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| stat_parent(&stat))
        .collect();
    descendants(pid, &parents)
}

/// Runs `work` while sampling, every 50 ms, the summed RSS of `pid` and its
/// descendants (found once, before `work`); `work`'s result and the peak.
fn peak_rss_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, Rss) {
    /// Stops the sampler however `work` ends.
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let pids = process_tree(pid);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = Rss::default();
            while !done.load(Ordering::Relaxed) {
                let kib = pids.iter().filter_map(|&p| rss_kib(p)).sum();
                peak = Rss {
                    kib: peak.kib.max(kib),
                    processes: pids.len(),
                };
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        let out = {
            let _done = Done(&done);
            work()
        };
        (out, sampler.join().unwrap_or_default())
    })
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn run(root: &Path, opts: &Options) -> Result<()> {
    if which::which("wrk").is_err() {
        super::apt_install("wrk")?;
    }
    // Installed before anything is measured, so a failing `npm ci` costs
    // no benchmark time.
    let node = opts.node.as_deref().map(NodeApp::prepare).transpose()?;
    let seconds = if opts.quick { 2 } else { 5 };
    let manifest = fixtures_manifest(&super::target_dir(root));
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    if !opts.app_only {
        instance_strategies(root, &manifest, seconds, &mut rows)?;
        key_value_writes(root, &manifest, seconds, &mut rows, &mut notes)?;
    }
    // The real app (spin.toml): health, an authenticated cached read, an
    // order, login.
    let host_memory = app_scenarios(root, opts, seconds, &mut rows, &mut notes)?;
    let mut node_errors = 0;
    if let Some(node) = &node {
        let (node_rows, node_memory) = node.measure(seconds)?;
        node_errors = node_rows.iter().map(|r| r.figures.errors).sum();
        compare_with_node(&node_rows, &mut rows, &mut notes);
        if let Some(host_memory) = host_memory {
            notes.push(memory_verdict(host_memory, node_memory));
        }
    }
    if !opts.app_only {
        cold_start(root, &manifest, &mut notes)?;
    }

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
    for r in rows.iter_mut().filter(|r| r.baseline_rps.is_none()) {
        r.baseline_rps = baselines
            .iter()
            .find(|(g, c, _)| *g == r.group && *c == r.connections)
            .map(|b| b.2);
    }

    let report = render(&rows, &notes);
    println!("{report}");
    // The Node/Express group repeats rows of the default group: each
    // request counts once.
    let errors: u64 = node_errors
        + rows
            .iter()
            .filter(|r| r.group != NODE_GROUP)
            .map(|r| r.figures.errors)
            .sum::<u64>();
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(root.join("docs/benchmarks.md"), report)?;
    eprintln!("xtask: wrote docs/benchmarks.md");
    if errors > 0 {
        bail!("{errors} requests failed during the benchmark");
    }
    Ok(())
}

/// Instance strategy and allocator, on the smallest request.
fn instance_strategies(
    root: &Path,
    manifest: &str,
    seconds: u32,
    rows: &mut Vec<Row>,
) -> Result<()> {
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
        let (host, _) = start_host(root, manifest, None, args)?;
        for c in [32, 256] {
            wrk(host.port, path, "GET", "", c, 1)?; // warm-up
            let f = wrk(host.port, path, "GET", "", c, seconds)?;
            rows.push(Row::new(
                "instance strategy (GET, echo headers)",
                name,
                c,
                f,
            ));
        }
    }
    Ok(())
}

/// The key-value write path, then the host's memory under load.
fn key_value_writes(
    root: &Path,
    manifest: &str,
    seconds: u32,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let (host, _) = start_host(root, manifest, None, &[])?;
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
            rows.push(Row::new(
                "key-value writes (p2, fresh instance each)",
                name,
                c,
                f,
            ));
        }
    }
    let pid = host.child.id();
    let idle = rss_kib(pid).unwrap_or(0);
    let (load, peak) = peak_rss_during(pid, || wrk(host.port, "/hello?headers", "GET", "", 256, 2));
    load?;
    notes.push(format!(
        "Host RSS: {:.1} MiB idle (after the runs above), {:.1} MiB peak at 256 connections.",
        idle as f64 / 1024.0,
        peak.mib()
    ));
    Ok(())
}

/// Process start to first 200: an empty compiled-code cache, then a warm one.
fn cold_start(root: &Path, manifest: &str, notes: &mut Vec<String>) -> Result<()> {
    let state = scratch_dir("cold")?;
    let t0 = Instant::now();
    let (host, _) = start_host(root, manifest, Some(state.path()), &[])?;
    let cold = first_ok(&host, "/hello?headers", t0)?;
    drop(host);
    let t1 = Instant::now();
    let (host, _) = start_host(root, manifest, Some(state.path()), &[])?;
    let warm = first_ok(&host, "/hello?headers", t1)?;
    drop(host);
    notes.push(format!(
        "Cold start (process start → first 200, 2 components): {:.0} ms with an empty compiled-code cache, {:.0} ms with a warm one ({:.1}× faster).",
        cold.as_secs_f64() * 1000.0,
        warm.as_secs_f64() * 1000.0,
        cold.as_secs_f64() / warm.as_secs_f64().max(1e-9)
    ));
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
    let target = Target {
        port,
        pid: child.id(),
        bearer,
    };
    let result = (|| -> Result<()> {
        for c in [32, 256] {
            target.load_routes(&ROUTES[..2], c, seconds, group, rows, false)?;
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

/// Registers and logs in the bench user on a fresh server; the
/// `Authorization` value for its requests.
fn bench_user(port: u16) -> Result<String> {
    let (status, body) = http_json(port, "POST", "/api/auth/register", REGISTRATION)?;
    if status != 201 {
        bail!("bench user registration failed: {status} {body}");
    }
    let (status, body) = http_json(port, "POST", "/api/auth/login", CREDENTIALS)?;
    let token = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["accessToken"].as_str().map(str::to_string))
        .with_context(|| format!("login failed: {status} {body}"))?;
    Ok(format!("Bearer {token}"))
}

/// A valid order: two items, totals computed by the server.
const ORDER: &str = r#"{"items":[{"productId":"sku-1","quantity":2,"unitPrice":1250},{"productId":"sku-2","quantity":1,"unitPrice":399}],"shippingAddress":{"street":"1 Main St","city":"Springfield","state":"IL","zipCode":"62701","country":"US"},"currency":"USD"}"#;

/// Reference figures for the same routes on this kind of machine (2 cores,
/// `wrk -t2 -c64`): the released Spin 4.0.2 (issue 8 of the project).
const SPIN_REFERENCES: [(&str, &str, f64); 2] = [
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

/// A 2-worker Node.js/Express cluster written the seeds' way, from an
/// earlier run on another machine. Only a fallback when `--node` is not
/// given: figures from another run do not compare well (issue 16 measured
/// the same service at 10.5k req/s on /health, not 16.7k), which is why
/// `--node DIR` measures it in the same run instead.
const NODE_REFERENCES: [(&str, &str, f64); 3] = [
    (
        "GET /health",
        "Node.js/Express cluster (an earlier run's figure; --node DIR measures it in this run)",
        16_700.0,
    ),
    (
        "GET /api/users/me",
        "Node.js/Express cluster (an earlier run's figure; --node DIR measures it in this run)",
        7_700.0,
    ),
    (
        "POST /api/orders",
        "Node.js/Express cluster (an earlier run's figure; --node DIR measures it in this run)",
        3_400.0,
    ),
];

/// The app's groups. With `--node`, the default group is measured at
/// [`NODE_CONNECTIONS`] too; then the host's peak RSS during its orders run
/// there is returned, to compare with Node's.
fn app_scenarios(
    root: &Path,
    opts: &Options,
    seconds: u32,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Result<Option<Rss>> {
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
    const NO_METRICS: &str = "app: fresh instances, metrics recording off";
    let mut host_memory = None;
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
        let bearer = bench_user(host.port)?;
        if group == FRESH && !opts.app_only {
            let (_, profile) = http_json_auth(host.port, "/api/users/me", &bearer)?;
            native_baseline(root, &public_keys, &profile, &bearer, seconds, rows)?;
        }
        let against_node = group == FRESH && opts.node.is_some();
        let connections: &[u32] = if against_node {
            &[32, NODE_CONNECTIONS, 256]
        } else {
            &[32, 256]
        };
        let target = Target {
            port: host.port,
            pid: host.child.id(),
            bearer: &bearer,
        };
        for &c in connections {
            let sample_memory = against_node && c == NODE_CONNECTIONS;
            let memory = target.load_routes(&ROUTES, c, seconds, group, rows, sample_memory)?;
            host_memory = host_memory.or(memory);
        }
        if group == NO_METRICS {
            continue;
        }
        // Login is bound by Argon2id (19 MiB, t=2): a few connections saturate it.
        let f = wrk(
            host.port,
            "/api/auth/login",
            "POST",
            CREDENTIALS,
            4,
            seconds,
        )?;
        notes.push(format!(
            "POST /api/auth/login, {group}: {:.1} logins/s, {:.1} per core, p50 {:.0} ms (Argon2id m=19 MiB, t=2, p=1).",
            f.rps,
            f.rps / cores() as f64,
            f.p50_ms
        ));
        rows.push(Row::new(group, "POST /api/auth/login (Argon2id)", 4, f));
    }
    // Against the reference figures (best of the two instance strategies,
    // at 32 connections, the closest to their -c64). Node's earlier figures
    // only stand in when Node is not measured in this run.
    let node_references: &[_] = if opts.node.is_some() {
        &[]
    } else {
        &NODE_REFERENCES
    };
    for &(prefix, reference, rps) in SPIN_REFERENCES.iter().chain(node_references) {
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
    Ok(host_memory)
}

/// The app's default group: what the Node/Express comparison measures.
const FRESH: &str = "app: fresh instance per request (default)";

/// The Node/Express baseline with its packages installed, ready to start.
struct NodeApp {
    /// Where `server.js` and `node_modules` are.
    dir: PathBuf,
    /// The copy (when one was made), the database and the server's log.
    work: TempDir,
}

impl NodeApp {
    /// `dir` in place when it has `node_modules`; otherwise a copy of it in a
    /// temp dir (`dir` may be read-only) with `npm ci` run there.
    fn prepare(dir: &Path) -> Result<NodeApp> {
        if !dir.join("server.js").is_file() {
            bail!(
                "--node {}: no server.js there; give the Node/Express baseline's directory (e.g. ../shared/baselines/node-express)",
                dir.display()
            );
        }
        let missing = |program: &str| {
            which::which(program).is_err().then(|| {
                anyhow::anyhow!(
                    "--node needs `{program}`: install Node.js 20 (or later) and npm (e.g. apt-get install nodejs npm, or from nodejs.org) and run again"
                )
            })
        };
        if let Some(e) = missing("node") {
            return Err(e);
        }
        let work = scratch_dir("node")?;
        if dir.join("node_modules").is_dir() {
            eprintln!(
                "xtask: using the Node/Express baseline in place ({} has node_modules)",
                dir.display()
            );
            return Ok(NodeApp {
                dir: dir.to_path_buf(),
                work,
            });
        }
        if let Some(e) = missing("npm") {
            return Err(e);
        }
        let copy = work.path().join("app");
        copy_tree(dir, &copy, &["node_modules", "data"])?;
        eprintln!(
            "xtask: installing the Node/Express baseline's packages (npm ci) in {}",
            copy.display()
        );
        super::run_cmd(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&copy)
                // stdout is the report's.
                .stdout(std::io::stderr()),
        )?;
        Ok(NodeApp { dir: copy, work })
    }

    /// Starts `node server.js` with one cluster worker per core on a free
    /// port and a fresh database; returns once every worker listens and
    /// `/health` answers 200.
    fn start(&self) -> Result<NodeServer> {
        let workers = cores();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log_path = self.work.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new("node")
                .arg("server.js")
                .current_dir(&self.dir)
                .env("PORT", port.to_string())
                .env("HOST", "127.0.0.1")
                .env("DB_PATH", self.work.path().join("bench.db"))
                .env("WORKERS", workers.to_string())
                .env("RATE_LIMIT", "off")
                .env("LOG_REQUESTS", "off")
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group, so the cluster's workers stop with it.
                .process_group(0)
                .spawn()
                .context("start node server.js")?
        };
        let mut server = NodeServer {
            child,
            port,
            log_path,
            workers,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "node server.js exited ({status}); its output:\n{}",
                    server.output()
                );
            }
            let listening = server.output().matches("worker listening").count();
            if listening >= workers && http_status(port, "/health").is_ok_and(|s| s == 200) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "Node/Express not ready within 60 s ({listening} of {workers} workers listening); its output:\n{}",
                    server.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node/Express under the app's load at [`NODE_CONNECTIONS`]: a row per
    /// route, and its cluster's peak RSS during the orders run.
    fn measure(&self, seconds: u32) -> Result<(Vec<Row>, Rss)> {
        let server = self.start()?;
        eprintln!(
            "xtask: Node/Express cluster ({} workers) on port {}",
            server.workers, server.port
        );
        let result = (|| -> Result<(Vec<Row>, Rss)> {
            let bearer = bench_user(server.port)?;
            let target = Target {
                port: server.port,
                pid: server.child.id(),
                bearer: &bearer,
            };
            let mut rows = Vec::new();
            let memory = target.load_routes(
                &ROUTES,
                NODE_CONNECTIONS,
                seconds,
                NODE_GROUP,
                &mut rows,
                true,
            )?;
            Ok((rows, memory.unwrap_or_default()))
        })();
        result.with_context(|| {
            format!(
                "Node/Express baseline failed; its output:\n{}",
                server.output()
            )
        })
    }
}

/// A running `node server.js`; stops its whole process group on drop.
struct NodeServer {
    child: Child,
    port: u16,
    log_path: PathBuf,
    workers: usize,
}

impl NodeServer {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Signals the server's process group (its pid: it leads the group).
    fn signal_group(&self, signal: libc::c_int) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group;
        // it touches no memory of ours.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        // The primary stops its workers on SIGTERM; the group gets it too.
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group.
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Copies the tree at `from` to `to`, leaving out the entries named in
/// `skip` at its top.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        if skip.iter().any(|s| entry.file_name() == *s) {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&source, &dest, &[])?;
        } else {
            std::fs::copy(&source, &dest)
                .with_context(|| format!("copy {} to {}", source.display(), dest.display()))?;
        }
    }
    Ok(())
}

/// The Node/Express group: per route, Node's row and the host's (the default
/// group's at the same connections), each as a ratio to Node's; and issue
/// 16's verdict for each route.
fn compare_with_node(node_rows: &[Row], rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    let mut group = Vec::new();
    for route in &ROUTES {
        let find = |rows: &[Row], group: &str| {
            rows.iter()
                .find(|r| {
                    r.group == group
                        && r.scenario == route.scenario
                        && r.connections == NODE_CONNECTIONS
                })
                .map(|r| r.figures.clone())
        };
        let (Some(node), Some(host)) = (find(node_rows, NODE_GROUP), find(rows, FRESH)) else {
            continue;
        };
        let name = format!("{} {}", route.method, route.path);
        for (who, figures) in [
            ("Node/Express cluster", node.clone()),
            ("runtime-host, default flags", host.clone()),
        ] {
            let mut row = Row::new(
                NODE_GROUP,
                &format!("{name}: {who}"),
                NODE_CONNECTIONS,
                figures,
            );
            row.baseline_rps = Some(node.rps);
            group.push(row);
        }
        notes.push(verdict(&name, route.target_vs_node, &node, &host));
    }
    rows.extend(group);
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Issue 16's verdict on one route: the host's figures against Node's.
fn verdict(route: &str, target: f64, node: &Figures, host: &Figures) -> String {
    let ratio = host.rps / node.rps.max(1e-9);
    let tail = host.p99_ms / host.p50_ms.max(1e-9);
    format!(
        "Verdict, {route} at {NODE_CONNECTIONS} connections: {:.0} req/s, {ratio:.2}× Node/Express's {:.0} (target ≥ {target:.1}×: {}); p99 {:.2} ms = {tail:.1}× p50 (target ≤ {MAX_TAIL:.0}×: {}); slowest {:.0} ms (target ≤ {MAX_LATENCY_MS:.0} ms: {}); {} errors (target 0: {}).",
        host.rps,
        node.rps,
        met(ratio >= target),
        host.p99_ms,
        met(tail <= MAX_TAIL),
        host.max_ms,
        met(host.max_ms <= MAX_LATENCY_MS),
        host.errors,
        met(host.errors == 0),
    )
}

/// Issue 16's memory verdict: the host's peak RSS during its orders run
/// against the Node cluster's (primary and workers) during the same run.
fn memory_verdict(host: Rss, node: Rss) -> String {
    format!(
        "Verdict, memory during POST /api/orders at {NODE_CONNECTIONS} connections: runtime-host {:.1} MiB peak RSS, Node/Express cluster {:.1} MiB ({} processes summed), {:.2}× Node's (target ≤ 1×: {}).",
        host.mib(),
        node.mib(),
        node.processes,
        host.kib as f64 / node.kib.max(1) as f64,
        met(host.kib <= node.kib),
    )
}

fn render(rows: &[Row], notes: &[String]) -> String {
    let cores = cores();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = format!(
        "# Benchmarks\n\nMeasured by `cargo xtask bench` on {date}, {cores} cores; `wrk -t2` on the same machine as the host.\nRatios compare with the first scenario of each group at the same connection count, measured in the same run (in the Node/Express group, with Node's row of the same route).\nWhere the time goes: [performance.md](performance.md).\n\n"
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
    out.push_str("\n## Notes\n\n");
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
        let text = "  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.02ms  812.00us   1.20s    91.00%\n  Latency Distribution\n     50%  412.00us\n     75%    1.10ms\n     90%    2.00ms\n     99%    5.21ms\n  100 requests in 1.00s\n  Non-2xx or 3xx responses: 3\nRequests/sec:  12345.67\n";
        let f = parse_wrk(text).unwrap();
        assert_eq!(f.rps, 12345.67);
        assert!((f.p50_ms - 0.412).abs() < 1e-9);
        assert_eq!(f.p99_ms, 5.21);
        assert_eq!(f.max_ms, 1200.0);
        assert_eq!(f.errors, 3);
    }

    #[test]
    fn reads_the_parent_from_a_stat_line() {
        // A command name with spaces and a closing parenthesis in it.
        let stat = "4242 (node (worker) x) S 4200 4200 13523 0 -1 4194560 1 0";
        assert_eq!(stat_parent(stat), Some((4242, 4200)));
        assert_eq!(stat_parent("garbage"), None);
    }

    #[test]
    fn a_process_tree_is_the_root_and_all_its_descendants() {
        // 10 is the primary; 11 and 12 its workers; 13 a worker's child;
        // 20 unrelated; a loop (30 ↔ 31) must not hang.
        let parents = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 10),
            (13, 12),
            (20, 1),
            (30, 31),
            (31, 30),
        ];
        assert_eq!(descendants(10, &parents), vec![10, 11, 12, 13]);
        assert_eq!(descendants(99, &parents), vec![99]);
        assert_eq!(descendants(30, &parents), vec![30, 31]);
    }

    #[test]
    fn the_process_tree_of_this_test_holds_a_child_it_started() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let tree = process_tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.contains(&child.id()), "{tree:?}");
    }

    #[test]
    fn verdicts_say_which_targets_are_met() {
        let node = Figures {
            rps: 1000.0,
            ..Figures::default()
        };
        let good = Figures {
            rps: 2100.0,
            p50_ms: 10.0,
            p99_ms: 40.0,
            max_ms: 90.0,
            errors: 0,
        };
        let line = verdict("GET /health", 2.0, &node, &good);
        assert!(line.contains("2.10× Node/Express's 1000"), "{line}");
        assert!(!line.contains("MISSED"), "{line}");
        assert_eq!(line.matches("met").count(), 4, "{line}");
        let bad = Figures {
            rps: 1400.0,
            p99_ms: 60.0,
            max_ms: 1500.0,
            errors: 2,
            ..good
        };
        let line = verdict("POST /api/orders", 1.5, &node, &bad);
        assert_eq!(line.matches("MISSED").count(), 4, "{line}");
        assert!(line.contains("p99 60.00 ms = 6.0× p50"), "{line}");

        let host = Rss {
            kib: 100 * 1024,
            processes: 1,
        };
        let cluster = Rss {
            kib: 300 * 1024,
            processes: 3,
        };
        let line = memory_verdict(host, cluster);
        assert!(line.contains("100.0 MiB"), "{line}");
        assert!(
            line.contains("300.0 MiB (3 processes summed), 0.33×"),
            "{line}"
        );
        assert!(line.ends_with("met)."), "{line}");
        assert!(memory_verdict(cluster, host).ends_with("MISSED)."));
    }

    #[test]
    fn copies_a_tree_without_the_skipped_entries() {
        let from = tempfile::tempdir().unwrap();
        for dir in ["src/routes", "node_modules/x", "data"] {
            std::fs::create_dir_all(from.path().join(dir)).unwrap();
        }
        std::fs::write(from.path().join("server.js"), "1").unwrap();
        std::fs::write(from.path().join("src/routes/a.js"), "2").unwrap();
        std::fs::write(from.path().join("node_modules/x/b.js"), "3").unwrap();
        let to = tempfile::tempdir().unwrap();
        let copy = to.path().join("app");
        copy_tree(from.path(), &copy, &["node_modules", "data"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(copy.join("src/routes/a.js")).unwrap(),
            "2"
        );
        assert!(copy.join("server.js").is_file());
        assert!(!copy.join("node_modules").exists());
        assert!(!copy.join("data").exists());
    }
}
