//! The native baseline of `cargo xtask bench`: the work the components do for
//! `GET /health` and `GET /api/users/me`, compiled natively and served by a
//! plain hyper server, with no WebAssembly in between.
//!
//! Per request it does what the component pipeline does: correlation id,
//! security headers, one JSON log line, and the two metric increments; for
//! `/api/users/me` also EdDSA verification with `app_common::security::tokens::verify`
//! (the same code the components run), the denylist lookup and the cached
//! profile read. Storage is a SQLite file in the key-value store's layout.
//!
//! `native-baseline <listen-addr> <state-dir> <jwt_public_keys> <profile-json>`

use anyhow::{Context as _, Result};
use app_common::security::tokens::{self, PublicKeySet, TokenPolicy};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex};

struct App {
    db: Mutex<Connection>,
    keys: PublicKeySet,
    policy: TokenPolicy,
    profile: String,
}

impl App {
    fn increment(&self, key: &str, delta: i64) -> Result<()> {
        let db = self.db.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        db.prepare_cached(
            "INSERT INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)
             ON CONFLICT(store, key) DO UPDATE SET value = ?2",
        )?
        .execute(params![key, delta.to_le_bytes().to_vec()])?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let db = self.db.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let value = db
            .prepare_cached(
                "SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1",
            )?
            .query_row(params![key], |r| r.get(0))
            .optional()?;
        Ok(value)
    }

    fn handle(&self, req: &Request<hyper::body::Incoming>) -> (u16, String) {
        match req.uri().path() {
            "/health" => (200, r#"{"status":"ok"}"#.into()),
            "/api/users/me" => {
                let token = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                match tokens::verify(&self.keys, &self.policy, token) {
                    Ok(principal) => {
                        let revoked = self
                            .get(&tokens::denylist_key(&principal.token_id))
                            .ok()
                            .flatten()
                            .is_some();
                        if revoked {
                            return (401, r#"{"error":{"code":"unauthenticated"}}"#.into());
                        }
                        let cached = self.get(&format!("users:profile:{}", principal.user_id));
                        (
                            200,
                            cached
                                .ok()
                                .flatten()
                                .map(|v| String::from_utf8_lossy(&v).into_owned())
                                .unwrap_or_else(|| self.profile.clone()),
                        )
                    }
                    Err(r) => (
                        401,
                        format!(
                            r#"{{"error":{{"code":"unauthenticated","message":{:?}}}}}"#,
                            r.message()
                        ),
                    ),
                }
            }
            _ => (404, r#"{"error":{"code":"route_not_found"}}"#.into()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, state_dir, public_keys, profile] = args.as_slice() else {
        anyhow::bail!(
            "usage: native-baseline <listen-addr> <state-dir> <jwt_public_keys> <profile-json>"
        );
    };
    std::fs::create_dir_all(state_dir)?;
    let db = Connection::open(std::path::Path::new(state_dir).join("baseline_kv.db"))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (store TEXT NOT NULL, key TEXT NOT NULL,
         value BLOB NOT NULL, PRIMARY KEY (store, key))",
    )?;
    let app = Arc::new(App {
        db: Mutex::new(db),
        keys: PublicKeySet::parse(public_keys).context("jwt_public_keys")?,
        policy: TokenPolicy {
            issuer: "app-auth".into(),
            audience: "app-api".into(),
        },
        profile: profile.clone(),
    });
    let listener = tokio::net::TcpListener::bind(listen.as_str()).await?;
    println!("Serving http://{}", listener.local_addr()?);
    let mut served: u64 = 0;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        served += 1;
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let started = std::time::Instant::now();
                    let (status, body) = app.handle(&req);
                    let correlation =
                        format!("{:016x}", started.elapsed().as_nanos() ^ served as u128);
                    let route = req.uri().path().to_string();
                    println!(
                        "{}",
                        serde_json::json!({"component": "native", "method": req.method().as_str(), "route": route, "status": status, "duration_ms": started.elapsed().as_secs_f64() * 1e3, "correlationId": correlation})
                    );
                    let _ = app.increment(&format!("metrics:bucket:{route}:{status}"), 1);
                    let _ = app.increment(&format!("metrics:sum:{route}:{status}"), 1);
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    let h = resp.headers_mut();
                    for (k, v) in app_common::http::headers::SECURITY_HEADERS {
                        h.insert(k, hyper::header::HeaderValue::from_static(v));
                    }
                    h.insert(
                        "cache-control",
                        hyper::header::HeaderValue::from_static("no-store"),
                    );
                    h.insert(
                        "content-type",
                        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
                    );
                    if let Ok(v) = hyper::header::HeaderValue::from_str(&correlation) {
                        h.insert("x-correlation-id", v);
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
