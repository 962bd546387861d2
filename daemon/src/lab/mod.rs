//! `halo lab`: a whole HA cluster on one Linux machine, inside network
//! namespaces: a switch (`halo-sw`, bridge `br0`), load balancers
//! `halo-lb1..` running `halo run` (or keepalived on the last one with
//! `--peer keepalived`), nginx backends `halo-web1..` and a `halo-client`.
//! Addresses come from 192.0.2.0/24 (and 2001:db8::/64 with `--ipv6`)
//! only, and nothing is attached to the root namespace.
//!
//! It is also the harness of halo's own end-to-end tests (tests/halolab.py
//! drives it): `--name` gives each test its own lab (`halo-NAME-lb1`, ...),
//! `--backends 0` a VRRP-only one, and `--no-start` builds the network and
//! the files but starts nothing, so a test writes its own halo.toml or
//! keepalived.conf into the node's directory before `halo lab start`.
//!
//! This module is the command line and its dispatch. The layout and the
//! generated config files are [`plan`] (pure), the system calls and
//! shell-outs (`ip`, `nginx`, `keepalived`) are [`sys`], the HTTP probe is
//! [`probe`]; [`up`] builds and removes a lab, [`running`] finds and observes
//! one, the other commands are [`ops`] and the live view is [`watch`].
//! It does not install packages: it says which one is missing.

pub mod bgp;
// Starts FRR and waits for its sockets: a driver (clippy.toml).
#[allow(clippy::disallowed_methods)]
mod bgp_run;
pub mod check;
pub mod ops;
pub mod plan;
pub mod probe;
pub mod running;
// Drivers: they time what they wait for and print how long it took
// (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub mod sys;
#[allow(clippy::disallowed_methods)]
pub mod up;
#[allow(clippy::disallowed_methods)]
pub mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use plan::{Names, Node, Peer, Spec};

/// Which lab: its name (namespaces) and its directory (configs, logs).
#[derive(Args, Debug, Clone)]
pub struct DirArg {
    /// Lab directory [default: $HALO_LAB_DIR, else /var/lib/halo/lab, or
    /// /var/lib/halo/lab-NAME for a named lab].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run several labs side by side: this one's namespaces are
    /// halo-NAME-lb1, ... [default: $HALO_LAB_NAME, else none: halo-lb1, ...].
    #[arg(long)]
    pub name: Option<String>,
}

/// A lab's identity, resolved from the flags and the environment.
pub struct Which {
    pub dir: PathBuf,
    pub names: Names,
}

