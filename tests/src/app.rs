//! Helpers for black-box tests of the application's HTTP API.

use crate::{Host, Reply, send, wasm};
use bytes::Bytes;
use std::path::Path;

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
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
pub fn start_with_args(keys: Option<&Keys>, variables: &[(&str, &str)], extra: &[&str]) -> Host {
    start_manifest(&app_manifest(), keys, variables, extra)
}

/// [`app_manifest`] plus a probe for tests that look inside: the
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
        app_manifest(),
        wasm("fixture-p2-app").display()
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
    send(&crate::client(), method, &host.url(path), headers, body)
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

/// Seconds since the Unix epoch now.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `reset` (a `RateLimit-Reset` or `Retry-After` of a fixed-window
/// limit) is the seconds left in the `window_secs` window, as the app
/// counts windows (`[n * window, (n + 1) * window)` in Unix seconds),
/// at some instant between `sent` (Unix seconds, taken before the
/// request) and now: exact, whatever the request's latency.
pub fn assert_window_reset(reset: u64, window_secs: u64, sent: u64) {
    let now = unix_secs();
    let left = |t: u64| (t / window_secs + 1) * window_secs - t;
    let (earliest, latest) = (left(now), left(sent));
    // Within one window, `left` falls as time passes.
    assert!(
        now / window_secs != sent / window_secs || (earliest..=latest).contains(&reset),
        "reset {reset} s, expected {earliest}..={latest} s"
    );
}

/// `PATCH path` with a JSON body as `token`'s bearer, with `If-Match`
/// when given.
pub async fn patch_json(
    host: &Host,
    path: &str,
    token: &str,
    if_match: Option<&str>,
    body: serde_json::Value,
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    if let Some(tag) = if_match {
        headers.push(("if-match", tag));
    }
    call(host, "PATCH", path, &headers, body.to_string()).await
}

/// `key` of the `default` key-value store, read through the probe
/// component ([`manifest_with_probe`]): 200 with `{"value": …}`, or 404.
pub async fn probe_kv(host: &Host, key: &str) -> Reply {
    call(host, "GET", &format!("/probe/kv/default/{key}"), &[], "").await
}

/// `r` is an API error with this status and code.
pub fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_api_contract(r);
    assert_eq!(r.json()["error"]["code"], code, "{}", r.text());
}

/// The application's manifest with every component `source` made
/// absolute, so a [`Host`] started in a temporary directory serves the
/// real, built components: the root `spin.toml`, or under
/// `APP_TEST_PLATFORM=edge` ([`on_edge`]) the edge manifest
/// `deploy/edge/spin.toml` that `cargo xtask edge-manifest` derives from it.
/// Under `APP_TEST_FROM_RELEASE` some components come from their releases
/// instead ([`crate::releases::pin_releases`]).
pub fn app_manifest() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = if on_edge() {
        root.join("deploy/edge/spin.toml")
    } else {
        root.join("spin.toml")
    };
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let built = text
        .lines()
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
        .join("\n");
    crate::releases::pin_releases(built)
}
