//! The headers the HTTP trigger sets and removes before a component sees a
//! request, as Spin's `trigger-http` does.

use super::router::RouteMatch;
use http::{HeaderName, HeaderValue, Request};
use wasmtime_wasi_http::WasiBody;

/// Spin removes `Connection`, and a `Host` naming a chaining target.
pub(super) fn strip_forbidden_headers(headers: &mut http::HeaderMap) {
    headers.remove(http::header::CONNECTION);
    if headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| {
            h.split(':')
                .next()
                .unwrap_or("")
                .ends_with(".spin.internal")
        })
    {
        headers.remove(http::header::HOST);
    }
}

/// The headers Spin sets on every request; `spin-path-match-*` besides.
const SPIN_HEADERS: [&str; 7] = [
    "spin-path-info",
    "spin-full-url",
    "spin-matched-route",
    "spin-base-path",
    "spin-raw-component-route",
    "spin-component-route",
    "spin-client-addr",
];

/// Removes the caller's copies of every header the host sets itself, so a
/// component never sees a route, parameter or address the client made up
/// (replacing by name alone would let `spin-path-match-<anything>` through).
fn strip_client_spin_headers(headers: &mut http::HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            SPIN_HEADERS.contains(&n.as_str()) || n.as_str().starts_with("spin-path-match-")
        })
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// Adds the headers Spin gives every HTTP component, after removing any the
/// client sent under those names.
pub(super) fn add_spin_headers(
    headers: &mut http::HeaderMap,
    m: &RouteMatch,
    full_url: &str,
    client: &str,
) {
    strip_client_spin_headers(headers);
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            headers.insert(n, v);
        }
    };
    set("spin-path-info", &m.path_info);
    set("spin-full-url", full_url);
    set("spin-matched-route", &m.route.based);
    set("spin-base-path", "/");
    set("spin-raw-component-route", &m.route.raw);
    set("spin-component-route", m.route.component_route());
    set("spin-client-addr", client);
    for (name, value) in &m.params {
        let name = format!(
            "spin-path-match-{}",
            name.to_ascii_lowercase().replace('_', "-")
        );
        set(&name, value);
    }
}

/// Gives the request an absolute `http://host/...` URI, as Spin does before
/// handing it to a WASI component.
pub(super) fn set_absolute_uri(req: &mut Request<WasiBody>, host: &str) {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if let Ok(uri) = http::Uri::builder()
        .scheme("http")
        .authority(host)
        .path_and_query(pq)
        .build()
    {
        *req.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_copies_of_spin_headers_are_removed() {
        let mut h = http::HeaderMap::new();
        for (n, v) in [
            ("spin-path-match-evil", "x"),
            ("spin-client-addr", "6.6.6.6:1"),
            ("spin-client-addr", "7.7.7.7:1"),
            ("spin-full-url", "http://evil/"),
            ("spin-custom", "kept"),
            ("accept", "*/*"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        let m = RouteMatch::chained("users", "/x");
        add_spin_headers(&mut h, &m, "http://localhost/x", "1.2.3.4:5");
        assert!(!h.contains_key("spin-path-match-evil"));
        let addrs: Vec<_> = h.get_all("spin-client-addr").iter().collect();
        assert_eq!(addrs, ["1.2.3.4:5"]);
        assert_eq!(h["spin-full-url"], "http://localhost/x");
        assert_eq!(h["spin-custom"], "kept");
        assert_eq!(h["accept"], "*/*");
    }
}
