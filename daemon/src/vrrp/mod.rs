//! VRRP: pure codec (`packet`) and state machine (`router`), and the I/O driver.

// Drivers: they read the clock (clippy.toml).
#[allow(clippy::disallowed_methods)]
pub mod driver;
pub mod explain;
pub mod garp;
pub mod group_run;
pub mod netlink;
pub mod packet;
pub mod router;
pub mod sockets;
pub mod sync_group;

#[cfg(test)]
mod sim;

pub use packet::{Advert, DecodeError, PacketCtx, Version};
pub use router::{Action, RouterParams, State, VirtualRouter};
