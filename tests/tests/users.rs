//! The users component, black-box: who may read and change whom, ETag /
//! If-Match concurrency, the read cache, pagination and filters, deletion,
//! and race-free unique e-mail addresses.

use app_tests::app::{
    self, Keys, PASSWORD, assert_api_contract, assert_error, authed, json, login, register,
    register_ok,
};
use app_tests::{Host, PATIENCE, Reply, wait_until};
use jwt_simple::prelude::*;
use serde_json::json;

fn start(variables: &[(&str, &str)]) -> Host {
    let kp = Ed25519KeyPair::generate();
    let keys = Keys::from_bytes("users-test", &kp.to_bytes(), &kp.public_key().to_bytes());
    let mut all = vec![("admin_email", "admin@example.com")];
    all.extend_from_slice(variables);
    app::start(Some(&keys), &all)
}

fn assert_clean(r: &Reply) {
    assert_api_contract(r);
    assert!(!r.text().contains("$argon2"), "hash leaked: {}", r.text());
    assert!(
        !r.text().contains("assword\":"),
        "password field: {}",
        r.text()
    );
}

async fn patch(
    host: &Host,
    id: &str,
    token: &str,
    if_match: Option<&str>,
    body: serde_json::Value,
) -> Reply {
    app::patch_json(host, &format!("/api/users/{id}"), token, if_match, body).await
}

