//! Command line: `imgedge [-c FILE] [-t] [-d] [-u]` (Pingora's flags kept),
//! `imgedge sign URL` and `imgedge usage --since 1h [--by org|route|key]`.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "imgedge", version, about = "Image edge proxy on Pingora")]
pub struct Cli {
    /// Configuration file (YAML). Without it, the embedded default (conf/imgedge.yaml) is used.
    /// For `imgedge usage`, its `usage:` section names the Redis and the stream.
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print URL with its signature (`sig=`), made with the first of `transform.signing`'s keys
    /// of the configuration (-c), covering what it configures (path and transform; the host
    /// with `cover_host`, the whole query with `cover_query`). URL: `/path?params` or
    /// `https://host/path?params`.
    Sign(SignArgs),
    /// Read the usage stream (as one consumer of a consumer group) and print totals:
    /// requests, bytes, transforms, cache hit ratio.
    Usage(UsageArgs),
}

#[derive(Args, Debug)]
pub struct SignArgs {
    pub url: String,
    /// The URL expires SECONDS from now: adds `exp=` (unix seconds), which the signature
    /// covers; the proxy answers 403 once it is past.
    #[arg(long, value_name = "SECONDS", conflicts_with = "expires_at")]
    pub expires: Option<u64>,
    /// The URL expires at this time (unix seconds): adds `exp=UNIX_SECONDS`.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub expires_at: Option<u64>,
    /// The host the URL is signed for, when URL is a path (needed with
    /// `transform.signing.cover_host`).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum By {
    Org,
    Route,
    Key,
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// Count events of the last DURATION (e.g. 30m, 1h, 7d); older entries are skipped. A
    /// missing consumer group is created at this time.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Group the totals by organization, route prefix or key (API key id / token subject /
    /// client IP).
    #[arg(long, value_enum)]
    pub by: Option<By>,
    /// Redis URL (overrides usage.redis_url).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Stream name (overrides usage.stream; default imgedge:usage).
    #[arg(long)]
    pub stream: Option<String>,
    /// Consumer group: readers of one group share the stream, each entry is counted once.
    #[arg(long, default_value = "imgedge-usage")]
    pub group: String,
    /// Consumer name within the group (default: usage-<hostname>). Reuse it to resume: the
    /// entries a killed run left unacknowledged are read again.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Entries fetched per XREADGROUP.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Print the totals as JSON.
    #[arg(long)]
    pub json: bool,
}
