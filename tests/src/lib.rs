//! Harness for black-box tests: starts `runtime-host` as a real process on a
//! free loopback port with its own state directory, and speaks HTTP to it.
//! It builds nothing: `cargo xtask test` builds the host and every `.wasm`
//! first.

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cargo target directory the test command built into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("APP_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The built `.wasm` of a workspace component or fixture package.
pub fn wasm(package: &str) -> PathBuf {
    let p = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(
        p.is_file(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        p.display()
    );
    p
}

pub fn host_binary() -> PathBuf {
    let p = target_dir().join("release/runtime-host");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask test`",
        p.display()
    );
    p
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "app-tests-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `runtime-host up`.
pub struct Host {
    pub dir: TempDir,
    pub port: u16,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    /// A Redis server of this host's own (the edge profile's counters),
    /// stopped with it.
    pub redis: Option<RedisServer>,
    child: Option<Child>,
}

impl Host {
    /// Writes `manifest` to a fresh directory and starts the host on it.
    pub fn start(manifest: &str, args: &[&str]) -> Host {
        Self::start_with_env(manifest, args, &[])
    }

    pub fn start_with_env(manifest: &str, args: &[&str], envs: &[(&str, &str)]) -> Host {
        Self::start_with_files(manifest, &[], args, envs)
    }

    /// Also writes `files` (path relative to the manifest, contents) first.
    pub fn start_with_files(
        manifest: &str,
        files: &[(&str, &str)],
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Host {
        let dir = TempDir::new("host");
        std::fs::write(dir.path().join("spin.toml"), manifest).expect("write manifest");
        for (path, contents) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).expect("create app dir");
            std::fs::write(path, contents).expect("write app file");
        }
        let mut host = Host {
            dir,
            port: 0,
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            redis: None,
            child: None,
        };
        host.spawn().expect("host starts");
        host
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(".spin")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(host_binary());
        cmd.arg("up")
            .arg("-f")
            .arg(self.dir.path().join("spin.toml"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(&self.args)
            .envs(self.envs.iter().cloned())
            .stdin(Stdio::null());
        cmd
    }

    fn spawn(&mut self) -> Result<()> {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
        };
        let mut child = self
            .command()
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?)
            .spawn()
            .context("spawn runtime-host")?;
        // The host binds port 0 and prints the address it got; reading it
        // back avoids two parallel tests racing for one "free" port.
        let starts_before = self.stdout().matches("Serving http://").count();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.stdout();
            if let Some(line) = out.split("Serving http://").nth(starts_before + 1) {
                let addr = line.lines().next().unwrap_or("");
                self.port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse().ok())
                    .with_context(|| format!("unexpected banner line `{addr}`"))?;
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "runtime-host exited during start ({status}):\n{}",
                    self.stderr()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("runtime-host did not start listening:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// The host's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Reads the host's stdout until `done` holds for it (a log line has
    /// appeared), at most `timeout`; returns that stdout. Panics naming
    /// `what`, with the log, when it never does.
    pub async fn wait_for_stdout(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        wait_until(what, timeout, || async {
            let out = self.stdout();
            done(&out).then_some(out)
        })
        .await
    }

    /// The JSON lines of the host's stdout (the components' structured
    /// logs), other lines skipped.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Reads the JSON log lines until `done` holds for them, at most
    /// `timeout`; returns them. Panics naming `what` when it never does.
    pub async fn wait_for_json_logs(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        wait_until(what, timeout, || async {
            let lines = self.json_logs();
            done(&lines).then_some(lines)
        })
        .await
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("host running");
        // SAFETY: sending a signal to our own child process by pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        c.wait().expect("wait for host")
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let c = self.child.as_ref().expect("host running");
        // SAFETY: as above.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child
            .take()
            .expect("host running")
            .wait()
            .expect("wait")
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("host restarts");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `runtime-host up` expecting it to fail at start; returns stderr.
pub fn start_failure(manifest: &str, args: &[&str]) -> String {
    let dir = TempDir::new("fail");
    std::fs::write(dir.path().join("spin.toml"), manifest).unwrap();
    let mut child = Command::new(host_binary())
        .arg("up")
        .arg("-f")
        .arg(dir.path().join("spin.toml"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--state-dir")
        .arg(dir.path().join(".spin"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "expected a start-up failure");
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("runtime-host kept running although it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

pub async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into()))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn get(url: impl Into<String>) -> Reply {
    let url = url.into();
    send(&client(), "GET", &url, &[], Bytes::new())
        .await
        .unwrap()
}

pub async fn request(
    method: &'static str,
    url: impl Into<String>,
    body: impl Into<Bytes>,
) -> Reply {
    let url = url.into();
    send(&client(), method, &url, &[], body).await.unwrap()
}

/// A `redis-server` of the test's own, on a free loopback port (never 6379),
/// stopped on drop.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with_config("")
    }

    /// A server whose configuration file also holds `extra_config` lines
    /// (e.g. an ACL rule).
    pub fn start_with_config(extra_config: &str) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: TempDir::new("redis"),
            child: None,
        };
        server.spawn(extra_config);
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self, extra_config: &str) {
        let conf = self.dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port {}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n{extra_config}\n",
                self.port,
                self.dir.path().display()
            ),
        )
        .expect("write redis.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (cargo xtask test installs it)");
        self.child = Some(child);
        wait_until_listening(self.port, "redis-server");
    }

    /// Runs `redis-cli` against this server; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (installed with redis-server)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.restart_with_config("");
    }

    /// Restarts on the same port with other `extra_config` lines.
    pub fn restart_with_config(&mut self, extra_config: &str) {
        self.stop();
        self.spawn(extra_config);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls until a server started in the background accepts connections on
/// loopback `port` (a deadline of 10 s, then a failure naming `what`).
fn wait_until_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `mosquitto` broker on a free loopback port that admits one user
/// (`user` / `secret`) and nobody anonymous, stopped on drop.
pub struct MqttBroker {
    dir: TempDir,
    pub port: u16,
    child: Child,
}

impl MqttBroker {
    pub const USER: &'static str = "user";
    pub const PASSWORD: &'static str = "secret";

    pub fn start() -> MqttBroker {
        let dir = TempDir::new("mosquitto");
        let port = free_port();
        let passwords = dir.path().join("passwords");
        let made = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwords)
            .args([Self::USER, Self::PASSWORD])
            .output()
            .expect("mosquitto_passwd (installed with mosquitto; cargo xtask test installs it)");
        assert!(made.status.success(), "{made:?}");
        let conf = dir.path().join("mosquitto.conf");
        // As root, mosquitto would drop to its own user, who cannot read
        // this directory: stay root (the broker is a throwaway).
        let as_root = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\n{as_root}",
                passwords.display()
            ),
        )
        .expect("write mosquitto.conf");
        let program = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(program)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (cargo xtask test installs it)");
        wait_until_listening(port, "mosquitto");
        MqttBroker { dir, port, child }
    }

    /// The address a component opens (`client_id` is required).
    pub fn address(&self, client_id: &str) -> String {
        format!("mqtt://127.0.0.1:{}?client_id={client_id}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MqttBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PostgreSQL cluster: `initdb` in a temp dir, `postgres` on a
/// free loopback port with password (SCRAM) authentication over TCP, run as
/// the unprivileged `postgres` user when the tests run as root (PostgreSQL
/// refuses root). Stopped on drop; [`PostgresServer::shared`] lives for the
/// whole test process and a watchdog stops it when the process is gone.
pub struct PostgresServer {
    pub port: u16,
    dir: TempDir,
    bindir: PathBuf,
    child: Option<Child>,
}

impl PostgresServer {
    pub const USER: &'static str = "postgres";
    /// Only ever a throwaway cluster's password.
    pub const PASSWORD: &'static str = "test-only-secret";

    pub fn start() -> PostgresServer {
        let bindir = Self::bindir();
        let dir = TempDir::new("postgres");
        let (uid, gid) = Self::run_as();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", Self::PASSWORD)).expect("write pwfile");
        chown_tree(dir.path(), uid, gid);
        let data = dir.path().join("data");
        let made = Self::as_owner(Command::new(bindir.join("initdb")), uid, gid)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                Self::USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("initdb (Debian package `postgresql`; cargo xtask test installs it)");
        assert!(
            made.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let mut server = PostgresServer {
            port: free_port(),
            dir,
            bindir,
            child: None,
        };
        server.spawn(uid, gid);
        server
    }

    /// One cluster for the whole test process (tests take a fresh database
    /// each with [`PostgresServer::create_database`]).
    pub fn shared() -> &'static PostgresServer {
        static SHARED: std::sync::OnceLock<PostgresServer> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let server = PostgresServer::start();
            server.stop_when_process_exits();
            server
        })
    }

    fn spawn(&mut self, uid: Option<u32>, gid: Option<u32>) {
        let child = Self::as_owner(Command::new(self.bindir.join("postgres")), uid, gid)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_connections=300"])
            // A throwaway cluster: durability of the server itself is not
            // what the tests examine.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.psql("postgres", "SELECT 1").0 {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new, empty database; its `postgres://` URL (with the password).
    pub fn create_database(&self, name: &str) -> String {
        let (ok, out) = self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        assert!(ok, "CREATE DATABASE {name}: {out}");
        self.url(name)
    }

    /// A fresh database with a unique name; its URL.
    pub fn fresh_database(&self) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        self.create_database(&format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{database}",
            Self::USER,
            Self::PASSWORD,
            self.port
        )
    }

    /// What `allowed_outbound_hosts` admits for this server.
    pub fn host_entry(&self) -> String {
        format!("postgres://127.0.0.1:{}", self.port)
    }

    /// Runs `sql` with `psql` on `database` (over the socket, as the
    /// superuser); whether it succeeded and its output (unaligned, tuples
    /// only, `|`-separated).
    pub fn psql(&self, database: &str, sql: &str) -> (bool, String) {
        let out = self
            .psql_command(database)
            .args(["-c", sql])
            .output()
            .expect("psql (installed with postgresql)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text.trim().to_string())
    }

    /// The rows `sql` returns on `database`, `None` for NULL.
    pub fn rows(&self, database: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        const FIELD: char = '\u{1f}';
        const NULL: &str = "\u{1e}";
        let out = self
            .psql_command(database)
            .arg(format!("--field-separator={FIELD}"))
            .arg(format!("--pset=null={NULL}"))
            .args(["-c", sql])
            .output()
            .expect("psql (installed with postgresql)");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8 rows")
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split(FIELD)
                    .map(|v| (v != NULL).then(|| v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// `psql` on `database` over the socket, as the superuser: unaligned,
    /// tuples only, stopping at the first error, no `~/.psqlrc`.
    fn psql_command(&self, database: &str) -> Command {
        let mut command = Command::new(self.bindir.join("psql"));
        command
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                Self::USER,
                "-d",
                database,
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        command
    }

    /// [`PostgresServer::psql`] that must succeed; its output.
    pub fn query(&self, database: &str, sql: &str) -> String {
        let (ok, out) = self.psql(database, sql);
        assert!(ok, "{sql}: {out}");
        out
    }

    /// Starts the stopped server again on its port and data.
    pub fn restart(&mut self) {
        self.stop();
        let (uid, gid) = Self::run_as();
        self.spawn(uid, gid);
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// A detached watchdog: when this test process is gone, it stops the
    /// server and removes its directory (statics are never dropped).
    fn stop_when_process_exits(&self) {
        let Some(child) = &self.child else { return };
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -INT {pg}; \
             while kill -0 {pg} 2>/dev/null; do sleep 1; done; rm -rf '{dir}'",
            me = std::process::id(),
            pg = child.id(),
            dir = self.dir.path().display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    fn bindir() -> PathBuf {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .collect();
        dirs.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        dirs.pop().expect(
            "PostgreSQL server binaries under /usr/lib/postgresql/*/bin \
             (Debian package `postgresql`; cargo xtask test installs it)",
        )
    }

    /// The uid/gid of the `postgres` user when running as root (PostgreSQL
    /// refuses to run as root); `None` otherwise.
    fn run_as() -> (Option<u32>, Option<u32>) {
        if unsafe { libc::geteuid() } != 0 {
            return (None, None);
        }
        let name = std::ffi::CString::new("postgres").unwrap();
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        assert!(
            !pw.is_null(),
            "running as root needs the `postgres` user (created by the Debian package)"
        );
        unsafe { (Some((*pw).pw_uid), Some((*pw).pw_gid)) }
    }

    fn as_owner(mut command: Command, uid: Option<u32>, gid: Option<u32>) -> Command {
        use std::os::unix::process::CommandExt as _;
        if let (Some(uid), Some(gid)) = (uid, gid) {
            command.gid(gid).uid(uid);
        }
        command
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chown_tree(path: &Path, uid: Option<u32>, gid: Option<u32>) {
    let (Some(uid), Some(gid)) = (uid, gid) else {
        return;
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            chown_tree(&entry.path(), Some(uid), Some(gid));
        }
    }
}

/// How long a test waits for something that should happen promptly before
/// it calls it a failure: far above any normal latency, so only a real hang
/// (not a loaded machine) reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` (every 50 ms) until it gives `Some`, and returns that; panics
/// naming `what` if `timeout` passes first. The helper for "wait for an
/// event": readiness, a log line, an expiry.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() <= deadline,
            "gave up after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The application's manifest with every component `source` made
/// absolute, so a [`Host`] started in a temporary directory serves the
/// real, built components: the root `spin.toml`, or under
/// `APP_TEST_PLATFORM=edge` ([`app::on_edge`]) the edge manifest
/// `deploy/edge/spin.toml` that `cargo xtask edge-manifest` derives from it.
pub fn app_manifest() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = if app::on_edge() {
        root.join("deploy/edge/spin.toml")
    } else {
        root.join("spin.toml")
    };
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let built = line
                .trim()
                .strip_prefix("source = \"")
                .map(|rest| rest.trim_start_matches("../../"))
                .and_then(|rest| rest.strip_prefix("target/wasm32-wasip2/release/"))
                .and_then(|rest| rest.strip_suffix(".wasm\""));
            match built {
                Some(package) => format!("source = \"{}\"", wasm(package).display()),
                None => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Helpers for black-box tests of the application's HTTP API.
pub mod app {
    use super::{send, Host, Reply};
    use bytes::Bytes;

    /// The token keys of one test run, as the variables carry them.
    pub struct Keys {
        pub kid: String,
        /// `jwt_signing_key`: `kid:base64(key pair)`.
        pub signing: String,
        /// `jwt_public_keys`: `kid:base64(public key)`.
        pub public: String,
    }

    impl Keys {
        /// From raw Ed25519 bytes (64-byte key pair, 32-byte public key).
        pub fn from_bytes(kid: &str, key_pair: &[u8], public_key: &[u8]) -> Keys {
            Keys {
                kid: kid.to_string(),
                signing: format!("{kid}:{}", base64(key_pair)),
                public: format!("{kid}:{}", base64(public_key)),
            }
        }
    }

    /// Standard base64 with padding.
    pub fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Variables every test gets unless it sets them: rate limits high
    /// enough not to interfere (tests share one client address).
    const TEST_DEFAULTS: [(&str, &str); 2] = [
        ("api_rate_limit", "100000"),
        ("credentials_rate_limit", "100000"),
    ];

    /// Serves the app (root `spin.toml`) with `keys` (none: the app runs
    /// unkeyed) and `variables`.
    pub fn start(keys: Option<&Keys>, variables: &[(&str, &str)]) -> Host {
        start_with_args(keys, variables, &[])
    }

    /// [`start`] with more `runtime-host up` flags.
    pub fn start_with_args(
        keys: Option<&Keys>,
        variables: &[(&str, &str)],
        extra: &[&str],
    ) -> Host {
        start_manifest(&super::app_manifest(), keys, variables, extra)
    }

    /// [`super::app_manifest`] plus a probe for tests that look inside: the
    /// p2 fixture mounted at `/probe/...` with the app's `default`
    /// key-value store and SQLite database and outbound Redis at
    /// `redis_address` (`/probe/sql/default`, `/probe/kv/default/<key>`,
    /// `/probe/publish/<channel>`, ...; see the fixture).
    pub fn manifest_with_probe() -> String {
        // The edge platform has no SQLite: there the probe has none either
        // (tests read records with psql).
        let sqlite = if on_edge() {
            ""
        } else {
            "sqlite_databases = [\"default\"]\n"
        };
        format!(
            r#"{}

[[trigger.http]]
route = "/probe/..."
component = "probe"

[component.probe]
source = "{}"
key_value_stores = ["default"]
{sqlite}allowed_outbound_hosts = ["{{{{ redis_address }}}}", "{{{{ events_url }}}}"]
variables = {{ redis_address = "{{{{ redis_address }}}}" }}
"#,
            super::app_manifest(),
            super::wasm("fixture-p2-app").display()
        )
    }

    /// [`start_with_args`] serving `manifest` (the app's, possibly extended).
    pub fn start_manifest(
        manifest: &str,
        keys: Option<&Keys>,
        variables: &[(&str, &str)],
        extra: &[&str],
    ) -> Host {
        let mut all: Vec<(String, String)> = TEST_DEFAULTS
            .iter()
            .filter(|(name, _)| !variables.iter().any(|(n, _)| n == name))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        if let Some(keys) = keys {
            all.push(("jwt_signing_key".into(), keys.signing.clone()));
            all.push(("jwt_public_keys".into(), keys.public.clone()));
        }
        all.extend(
            variables
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        if on_postgres() && !variables.iter().any(|(n, _)| *n == "database_url") {
            let server = crate::PostgresServer::shared();
            all.push(("database_url".into(), server.fresh_database()));
            all.push(("database_host".into(), server.host_entry()));
        }
        // The edge profile's counters live in Redis: a server per host, so
        // hosts never see each other's rate-limit windows or metrics.
        let redis = (on_edge() && !variables.iter().any(|(n, _)| *n == "redis_address"))
            .then(crate::RedisServer::start);
        if let Some(redis) = &redis {
            all.push(("redis_address".into(), redis.url()));
        }
        let args: Vec<String> = all
            .iter()
            .flat_map(|(n, v)| ["--variable".to_string(), format!("{n}={v}")])
            .collect();
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        if on_edge() {
            args.extend_from_slice(&["--platform", "edge"]);
        }
        args.extend_from_slice(extra);
        let mut host = Host::start(manifest, &args);
        host.redis = redis;
        host
    }

    /// Whether the app's suites run on PostgreSQL: `APP_TEST_DATABASE=postgres`
    /// (the second pass of `cargo xtask test`) or the edge profile gives
    /// every host started here a fresh database in
    /// [`crate::PostgresServer::shared`]; otherwise the app uses its
    /// embedded SQLite.
    pub fn on_postgres() -> bool {
        on_edge() || std::env::var("APP_TEST_DATABASE").is_ok_and(|v| v == "postgres")
    }

    /// Where the edge manifest delivers events: order-events' private
    /// route (its `events_url` default).
    pub const EDGE_EVENTS_URL: &str = "http://order-events.spin.internal";

    /// Whether the app's suites run as on the edge platform:
    /// `APP_TEST_PLATFORM=edge` (the third pass of `cargo xtask test`)
    /// serves the edge manifest with `runtime-host up --platform edge`,
    /// records in PostgreSQL and counters in a Redis server of each host.
    pub fn on_edge() -> bool {
        std::env::var("APP_TEST_PLATFORM").is_ok_and(|v| v == "edge")
    }

    /// The PostgreSQL database a host's `database_url` names, if any.
    pub fn postgres_database(host: &Host) -> Option<String> {
        host.args
            .iter()
            .find_map(|a| a.strip_prefix("database_url="))
            .and_then(|url| url.rsplit('/').next())
            .map(str::to_string)
    }

    /// Throws away every record of `host` (stop it first): its SQLite file,
    /// or every table of its PostgreSQL database.
    pub fn drop_records(host: &Host) {
        match postgres_database(host) {
            Some(db) => {
                crate::PostgresServer::shared()
                    .query(&db, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
            }
            None => std::fs::remove_file(host.state_dir().join("sqlite_db.db"))
                .expect("remove the SQLite database"),
        }
    }

    /// Any request to the app.
    pub async fn call(
        host: &Host,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        send(&super::client(), method, &host.url(path), headers, body)
            .await
            .unwrap()
    }

    /// A JSON request, with a bearer token when given.
    pub async fn json(
        host: &Host,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &serde_json::Value,
    ) -> Reply {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        call(host, method, path, &headers, body.to_string()).await
    }

    /// A bodiless request with a bearer token.
    pub async fn authed(host: &Host, method: &str, path: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        call(
            host,
            method,
            path,
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
    }

    pub async fn register(host: &Host, name: &str, email: &str, password: &str) -> Reply {
        let body = serde_json::json!({ "name": name, "email": email, "password": password });
        json(host, "POST", "/api/auth/register", None, &body).await
    }

    pub async fn login(host: &Host, email: &str, password: &str) -> Reply {
        let body = serde_json::json!({ "email": email, "password": password });
        json(host, "POST", "/api/auth/login", None, &body).await
    }

    /// A registered user's id and access token (registration must succeed).
    pub async fn register_ok(host: &Host, name: &str, email: &str) -> (String, String) {
        let r = register(host, name, email, PASSWORD).await;
        assert_eq!(r.status, 201, "register {email}: {}", r.text());
        let body = r.json();
        (
            body["user"]["id"].as_str().unwrap().to_string(),
            body["accessToken"].as_str().unwrap().to_string(),
        )
    }

    /// A password every rule accepts.
    pub const PASSWORD: &str = "correct horse battery staple";

    /// The API's response contract: security headers, a sane correlation
    /// id, JSON bodies (errors in the shared shape with that id).
    pub fn assert_api_contract(r: &Reply) {
        let expect = [
            ("strict-transport-security", "max-age="),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ];
        for (name, value) in expect {
            let got = r.header(name).unwrap_or_default();
            assert!(
                got.contains(value),
                "{name}: `{got}` on {} {}",
                r.status,
                r.text()
            );
        }
        let id = r.header("x-correlation-id").expect("x-correlation-id");
        assert!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "correlation id `{id}`"
        );
        // JSON everywhere except the Prometheus exposition of `/metrics`.
        let exposition = r.status == 200
            && r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"));
        if !r.body.is_empty() && !exposition {
            assert_eq!(
                r.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{}",
                r.text()
            );
        }
        if r.status >= 400 {
            let body = r.json();
            assert!(body["error"]["code"].is_string(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
            assert!(body["error"]["details"].is_array(), "{body}");
            assert_eq!(body["correlationId"], id, "{body}");
        }
    }

    /// `r` is an API error with this status and code.
    pub fn assert_error(r: &Reply, status: u16, code: &str) {
        assert_eq!(r.status, status, "{}", r.text());
        assert_api_contract(r);
        assert_eq!(r.json()["error"]["code"], code, "{}", r.text());
    }
}

/// Makes sure `python3` can import `module`, installing `package` from PyPI
/// if it cannot. Tests that use a reference implementation in Python (a
/// Prometheus parser, an OpenAPI validator) call this first.
pub fn ensure_python_package(module: &str, package: &str) {
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or_else(|e| panic!("this test needs python3: {e}"))
    };
    if importable() {
        return;
    }
    let install = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", package])
        .output()
        .expect("run pip");
    assert!(
        install.status.success() && importable(),
        "could not install {package} from PyPI: {}",
        String::from_utf8_lossy(&install.stderr)
    );
}
