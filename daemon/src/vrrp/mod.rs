//! VRRP: pure codec (`packet`) and state machine (`router`), and the I/O driver.

pub mod packet;
pub mod router;

#[cfg(test)]
mod sim;

pub use packet::{Advert, DecodeError, PacketCtx, Version};
pub use router::{Action, RouterParams, State, VirtualRouter};
