//! halo: one daemon for a floating virtual IP (VRRP), an HTTP/1.1 reverse
//! proxy and the health checks that tie them together.
//!
//! The library holds everything; `main.rs` is only the command line. Pure
//! protocol modules (`vrrp::packet`, `vrrp::router`, `proxy::http`, ...) do
//! no I/O and read no clock; drivers around them do.

pub mod admin;
pub mod anycast;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod health;
pub mod hooks;
pub mod import;
pub mod l4;
pub mod lab;
pub mod liveness;
pub mod logging;
pub mod netlink;
pub mod proxy;
pub mod release;
pub mod sdnotify;
pub mod stats;
pub mod status;
pub mod track_script;
pub mod vrrp;
