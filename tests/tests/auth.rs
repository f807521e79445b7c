//! The auth component, black-box: registration rules, login with lockout
//! and rate limits, refresh rotation with reuse detection, logout
//! revocation, token verification, keys and the admin bootstrap.

use app_tests::app::{
    self, Keys, PASSWORD, assert_api_contract, assert_error, authed, json, login, register,
    register_ok,
};
use app_tests::{Host, PATIENCE, Reply, wait_until};
use jwt_simple::prelude::*;
use serde_json::json;
use std::time::Instant;

fn key_pair(kid: &str) -> (Ed25519KeyPair, Keys) {
    let kp = Ed25519KeyPair::generate().with_key_id(kid);
    let keys = Keys::from_bytes(kid, &kp.to_bytes(), &kp.public_key().to_bytes());
    (kp, keys)
}

fn start(variables: &[(&str, &str)]) -> (Host, Ed25519KeyPair) {
    let (kp, keys) = key_pair("test-key-1");
    (app::start(Some(&keys), variables), kp)
}

/// Fails if a response carries anything of a password hash.
fn assert_no_password_hash(r: &Reply) {
    let text = r.text();
    assert!(!text.contains("$argon2"), "hash leaked: {text}");
    assert!(!text.to_lowercase().contains("passwordhash"), "{text}");
    assert!(!text.contains("password_hash"), "{text}");
}

