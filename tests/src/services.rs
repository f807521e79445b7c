//! The services a test starts beside the host, each its own process on a
//! free port: Redis, an MQTT broker, PostgreSQL.

use crate::{TempDir, free_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own, on a free loopback port (never 6379),
/// stopped on drop.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

/// A runtime-config file of a test's own (removed with it).
pub struct RuntimeConfig {
    _dir: TempDir,
    pub path: PathBuf,
}

impl RuntimeConfig {
    /// `--runtime-config-file <path>`, for [`crate::Host::start`].
    pub fn args(&self) -> [&str; 2] {
        [
            "--runtime-config-file",
            self.path.to_str().expect("UTF-8 temp path"),
        ]
    }
}

impl RedisServer {
    /// A runtime config putting the `default` key-value store on this
    /// server.
    pub fn key_value_config(&self) -> RuntimeConfig {
        let dir = TempDir::new("rc");
        let path = dir.path().join("runtime-config.toml");
        std::fs::write(
            &path,
            format!(
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
                self.url()
            ),
        )
        .expect("write runtime config");
        RuntimeConfig { _dir: dir, path }
    }

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