impl DirArg {
    pub fn resolve(&self) -> anyhow::Result<Which> {
        let name = self
            .name
            .clone()
            .or_else(|| std::env::var("HALO_LAB_NAME").ok());
        let names = Names::new(name.as_deref()).map_err(anyhow::Error::msg)?;
        let dir = self
            .dir
            .clone()
            .or_else(|| std::env::var_os("HALO_LAB_DIR").map(PathBuf::from))
            .unwrap_or_else(|| names.default_dir());
        Ok(Which { dir, names })
    }
}

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Build the lab and start every node; waits for one master and all backends UP.
    Up {
        /// Load balancers (lb1..lbN), 1..=9.
        #[arg(long, default_value_t = 2)]
        lbs: u8,
        /// nginx backends (web1..webM), 1..=9.
        #[arg(long, default_value_t = 3)]
        backends: u8,
        /// What runs VRRP on the last LB.
        #[arg(long, value_enum, default_value_t = Peer::Halo)]
        peer: Peer,
        /// VIPs, 1..=9 (192.0.2.100..): one VRRP instance each, with its
        /// own master (VIP i on lb i, round robin) and the others backing it
        /// up in turn: active-active.
        #[arg(long, default_value_t = 1)]
        vips: u8,
        /// Give every node an IPv6 address too (2001:db8::11 for lb1, ...).
        #[arg(long)]
        ipv6: bool,
        /// Balance in the kernel (`[l4.web]`, nftables) instead of halo's
        /// proxy: `dr` (direct routing: the backends hold the VIP on lo and
        /// answer the client themselves) or `nat`.
        #[arg(long, value_enum)]
        l4: Option<plan::L4Mode>,
        /// BGP/ECMP instead of VRRP: a router running FRR (multipath, BFD)
        /// in front of the LBs, each announcing 203.0.113.10 with FRR while
        /// halo's proxy has a healthy backend ([anycast.web]).
        #[arg(long)]
        bgp: bool,
        /// Build the network and write the files, start nothing: edit the
        /// configs, then `halo lab start NODE` for each node.
        #[arg(long)]
        no_start: bool,
        /// Seconds to wait for the lab to converge.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Remove every lab namespace and every process inside them (also after a crash).
    Down {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Every lab on this machine (the default one and named ones), from
    /// their namespaces: to find and remove what a crashed script left.
    List,
    /// Who is master, each LB's daemon and link, each backend's health.
    Status {
        #[command(flatten)]
        dir: DirArg,
    },
    /// N requests from the client to http://192.0.2.100/, showing who answered.
    Curl {
        #[arg(default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
        n: u32,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Live view: master changes and the client's traffic across backends.
    Watch {
        /// Stop after this many seconds (Ctrl-C stops earlier).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Probe requests per second from the client.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        rate: u32,
        /// A probe without an answer within this many ms counts as failed.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=5000))]
        timeout_ms: u64,
        #[command(flatten)]
        dir: DirArg,
    },
    /// SIGKILL a node's daemon (lbN: halo, and keepalived; webN: nginx).
    Kill {
        node: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// SIGTERM a node's daemon: a clean stop (halo hands the VIP over first).
    Stop {
        node: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Start a node's daemon again.
    Start {
        node: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Unplug a node's cable; `lbs`: partition the LBs from each other only;
    /// `multicast`: the switch stops forwarding multicast to the LBs.
    Cut {
        target: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Undo `cut`.
    Heal {
        target: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Run a command inside a node (or `switch`): halo lab exec lb1 -- ip addr
    Exec {
        node: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Apply an edited DIR/lbN/halo.toml to that LB.
    Reload {
        node: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Is exercise N's goal (docs/labs/) reached? Point by point; exit 0 or 1.
    Check {
        exercise: u8,
        #[command(flatten)]
        dir: DirArg,
    },
}

/// Run one `halo lab` command.
pub fn run(cmd: LabCmd) -> anyhow::Result<ExitCode> {
    sys::default_sigpipe();
    match cmd {
        LabCmd::Up {
            lbs,
            backends,
            peer,
            vips,
            ipv6,
            l4,
            bgp,
            no_start,
            timeout,
            dir,
        } => {
            let spec = Spec::new(lbs, backends, peer)
                .and_then(|s| s.with_vips(vips))
                .map_err(anyhow::Error::msg)?
                .with_ipv6(ipv6)
                .with_l4(l4)
                .and_then(|s| s.with_bgp(bgp))
                .map_err(anyhow::Error::msg)?;
            let wait = (!no_start).then(|| std::time::Duration::from_secs(timeout));
            up::up(&spec, &dir.resolve()?, wait)?;
        }
        LabCmd::Down { dir } => up::down(&dir.resolve()?)?,
        LabCmd::List => ops::list()?,
        LabCmd::Status { dir } => ops::status(&dir.resolve()?)?,
        LabCmd::Curl { n, dir } => return ops::curl(n, &dir.resolve()?),
        LabCmd::Watch {
            seconds,
            rate,
            timeout_ms,
            dir,
        } => watch::watch(
            &dir.resolve()?,
            std::time::Duration::from_secs(seconds),
            rate,
            std::time::Duration::from_millis(timeout_ms),
        )?,
        LabCmd::Kill { node, dir } => ops::signal_node(&node, ops::Action::Kill, &dir.resolve()?)?,
        LabCmd::Stop { node, dir } => ops::signal_node(&node, ops::Action::Stop, &dir.resolve()?)?,
        LabCmd::Start { node, dir } => {
            ops::signal_node(&node, ops::Action::Start, &dir.resolve()?)?
        }
        LabCmd::Cut { target, dir } => ops::cable(&target, false, &dir.resolve()?)?,
        LabCmd::Heal { target, dir } => ops::cable(&target, true, &dir.resolve()?)?,
        LabCmd::Exec { node, cmd, dir } => return ops::exec(&node, &cmd, &dir.resolve()?),
        LabCmd::Reload { node, dir } => ops::reload(&node, &dir.resolve()?)?,
        LabCmd::Check { exercise, dir } => {
            let lab = running::Running::find(&dir.resolve()?)?;
            return check::check(exercise, &lab);
        }
    }
    Ok(ExitCode::SUCCESS)
}
