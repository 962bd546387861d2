//! The control socket: one JSON request per line in, one JSON response per
//! line out, over a Unix stream socket (default `/run/halo/halo.sock`, mode
//! 0660, group `halo` when that group exists).
//!
//! The server side only parses and forwards; the daemon's supervisor acts.
//! The client side is what `halo status`, `halo reload`, `halo vrrp …` and
//! `halo server …` use.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::status::Snapshot;

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

/// Bind the socket. A stale file from a crashed halo is replaced; a live
/// halo on the same path is an error (two daemons must not share a socket).
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "control socket {} is in use by another halo (set a different control_socket or --socket)",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    set_group(path, "halo");
    Ok(l)
}

/// chgrp to `group` if it exists; root-run test setups have no such group.
fn set_group(path: &Path, group: &str) {
    let Ok(cname) = std::ffi::CString::new(group) else {
        return;
    };
    // SAFETY: getgrnam returns a pointer into static storage or null.
    let gr = unsafe { libc::getgrnam(cname.as_ptr()) };
    if gr.is_null() {
        return;
    }
    // SAFETY: gr is non-null; we read one field.
    let gid = unsafe { (*gr).gr_gid };
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: valid C string; uid -1 leaves the owner unchanged.
    if unsafe { libc::chown(cpath.as_ptr(), u32::MAX, gid) } != 0 {
        debug!(
            "chgrp {group} {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// The longest request line accepted, newline included. Requests are a few
/// hundred bytes; without a limit a client that never sends a newline makes
/// halo buffer whatever it sends (256 MiB grew halo by 260 MiB).
pub const MAX_LINE: usize = 64 * 1024;
/// Control connections served at once; more are answered with an error
/// and closed. `halo` commands open one each and close it at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its next request line.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// One request line, without its newline: `Ok(None)` at the end of the
/// stream, an error when it is longer than [`MAX_LINE`], not UTF-8, or
/// does not arrive within [`LINE_TIMEOUT`].
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::result::Result<Option<String>, String> {
    use tokio::io::AsyncReadExt;
    buf.clear();
    let mut limited = r.take(MAX_LINE as u64);
    match tokio::time::timeout(LINE_TIMEOUT, limited.read_until(b'\n', buf)).await {
        Err(_) => {
            return Err(format!(
                "no request line within {}s",
                LINE_TIMEOUT.as_secs()
            ))
        }
        Ok(Err(e)) => return Err(format!("reading the request: {e}")),
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(_)) => {}
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() >= MAX_LINE {
            return Err(format!(
                "request line longer than {MAX_LINE} bytes; closing"
            ));
        }
        // The last line of the stream, without a newline: still a request.
    } else {
        buf.pop();
    }
    String::from_utf8(std::mem::take(buf))
        .map(Some)
        .map_err(|_| "request is not UTF-8; closing".to_string())
}

/// Accept connections forever, forwarding each request to `tx`.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Envelope>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("control socket: more than {MAX_CONNECTIONS} connections; refusing one");
            let mut out = serde_json::to_string(&Response::err(format!(
                "too many control connections (at most {MAX_CONNECTIONS}); try again"
            )))
            .unwrap_or_default();
            out.push('\n');
            // Best effort and never blocking: the accept loop goes on.
            let _ = stream.try_write(out.as_bytes());
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (r, mut w) = stream.into_split();
            let mut r = tokio::io::BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                let line = match read_line(&mut r, &mut buf).await {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(why) => {
                        debug!("control socket: {why}");
                        let mut out =
                            serde_json::to_string(&Response::err(why)).unwrap_or_default();
                        out.push('\n');
                        let _ =
                            tokio::time::timeout(LINE_TIMEOUT, w.write_all(out.as_bytes())).await;
                        break;
                    }
                };
                let resp = match serde_json::from_str::<Request>(&line) {
                    Err(e) => Response::err(format!("bad request: {e}")),
                    Ok(req) => {
                        let (rtx, rrx) = oneshot::channel();
                        if tx.send((req, rtx)).await.is_err() {
                            Response::err("halo is shutting down")
                        } else {
                            rrx.await
                                .unwrap_or_else(|_| Response::err("request dropped"))
                        }
                    }
                };
                let mut out = serde_json::to_string(&resp).unwrap_or_default();
                out.push('\n');
                if w.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Send one request and wait for the answer (blocking; for the CLI).
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response> {
    let mut s = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach halo at {} (is it running? is --socket right?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut resp = String::new();
    BufReader::new(&s)
        .read_line(&mut resp)
        .context("reading halo's answer")?;
    if resp.is_empty() {
        bail!("halo closed the control socket without answering");
    }
    serde_json::from_str(&resp).context("halo's answer is not valid JSON")
}

/// The socket path a CLI command should use: the flag, else the config's
/// `control_socket` if the config is readable, else the default.
pub fn socket_path(flag: Option<PathBuf>, config: &Path) -> PathBuf {
    if let Some(p) = flag {
        return p;
    }
    match crate::config::load(config) {
        Ok(c) => c.global.control_socket,
        Err(_) => PathBuf::from(crate::config::DEFAULT_CONTROL_SOCKET),
    }
}

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
