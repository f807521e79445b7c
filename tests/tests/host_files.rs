//! Component `files` as Spin mounts them: glob patterns (minus
//! `exclude_files`) at their relative paths, directories at a destination,
//! all read-only; bad entries refused at start with the reason.

use app_tests::{Host, get, request, start_failure, wasm};

fn manifest(files: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "files"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "{}"
files = {files}
exclude_files = ["**/*.key"]
"#,
        wasm("fixture-p2-app").display()
    )
}

async fn read(host: &Host, path: &str) -> app_tests::Reply {
    get(host.url(&format!("/file?path={path}"))).await
}

#[tokio::test]
async fn globs_and_directories_are_mounted_read_only() {
    let host = Host::start_with_files(
        &manifest(r#"["static/**/*", { source = "assets", destination = "/www" }]"#),
        &[
            ("static/index.html", "<h1>hello</h1>"),
            ("static/css/site.css", "body {}"),
            ("static/server.key", "private"),
            ("assets/logo.txt", "logo"),
            ("private.txt", "not listed"),
        ],
        &[],
        &[],
    );
    assert_eq!(
        read(&host, "/static/index.html").await.json(),
        "<h1>hello</h1>"
    );
    assert_eq!(read(&host, "/static/css/site.css").await.json(), "body {}");
    assert_eq!(read(&host, "/www/logo.txt").await.json(), "logo");
    // Excluded, unlisted, or outside every mount: not there.
    for absent in [
        "/static/server.key",
        "/private.txt",
        "/spin.toml",
        "/www/../private.txt",
    ] {
        let r = read(&host, absent).await;
        assert_eq!(r.status, 404, "{absent}: {}", r.text());
    }
    // Read-only, both kinds.
    for path in ["/static/index.html", "/www/new.txt"] {
        let r = request("POST", host.url(&format!("/file?path={path}")), "x").await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    assert!(!host.dir.path().join("assets/new.txt").exists());
}

#[test]
fn bad_files_entries_are_refused_with_the_reason() {
    for (files, says) in [
        (r#"["../outside/*"]"#, "leaves the app's directory"),
        (
            r#"[{ source = "missing", destination = "/m" }]"#,
            "is not a directory",
        ),
        (
            r#"[{ source = "assets", destination = "relative" }]"#,
            "absolute",
        ),
    ] {
        let err = start_failure(&manifest(files), &[]);
        assert!(err.contains(says), "{files}: {err}");
    }
}
