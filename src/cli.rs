//! Command line: `imgedge [-c FILE] [-t] [-d] [-u]`, Pingora's flags kept.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "imgedge", version, about = "Image edge proxy on Pingora")]
pub struct Cli {
    /// Configuration file (YAML). Without it, the embedded default (conf/imgedge.yaml) is used.
    #[arg(short = 'c', long = "conf")]
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
}