/// Claims as the app issues them, for minting test tokens.
fn claims(sub: &str, role: &str) -> JWTClaims<serde_json::Value> {
    Claims::with_custom_claims(json!({ "role": role }), Duration::from_mins(15))
        .with_issuer("app-auth")
        .with_audience("app-api")
        .with_subject(sub)
        .with_jwt_id(format!("test-{}", rand_id()))
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn b64url(bytes: &[u8]) -> String {
    use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

#[tokio::test]
async fn register_login_me_and_jwks() {
    let (host, _kp) = start(&[]);
    let r = register(&host, "  Ada Lovelace ", "  Ada@Example.COM ", PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_api_contract(&r);
    assert_no_password_hash(&r);
    let body = r.json();
    let id = body["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["user"]["email"], "ada@example.com", "normalised");
    assert_eq!(body["user"]["name"], "Ada Lovelace", "trimmed");
    assert_eq!(body["user"]["role"], "user");
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    assert!(body["refreshToken"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(
        r.header("location"),
        Some(format!("/api/users/{id}").as_str())
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // The token is an EdDSA JWT with kid, issuer, audience, 15 minutes, jti.
    let access = body["accessToken"].as_str().unwrap();
    let meta = Token::decode_metadata(access).unwrap();
    assert_eq!(meta.algorithm(), "EdDSA");
    assert_eq!(meta.key_id(), Some("test-key-1"));
    let payload: serde_json::Value = serde_json::from_slice(
        &jwt_simple::reexports::ct_codecs::Base64UrlSafeNoPadding::decode_to_vec(
            access.split('.').nth(1).unwrap(),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["iss"], "app-auth");
    assert_eq!(payload["aud"], "app-api");
    assert_eq!(payload["sub"], id.as_str());
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        900
    );
    assert!(payload["jti"].as_str().is_some_and(|j| !j.is_empty()));

    let r = login(&host, "ADA@example.com", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_contract(&r);
    assert_no_password_hash(&r);
    let session = r.json();
    for key in ["accessToken", "refreshToken", "expiresIn", "user"] {
        assert!(!session[key].is_null(), "login lacks {key}: {session}");
    }
    let cookie = r.header("set-cookie").expect("login sets a cookie");
    for part in ["HttpOnly", "Secure", "SameSite=Strict", "refresh_token=rt_"] {
        assert!(cookie.contains(part), "cookie `{cookie}` lacks {part}");
    }

    let token = session["accessToken"].as_str().unwrap();
    let r = authed(&host, "GET", "/api/auth/me", token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_contract(&r);
    assert_no_password_hash(&r);
    assert_eq!(r.json()["id"], id.as_str());
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let r = app::call(&host, "GET", "/.well-known/jwks.json", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_contract(&r);
    let jwks = r.json();
    assert_eq!(jwks["keys"][0]["kid"], "test-key-1");
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");

    // The same address again, in another spelling: 409.
    let r = register(&host, "Other", "ada@EXAMPLE.com", PASSWORD).await;
    assert_error(&r, 409, "conflict");
}

#[tokio::test]
async fn registration_rules_are_all_reported() {
    let (host, _kp) = start(&[]);
    for weak in ["password", "12345678", "qwerty", "letmein"] {
        let r = register(&host, "Weak", "weak@example.com", weak).await;
        assert_error(&r, 400, "validation_failed");
        let codes: Vec<String> = r.json()["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["field"] == "password")
            .map(|d| d["code"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(codes, ["too_short", "too_common"], "{weak}: {}", r.text());
    }
    let r = register(&host, "", "not-an-email", "1234567890").await;
    assert_error(&r, 400, "validation_failed");
    let fields: Vec<String> = r.json()["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["field"].as_str().unwrap(),
                d["code"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            "name:required",
            "email:invalid_email",
            "password:too_common"
        ]
    );
    let r = register(
        &host,
        "Grace",
        "grace.hopper@example.com",
        "i-am-grace.hopper!",
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    assert!(r.text().contains("contains_email"), "{}", r.text());
    let r = json(
        &host,
        "POST",
        "/api/auth/register",
        None,
        &json!({ "name": "X", "email": "x@example.com", "password": PASSWORD, "role": "admin" }),
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(
        r.json()["error"]["details"][0]["field"],
        "role",
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn the_eleventh_credential_attempt_within_the_window_is_429() {
    // A window far longer than the test, so it cannot roll over midway.
    let (host, _kp) = start(&[
        ("credentials_rate_limit", "10"),
        ("credentials_rate_window_seconds", "1000000000"),
    ]);
    register_ok(&host, "Ada", "ada@example.com").await;
    for i in 2..=10 {
        let r = login(&host, &format!("nobody{i}@example.com"), "wrong password!").await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
        assert_eq!(r.header("ratelimit-limit"), Some("10"));
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some((10 - i).to_string().as_str())
        );
    }
    let sent = app::unix_secs();
    let r = login(&host, "ada@example.com", PASSWORD).await;
    assert_error(&r, 429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    app::assert_window_reset(retry, 1_000_000_000, sent);
    assert_eq!(
        r.header("ratelimit-reset"),
        Some(retry.to_string().as_str())
    );
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let r = register(&host, "Late", "late@example.com", PASSWORD).await;
    assert_error(&r, 429, "rate_limited");
}

#[tokio::test]
async fn five_failed_logins_lock_the_pair_until_the_lockout_ends() {
    // Long enough that the 6th attempt certainly comes before the lock ends,
    // however loaded the machine.
    const LOCKOUT: std::time::Duration = std::time::Duration::from_secs(10);
    let (host, _kp) = start(&[
        ("login_lockout_seconds", "10"),
        ("login_failure_window_seconds", "3600"),
    ]);
    register_ok(&host, "Ada", "ada@example.com").await;
    register_ok(&host, "Bob", "bob@example.com").await;
    // Failures 1 to 4 lock nothing (the next attempt is still checked and
    // gets 401, even the 5th)...
    let mut fifth_sent = Instant::now();
    for i in 1..=5 {
        fifth_sent = Instant::now();
        let r = login(&host, "ada@example.com", "wrong password!").await;
        assert_error(&r, 401, "unauthenticated");
        assert_eq!(r.header("retry-after"), None, "failure {i} is no lock");
    }
    // ...the 5th does: even the right password is refused now.
    let r = login(&host, "ada@example.com", PASSWORD).await;
    assert_error(&r, 429, "account_locked");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=LOCKOUT.as_secs()).contains(&retry), "{retry}");
    // Another e-mail from the same client is not locked.
    assert_eq!(login(&host, "bob@example.com", PASSWORD).await.status, 200);
    // The lock ends: poll until the right password is accepted again. It
    // is refused as locked until then, and it never ends early (a lower
    // bound from before the 5th failure was sent, which load cannot break).
    let r = wait_until("the lockout to end", LOCKOUT + PATIENCE, || async {
        let r = login(&host, "ada@example.com", PASSWORD).await;
        if r.status == 429 {
            assert_error(&r, 429, "account_locked");
            None
        } else {
            Some(r)
        }
    })
    .await;
    assert_eq!(r.status, 200, "after the lockout: {}", r.text());
    assert!(
        fifth_sent.elapsed() >= LOCKOUT,
        "unlocked after {:?}",
        fifth_sent.elapsed()
    );
    // A success resets the count: 4 + 4 failures around it lock nothing.
    for _ in 0..4 {
        assert_eq!(
            login(&host, "ada@example.com", "nope nope nope")
                .await
                .status,
            401
        );
    }
    assert_eq!(login(&host, "ada@example.com", PASSWORD).await.status, 200);
    for _ in 0..4 {
        assert_eq!(
            login(&host, "ada@example.com", "nope nope nope")
                .await
                .status,
            401
        );
    }
    assert_eq!(login(&host, "ada@example.com", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn wrong_email_and_wrong_password_look_the_same() {
    let (host, _kp) = start(&[("login_max_failures", "100")]);
    register_ok(&host, "Ada", "ada@example.com").await;
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    // Interleaved samples (the order alternating within each pair), so a
    // burst of load from elsewhere falls on both kinds alike; medians, so a
    // few stalled samples do not decide.
    for i in 0..11 {
        let unknown_first = i % 2 == 0;
        for kind in [unknown_first, !unknown_first] {
            let (email, samples) = if kind {
                ("nobody@example.com", &mut unknown)
            } else {
                ("ada@example.com", &mut wrong)
            };
            let t = Instant::now();
            let r = login(&host, email, "wrong password!").await;
            samples.push(t.elapsed());
            assert_error(&r, 401, "unauthenticated");
            assert_eq!(
                r.json()["error"]["message"],
                "the e-mail address or the password is wrong"
            );
        }
    }
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (u, w) = (median(&mut unknown), median(&mut wrong));
    // Both run one Argon2 computation; an unknown address must not be
    // answered in a fraction of the time. (Without the dummy hash it is
    // answered in well under a tenth: no Argon2 at all. The factor of 3
    // leaves room for noise that medians of interleaved samples do not
    // remove.)
    assert!(
        u * 3 > w,
        "median unknown e-mail {u:?} vs wrong password {w:?}"
    );
}

async fn refresh_with(host: &Host, token: &str) -> Reply {
    json(
        host,
        "POST",
        "/api/auth/refresh",
        None,
        &json!({ "refreshToken": token }),
    )
    .await
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let (host, _kp) = start(&[]);
    register_ok(&host, "Ada", "ada@example.com").await;
    let first = login(&host, "ada@example.com", PASSWORD).await.json();
    let rt1 = first["refreshToken"].as_str().unwrap().to_string();

    let r = refresh_with(&host, &rt1).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_contract(&r);
    assert_no_password_hash(&r);
    let second = r.json();
    let rt2 = second["refreshToken"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "rotated");
    let access2 = second["accessToken"].as_str().unwrap();
    assert_eq!(
        authed(&host, "GET", "/api/auth/me", access2).await.status,
        200
    );

    // rt1 was used: presenting it again revokes the family, rt2 included.
    assert_error(&refresh_with(&host, &rt1).await, 401, "unauthenticated");
    let r = refresh_with(&host, &rt2).await;
    assert_error(&r, 401, "unauthenticated");
    assert!(r.text().contains("revoked"), "{}", r.text());

    // Another login is a new family, unaffected.
    let other = login(&host, "ada@example.com", PASSWORD).await.json();
    let r = refresh_with(&host, other["refreshToken"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Garbage and missing tokens.
    assert_error(
        &refresh_with(&host, "rt_nope").await,
        401,
        "unauthenticated",
    );
    let r = app::call(&host, "POST", "/api/auth/refresh", &[], "").await;
    assert_error(&r, 401, "unauthenticated");
}

#[tokio::test]
async fn the_refresh_cookie_works_and_parallel_refreshes_of_one_token_succeed_once() {
    let (host, _kp) = start(&[]);
    register_ok(&host, "Ada", "ada@example.com").await;
    let r = login(&host, "ada@example.com", PASSWORD).await;
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = app::call(
        &host,
        "POST",
        "/api/auth/refresh",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rt = r.json()["refreshToken"].as_str().unwrap().to_string();

    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = host.url("/api/auth/refresh");
            let body = json!({ "refreshToken": rt }).to_string();
            tokio::spawn(async move {
                app_tests::send(
                    &app_tests::client(),
                    "POST",
                    &url,
                    &[("content-type", "application/json")],
                    body,
                )
                .await
                .unwrap()
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 401, 401, 401, 401, 401],
        "one token, one refresh"
    );
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_refresh_family() {
    let (host, _kp) = start(&[]);
    register_ok(&host, "Ada", "ada@example.com").await;
    let session = login(&host, "ada@example.com", PASSWORD).await.json();
    let access = session["accessToken"].as_str().unwrap();
    let rt = session["refreshToken"].as_str().unwrap();
    assert_eq!(
        authed(&host, "GET", "/api/users/me", access).await.status,
        200
    );

    let r = json(
        &host,
        "POST",
        "/api/auth/logout",
        Some(access),
        &json!({ "refreshToken": rt }),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_api_contract(&r);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));

    for path in ["/api/auth/me", "/api/users/me"] {
        let r = authed(&host, "GET", path, access).await;
        assert_error(&r, 401, "unauthenticated");
        assert!(r.text().contains("revoked"), "{path}: {}", r.text());
    }
    assert_error(&refresh_with(&host, rt).await, 401, "unauthenticated");
    // Logging out needs a valid access token.
    let r = app::call(&host, "POST", "/api/auth/logout", &[], "").await;
    assert_error(&r, 401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn bad_access_tokens_are_401_everywhere() {
    let (host, kp) = start(&[]);
    let (id, good) = register_ok(&host, "Ada", "ada@example.com").await;

    let header = |json: &str| b64url(json.as_bytes());
    let payload = b64url(
        json!({"sub": id, "role": "admin", "iss": "app-auth", "aud": "app-api",
               "exp": 4_000_000_000u64, "jti": "x"})
        .to_string()
        .as_bytes(),
    );
    let alg_none = format!(
        "{}.{payload}.",
        header(r#"{"alg":"none","typ":"JWT","kid":"test-key-1"}"#)
    );
    let hs256 = HS256Key::from_bytes(&kp.public_key().to_bytes())
        .with_key_id("test-key-1")
        .authenticate(claims(&id, "admin"))
        .unwrap();
    let (foreign, _) = key_pair("test-key-1");
    let foreign = foreign.sign(claims(&id, "user")).unwrap();
    let (unknown_kid, _) = key_pair("other-kid");
    let unknown_kid = unknown_kid.sign(claims(&id, "user")).unwrap();
    let wrong_audience = kp
        .sign(claims(&id, "user").with_audience("someone-else"))
        .unwrap();
    let wrong_issuer = kp.sign(claims(&id, "user").with_issuer("evil")).unwrap();
    let mut expired = claims(&id, "user");
    expired.expires_at = Some(Clock::now_since_epoch() - Duration::from_mins(5));
    let expired = kp.sign(expired).unwrap();
    let not_yet = kp
        .sign(claims(&id, "user").invalid_before(Clock::now_since_epoch() + Duration::from_mins(5)))
        .unwrap();
    let revoked_session = login(&host, "ada@example.com", PASSWORD).await.json();
    let revoked = revoked_session["accessToken"].as_str().unwrap().to_string();
    assert_eq!(
        authed(&host, "POST", "/api/auth/logout", &revoked)
            .await
            .status,
        204
    );
    // A correctly signed token of ours is accepted (the minting is right).
    let minted = kp.sign(claims(&id, "user")).unwrap();
    for path in ["/api/auth/me", "/api/users/me"] {
        assert_eq!(
            authed(&host, "GET", path, &minted).await.status,
            200,
            "{path}"
        );
        assert_eq!(
            authed(&host, "GET", path, &good).await.status,
            200,
            "{path}"
        );
    }

    let cases = [
        ("alg none", alg_none.as_str()),
        ("HS256", hs256.as_str()),
        ("foreign key", foreign.as_str()),
        ("unknown kid", unknown_kid.as_str()),
        ("wrong audience", wrong_audience.as_str()),
        ("wrong issuer", wrong_issuer.as_str()),
        ("expired", expired.as_str()),
        ("not yet valid", not_yet.as_str()),
        ("revoked", revoked.as_str()),
        ("garbage", "not.a.jwt"),
    ];
    for (what, token) in cases {
        for path in ["/api/auth/me", "/api/users/me", &format!("/api/users/{id}")] {
            let r = authed(&host, "GET", path, token).await;
            assert_eq!(r.status, 401, "{what} on {path}: {}", r.text());
            assert_error(&r, 401, "unauthenticated");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    let r = app::call(&host, "GET", "/api/users/me", &[], "").await;
    assert_error(&r, 401, "unauthenticated");
    let r = app::call(
        &host,
        "GET",
        "/api/users/me",
        &[("authorization", "Basic YTpi")],
        "",
    )
    .await;
    assert_error(&r, 401, "unauthenticated");
}

#[tokio::test]
async fn several_public_keys_are_valid_during_a_rotation() {
    let (old, _) = key_pair("old");
    let (new, keys) = key_pair("new");
    let public = format!(
        "old:{}, {}",
        app::base64(&old.public_key().to_bytes()),
        keys.public
    );
    let host = app::start(Some(&keys), &[("jwt_public_keys", &public)]);
    let (id, _) = register_ok(&host, "Ada", "ada@example.com").await;
    for kp in [&old, &new] {
        let token = kp.sign(claims(&id, "user")).unwrap();
        let r = authed(&host, "GET", "/api/users/me", &token).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let jwks = app::call(&host, "GET", "/.well-known/jwks.json", &[], "")
        .await
        .json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["old", "new"]);
}

/// A token verifies once and is remembered (see `tokens::cache`); what it
/// verified with must still hold on every later request.
#[tokio::test]
async fn a_remembered_token_is_refused_once_its_key_is_withdrawn() {
    let (old, _) = key_pair("old");
    let (new, keys) = key_pair("new");
    let both = format!(
        "old:{}, {}",
        app::base64(&old.public_key().to_bytes()),
        keys.public
    );
    let mut host = app::start(Some(&keys), &[("jwt_public_keys", &both)]);
    let (id, _) = register_ok(&host, "Ada", "ada@example.com").await;
    let token = old.sign(claims(&id, "user")).unwrap();
    for _ in 0..3 {
        let r = authed(&host, "GET", "/api/users/me", &token).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The rotation ends: the old key is withdrawn, the store keeps what
    // was remembered.
    for arg in host.args.iter_mut() {
        if arg.starts_with("jwt_public_keys=") {
            *arg = format!("jwt_public_keys={}", keys.public);
        }
    }
    host.restart();
    let r = authed(&host, "GET", "/api/users/me", &token).await;
    assert_error(&r, 401, "unauthenticated");
    let fresh = new.sign(claims(&id, "user")).unwrap();
    let r = authed(&host, "GET", "/api/users/me", &fresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn without_keys_the_app_refuses_to_issue_or_verify() {
    let host = app::start(None, &[]);
    let r = register(&host, "Ada", "ada@example.com", PASSWORD).await;
    assert_error(&r, 503, "service_unavailable");
    assert!(r.text().contains("jwt_signing_key"), "{}", r.text());
    assert_error(
        &login(&host, "ada@example.com", PASSWORD).await,
        503,
        "service_unavailable",
    );
    let r = app::call(&host, "GET", "/.well-known/jwks.json", &[], "").await;
    assert_error(&r, 503, "service_unavailable");
    let (kp, _) = key_pair("k");
    let token = kp.sign(claims("u", "admin")).unwrap();
    let r = authed(&host, "GET", "/api/users/me", &token).await;
    assert_error(&r, 503, "service_unavailable");
    assert!(r.text().contains("jwt_public_keys"), "{}", r.text());
}

#[tokio::test]
async fn the_admin_bootstrap_email_registers_as_admin() {
    let (host, _kp) = start(&[("admin_email", "Boss@Example.com")]);
    let r = register(&host, "Boss", "boss@example.com", PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["user"]["role"], "admin");
    let r = register(&host, "Ada", "ada@example.com", PASSWORD).await;
    assert_eq!(r.json()["user"]["role"], "user");
}

#[tokio::test]
async fn the_admin_bootstrap_happens_once() {
    let (host, _kp) = start(&[("admin_email", "boss@example.com")]);
    let (boss_id, boss) = register_ok(&host, "Boss", "boss@example.com").await;
    let r = authed(&host, "GET", "/api/auth/me", &boss).await;
    assert_eq!(r.json()["role"], "admin", "{}", r.text());
    // The admin moves to another address; the bootstrap one is free again.
    let r = json(
        &host,
        "PATCH",
        &format!("/api/users/{boss_id}"),
        Some(&boss),
        &json!({ "email": "boss@elsewhere.example" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = register(&host, "Mallory", "BOSS@example.com", PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["user"]["role"], "user", "{}", r.text());
    let mallory = r.json()["accessToken"].as_str().unwrap().to_string();
    assert_error(
        &authed(&host, "GET", "/api/users", &mallory).await,
        403,
        "forbidden",
    );
    let r = authed(&host, "GET", "/api/users", &boss).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn parallel_bootstrap_registrations_make_one_admin() {
    // Different spellings normalise to one address: one account, one admin.
    let (host, _kp) = start(&[("admin_email", "boss@example.com")]);
    let spellings = ["boss@example.com", "Boss@example.com", " BOSS@example.com "];
    let replies = futures::future::join_all(
        spellings
            .iter()
            .map(|email| register(&host, "Boss", email, PASSWORD)),
    )
    .await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    let winner = replies.iter().find(|r| r.status == 201).unwrap();
    assert_eq!(winner.json()["user"]["role"], "admin");
    let token = winner.json()["accessToken"].as_str().unwrap().to_string();
    let r = authed(&host, "GET", "/api/users?role=admin", &token).await;
    assert_eq!(
        r.json()["items"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );
}
