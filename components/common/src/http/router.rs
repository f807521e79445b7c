//! A component's route table: method + path template → endpoint.
//!
//! Templates are literal segments and `:name` parameters
//! (`/api/users/:id`). A path that several templates match goes to the most
//! specific one (more literal segments win, so `/api/users/me` beats
//! `/api/users/:id`). A path that matches only under other methods is a 405
//! listing them; a path matching nothing is a 404.

use std::fmt;

/// HTTP methods the API routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
    /// Anything else (`TRACE`, `CONNECT`, extension methods): never routed.
    Other,
}

impl Method {
    pub fn parse(name: &str) -> Method {
        match name.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `:name` parameters of a matched path.
pub type Params = Vec<(&'static str, String)>;

struct Route<E> {
    method: Method,
    template: &'static str,
    endpoint: E,
}

/// The outcome of looking a request up in the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<E> {
    Matched {
        endpoint: E,
        template: &'static str,
        params: Params,
    },
    /// The path exists under other methods; `allow` lists them (with
    /// `OPTIONS`, which every route answers).
    MethodNotAllowed {
        template: &'static str,
        allow: Vec<Method>,
    },
    NotFound,
}

/// The route table of one component.
pub struct Router<E> {
    routes: Vec<Route<E>>,
}

impl<E: Copy> Default for Router<E> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<E: Copy> Router<E> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, method: Method, template: &'static str, endpoint: E) -> Self {
        self.routes.push(Route {
            method,
            template,
            endpoint,
        });
        self
    }

    pub fn get(self, template: &'static str, endpoint: E) -> Self {
        self.route(Method::Get, template, endpoint)
    }

    pub fn post(self, template: &'static str, endpoint: E) -> Self {
        self.route(Method::Post, template, endpoint)
    }

    pub fn patch(self, template: &'static str, endpoint: E) -> Self {
        self.route(Method::Patch, template, endpoint)
    }

    pub fn delete(self, template: &'static str, endpoint: E) -> Self {
        self.route(Method::Delete, template, endpoint)
    }

    /// Every (method, template) pair, in table order.
    pub fn routes(&self) -> impl Iterator<Item = (Method, &'static str)> + '_ {
        self.routes.iter().map(|r| (r.method, r.template))
    }

    /// The routes of the most specific template(s) matching `path` (most
    /// literal segments) own it: `/api/users/me` is not also
    /// `/api/users/:id`, so a method only the parameter route has is 405
    /// there, and `Allow` lists exactly the owning routes' methods.
    pub fn resolve(&self, method: Method, path: &str) -> Resolution<E> {
        let segments = path_segments(path);
        let matching: Vec<(usize, &Route<E>, Params)> = self
            .routes
            .iter()
            .filter_map(|route| {
                match_template(route.template, &segments)
                    .map(|(literals, params)| (literals, route, params))
            })
            .collect();
        let Some(most_literals) = matching.iter().map(|(l, _, _)| *l).max() else {
            return Resolution::NotFound;
        };
        let owners = matching.into_iter().filter(|(l, _, _)| *l == most_literals);
        let mut allow: Vec<Method> = Vec::new();
        let mut template = None;
        for (_, route, params) in owners {
            if route.method == method {
                return Resolution::Matched {
                    endpoint: route.endpoint,
                    template: route.template,
                    params,
                };
            }
            template.get_or_insert(route.template);
            if !allow.contains(&route.method) {
                allow.push(route.method);
            }
        }
        allow.push(Method::Options);
        allow.sort();
        Resolution::MethodNotAllowed {
            template: template.expect("at least one owning route"),
            allow,
        }
    }
}

/// `Allow` header value: `GET, PATCH, OPTIONS`.
pub fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn path_segments(path: &str) -> Vec<&str> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Literal-segment count and parameters when `template` matches.
fn match_template(template: &'static str, segments: &[&str]) -> Option<(usize, Params)> {
    let parts: Vec<&'static str> = template.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut literals = 0;
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(segments) {
        match part.strip_prefix(':') {
            Some(name) => params.push((name, segment.to_string())),
            None if part == segment => literals += 1,
            None => return None,
        }
    }
    Some((literals, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum E {
        List,
        Me,
        Get,
        Patch,
    }

    fn table() -> Router<E> {
        Router::new()
            .get("/api/users", E::List)
            .get("/api/users/me", E::Me)
            .get("/api/users/:id", E::Get)
            .patch("/api/users/:id", E::Patch)
    }

    #[test]
    fn literal_routes_beat_parameters() {
        assert_eq!(
            table().resolve(Method::Get, "/api/users/me"),
            Resolution::Matched {
                endpoint: E::Me,
                template: "/api/users/me",
                params: vec![]
            }
        );
        assert_eq!(
            table().resolve(Method::Get, "/api/users/42?x=1"),
            Resolution::Matched {
                endpoint: E::Get,
                template: "/api/users/:id",
                params: vec![("id", "42".to_string())]
            }
        );
    }

    #[test]
    fn a_literal_path_is_not_also_served_by_a_parameter_route() {
        assert_eq!(
            table().resolve(Method::Patch, "/api/users/me"),
            Resolution::MethodNotAllowed {
                template: "/api/users/me",
                allow: vec![Method::Get, Method::Options]
            }
        );
    }

    #[test]
    fn trailing_slashes_are_ignored() {
        assert!(matches!(
            table().resolve(Method::Get, "/api/users/"),
            Resolution::Matched {
                endpoint: E::List,
                ..
            }
        ));
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        assert_eq!(
            table().resolve(Method::Delete, "/api/users/7"),
            Resolution::MethodNotAllowed {
                template: "/api/users/:id",
                allow: vec![Method::Get, Method::Patch, Method::Options]
            }
        );
        assert_eq!(
            allow_header(&[Method::Get, Method::Options]),
            "GET, OPTIONS"
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(
            table().resolve(Method::Get, "/api/users/1/2"),
            Resolution::NotFound
        );
        assert_eq!(table().resolve(Method::Get, "/api"), Resolution::NotFound);
    }

    #[test]
    fn methods_parse_case_insensitively() {
        assert_eq!(Method::parse("patch"), Method::Patch);
        assert_eq!(Method::parse("BREW"), Method::Other);
    }
}
