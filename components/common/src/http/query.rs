//! Query strings (`application/x-www-form-urlencoded`: `+` is a space,
//! `%XX` a byte, invalid escapes kept as they are, bytes decoded as lossy
//! UTF-8), parsed by `form_urlencoded`.

/// The first value of `name` in a query string, `+` and `%XX` decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Every parameter name in a query string, decoded.
pub fn query_names(query: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let q = "emailPrefix=ada%40ex&role=admin&x=a+b&bad=%zz&end=%4";
        assert_eq!(query_param(q, "emailPrefix").as_deref(), Some("ada@ex"));
        assert_eq!(query_param(q, "role").as_deref(), Some("admin"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(q, "end").as_deref(), Some("%4"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("", "x"), None);
        assert_eq!(query_names("a=1&b&&c%41=2"), vec!["a", "b", "cA"]);
    }
}
