//! The try-it page at `/` of the admin listener and its settings (`/playground/config.json`).

/// The try-it page (plain HTML/CSS/JS, no build step) and what it needs to know.
pub const PLAYGROUND_HTML: &str = include_str!("playground.html");
/// Most sample paths listed on the page.
const MAX_SAMPLES: usize = 50;
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "avif"];

pub struct Playground {
    /// `/playground/config.json`, built once at start-up.
    pub config_json: Vec<u8>,
}

impl Playground {
    pub fn new(config: &crate::config::Config) -> Playground {
        let first = config.listen.first().map(String::as_str).unwrap_or("");
        // A wildcard listener is reached under whatever host the browser used for the admin.
        let (proxy, port) = match first.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => (None, Some(a.port())),
            Ok(a) => (Some(format!("http://{a}")), Some(a.port())),
            Err(_) => (None, None),
        };
        let samples = sample_paths(config);
        // The page opens on the largest JPEG sample (a photo: resizing it shows the point at
        // once), else on the first sample.
        let default = samples
            .iter()
            .filter(|(p, _)| p.ends_with(".jpg") || p.ends_with(".jpeg"))
            .max_by_key(|(_, bytes)| *bytes)
            .or(samples.first())
            .map(|(p, _)| p.clone());
        let paths: Vec<&String> = samples.iter().map(|(p, _)| p).collect();
        let body = serde_json::json!({
            "proxy": proxy,
            "proxy_port": port,
            "samples": paths,
            "default": default,
        });
        Playground {
            config_json: body.to_string().into_bytes(),
        }
    }
}

/// Image files served by `dir` upstreams on host-less routes, as request paths, with their
/// sizes.
fn sample_paths(config: &crate::config::Config) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for route in config.routes.iter().filter(|r| r.host.is_none()) {
        let Some(up) = config.upstreams.get(route.upstream) else {
            continue;
        };
        let crate::config::UpstreamKind::Dir(root) = &up.kind else {
            continue;
        };
        let base = route.prefix.trim_end_matches('/');
        let dir = if route.strip_prefix {
            root.clone()
        } else {
            root.join(base.trim_start_matches('/'))
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<(String, u64)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let bytes = e.metadata().map_or(0, |m| m.len());
                Some((e.file_name().into_string().ok()?, bytes))
            })
            .filter(|(n, _)| {
                n.rsplit_once('.').is_some_and(|(_, ext)| {
                    IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
                })
            })
            .collect();
        names.sort();
        for (n, bytes) in names {
            let encoded =
                percent_encoding::utf8_percent_encode(&n, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .replace("%2E", ".")
                    .replace("%2D", "-")
                    .replace("%5F", "_");
            let path = format!("{base}/{encoded}");
            if !out.iter().any(|(p, _)| *p == path) {
                out.push((path, bytes));
            }
            if out.len() >= MAX_SAMPLES {
                return out;
            }
        }
    }
    out
}