#[tokio::test]
async fn users_reach_themselves_and_admins_reach_everyone() {
    let host = start(&[]);
    let (admin_id, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (bob_id, bob) = register_ok(&host, "Bob", "bob@example.com").await;

    let r = authed(&host, "GET", &format!("/api/users/{ada_id}"), &ada).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_clean(&r);
    assert_eq!(r.json()["email"], "ada@example.com");
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = authed(&host, "GET", "/api/users/me", &ada).await;
    assert_eq!(r.json()["id"], ada_id.as_str());
    assert_clean(&r);

    // Not each other.
    assert_error(
        &authed(&host, "GET", &format!("/api/users/{bob_id}"), &ada).await,
        403,
        "forbidden",
    );
    assert_error(
        &patch(&host, &bob_id, &ada, None, json!({"name": "Mallory"})).await,
        403,
        "forbidden",
    );
    assert_error(
        &authed(&host, "DELETE", &format!("/api/users/{bob_id}"), &ada).await,
        403,
        "forbidden",
    );
    assert_error(
        &authed(&host, "GET", "/api/users", &ada).await,
        403,
        "forbidden",
    );
    // Not their own role.
    assert_error(
        &patch(&host, &ada_id, &ada, None, json!({"role": "admin"})).await,
        403,
        "forbidden",
    );

    // Their own name, yes.
    let r = patch(&host, &ada_id, &ada, None, json!({"name": "Ada L."})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_clean(&r);
    assert_eq!(r.json()["name"], "Ada L.");
    assert_eq!(r.header("etag"), Some("\"2\""));

    // The admin reads and changes anyone, role included.
    let r = authed(&host, "GET", &format!("/api/users/{bob_id}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = patch(
        &host,
        &bob_id,
        &admin,
        None,
        json!({"role": "admin", "name": "Robert"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["role"], "admin");
    assert_eq!(
        authed(&host, "GET", &format!("/api/users/{admin_id}"), &bob)
            .await
            .status,
        403,
        "Bob's current token still says `user` until it is renewed"
    );
    let bob_again = login(&host, "bob@example.com", PASSWORD).await.json();
    let r = authed(
        &host,
        "GET",
        &format!("/api/users/{admin_id}"),
        bob_again["accessToken"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn bad_ids_are_400_and_unknown_ids_404() {
    let host = start(&[]);
    let (_, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    for bad in ["42", "not-a-uuid", "0190aaaa-bbbb-7ccc-8ddd-EEEEEEEEEEEE"] {
        let r = authed(&host, "GET", &format!("/api/users/{bad}"), &admin).await;
        assert_error(&r, 400, "validation_failed");
        assert_eq!(r.json()["error"]["details"][0]["field"], "id");
    }
    let unknown = "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee";
    for method in ["GET", "DELETE"] {
        let r = authed(&host, method, &format!("/api/users/{unknown}"), &admin).await;
        assert_error(&r, 404, "not_found");
    }
    assert_error(
        &patch(&host, unknown, &admin, None, json!({"name": "X"})).await,
        404,
        "not_found",
    );
    // Someone else's id, existing or not, is none of a user's business.
    let r = authed(&host, "GET", &format!("/api/users/{unknown}"), &ada).await;
    assert_error(&r, 403, "forbidden");
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_writes_nothing() {
    let host = start(&[]);
    let (id, token) = register_ok(&host, "Ada", "ada@example.com").await;
    let r = authed(&host, "GET", &format!("/api/users/{id}"), &token).await;
    let v1 = r.header("etag").unwrap().to_string();
    assert_eq!(v1, "\"1\"");

    let r = patch(&host, &id, &token, Some(&v1), json!({"name": "First"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v2 = r.header("etag").unwrap().to_string();
    assert_eq!(v2, "\"2\"");

    let r = patch(
        &host,
        &id,
        &token,
        Some(&v1),
        json!({"name": "Lost update"}),
    )
    .await;
    assert_error(&r, 412, "precondition_failed");
    assert!(
        r.text().contains("\\\"2\\\""),
        "names the current ETag: {}",
        r.text()
    );
    let r = authed(&host, "GET", &format!("/api/users/{id}"), &token).await;
    assert_eq!(r.json()["name"], "First", "nothing written");
    assert_eq!(r.header("etag"), Some(v2.as_str()));

    let auth = format!("Bearer {token}");
    let r = app::call(
        &host,
        "DELETE",
        &format!("/api/users/{id}"),
        &[("authorization", &auth), ("if-match", &v1)],
        "",
    )
    .await;
    assert_error(&r, 412, "precondition_failed");
    assert_eq!(
        authed(&host, "GET", "/api/users/me", &token).await.status,
        200
    );

    let r = patch(&host, &id, &token, Some("*"), json!({"name": "Any"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = patch(&host, &id, &token, Some("W/\"3\""), json!({"name": "Weak"})).await;
    assert_error(&r, 412, "precondition_failed");
    let r = app::call(
        &host,
        "DELETE",
        &format!("/api/users/{id}"),
        &[("authorization", &auth), ("if-match", "\"3\"")],
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_api_contract(&r);
}

#[tokio::test]
async fn parallel_writes_with_one_if_match_let_exactly_one_through() {
    let host = start(&[]);
    let (id, token) = register_ok(&host, "Ada", "ada@example.com").await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let url = host.url(&format!("/api/users/{id}"));
            let auth = format!("Bearer {token}");
            tokio::spawn(async move {
                app_tests::send(
                    &app_tests::client(),
                    "PATCH",
                    &url,
                    &[
                        ("content-type", "application/json"),
                        ("authorization", &auth),
                        ("if-match", "\"1\""),
                    ],
                    json!({ "name": format!("Writer {i}") }).to_string(),
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
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412]);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one() {
    let host = start(&[]);
    let (id, token) = register_ok(&host, "Ada", "ada@example.com").await;
    let new_password = "an entirely new passphrase";
    let r = patch(&host, &id, &token, None, json!({"password": new_password})).await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["field"], "currentPassword");
    let r = patch(
        &host,
        &id,
        &token,
        None,
        json!({"password": new_password, "currentPassword": "not the password"}),
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    let r = patch(
        &host,
        &id,
        &token,
        None,
        json!({"password": "qwerty", "currentPassword": PASSWORD}),
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    let r = patch(
        &host,
        &id,
        &token,
        None,
        json!({"password": new_password, "currentPassword": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_clean(&r);
    assert_eq!(login(&host, "ada@example.com", PASSWORD).await.status, 401);
    assert_eq!(
        login(&host, "ada@example.com", new_password).await.status,
        200
    );
}

#[tokio::test]
async fn emails_stay_unique_and_valid_on_update() {
    let host = start(&[]);
    register_ok(&host, "Bob", "bob@example.com").await;
    let (id, token) = register_ok(&host, "Ada", "ada@example.com").await;
    let r = patch(
        &host,
        &id,
        &token,
        None,
        json!({"email": " BOB@example.com"}),
    )
    .await;
    assert_error(&r, 409, "conflict");
    let r = patch(&host, &id, &token, None, json!({"email": "not an email"})).await;
    assert_error(&r, 400, "validation_failed");
    let r = patch(
        &host,
        &id,
        &token,
        None,
        json!({"email": "Ada@Lovelace.org"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["email"], "ada@lovelace.org");
    assert_eq!(login(&host, "ada@lovelace.org", PASSWORD).await.status, 200);
    let r = patch(&host, &id, &token, None, json!({})).await;
    assert_error(&r, 400, "validation_failed");
    let r = patch(
        &host,
        &id,
        &token,
        None,
        json!({"name": "X", "isAdmin": true}),
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["field"], "isAdmin");
}

#[tokio::test]
async fn parallel_registrations_of_one_email_create_one_account() {
    let host = start(&[]);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let url = host.url("/api/auth/register");
            // The same address in different spellings.
            let email = if i % 2 == 0 {
                "race@example.com"
            } else {
                "RACE@example.com "
            };
            let body =
                json!({ "name": format!("Racer {i}"), "email": email, "password": PASSWORD });
            tokio::spawn(async move {
                app_tests::send(
                    &app_tests::client(),
                    "POST",
                    &url,
                    &[("content-type", "application/json")],
                    body.to_string(),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_api_contract(&r);
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    let (_, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    let r = authed(&host, "GET", "/api/users?emailPrefix=race", &admin).await;
    assert_eq!(
        r.json()["items"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn the_admin_list_paginates_and_filters() {
    let host = start(&[]);
    let (_, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    for name in ["ann", "amy", "bea", "bob", "cy"] {
        register_ok(&host, name, &format!("{name}@example.com")).await;
    }
    // Every user, two per page, in creation order.
    let mut seen = Vec::new();
    let mut path = "/api/users?limit=2".to_string();
    loop {
        let r = authed(&host, "GET", &path, &admin).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_clean(&r);
        let page = r.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/users?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "admin@example.com",
            "ann@example.com",
            "amy@example.com",
            "bea@example.com",
            "bob@example.com",
            "cy@example.com"
        ]
    );
    let emails = |r: Reply| -> Vec<String> {
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_string())
            .collect()
    };
    let r = authed(&host, "GET", "/api/users?role=admin", &admin).await;
    assert_eq!(emails(r), ["admin@example.com"]);
    let r = authed(&host, "GET", "/api/users?emailPrefix=A", &admin).await;
    assert_eq!(
        emails(r),
        ["admin@example.com", "ann@example.com", "amy@example.com"]
    );
    let r = authed(
        &host,
        "GET",
        "/api/users?emailPrefix=b&role=user&limit=1",
        &admin,
    )
    .await;
    let page = r.json();
    assert_eq!(page["items"][0]["email"], "bea@example.com");
    let next = page["nextCursor"].as_str().unwrap();
    let r = authed(
        &host,
        "GET",
        &format!("/api/users?emailPrefix=b&role=user&limit=1&cursor={next}"),
        &admin,
    )
    .await;
    assert_eq!(emails(r), ["bob@example.com"]);

    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=garbage",
        "role=root",
        "sort=email",
    ] {
        let r = authed(&host, "GET", &format!("/api/users?{bad}"), &admin).await;
        assert_error(&r, 400, "validation_failed");
    }
    let r = authed(&host, "GET", "/api/users?limit=100", &admin).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn users_delete_themselves_and_admins_delete_anyone() {
    let host = start(&[]);
    let (_, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (bob_id, _) = register_ok(&host, "Bob", "bob@example.com").await;
    let r = authed(&host, "DELETE", &format!("/api/users/{ada_id}"), &ada).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_error(
        &authed(&host, "GET", "/api/users/me", &ada).await,
        404,
        "not_found",
    );
    assert_eq!(login(&host, "ada@example.com", PASSWORD).await.status, 401);
    let r = authed(&host, "DELETE", &format!("/api/users/{bob_id}"), &admin).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_error(
        &authed(&host, "GET", &format!("/api/users/{bob_id}"), &admin).await,
        404,
        "not_found",
    );
    // The address is free again.
    assert_eq!(
        register(&host, "Ada", "ada@example.com", PASSWORD)
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn reads_are_cached_and_every_write_invalidates() {
    let host = start(&[("user_cache_ttl_seconds", "60")]);
    let (id, token) = register_ok(&host, "Ada", "ada@example.com").await;
    let get = || authed(&host, "GET", "/api/users/me", &token);
    assert_eq!(get().await.json()["name"], "Ada");
    // A write is visible at once: the cached entry was invalidated.
    let r = patch(&host, &id, &token, None, json!({"name": "Ada L."})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get().await.json()["name"], "Ada L.");
    assert_eq!(get().await.header("etag"), Some("\"2\""));

    // Reads within the TTL do not reach the database: with the records gone
    // (host stopped, records dropped, host started on the same key-value
    // store), the cached profile is still served.
    let mut host = host;
    host.kill();
    app::drop_records(&host);
    host.restart();
    let r = authed(&host, "GET", "/api/users/me", &token).await;
    assert_eq!(r.status, 200, "served from the cache: {}", r.text());
    assert_eq!(r.json()["name"], "Ada L.");
    // The login path reads the database directly and finds nobody.
    assert_eq!(login(&host, "ada@example.com", PASSWORD).await.status, 401);
}

#[tokio::test]
async fn cached_reads_expire() {
    let mut host = start(&[("user_cache_ttl_seconds", "1")]);
    let (_, token) = register_ok(&host, "Ada", "ada@example.com").await;
    assert_eq!(
        authed(&host, "GET", "/api/users/me", &token).await.status,
        200
    );
    host.kill();
    app::drop_records(&host);
    host.restart();
    // Poll until the cached profile expires (1 s TTL): until then it is
    // served from the cache, then the missing record shows.
    let r = wait_until("the cached profile to expire", PATIENCE, || async {
        let r = authed(&host, "GET", "/api/users/me", &token).await;
        if r.status == 200 {
            assert_eq!(r.json()["name"], "Ada", "only the cached profile");
            None
        } else {
            Some(r)
        }
    })
    .await;
    assert_error(&r, 404, "not_found");
}

#[tokio::test]
async fn json_bodies_are_checked_strictly() {
    let host = start(&[]);
    let (id, token) = register_ok(&host, "Ada", "ada@example.com").await;
    let auth = format!("Bearer {token}");
    let path = format!("/api/users/{id}");
    let r = app::call(
        &host,
        "PATCH",
        &path,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        "{\n  \"name\": \"x\",\n  oops\n}",
    )
    .await;
    assert_error(&r, 400, "malformed_json");
    assert_eq!(r.json()["error"]["details"][0]["line"], 3);
    assert_eq!(r.json()["error"]["details"][0]["column"], 3);
    let r = app::call(
        &host,
        "PATCH",
        &path,
        &[("content-type", "text/plain"), ("authorization", &auth)],
        "{}",
    )
    .await;
    assert_error(&r, 415, "unsupported_media_type");
    let r = json(&host, "PATCH", &path, Some(&token), &json!({"name": 5})).await;
    assert_error(&r, 400, "validation_failed");
}

/// A refresh of `refresh_token`.
async fn refresh(host: &Host, refresh_token: &str) -> Reply {
    json(
        host,
        "POST",
        "/api/auth/refresh",
        None,
        &json!({ "refreshToken": refresh_token }),
    )
    .await
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_the_user() {
    let host = start(&[]);
    let (id, _) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, bob) = register_ok(&host, "Bob", "bob@example.com").await;
    let session = |r: Reply| {
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        let token = |name: &str| body[name].as_str().unwrap().to_string();
        (token("accessToken"), token("refreshToken"))
    };
    let (laptop_access, laptop_refresh) = session(login(&host, "ada@example.com", PASSWORD).await);
    let (_, phone_refresh) = session(login(&host, "ada@example.com", PASSWORD).await);
    // Both sessions work, and a refresh keeps the phone's going.
    let (phone_access, phone_refresh) = session(refresh(&host, &phone_refresh).await);
    for token in [&laptop_access, &phone_access] {
        assert_eq!(
            authed(&host, "GET", "/api/users/me", token).await.status,
            200
        );
    }

    let new_password = "an entirely new passphrase";
    let r = patch(
        &host,
        &id,
        &laptop_access,
        None,
        json!({"password": new_password, "currentPassword": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The other session is over: its refresh token and its access token,
    // in every component (users, auth, orders).
    assert_error(
        &refresh(&host, &phone_refresh).await,
        401,
        "unauthenticated",
    );
    for path in ["/api/users/me", "/api/auth/me", "/api/orders"] {
        let r = authed(&host, "GET", path, &phone_access).await;
        assert_error(&r, 401, "unauthenticated");
        assert!(r.text().contains("revoked"), "{path}: {}", r.text());
    }
    // So is the caller's own (documented: log in again).
    assert_error(
        &refresh(&host, &laptop_refresh).await,
        401,
        "unauthenticated",
    );
    assert_error(
        &authed(&host, "GET", "/api/users/me", &laptop_access).await,
        401,
        "unauthenticated",
    );
    // Someone else's sessions are untouched.
    assert_eq!(
        authed(&host, "GET", "/api/users/me", &bob).await.status,
        200
    );
    // A session opened with the new password works at once, refresh included.
    let (access, refresh_token) = session(login(&host, "ada@example.com", new_password).await);
    assert_eq!(
        authed(&host, "GET", "/api/users/me", &access).await.status,
        200
    );
    let (access, _) = session(refresh(&host, &refresh_token).await);
    assert_eq!(
        authed(&host, "GET", "/api/orders", &access).await.status,
        200
    );
}

#[tokio::test]
async fn other_changes_keep_sessions_alive() {
    let host = start(&[]);
    let (id, token) = register_ok(&host, "Ada", "ada@example.com").await;
    let r = login(&host, "ada@example.com", PASSWORD).await;
    let refresh_token = r.json()["refreshToken"].as_str().unwrap().to_string();
    let r = patch(
        &host,
        &id,
        &token,
        None,
        json!({"name": "Ada L.", "email": "ada@l.example"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        authed(&host, "GET", "/api/users/me", &token).await.status,
        200
    );
    assert_eq!(refresh(&host, &refresh_token).await.status, 200);
}
