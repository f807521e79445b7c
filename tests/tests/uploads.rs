//! The uploads component, black-box: every accepted type round-trips
//! byte-exact, types come from magic bytes (not names or claimed types),
//! names are sanitised, limits are enforced while streaming, at most five
//! files per request, downloads honour ETag / If-None-Match / Range, only
//! owners and admins see an upload, and no failed, aborted or deleted
//! upload leaves a chunk behind (checked in the host's key-value file).

use app_tests::app::{self, Keys, assert_api_contract, assert_error, authed, register_ok};
use app_tests::{Host, Reply};
use jwt_simple::prelude::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;
const LIMIT: usize = 5 * MIB;
const BOUNDARY: &str = "uploads-test-boundary-5b1f";

fn start(variables: &[(&str, &str)]) -> Host {
    let kp = Ed25519KeyPair::generate();
    let keys = Keys::from_bytes("uploads-test", &kp.to_bytes(), &kp.public_key().to_bytes());
    let mut all = vec![("admin_email", "admin@example.com")];
    all.extend_from_slice(variables);
    app::start(Some(&keys), &all)
}

// ---- files ---------------------------------------------------------------------

/// A file of `kind` (`png`, `jpeg`, `gif`, `pdf`, or anything else for no
/// known signature) of `len` bytes: the type's header, then varied bytes.
fn file(kind: &str, len: usize) -> Vec<u8> {
    let header: &[u8] = match kind {
        "png" => b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0",
        "jpeg" => b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0",
        "gif" => b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xFF\xFF\xFF!\xF9\x04",
        "pdf" => b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        "exe" => b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xFF\xFF\0\0",
        _ => b"just some text, not an image\n",
    };
    let mut bytes = header.to_vec();
    let mut x = 0x9E37_79B9u32 ^ len as u32;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    bytes.truncate(len);
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    hmac_sha256::Hash::hash(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One part of a form: field name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a str, &'a [u8]);

fn form(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, name, content_type, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{field}\"");
        if let Some(name) = name {
            disposition.push_str(&format!("; filename=\"{name}\""));
        }
        body.extend_from_slice(
            format!("{disposition}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

async fn upload_form(host: &Host, token: &str, parts: &[Part<'_>]) -> Reply {
    let auth = format!("Bearer {token}");
    let content_type = form_type();
    app::call(
        host,
        "POST",
        "/api/uploads",
        &[("authorization", &auth), ("content-type", &content_type)],
        form(parts),
    )
    .await
}

/// A raw GIF upload of `size` bytes.
async fn upload_gif(host: &Host, token: &str, size: usize) -> Reply {
    upload_raw(
        host,
        token,
        &[("content-type", "image/gif")],
        file("gif", size),
    )
    .await
}

async fn upload_raw(host: &Host, token: &str, headers: &[(&str, &str)], bytes: Vec<u8>) -> Reply {
    let auth = format!("Bearer {token}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    app::call(host, "POST", "/api/uploads", &all, bytes).await
}

async fn get_with(host: &Host, path: &str, token: &str, headers: &[(&str, &str)]) -> Reply {
    let auth = format!("Bearer {token}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    app::call(host, "GET", path, &all, "").await
}

// ---- the host's stores ---------------------------------------------------------------

/// `(key, value length)` of every upload chunk in the key-value store.
fn stored_chunks(host: &Host) -> Vec<(String, usize)> {
    let path = host.state_dir().join("sqlite_key_value.db");
    if !path.exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT key, length(value) FROM spin_key_value
             WHERE store = 'default' AND key LIKE 'upload:%' ORDER BY key",
        )
        .unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as usize)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn chunks_of(host: &Host, id: &str) -> Vec<(String, usize)> {
    stored_chunks(host)
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("upload:{id}:chunk:")))
        .collect()
}

/// Rows in the `uploads` table (0 before it exists), on either engine.
fn upload_rows(host: &Host) -> i64 {
    if let Some(db) = app::postgres_database(host) {
        let (ok, out) =
            app_tests::PostgresServer::shared().psql(&db, "SELECT count(*) FROM uploads");
        return if ok { out.parse().unwrap() } else { 0 };
    }
    let path = host.state_dir().join("sqlite_db.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap_or(0)
}

/// A metrics counter as the app stored it: in the host's key-value file,
/// or at the edge in the host's Redis (`counters_store = redis`).
fn counter(host: &Host, series: &str) -> i64 {
    if let Some(redis) = &host.redis {
        let value = redis.cli(&["GET", &format!("metrics:v1:counter:{series}")]);
        return value.trim().parse().unwrap_or(0);
    }
    let path = host.state_dir().join("sqlite_key_value.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let key = format!("metrics:v1:counter:{series}");
    conn.query_row(
        "SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1",
        [&key],
        |r| r.get::<_, Vec<u8>>(0),
    )
    .map(|v| i64::from_le_bytes(v.try_into().unwrap()))
    .unwrap_or(0)
}

fn assert_nothing_stored(host: &Host) {
    assert_eq!(stored_chunks(host), Vec::<(String, usize)>::new());
    assert_eq!(upload_rows(host), 0);
}

// ---- raw HTTP, for bodies that are sent slowly or abandoned ----------------------------

async fn open_request(host: &Host, token: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", host.port)).await.unwrap();
    let mut head = format!(
        "POST /api/uploads HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nauthorization: Bearer {token}\r\n",
        host.port
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// A response read off a raw connection.
struct RawReply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawReply {
    /// The app's error code, or the host's when the host answered itself
    /// (at the edge the platform's body limit refuses before the app).
    fn error_code(&self) -> String {
        if let Some(code) = self
            .head
            .lines()
            .find_map(|l| l.strip_prefix("runtime-host-error: "))
        {
            return code.trim().to_string();
        }
        let body: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{:?}", self.head, self.body));
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Reads from `stream` into `buf` until `ready(buf)` says where the wanted
/// part ends.
async fn read_until(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    ready: impl Fn(&[u8]) -> Option<usize>,
) -> usize {
    let mut piece = [0u8; 16 * 1024];
    loop {
        if let Some(end) = ready(buf) {
            return end;
        }
        let n = stream.read(&mut piece).await.unwrap();
        assert!(
            n > 0,
            "connection closed inside a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&piece[..n]);
    }
}

fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

/// Reads one response (head, and a body framed by `content-length` or
/// chunked) from `stream`, `buf` holding what was read beyond the previous.
async fn read_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> RawReply {
    let end = read_until(stream, buf, |b| {
        b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
    })
    .await;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let end = read_until(stream, buf, line_end).await;
            let size_line = String::from_utf8_lossy(&buf[..end - 2]).into_owned();
            buf.drain(..end);
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                let end = read_until(stream, buf, line_end).await;
                buf.drain(..end);
                break;
            }
            read_until(stream, buf, |b| (b.len() >= size + 2).then_some(size + 2)).await;
            body.extend(buf.drain(..size + 2).take(size));
        }
    } else if status >= 200 && status != 204 && status != 304 {
        let length = header("content-length").map_or(0, |v| v.parse::<usize>().unwrap());
        read_until(stream, buf, |b| (b.len() >= length).then_some(length)).await;
        body = buf.drain(..length).collect();
    }
    RawReply { status, head, body }
}

/// Posts `body` as a careful client does: `Expect: 100-continue` first,
/// the body only after `100 Continue` (sent while the answer is read, so
/// an early refusal is seen even if the server stops reading). `headers`
/// carry the framing (`content-length` or chunked, `body` then encoded).
async fn post_expecting(
    host: &Host,
    token: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawReply {
    let mut all = headers.to_vec();
    all.push(("expect", "100-continue"));
    let stream = open_request(host, token, &all).await;
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = Vec::new();
    let first = read_response(&mut reader, &mut buf).await;
    if first.status != 100 {
        return first;
    }
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&body).await;
        writer
    });
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        read_response(&mut reader, &mut buf),
    )
    .await
    .expect("a final response");
    sending.abort();
    reply
}

/// `bytes` in the chunked transfer coding, in pieces of `piece` bytes.
fn chunked(bytes: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for p in bytes.chunks(piece) {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test]
async fn every_allowed_type_round_trips_byte_exact() {
    let host = start(&[]);
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let cases = [
        ("png", "cat.png", "image/png"),
        ("jpeg", "photo.jpg", "image/jpeg"),
        ("gif", "anim.gif", "image/gif"),
        ("pdf", "report.pdf", "application/pdf"),
    ];
    for (i, (kind, name, media_type)) in cases.into_iter().enumerate() {
        let bytes = file(kind, 1000 + 333 * i);
        // Multipart and raw bodies both.
        let r = if i % 2 == 0 {
            upload_form(&host, &ada, &[("file", Some(name), media_type, &bytes)]).await
        } else {
            let disposition = format!("attachment; filename=\"{name}\"");
            upload_raw(
                &host,
                &ada,
                &[
                    ("content-type", media_type),
                    ("content-disposition", &disposition),
                ],
                bytes.clone(),
            )
            .await
        };
        assert_eq!(r.status, 201, "{kind}: {}", r.text());
        assert_api_contract(&r);
        let meta = r.json();
        let id = meta["id"].as_str().unwrap().to_string();
        assert_eq!(
            r.header("location"),
            Some(format!("/api/uploads/{id}").as_str())
        );
        assert_eq!(meta["name"], name);
        assert_eq!(meta["type"], media_type);
        assert_eq!(meta["size"], bytes.len());
        assert_eq!(meta["sha256"], sha256(&bytes));
        assert_eq!(meta["ownerId"], ada_id.as_str());
        assert!(meta["createdAt"].as_str().unwrap().ends_with('Z'));

        let r = authed(&host, "GET", &format!("/api/uploads/{id}"), &ada).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), meta);

        let r = authed(&host, "GET", &format!("/api/uploads/{id}/content"), &ada).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.as_ref(), bytes.as_slice(), "{kind} differs");
        assert_eq!(sha256(&r.body), meta["sha256"]);
        assert_eq!(r.header("content-type"), Some(media_type));
        assert_eq!(
            r.header("etag"),
            Some(format!("\"{}\"", sha256(&bytes)).as_str())
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(
            r.header("content-disposition"),
            Some(format!("attachment; filename=\"{name}\"; filename*=UTF-8''{name}").as_str())
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.header("x-correlation-id").is_some());
    }
    let r = authed(&host, "GET", "/api/uploads", &ada).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.json();
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{page}");
    assert!(page["nextCursor"].is_null());
    assert_eq!(upload_rows(&host), 4);
    assert_eq!(
        counter(
            &host,
            r#"business_operations_total{operation="upload",outcome="success"}"#
        ),
        4
    );
    assert_eq!(
        counter(&host, r#"upload_bytes_total{type="image/png"}"#),
        1000
    );
    // ... and the metrics component shows them.
    let metrics = app::call(&host, "GET", "/metrics", &[], "").await.text();
    for line in [
        r#"business_operations_total{operation="upload",outcome="success"} 4"#,
        r#"upload_bytes_total{type="image/png"} 1000"#,
        r#"upload_bytes_total{type="application/pdf"} 1999"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "`{line}` in:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_request_carries_at_most_five_files() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let files: Vec<Vec<u8>> = (0..6)
        .map(|i| file(["png", "gif", "pdf"][i % 3], 2000 + i))
        .collect();
    let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let parts: Vec<Part<'_>> = files
        .iter()
        .zip(&names)
        .map(|(bytes, name)| {
            (
                "file",
                Some(name.as_str()),
                "application/octet-stream",
                bytes.as_slice(),
            )
        })
        .collect();

    let r = upload_form(&host, &ada, &parts).await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["code"], "too_many_files");
    assert_nothing_stored(&host);
    assert_eq!(
        counter(
            &host,
            r#"business_operations_total{operation="upload",outcome="failure"}"#
        ),
        1
    );

    let r = upload_form(&host, &ada, &parts[..5]).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 5);
    for (item, bytes) in items.iter().zip(&files) {
        assert_eq!(item["sha256"], sha256(bytes));
        let id = item["id"].as_str().unwrap();
        let r = authed(&host, "GET", &format!("/api/uploads/{id}/content"), &ada).await;
        assert_eq!(r.body.as_ref(), bytes.as_slice());
    }
    assert_eq!(upload_rows(&host), 5);

    // Other form fields and empty forms are refused.
    let png = file("png", 100);
    let r = upload_form(&host, &ada, &[("avatar", Some("a.png"), "image/png", &png)]).await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["code"], "unknown_field");
    let r = upload_form(&host, &ada, &[]).await;
    assert_error(&r, 400, "validation_failed");
    let r = upload_form(
        &host,
        &ada,
        &[("file", Some("empty.png"), "image/png", b"")],
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["code"], "empty_file");
    // A body that is not the multipart it claims to be.
    let r = upload_raw(
        &host,
        &ada,
        &[("content-type", &form_type())],
        b"garbage".to_vec(),
    )
    .await;
    assert_error(&r, 400, "bad_request");
    assert_eq!(upload_rows(&host), 5);
    assert_eq!(stored_chunks(&host).len(), 5);
}

#[tokio::test]
async fn types_come_from_magic_bytes_and_names_are_sanitised() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;

    // A PNG renamed `.pdf` and sent as a PDF is stored as the PNG it is,
    // under a name that says so.
    let png = file("png", 3000);
    let r = upload_form(
        &host,
        &ada,
        &[("file", Some("invoice.pdf"), "application/pdf", &png)],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["type"], "image/png");
    assert_eq!(r.json()["name"], "invoice.pdf.png");
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = authed(&host, "GET", &format!("/api/uploads/{id}/content"), &ada).await;
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.body.as_ref(), png.as_slice());

    // Text or a program named and typed as images: 415, nothing stored.
    for (kind, name, claimed) in [
        ("text", "notes.png", "image/png"),
        ("exe", "setup.pdf", "application/pdf"),
        ("text", "x.gif", "image/gif"),
    ] {
        // Big enough to be refused long before its end.
        let bytes = file(kind, 2 * MIB);
        let body = form(&[("file", Some(name), claimed, &bytes)]);
        let r = post_expecting(
            &host,
            &ada,
            &[
                ("content-type", &form_type()),
                ("content-length", &body.len().to_string()),
            ],
            body,
        )
        .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (415, "unsupported_media_type"),
            "{name} as a form: {}",
            String::from_utf8_lossy(&r.body)
        );
        let disposition = format!("attachment; filename=\"{name}\"");
        let r = post_expecting(
            &host,
            &ada,
            &[
                ("content-type", claimed),
                ("content-disposition", &disposition),
                ("content-length", &bytes.len().to_string()),
            ],
            bytes,
        )
        .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (415, "unsupported_media_type")
        );
        let r = upload_raw(&host, &ada, &[("content-type", claimed)], file(kind, 100)).await;
        assert_error(&r, 415, "unsupported_media_type");
    }
    // A valid file after a refused one in the same form: nothing of either.
    let gif = file("gif", 500);
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec();
    let r = upload_form(
        &host,
        &ada,
        &[
            ("file", Some("ok.gif"), "image/gif", &gif),
            ("file", Some("x.svg"), "image/svg+xml", &svg),
        ],
    )
    .await;
    assert_error(&r, 415, "unsupported_media_type");
    assert_eq!(upload_rows(&host), 1);
    assert_eq!(stored_chunks(&host).len(), 1);

    // Path parts, control characters and dot runs never survive.
    let gif = file("gif", 700);
    let r = upload_form(
        &host,
        &ada,
        &[("file", Some("../../etc/passwd.gif"), "image/gif", &gif)],
    )
    .await;
    assert_eq!(r.json()["name"], "passwd.gif", "{}", r.text());
    let r = upload_form(
        &host,
        &ada,
        &[("file", Some("..\\..\\boot.ini"), "image/gif", &gif)],
    )
    .await;
    assert_eq!(r.json()["name"], "boot.ini.gif", "{}", r.text());
    let r = upload_raw(
        &host,
        &ada,
        &[
            ("content-type", "image/gif"),
            ("x-file-name", "..%2F..%2Fa%0D%0Ab..c.gif"),
        ],
        gif.clone(),
    )
    .await;
    assert_eq!(r.json()["name"], "ab.c.gif", "{}", r.text());
    let r = upload_raw(
        &host,
        &ada,
        &[
            ("content-type", "image/gif"),
            (
                "content-disposition",
                "attachment; filename*=UTF-8''%2E%2E%2Fr%C3%A9sum%C3%A9%20%E2%82%AC.gif",
            ),
        ],
        gif.clone(),
    )
    .await;
    assert_eq!(r.json()["name"], "résumé €.gif", "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = authed(&host, "GET", &format!("/api/uploads/{id}/content"), &ada).await;
    assert_eq!(
        r.header("content-disposition"),
        Some(
            "attachment; filename=\"r_sum_ _.gif\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC.gif"
        )
    );
    let long = format!("{}.gif", "n".repeat(1000));
    let r = upload_raw(
        &host,
        &ada,
        &[("content-type", "image/gif"), ("x-file-name", &long)],
        gif.clone(),
    )
    .await;
    let name = r.json()["name"].as_str().unwrap().to_string();
    assert!(name.len() <= 200 && name.ends_with("n.gif"), "{name}");
    let r = upload_raw(&host, &ada, &[("content-type", "image/gif")], gif).await;
    assert_eq!(r.json()["name"], "upload.gif", "{}", r.text());
}

