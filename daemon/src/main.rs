//! `halo`: VRRP floating IP + HTTP reverse proxy + health checks in one daemon.

use halo::config;
use halo::run::logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_CONFIG: &str = "/etc/halo/halo.toml";

#[derive(Parser)]
#[command(name = "halo", version, about = "VRRP floating IP, HTTP/1.1 reverse proxy and health checks in one daemon", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Control socket path (overrides the config's control_socket).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Show what the running daemon is doing and why.
    Status {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: halo::control::cli::Target,
    },
    /// Re-read the config in the running daemon; an invalid file changes nothing.
    Reload {
        #[command(flatten)]
        target: halo::control::cli::Target,
    },
    /// Operate a VRRP instance of the running daemon.
    Vrrp {
        #[command(subcommand)]
        cmd: halo::control::cli::VrrpCmd,
        #[command(flatten)]
        target: halo::control::cli::Target,
    },
    /// Withdraw an [anycast.NAME] address (a drain) or announce it again.
    Anycast {
        #[command(subcommand)]
        cmd: halo::control::cli::AnycastCmd,
        #[command(flatten)]
        target: halo::control::cli::Target,
    },
    /// Take a proxy or l4 server out of rotation or put it back.
    Server {
        #[arg(value_enum)]
        action: halo::control::cli::ServerVerb,
        /// SERVICE/SERVER, e.g. web/web2.
        which: String,
        #[command(flatten)]
        target: halo::control::cli::Target,
    },
    /// Validate a configuration file and summarise what it sets up.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Fetch a page once and print the digest of its body, for a health
    /// check's `expect_body_digest` (like keepalived's genhash).
    Genhash {
        /// http://host[:port]/path
        url: String,
        /// Print sha256 instead of md5.
        #[arg(long)]
        sha256: bool,
        /// Host header to send (default: the URL's host and port).
        #[arg(long)]
        host: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Convert keepalived.conf and/or haproxy.cfg to halo.toml on stdout;
    /// every directive not carried over is listed on stderr.
    Import {
        #[command(flatten)]
        args: halo::import::ImportArgs,
    },
    /// A whole HA cluster in network namespaces on this machine (needs root).
    Lab {
        #[command(subcommand)]
        cmd: halo::lab::LabCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Lab { cmd } => match halo::lab::run(cmd) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("halo lab: {e:#}");
                ExitCode::from(1)
            }
        },
        Cmd::Import { args } => halo::import::cli(args),
        Cmd::Genhash {
            url,
            sha256,
            host,
            timeout,
        } => halo::health::genhash::cli(&url, sha256, host.as_deref(), timeout),
        Cmd::Check { config } => match config::load(&config) {
            Ok(cfg) => {
                println!("{}: OK", config.display());
                println!("{}", config::summary(&cfg));
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{errs}");
                ExitCode::from(1)
            }
        },
        Cmd::Status { json, target } => halo::control::cli::status(&target, json),
        Cmd::Reload { target } => halo::control::cli::reload(&target),
        Cmd::Vrrp { cmd, target } => halo::control::cli::vrrp(&target, cmd),
        Cmd::Anycast { cmd, target } => halo::control::cli::anycast(&target, cmd),
        Cmd::Server {
            action,
            which,
            target,
        } => halo::control::cli::server(&target, action, &which),
        Cmd::Run { config, socket } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("{errs}");
                    return ExitCode::from(1);
                }
            };
            logging::init(cfg.global.log_level.as_deref());
            match halo::run::run(cfg, &config, halo::run::RunOptions { socket }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("halo: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
