//! Spin's HTTP route table.
//!
//! Matching is done by `routefinder`, the crate Spin itself uses, so
//! precedence is Spin's: segment by segment from the left, a literal beats a
//! `:param`, which beats the trailing wildcard; among equally specific routes
//! the first declared wins. Leading and trailing slashes are ignored
//! (`/foo` matches `/foo/`), `/foo/...` also matches `/foo` but not
//! `/foobar`, and paths are matched raw (no percent-decoding).
//!
//! Two deliberate differences from `spin up`, both stricter: the same route
//! declared twice is a start-up error (Spin logs it and lets the last one
//! win), and so is a route routefinder cannot parse (Spin too).

use anyhow::{Result, bail};
use std::collections::HashMap;

/// One route in the table.
#[derive(Debug, Clone)]
pub struct Route {
    pub component: String,
    /// The route as written in the manifest (`/api/users/:id/...`).
    pub raw: String,
    /// The route with a leading `/` and without one trailing `/`.
    pub based: String,
    pub wildcard: bool,
}

impl Route {
    /// The route without its trailing `/...` (Spin's `spin-component-route`).
    pub fn component_route(&self) -> &str {
        self.raw.strip_suffix("/...").unwrap_or(&self.raw)
    }
}

/// The result of matching a path.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub route: Route,
    /// `:name` captures, raw.
    pub params: Vec<(String, String)>,
    /// What the trailing wildcard matched, with Spin's slash restoration
    /// (`/foo/...` on `/foo/bar/` → `/bar/`); empty for exact routes.
    pub path_info: String,
}

impl RouteMatch {
    /// A match for a service-chaining request, which bypasses the router:
    /// the callee sees route `/...` with the whole path as path-info.
    pub fn chained(component: &str, path: &str) -> RouteMatch {
        RouteMatch {
            route: Route {
                component: component.to_string(),
                raw: "/...".to_string(),
                based: "/...".to_string(),
                wildcard: true,
            },
            params: Vec::new(),
            path_info: path.to_string(),
        }
    }
}

pub struct Router {
    inner: routefinder::Router<usize>,
    routes: Vec<Route>,
}

/// A route to register: component id, raw route, manifest line (for errors).
pub struct RouteDecl<'a> {
    pub component: &'a str,
    pub route: &'a str,
    pub line: usize,
}

impl Router {
    pub fn build<'a>(decls: impl IntoIterator<Item = RouteDecl<'a>>) -> Result<Router> {
        let mut inner = routefinder::Router::new();
        let mut routes = Vec::new();
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for d in decls {
            let absolute = if d.route.starts_with('/') {
                d.route.to_string()
            } else {
                format!("/{}", d.route)
            };
            let based = absolute
                .strip_suffix('/')
                .map(str::to_string)
                .unwrap_or(absolute);
            if let Some((other, line)) = seen.get(&based) {
                bail!(
                    "route conflict: `{}` (component `{}`, line {}) is already routed to component `{other}` (line {line}); each route may be declared once",
                    d.route,
                    d.component,
                    d.line
                );
            }
            seen.insert(based.clone(), (d.component.to_string(), d.line));
            let (spec, wildcard) = match based.strip_suffix("/...") {
                Some(prefix) => (format!("{prefix}/*"), true),
                None if based == "..." => ("/*".to_string(), true),
                None => (based.clone(), based.ends_with("/*")),
            };
            let index = routes.len();
            inner.add(spec.as_str(), index).map_err(|e| {
                anyhow::anyhow!(
                    "line {}: route `{}` of component `{}` is not a valid Spin route: {e}",
                    d.line,
                    d.route,
                    d.component
                )
            })?;
            routes.push(Route {
                component: d.component.to_string(),
                raw: d.route.to_string(),
                based,
                wildcard,
            });
        }
        Ok(Router { inner, routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The best route for a raw request path (no query).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let m = self.inner.best_match(path)?;
        let route = self.routes[*m].clone();
        let captures = m.captures();
        let params = captures
            .params()
            .iter()
            .map(|c| (c.name().to_string(), c.value().to_string()))
            .collect();
        let path_info = if route.wildcard {
            let tail = captures.wildcard().unwrap_or("");
            if tail.is_empty() {
                // routefinder trims slashes; `/foo/` must still report `/`.
                if path.ends_with('/') {
                    "/".to_string()
                } else {
                    String::new()
                }
            } else if path.ends_with('/') {
                format!("/{tail}/")
            } else {
                format!("/{tail}")
            }
        } else {
            String::new()
        };
        Some(RouteMatch {
            route,
            params,
            path_info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::build(routes.iter().enumerate().map(|(i, (c, r))| RouteDecl {
            component: c,
            route: r,
            line: i + 1,
        }))
        .unwrap()
    }

    fn hit(r: &Router, path: &str) -> Option<(String, String)> {
        r.route(path)
            .map(|m| (m.route.component.clone(), m.path_info.clone()))
    }

    #[test]
    fn precedence_is_spins() {
        let r = router(&[
            ("catchall", "/..."),
            ("prefix", "/one/..."),
            ("param", "/one/:p/..."),
            ("literal", "/one/two/..."),
            ("exact", "/one/two/three"),
        ]);
        assert_eq!(hit(&r, "/one/two/three").unwrap().0, "exact");
        assert_eq!(hit(&r, "/one/two/x").unwrap().0, "literal");
        assert_eq!(hit(&r, "/one/zz/x").unwrap().0, "param");
        assert_eq!(hit(&r, "/one").unwrap().0, "prefix");
        assert_eq!(hit(&r, "/oneish").unwrap().0, "catchall");
    }

    #[test]
    fn path_info_restores_slashes() {
        let r = router(&[("foo", "/foo/...")]);
        assert_eq!(hit(&r, "/foo").unwrap().1, "");
        assert_eq!(hit(&r, "/foo/").unwrap().1, "/");
        assert_eq!(hit(&r, "/foo/bar").unwrap().1, "/bar");
        assert_eq!(hit(&r, "/foo/bar/").unwrap().1, "/bar/");
        assert!(hit(&r, "/foobar").is_none());
    }

    #[test]
    fn params_are_captured_raw() {
        let r = router(&[("users", "/api/users/:id/...")]);
        let m = r.route("/api/users/a%20b/x").unwrap();
        assert_eq!(m.params, vec![("id".to_string(), "a%20b".to_string())]);
        assert_eq!(m.route.component_route(), "/api/users/:id");
    }

    #[test]
    fn duplicate_routes_are_an_error() {
        let err = Router::build([
            RouteDecl {
                component: "a",
                route: "/x",
                line: 3,
            },
            RouteDecl {
                component: "b",
                route: "/x/",
                line: 9,
            },
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("line 9") && err.contains("line 3"), "{err}");
    }
}