#[tokio::test]
async fn files_over_the_limit_are_413_and_leave_nothing() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let too_big = file("png", LIMIT + 1);
    let length = too_big.len().to_string();
    let content_type = form_type();

    // Raw body: refused by its Content-Length, before the body is sent.
    let r = post_expecting(
        &host,
        &ada,
        &[("content-type", "image/png"), ("content-length", &length)],
        too_big.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "payload_too_large"),
        "{}",
        r.head
    );
    // In a form: refused while streaming, after five chunks were stored.
    let body = form(&[("file", Some("big.png"), "image/png", &too_big)]);
    let r = post_expecting(
        &host,
        &ada,
        &[
            ("content-type", &content_type),
            ("content-length", &body.len().to_string()),
        ],
        body,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "payload_too_large"),
        "{}",
        r.head
    );
    assert!(String::from_utf8_lossy(&r.body).contains("big.png"));
    assert_nothing_stored(&host);
    // A second, oversized file after a good one: neither is kept.
    let small = file("jpeg", 10_000);
    let body = form(&[
        ("file", Some("a.jpg"), "image/jpeg", &small),
        ("file", Some("b.png"), "image/png", &too_big),
    ]);
    let r = post_expecting(
        &host,
        &ada,
        &[
            ("content-type", &content_type),
            ("content-length", &body.len().to_string()),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.head);
    assert_nothing_stored(&host);
    // Without Content-Length (chunked): counted while streaming.
    let r = post_expecting(
        &host,
        &ada,
        &[
            ("content-type", "image/png"),
            ("transfer-encoding", "chunked"),
        ],
        chunked(&too_big, 256 * 1024),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "payload_too_large"),
        "{}",
        r.head
    );
    assert_nothing_stored(&host);

    // A 50 MiB body is refused without waiting for it: only 64 KiB go out.
    let announced = (50 * MIB).to_string();
    for (content_type, first_bytes) in [
        ("image/png", file("png", 64 * 1024)),
        (
            content_type.as_str(),
            form(&[("file", Some("a.png"), "image/png", &file("png", 64 * 1024))]),
        ),
    ] {
        let stream = open_request(
            &host,
            &ada,
            &[
                ("content-type", content_type),
                ("content-length", &announced),
            ],
        )
        .await;
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(&first_bytes).await.unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            read_response(&mut reader, &mut Vec::new()),
        )
        .await
        .expect("413 arrives without the rest of the body");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (413, "payload_too_large"),
            "{}",
            r.head
        );
    }
    assert_nothing_stored(&host);

    // Exactly the limit is fine, and the limit is a variable.
    let r = upload_raw(
        &host,
        &ada,
        &[("content-type", "image/png")],
        file("png", LIMIT),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(stored_chunks(&host).len(), 5);

    let small_limit = start(&[("upload_limit_bytes", "1000")]);
    let (_, bob) = register_ok(&small_limit, "Bob", "bob@example.com").await;
    let r = upload_gif(&small_limit, &bob, 1001).await;
    assert_error(&r, 413, "payload_too_large");
    let r = upload_gif(&small_limit, &bob, 1000).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn large_files_are_chunked_and_deleting_removes_every_chunk() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let bytes = file("pdf", 2 * MIB + MIB / 2 + 7);
    let r = upload_form(
        &host,
        &ada,
        &[("file", Some("big.pdf"), "application/pdf", &bytes)],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let chunks = chunks_of(&host, &id);
    let keys: Vec<&str> = chunks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [0, 1, 2].map(|n| format!("upload:{id}:chunk:{n}")),
        "{chunks:?}"
    );
    assert!(chunks.iter().all(|(_, len)| *len <= MIB), "{chunks:?}");
    assert_eq!(
        chunks.iter().map(|(_, len)| len).sum::<usize>(),
        bytes.len()
    );

    let r = authed(&host, "GET", &format!("/api/uploads/{id}/content"), &ada).await;
    assert_eq!(r.body.as_ref(), bytes.as_slice());

    let r = authed(&host, "DELETE", &format!("/api/uploads/{id}"), &ada).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_api_contract(&r);
    assert_nothing_stored(&host);
    for path in [
        format!("/api/uploads/{id}"),
        format!("/api/uploads/{id}/content"),
    ] {
        assert_error(&authed(&host, "GET", &path, &ada).await, 404, "not_found");
    }
    assert_error(
        &authed(&host, "DELETE", &format!("/api/uploads/{id}"), &ada).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn downloads_honour_ranges_and_entity_tags() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let bytes = file("jpeg", 2 * MIB + 100);
    let size = bytes.len();
    let r = upload_raw(
        &host,
        &ada,
        &[("content-type", "image/jpeg"), ("x-file-name", "p.jpg")],
        bytes.clone(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/api/uploads/{id}/content");
    let tag = format!("\"{}\"", sha256(&bytes));

    let ranges = [
        ("bytes=0-9", 0, 9),
        // Across the boundary of the first two chunks.
        ("bytes=1048570-1048589", MIB - 6, MIB + 13),
        ("bytes=2097000-", 2_097_000, size - 1),
        ("bytes=-50", size - 50, size - 1),
        ("bytes=100-99999999", 100, size - 1),
    ];
    for (range, start, end) in ranges {
        let r = get_with(&host, &path, &ada, &[("range", range)]).await;
        assert_eq!(r.status, 206, "{range}: {}", r.text());
        assert_eq!(r.body.as_ref(), &bytes[start..=end], "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{size}").as_str()),
            "{range}"
        );
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        assert_eq!(r.header("etag"), Some(tag.as_str()));
    }
    for unsatisfiable in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 9),
        "bytes=-0".into(),
    ] {
        let r = get_with(&host, &path, &ada, &[("range", &unsatisfiable)]).await;
        assert_error(&r, 416, "range_not_satisfiable");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{size}").as_str())
        );
    }
    // Ranges we do not serve are ignored: the whole file.
    for ignored in ["bytes=0-1,5-6", "lines=1-2", "bytes=9-3"] {
        let r = get_with(&host, &path, &ada, &[("range", ignored)]).await;
        assert_eq!(r.status, 200, "{ignored}");
        assert_eq!(r.body.len(), size);
    }
    // A stale If-Range: the whole (new) representation.
    let r = get_with(
        &host,
        &path,
        &ada,
        &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), size);
    let r = get_with(
        &host,
        &path,
        &ada,
        &[("range", "bytes=0-9"), ("if-range", &tag)],
    )
    .await;
    assert_eq!(r.status, 206);

    // If-None-Match.
    for matching in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"other\", {tag}"),
        "*".into(),
    ] {
        let r = get_with(&host, &path, &ada, &[("if-none-match", &matching)]).await;
        assert_eq!(r.status, 304, "{matching}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(tag.as_str()));
        assert_api_contract(&r);
    }
    let r = get_with(&host, &path, &ada, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn only_owners_and_admins_see_an_upload() {
    let host = start(&[]);
    let (_, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, bob) = register_ok(&host, "Bob", "bob@example.com").await;
    let png = file("png", 1234);
    let r = upload_form(
        &host,
        &ada,
        &[("file", Some("mine.png"), "image/png", &png)],
    )
    .await;
    let id = r.json()["id"].as_str().unwrap().to_string();

    for (method, path) in [
        ("GET", format!("/api/uploads/{id}")),
        ("GET", format!("/api/uploads/{id}/content")),
        ("DELETE", format!("/api/uploads/{id}")),
    ] {
        assert_error(&authed(&host, method, &path, &bob).await, 404, "not_found");
        assert_error(
            &app::call(&host, method, &path, &[], "").await,
            401,
            "unauthenticated",
        );
    }
    let r = authed(&host, "GET", "/api/uploads", &bob).await;
    assert_eq!(r.json()["items"], serde_json::json!([]));
    assert_error(
        &app::call(
            &host,
            "POST",
            "/api/uploads",
            &[("content-type", "image/png")],
            png.clone(),
        )
        .await,
        401,
        "unauthenticated",
    );
    assert_error(
        &authed(&host, "GET", "/api/uploads/not-an-id", &ada).await,
        400,
        "validation_failed",
    );

    // Bob's own uploads; the admin sees everyone's, page by page.
    for i in 0..3 {
        let r = upload_raw(
            &host,
            &bob,
            &[
                ("content-type", "image/png"),
                ("x-file-name", &format!("b{i}.png")),
            ],
            png.clone(),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let r = authed(&host, "GET", "/api/uploads", &ada).await;
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["ownerId"], ada_id.as_str());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/uploads?limit=3&cursor={c}"),
            None => "/api/uploads?limit=3".into(),
        };
        let page = authed(&host, "GET", &path, &admin).await.json();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);
    assert_error(
        &authed(&host, "GET", "/api/uploads?cursor=bogus", &admin).await,
        400,
        "validation_failed",
    );
    assert_error(
        &authed(&host, "GET", "/api/uploads?owner=x", &admin).await,
        400,
        "validation_failed",
    );

    // The admin reads and deletes Ada's upload.
    let r = authed(&host, "GET", &format!("/api/uploads/{id}/content"), &admin).await;
    assert_eq!(r.body.as_ref(), png.as_slice());
    assert_eq!(
        authed(&host, "DELETE", &format!("/api/uploads/{id}"), &admin)
            .await
            .status,
        204
    );
    assert!(chunks_of(&host, &id).is_empty());
}

/// Starts a raw upload that announces 4 MiB, sends 2.5 MiB and waits until
/// the component has stored at least one chunk of it.
async fn half_sent_upload(host: &Host, token: &str) -> TcpStream {
    let announced = (4 * MIB).to_string();
    let mut stream = open_request(
        host,
        token,
        &[
            ("content-type", "image/png"),
            ("content-length", &announced),
        ],
    )
    .await;
    stream
        .write_all(&file("png", 2 * MIB + MIB / 2))
        .await
        .unwrap();
    let stored = app_tests::eventually(Duration::from_secs(20), || async {
        !stored_chunks(host).is_empty()
    })
    .await;
    assert!(stored, "no chunk was stored while the body streamed in");
    stream
}

#[tokio::test]
async fn an_aborted_upload_leaves_no_chunk_behind() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let stream = half_sent_upload(&host, &ada).await;
    drop(stream);
    let cleaned = app_tests::eventually(Duration::from_secs(20), || async {
        stored_chunks(&host).is_empty()
    })
    .await;
    assert!(cleaned, "chunks left behind: {:?}", stored_chunks(&host));
    assert_eq!(upload_rows(&host), 0);
    // The host and the component carry on.
    let r = upload_gif(&host, &ada, 10).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn chunks_of_an_upload_cut_off_by_a_crash_are_swept_later() {
    let mut host = start(&[("upload_abandoned_after_seconds", "0")]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let _stream = half_sent_upload(&host, &ada).await;
    // The host dies mid-upload: the component cannot clean up.
    host.kill();
    let orphans = stored_chunks(&host);
    assert!(!orphans.is_empty());
    host.restart();
    // (The same keys and state: Ada's token is still good.)
    // The next upload sweeps what the abandoned one left.
    let r = upload_gif(&host, &ada, 10).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let left: Vec<String> = stored_chunks(&host).into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, [format!("upload:{id}:chunk:0")]);
    assert_eq!(upload_rows(&host), 1);
}

/// Like [`post_expecting`], the body written in pieces of `piece` bytes,
/// each flushed on its own (a slow or fragmenting network), without
/// `Expect`.
async fn post_in_pieces(
    host: &Host,
    token: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    piece: usize,
) -> RawReply {
    let stream = open_request(host, token, headers).await;
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        for p in body.chunks(piece) {
            if writer.write_all(p).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        writer
    });
    let mut buf = Vec::new();
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        read_response(&mut reader, &mut buf),
    )
    .await
    .expect("a final response");
    sending.abort();
    reply
}

#[tokio::test]
async fn the_answer_does_not_depend_on_how_the_body_arrives() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let png = file("png", 3000);
    let text = file("text", 64 * 1024);
    for piece in [1, 2, 7, 100, 1460, 16 * 1024, 64 * 1024] {
        for (bytes, name, status) in [(&png, "a.png", 201), (&text, "x.gif", 415)] {
            let body = form(&[("file", Some(name), "image/gif", bytes)]);
            let length = body.len().to_string();
            let headers = [
                ("content-type", form_type()),
                ("content-length", length.clone()),
            ];
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let r = post_in_pieces(&host, &ada, &headers, body, piece).await;
            assert_eq!(
                r.status,
                status,
                "{name} in pieces of {piece}: {}{}",
                r.head,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
}
