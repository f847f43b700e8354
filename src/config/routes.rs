//! The `routes` section: which requests go to which upstream, and how.

use super::check::Errors;
use super::defaults;
use super::raw::RawRoute;
use super::{Route, Upstream};

/// Every route that could be read, in file order; at least one is required. `upstreams` is
/// `None` when that section could not be read (its problem is reported; the routes' upstream
/// names are then not checked against it).
pub(super) fn validate_routes(
    raw: Vec<Option<RawRoute>>,
    upstreams: Option<&[Upstream]>,
    errs: &mut Errors,
) -> Vec<Route> {
    let mut routes = Vec::new();
    if raw.is_empty() {
        errs.add("routes", "at least one route is required");
    }
    for (i, r) in raw.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(r) = r else { continue };
        let prefix = match r.prefix {
            Some(p) if p.starts_with('/') => p,
            Some(p) => {
                errs.add(
                    format!("{path}.prefix"),
                    format!("{p:?} must start with '/'"),
                );
                continue;
            }
            None => {
                errs.add(format!("{path}.prefix"), "is required");
                continue;
            }
        };
        let upstream = match r.upstream {
            None => {
                errs.add(format!("{path}.upstream"), "is required");
                continue;
            }
            Some(u) => match upstreams.map(|ups| ups.iter().position(|x| x.name == u)) {
                Some(Some(idx)) => idx,
                None => 0,
                Some(None) => {
                    let upstreams = upstreams.unwrap_or_default();
                    let known: Vec<&str> = upstreams.iter().map(|x| x.name.as_str()).collect();
                    errs.add(
                        format!("{path}.upstream"),
                        format!("no upstream named {u:?} (known: {})", known.join(", ")),
                    );
                    continue;
                }
            },
        };
        let host = r.host.map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            {
                errs.add(format!("{path}.host"), format!("{h:?} is not a host name"));
            }
        }
        routes.push(Route {
            prefix,
            host,
            upstream,
            strip_prefix: r.strip_prefix.unwrap_or(false),
            cache: r.cache.unwrap_or(true),
            forward_transform: r.forward_transform.unwrap_or(false),
            source_cache: r.source_cache.unwrap_or(defaults::ROUTE_SOURCE_CACHE),
        });
    }
    routes
}
