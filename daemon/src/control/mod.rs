//! The control socket: one JSON request per line in, one JSON response per
//! line out, over a Unix stream socket (default `/run/halo/halo.sock`, mode
//! 0660, group `halo` when that group exists).
//!
//! This module holds the protocol (what a request and an answer are);
//! [`server`] accepts connections and forwards requests to the supervisor
//! (`run::supervisor`), which acts; [`client`] sends one request and waits;
//! [`cli`] is the `halo status`, `halo reload`, `halo vrrp …` and
//! `halo server …` commands built on the client.

pub mod cli;
pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::telemetry::status::Snapshot;

pub use client::{request, socket_path};
pub use server::{bind, serve, MAX_CONNECTIONS, MAX_LINE};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Reload,
    VrrpRelease {
        instance: String,
        /// Seconds to stay backup; none = until reclaimed.
        for_secs: Option<f64>,
    },
    VrrpReclaim {
        instance: String,
    },
    /// `halo anycast withdraw NAME`: remove the address (drained) until
    /// `announce`.
    AnycastWithdraw {
        name: String,
    },
    AnycastAnnounce {
        name: String,
    },
    Server {
        action: ServerAction,
        service: String,
        server: String,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ServerAction {
    Drain,
    Disable,
    Enable,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Snapshot>,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: message.into(),
            status: None,
        }
    }
    pub fn err(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: message.into(),
            status: None,
        }
    }
}

/// A request with the channel its answer goes back on.
pub type Envelope = (Request, oneshot::Sender<Response>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_each() {
        let r = Request::VrrpRelease {
            instance: "VI_1".into(),
            for_secs: Some(30.0),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"cmd":"vrrp-release","instance":"VI_1","for_secs":30.0}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        let s = r#"{"cmd":"server","action":"drain","service":"web","server":"web2"}"#;
        assert_eq!(
            serde_json::from_str::<Request>(s).unwrap(),
            Request::Server {
                action: ServerAction::Drain,
                service: "web".into(),
                server: "web2".into()
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm-rf"}"#).is_err());
    }
}
