//! The server side of the control socket: bind it, accept connections
//! (at most [`MAX_CONNECTIONS`]), read request lines (at most
//! [`MAX_LINE`] bytes) and forward each to the supervisor, which acts.
//! Nothing here decides anything.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{Envelope, Request, Response};

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
