//! The process: `halo run` from start to stop.
//!
//! [`supervisor`] starts every subsystem, owns the signals and the control
//! requests, applies reloads and stops everything in order; [`reload`]
//! plans a reload (pure: which subsystem changes how); [`sdnotify`]
//! and [`liveness`] tell systemd that halo is ready and still going round;
//! [`logging`] picks journald or stderr; [`release`] keeps `halo vrrp
//! release` across a restart of the process. The protocols themselves live
//! in `vrrp`, `proxy`, `health` and `l4`.

pub mod liveness;
pub mod logging;
pub mod priority;
pub mod release;
pub mod reload;
pub mod sdnotify;
// A driver: it reads the clock (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub mod supervisor;

pub use supervisor::{run, RunOptions};
