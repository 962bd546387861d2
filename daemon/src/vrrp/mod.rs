//! VRRP: pure codec (`packet`) and state machine (`router`), and the I/O driver.

pub mod packet;

pub use packet::{Advert, DecodeError, PacketCtx, Version};
