//! imgedge entry point: parse flags, load and check the config, start the server.

use clap::Parser;
use imgedge::cli::{Cli, Command};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(&cli) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Sign { url }) = &cli.command {
        return match imgedge::transform::sign_url(&config.transform, url) {
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
