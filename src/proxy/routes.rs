//! Route matching: first route whose host (if set) and path prefix match wins.

use crate::config::Route;

pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Router { routes }
    }

    /// `host` is the request's Host without port, lower-cased.
    pub fn find(&self, host: &str, path: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| {
            r.host.as_deref().is_none_or(|h| h == host) && path.starts_with(r.prefix.as_str())
        })
    }

    pub fn get(&self, idx: usize) -> &Route {
        &self.routes[idx]
    }
}

/// The path sent upstream: the prefix removed when the route strips it (always keeping a
/// leading '/').
pub fn upstream_path(route: &Route, path: &str) -> String {
    if !route.strip_prefix {
        return path.to_string();
    }
    let rest = path.strip_prefix(route.prefix.as_str()).unwrap_or(path);
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, host: Option<&str>, strip: bool) -> Route {
        Route {
            prefix: prefix.into(),
            host: host.map(Into::into),
            upstream: 0,
            strip_prefix: strip,
            cache: true,
            forward_transform: false,
            source_cache: true,
        }
    }

    #[test]
    fn first_match_wins() {
        let r = Router::new(vec![
            route("/img/", Some("a.example"), false),
            route("/img/", None, true),
            route("/", None, false),
        ]);
        assert_eq!(r.find("a.example", "/img/x.jpg").unwrap().0, 0);
        assert_eq!(r.find("b.example", "/img/x.jpg").unwrap().0, 1);
        assert_eq!(r.find("b.example", "/other").unwrap().0, 2);
        let only = Router::new(vec![route("/img/", None, false)]);
        assert!(only.find("x", "/nope").is_none());
    }

    #[test]
    fn strip() {
        assert_eq!(
            upstream_path(&route("/img", None, true), "/img/a.jpg"),
            "/a.jpg"
        );
        assert_eq!(
            upstream_path(&route("/img/", None, true), "/img/a.jpg"),
            "/a.jpg"
        );
        assert_eq!(
            upstream_path(&route("/img/", None, false), "/img/a.jpg"),
            "/img/a.jpg"
        );
    }
}
