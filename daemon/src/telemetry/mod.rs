//! What a running halo reports about itself.
//!
//! [`status`] is the snapshot drivers publish (VRRP states with their
//! explanations, servers, l4) and the `halo status` table; [`stats`] the
//! proxy's traffic counters. Rendering for HTTP (`/metrics`, the status
//! page) is `admin`'s; the control socket that carries a snapshot is
//! `control`'s.

pub mod stats;
pub mod status;
