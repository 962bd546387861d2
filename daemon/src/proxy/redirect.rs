//! A `redirect_https = true` bind: every request is answered with a 308 to
//! its `https://` URL (`http::redirect_https` writes it) and nothing goes
//! to a server, as HAProxy's `redirect scheme https` and nginx's
//! `return 308 https://$host$request_uri` do.
//!
//! The connection is kept alive between requests without a body; one with
//! a body is closed after the answer (its body is never read). Heads are
//! read under `timeouts.http_request` and `keep_alive`, with the service's
//! head limits; a bad one gets 400.

use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::time::timeout_at;

use super::conn::{Worker, BUF};
use super::stream::{Io, Stream};
use crate::http1::{self as http, BodyKind, HeadLimits};

/// The port redirects point to: the service's first TLS bind, else 443.
fn https_port(svc: &crate::config::ProxyService) -> u16 {
    svc.bind
        .iter()
        .zip(&svc.bind_opts)
        .find(|(_, o)| o.tls.is_some())
        .map_or(443, |(a, _)| a.port())
}

pub(crate) async fn serve<I: Io>(w: Rc<Worker<I>>, client: I::Stream, peer: SocketAddr) {
    let shared = w.shared.clone();
    let svc = &shared.svc;
    let t = &svc.timeouts;
    let limits = HeadLimits {
        max_head_bytes: svc.limits.max_head_bytes,
        max_headers: svc.limits.max_headers,
    };
    let port = https_port(svc);
    let mut buf: Vec<u8> = Vec::with_capacity(BUF);
    let mut req = http::RequestHead::default();
    let mut first = true;
    loop {
        let mut start = Instant::now();
        let wait = if first || !buf.is_empty() {
            t.http_request
        } else {
            t.keep_alive
        };
        let mut deadline = start + wait;
        let head = loop {
            match http::check_head(&buf, limits) {
                Ok(Some(n)) => break Ok(n),
                Ok(None) => {}
                Err(e) => break Err(e.status()),
            }
            if buf.capacity() - buf.len() < BUF / 4 {
                buf.reserve(BUF);
            }
            let was_empty = buf.is_empty();
            match timeout_at(deadline.into(), client.read(std::mem::take(&mut buf))).await {
                Ok((Ok(n), b)) if n > 0 => {
                    buf = b;
                    if was_empty && !first {
                        // The next request began: http_request from here.
                        start = Instant::now();
                        deadline = start + t.http_request;
                    }
                }
                Ok((Ok(_), _)) | Ok((Err(_), _)) => return,
                Err(_) if buf.is_empty() && !first => return,
                Err(_) => break Err(408),
            }
        };
        let (answer, status, keep) = match head {
            Ok(n) => match req.parse_from(&buf[..n], limits) {
                Ok(()) => {
                    buf.drain(..n);
                    let keep = req.keep_alive
                        && req.body == BodyKind::None
                        && !shared.draining.load(Ordering::Relaxed);
                    match http::redirect_https(&req, port, keep) {
                        Some(a) => (a, 308, keep),
                        None => (http::error_response(400), 400, false),
                    }
                }
                Err(e) => (http::error_response(e.status()), e.status(), false),
            },
            Err(status) => (http::error_response(status), status, false),
        };
        let bytes = answer.len() as u64;
        let tt = start.elapsed();
        shared.stats.response(None, status, bytes, tt);
        let (method, target) = if status == 308 {
            (req.method(), req.target())
        } else {
            ("-", "-")
        };
        tracing::info!(
            target: "halo::access",
            client = %peer,
            service = %svc.name,
            server = "-",
            status,
            bytes,
            Tq = tt.as_millis() as i64,
            Tw = -1,
            Tc = -1,
            Tr = -1,
            Tt = tt.as_millis() as i64,
            retries = 0,
            note = if status == 308 { "redirect https" } else { "bad request" },
            "{peer} {status} {method} {target}",
        );
        let (r, _) = timeout_at((Instant::now() + t.client).into(), client.write_all(answer))
            .await
            .unwrap_or((Err(std::io::ErrorKind::TimedOut.into()), Vec::new()));
        if r.is_err() {
            return;
        }
        if !keep {
            // Half-close, then drain briefly, so the answer is not lost to
            // a reset for unread input (a body we never read).
            client.shutdown(Shutdown::Write);
            let end = Instant::now() + Duration::from_secs(1);
            let mut total = 0;
            while total < 1 << 20 {
                buf.clear();
                if buf.capacity() < BUF {
                    buf.reserve(BUF);
                }
                match timeout_at(end.into(), client.read(std::mem::take(&mut buf))).await {
                    Ok((Ok(n), b)) if n > 0 => {
                        total += n;
                        buf = b;
                    }
                    _ => break,
                }
            }
            client.shutdown(Shutdown::Both);
            return;
        }
        first = false;
    }
}
