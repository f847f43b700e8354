//! Command line: `imgedge [-c FILE] [-t] [-d] [-u]`, Pingora's flags kept; `imgedge sign URL`.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "imgedge", version, about = "Image edge proxy on Pingora")]
pub struct Cli {
    /// Configuration file (YAML). Without it, the embedded default (conf/imgedge.yaml) is used.
    #[arg(short = 'c', long = "conf", global = true)]
    pub conf: Option<String>,
    /// Check the configuration, print every problem with its key path, and exit.
    #[arg(short = 't', long = "test")]
    pub test: bool,
    /// Run in the background (daemon); the pid is written to server.pid_file.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Take over the listening sockets of a running imgedge (graceful upgrade/reload).
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print URL with its signature (`sig=`), made with the first of `transform.signing`'s keys
    /// of the configuration (-c). URL: `/path?params` or `https://host/path?params`.
    Sign { url: String },
}
