//! The host process: paths of what was built, scratch directories, starting
//! and stopping `runtime-host`, reading its logs.

use crate::{RedisServer, wait_until};
use anyhow::{Context as _, Result, bail};
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

/// A scratch directory removed on drop. World-readable, because the
/// PostgreSQL tests run `initdb` in it as the unprivileged `postgres` user.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        tempfile::Builder::new()
            .prefix(&format!("app-tests-{tag}-"))
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .map(TempDir)
            .expect("create temp dir")
    }
    pub fn path(&self) -> &Path {
        self.0.path()
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
