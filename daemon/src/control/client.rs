//! The client side of the control socket: one blocking request and its
//! answer, for the CLI commands (`cli`) and the lab.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Request, Response};

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
