use super::download::redirect_target;
use super::*;

const HEX: &str = "6503a4a0bd3a3bb0bd25c1e2cfd8c1b3cfa4f2ebf5bf0d8d2d2b0a4c0e1f2375";

#[test]
fn a_digest_is_sha256_and_64_hex_digits() {
    let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
    assert_eq!(d.to_string(), format!("sha256:{HEX}"));
    assert_eq!(d.file_name(), format!("sha256-{HEX}.wasm"));
}

#[test]
fn upper_case_hex_is_kept_lower_case() {
    let d = Digest::parse(&format!("sha256:{}", HEX.to_uppercase())).unwrap();
    assert_eq!(d.to_string(), format!("sha256:{HEX}"));
}

#[test]
fn malformed_digests_are_refused() {
    for bad in [
        HEX.to_string(),
        format!("sha512:{HEX}"),
        format!("SHA256:{HEX}"),
        format!("sha256:{}", &HEX[1..]),
        format!("sha256:{HEX}0"),
        format!("sha256:{}g", &HEX[1..]),
        "sha256:".to_string(),
        String::new(),
    ] {
        let err = Digest::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("invalid `digest`"), "{bad}: {err}");
    }
}

#[test]
fn the_digest_of_bytes_matches_sha256sum() {
    let mut h = Sha256::new();
    h.update(b"abc");
    assert_eq!(
        Digest::of(h).to_string(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_remote_source_needs_an_http_url_and_a_digest() {
    let digest = format!("sha256:{HEX}");
    assert!(Remote::parse("https://example.com/a.wasm", Some(&digest)).is_ok());
    assert!(Remote::parse("http://127.0.0.1:8080/a.wasm", Some(&digest)).is_ok());
    let err = Remote::parse("https://example.com/a.wasm", None).unwrap_err();
    assert!(err.to_string().contains("needs a `digest"), "{err}");
    for url in ["ftp://example.com/a.wasm", "/a.wasm", "example.com/a.wasm"] {
        let err = Remote::parse(url, Some(&digest)).unwrap_err();
        assert!(
            format!("{err:#}").contains("invalid source `url`"),
            "{url}: {err:#}"
        );
    }
}

#[test]
fn redirects_resolve_against_the_current_url() {
    let from: Uri = "https://example.com:8443/a/b.wasm".parse().unwrap();
    assert_eq!(
        redirect_target(&from, "/c.wasm").unwrap().to_string(),
        "https://example.com:8443/c.wasm"
    );
    assert_eq!(
        redirect_target(&from, "http://cdn.example/x.wasm")
            .unwrap()
            .to_string(),
        "http://cdn.example/x.wasm"
    );
}

#[tokio::test]
async fn a_cached_file_with_the_right_digest_is_used_without_network() {
    let dir = std::env::temp_dir().join(format!("sources-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut h = Sha256::new();
    h.update(b"wasm bytes");
    let digest = Digest::of(h);
    std::fs::write(dir.join(digest.file_name()), b"wasm bytes").unwrap();
    // Port 1 on loopback refuses connections: any network use would fail.
    let remote = Remote::parse("http://127.0.0.1:1/a.wasm", Some(&digest.to_string())).unwrap();
    let path = fetch("a", &remote, &dir, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(path, dir.join(digest.file_name()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A manifest whose one component has `source = <source>` (line 6).
fn with_source(source: &str) -> Result<crate::manifest::App> {
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"t\"\n[component.web]\nallowed_outbound_hosts = []\nsource = {source}\n"
    );
    crate::manifest::App::parse(&text, Path::new("spin.toml"))
}

#[test]
fn a_url_source_with_a_digest_is_remote() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let app = with_source(&format!(
        "{{ url = \"https://example.com/web.wasm\", digest = \"{digest}\" }}"
    ))
    .unwrap();
    let crate::manifest::Source::Remote(r) = &app.components["web"].source else {
        panic!("expected a remote source");
    };
    assert_eq!(r.url.to_string(), "https://example.com/web.wasm");
    assert_eq!(r.digest.to_string(), digest);
}

#[test]
fn a_bad_or_missing_digest_names_the_line() {
    for source in [
        "{ url = \"https://example.com/web.wasm\", digest = \"md5:abc\" }",
        "{ url = \"https://example.com/web.wasm\", digest = \"sha256:abc\" }",
        "{ url = \"https://example.com/web.wasm\" }",
        "{ url = \"file:///web.wasm\", digest = \"sha256:abc\" }",
        "{ registry = \"ttl.sh\", package = \"a:b\", version = \"1.0.0\" }",
    ] {
        let err = format!("{:#}", with_source(source).unwrap_err());
        assert!(
            err.contains("spin.toml:6") && err.contains("component `web`"),
            "{source}: {err}"
        );
    }
}
