//! halo: one daemon for a floating virtual IP (VRRP), an HTTP/1.1 reverse
//! proxy and the health checks that tie them together.
//!
//! The library holds everything; `main.rs` is only the command line. Pure
//! protocol modules (`vrrp::packet`, `vrrp::router`, `http1`, ...) do
//! no I/O and read no clock; drivers around them do. `clippy.toml` holds
//! them to it: `Instant::now` and its kin are refused except where a driver
//! allows them (on its `mod` line or at the one place it reads the clock).

// Unit tests may start their virtual clocks at a real `Instant` (there is
// no other way to make one); the non-test build is still checked.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod admin;
pub mod anycast;
pub mod config;
pub mod control;
pub mod health;
pub mod hooks;
pub mod http1;
pub mod import;
pub mod l4;
pub mod lab;
pub mod proxy;
pub mod run;
pub mod telemetry;
pub mod tls;
pub mod vrrp;
