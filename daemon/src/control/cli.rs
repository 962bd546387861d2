//! The client side of the control socket: `halo status`, `halo reload`,
//! `halo vrrp release|reclaim`, `halo server drain|disable|enable`,
//! `halo anycast withdraw|announce`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::control::{self, Request, ServerAction};

/// Where to find the running daemon.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Control socket (default: the config's control_socket, else /run/halo/halo.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Configuration file, read only to find the control socket.
    #[arg(short, long, global = true, default_value = "/etc/halo/halo.toml")]
    pub config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum VrrpCmd {
    /// Send priority 0 and stay backup (a failover drill; the first step of a
    /// rolling upgrade).
    Release {
        instance: String,
        /// How long to stay backup, e.g. 30s or 5m (default: until reclaimed).
        #[arg(long = "for", value_parser = parse_for)]
        for_: Option<Duration>,
    },
    /// End a release: back to the configured priority now.
    Reclaim { instance: String },
}

#[derive(Subcommand, Debug)]
pub enum AnycastCmd {
    /// Remove the address (the routing daemon withdraws its route; the
    /// address still answers for `drain`) and keep it off until `announce`.
    Withdraw { name: String },
    /// End a withdrawal: held again once its tracked items are up.
    Announce { name: String },
}

pub fn anycast(target: &Target, cmd: AnycastCmd) -> ExitCode {
    let req = match cmd {
        AnycastCmd::Withdraw { name } => Request::AnycastWithdraw { name },
        AnycastCmd::Announce { name } => Request::AnycastAnnounce { name },
    };
    match call(target, req) {
        Ok(r) => report(r),
        Err(c) => c,
    }
}

fn parse_for(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ServerVerb {
    /// No new requests; requests in flight finish.
    Drain,
    /// Out at once: no new requests, requests in flight to it are cut.
    Disable,
    /// Back in rotation (when healthy).
    Enable,
}

fn call(target: &Target, req: Request) -> Result<control::Response, ExitCode> {
    let path = control::socket_path(target.socket.clone(), &target.config);
    control::request(&path, &req, Duration::from_secs(30)).map_err(|e| {
        eprintln!("halo: {e:#}");
        ExitCode::from(2)
    })
}

fn report(resp: control::Response) -> ExitCode {
    if resp.ok {
        if !resp.message.is_empty() {
            println!("{}", resp.message);
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("halo: {}", resp.message);
        ExitCode::from(1)
    }
}

pub fn status(target: &Target, json: bool) -> ExitCode {
    let resp = match call(target, Request::Status) {
        Ok(r) => r,
        Err(c) => return c,
    };
    match resp.status {
        Some(s) if json => {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Some(s) => {
            print!("{}", crate::telemetry::status::render(&s));
            ExitCode::SUCCESS
        }
        None => report(resp),
    }
}

pub fn reload(target: &Target) -> ExitCode {
    match call(target, Request::Reload) {
        Ok(r) => report(r),
        Err(c) => c,
    }
}

pub fn vrrp(target: &Target, cmd: VrrpCmd) -> ExitCode {
    let req = match cmd {
        VrrpCmd::Release { instance, for_ } => Request::VrrpRelease {
            instance,
            for_secs: for_.map(|d| d.as_secs_f64()),
        },
        VrrpCmd::Reclaim { instance } => Request::VrrpReclaim { instance },
    };
    match call(target, req) {
        Ok(r) => report(r),
        Err(c) => c,
    }
}

pub fn server(target: &Target, verb: ServerVerb, which: &str) -> ExitCode {
    let Some((service, server)) = which.split_once('/') else {
        eprintln!("halo: expected SERVICE/SERVER, e.g. web/web2, not {which:?}");
        return ExitCode::from(2);
    };
    let action = match verb {
        ServerVerb::Drain => ServerAction::Drain,
        ServerVerb::Disable => ServerAction::Disable,
        ServerVerb::Enable => ServerAction::Enable,
    };
    let req = Request::Server {
        action,
        service: service.to_string(),
        server: server.to_string(),
    };
    match call(target, req) {
        Ok(r) => report(r),
        Err(c) => c,
    }
}
