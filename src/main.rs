//! imgedge entry point: parse flags, load and check the config, start the server.

use clap::Parser;
use imgedge::cli::{By, Cli, Command, UsageArgs};
use imgedge::config::{self, Config};
use std::process::ExitCode;

fn load(cli: &Cli) -> Result<Config, String> {
    match &cli.conf {
        Some(path) => config::load_file(std::path::Path::new(path)).map_err(|e| {
            let n = e.0.len();
            format!("{path}: {n} problem{}:\n{e}", if n == 1 { "" } else { "s" })
        }),
        None => config::parse_str(config::EMBEDDED_DEFAULT)
            .map_err(|e| format!("embedded default configuration:\n{e}")),
    }
}

/// `imgedge usage`: the stream comes from `--redis-url`/`--stream`, else from the `usage:`
/// section of `-c FILE`.
fn usage(cli: &Cli, args: &UsageArgs) -> Result<(), String> {
    use imgedge::usage::report::{self, GroupBy, Options};
    let settings = match &cli.conf {
        Some(path) => {
            let c = config::load_file(std::path::Path::new(path))
                .map_err(|e| format!("{path}:\n{e}"))?;
            c.usage
        }
        None => None,
    };
    let redis_url = args
        .redis_url
        .clone()
        .or_else(|| settings.as_ref().map(|s| s.redis_url.clone()))
        .ok_or("no usage stream: pass --redis-url, or -c FILE with a usage: section")?;
    let stream = args
        .stream
        .clone()
        .or_else(|| settings.as_ref().map(|s| s.stream.clone()))
        .unwrap_or_else(|| config::defaults::USAGE_STREAM.to_string());
    let since = config::size::parse_duration(&config::size::Quantity::Text(args.since.clone()))
        .map_err(|e| format!("--since: {e}"))?;
    let consumer = args.consumer.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "local".into());
        format!("usage-{host}")
    });
    let opts = Options {
        redis_url,
        stream,
        group: args.group.clone(),
        consumer,
        since,
        by: args.by.map(|b| match b {
            By::Org => GroupBy::Org,
            By::Route => GroupBy::Route,
            By::Key => GroupBy::Key,
        }),
        count: args.count,
        timeout: settings
            .as_ref()
            .map_or(config::defaults::USAGE_TIMEOUT, |s| s.timeout),
    };
    let (report, mut conn) =
        report::read(&opts, imgedge::usage::now_ms()).map_err(|e| format!("usage: {e}"))?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        print!("{}", report.render());
    }
    // Acknowledged only once printed: a run that dies before leaves them pending for its next.
    report
        .ack(&mut conn)
        .map_err(|e| format!("usage: printed, but not acknowledged: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Usage(args)) = &cli.command {
        return match usage(&cli, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::from(1)
            }
        };
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Sign(args)) = &cli.command {
        let url = &args.url;
        let opts = imgedge::proxy::transform::SignOptions {
            expires_at: args.expires_at.or_else(|| {
                args.expires
                    .map(|s| imgedge::signing::unix_now().saturating_add(s))
            }),
            host: args.host.clone(),
        };
        return match imgedge::proxy::transform::sign_url_with(&config.transform, url, &opts) {
            Ok(signed) => {
                println!("{signed}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot sign {url:?}: {e}");
                ExitCode::from(1)
            }
        };
    }
    if cli.test {
        println!(
            "{}: configuration OK",
            cli.conf.as_deref().unwrap_or("embedded default")
        );
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(&config.log.level))
        // pingora-cache warns once, at the first stored response, that no header compression
        // dictionary is loaded. imgedge uses none on purpose (disk entries stay readable without
        // one), so the warning would only alarm operators who can do nothing about it.
        .filter_module("pingora_cache::meta", log::LevelFilter::Error)
        // Its "<Backend debug dump> becomes unhealthy, <error>" lines: imgedge's health check
        // (upstream/health.rs) says the same per change in its words, with what it does about it.
        .filter_module("pingora_load_balancing", log::LevelFilter::Error)
        .format_timestamp_millis()
        .init();
    let daemon = cli.daemon || config.server.daemon;
    match imgedge::server::build(config, daemon, cli.upgrade) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("cannot start: {e}");
            ExitCode::from(1)
        }
    }
}
