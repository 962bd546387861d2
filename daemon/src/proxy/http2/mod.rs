//! HTTP/2 to clients (RFC 9113) on TLS binds with `h2 = true`, where the
//! client chose "h2" by ALPN. hyperium's `h2` server speaks the frames,
//! HPACK, flow control and the protocol's errors; each stream's request
//! goes to the HTTP/1.1 servers through the same exchange as an HTTP/1
//! request (`conn::serve_request`: balancing, pool, retries, error pages,
//! access log), as HAProxy and nginx forward h2 to HTTP/1.1 servers.
//!
//! - The bridge: `h2` reads and writes through tokio's
//!   `AsyncRead`/`AsyncWrite`, halo's streams are owned-buffer
//!   [`Stream`]s (what io_uring needs, TLS included). A
//!   `tokio::io::duplex` pipe between them, with one pump each way, is
//!   the same code on both drivers; it costs one memory copy of each
//!   byte and holds at most [`PIPE`] bytes each way. (An `AsyncRead` over
//!   `Stream` would need a read in flight owned by the adapter, for
//!   io_uring a buffer the kernel holds: the pump is that, written once.)
//! - A stream: [`convert::request_head`] turns it into an HTTP/1.1 head
//!   that `http1` parses with the service's limits; [`client::H2Client`]
//!   is the stream as the exchange's client.
//! - Limits: [`MAX_STREAMS`] concurrent streams, the service's
//!   `max_head_bytes` as the header list size, 64 KiB stream windows and
//!   a 1 MiB connection window (an upload waiting for a server holds at
//!   most that). The connection ends with GOAWAY when idle for
//!   `timeouts.keep_alive`, on a reload or a stop (draining).
//!
//! Not here: TLS (`tls.rs`), HTTP/1 (`conn.rs`); no h2c, no server push.

mod client;
mod convert;
#[cfg(test)]
mod tests;

use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::conn::{self, Worker};
use super::stream::{Io, Stream};
use crate::http1::{self as http, HeadLimits};

/// Concurrent streams a client may open on one connection (nginx's and
/// HAProxy's default: 128 and 100).
pub(super) const MAX_STREAMS: u32 = 100;
/// Each direction of the bridge's pipe buffers at most this.
const PIPE: usize = 32 * 1024;
/// Each pump's buffer while bytes flow: one TLS record's plaintext.
const PUMP: usize = 16 * 1024;
/// ... and while the connection waits (most of its life): an idle
/// connection of thousands holds no more (as `conn.rs`'s `FIRST`).
const IDLE: usize = 1024;
/// Flow-control windows halo offers: per stream, per connection.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONN_WINDOW: u32 = 1024 * 1024;
/// How often a connection looks at idleness and draining.
const TICK: Duration = Duration::from_secs(1);

/// Serve one TLS connection that negotiated "h2" until it closes.
pub(crate) async fn serve<I: Io>(w: Rc<Worker<I>>, client: I::Stream, peer: SocketAddr) {
    let t = w.shared.svc.timeouts.clone();
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (from_h2, to_h2) = tokio::io::split(theirs);
    let fd = client.fd();
    let conn = async {
        connection(w, ours, peer, fd).await;
        // Never ends this way: the bridge's way down ends the connection,
        // after it has written the last frames (GOAWAY).
        std::future::pending::<()>().await
    };
    let up = async {
        pump_up(&client, to_h2).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = pump_down(&client, from_h2, t.client) => {}
        _ = conn => {}
        _ = up => {}
    }
}

/// Client to `h2`. At the client's end (or error) the pipe's write side
/// closes, and `h2` sees the end of the connection.
async fn pump_up<S: Stream>(client: &S, mut to_h2: WriteHalf<DuplexStream>) {
    let mut buf = Vec::with_capacity(IDLE);
    loop {
        buf.clear();
        let (r, b) = client.read(buf).await;
        buf = b;
        match r {
            Ok(n) if n > 0 => {
                if to_h2.write_all(&buf).await.is_err() {
                    break;
                }
                // A full buffer: more is coming, read it in large pieces;
                // a short read: the client paused, wait with a small one.
                if n == buf.capacity() && n < PUMP {
                    buf = Vec::with_capacity(PUMP);
                } else if n < IDLE && buf.capacity() > IDLE {
                    buf = Vec::with_capacity(IDLE);
                }
            }
            _ => break,
        }
    }
    let _ = to_h2.shutdown().await;
}

/// `h2` to the client, each write bounded by `timeouts.client` (a client
/// that takes nothing is gone). Ends when `h2` is done with the
/// connection (after its last frame) and closes the client's side.
async fn pump_down<S: Stream>(client: &S, mut from_h2: ReadHalf<DuplexStream>, limit: Duration) {
    // Waiting with a small buffer; what is there then is taken in up to
    // `PUMP` bytes, into a buffer that lives while bytes flow.
    let mut first = [0u8; IDLE];
    loop {
        let n = match from_h2.read(&mut first).await {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        let mut buf = Vec::with_capacity(PUMP);
        buf.extend_from_slice(&first[..n]);
        while buf.len() < PUMP {
            let len = buf.len();
            buf.resize(PUMP, 0);
            let more = futures::FutureExt::now_or_never(from_h2.read(&mut buf[len..]));
            match more {
                Some(Ok(m)) if m > 0 => buf.truncate(len + m),
                _ => {
                    buf.truncate(len);
                    break;
                }
            }
        }
        match tokio::time::timeout(limit, client.write_all(buf)).await {
            Ok((Ok(()), _)) => {}
            _ => return client.shutdown(Shutdown::Both),
        }
    }
    client.shutdown(Shutdown::Write);
}

/// The `h2` connection: handshake, accept streams (each its own task),
/// GOAWAY when idle or draining.
async fn connection<I: Io>(w: Rc<Worker<I>>, io: DuplexStream, peer: SocketAddr, fd: i32) {
    let shared = w.shared.clone();
    let t = &shared.svc.timeouts;
    let limits = HeadLimits {
        max_head_bytes: shared.svc.limits.max_head_bytes,
        max_headers: shared.svc.limits.max_headers,
    };
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(limits.max_head_bytes.try_into().unwrap_or(u32::MAX))
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_send_buffer_size(PIPE);
    let hs = tokio::time::timeout(t.http_request, builder.handshake::<_, Bytes>(io)).await;
    let mut h2c = match hs {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, service = %shared.svc.name, "h2 handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %peer, service = %shared.svc.name, "h2 handshake timed out");
            return;
        }
    };
    let mut streams = tokio::task::JoinSet::new();
    let mut last_active = Instant::now();
    // Set once GOAWAY went out: the connection gets this long to finish.
    let mut closing: Option<Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            r = h2c.accept() => match r {
                Some(Ok((_, mut respond))) if streams.len() >= MAX_STREAMS as usize => {
                    // Streams the client reset are closed for h2 but may
                    // still be ending here: never more exchanges than a
                    // client may have streams open. It may send again
                    // (REFUSED_STREAM: nothing was done, RFC 9113 8.7).
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
                Some(Ok((req, respond))) => {
                    last_active = Instant::now();
                    streams.spawn_local(stream(w.clone(), req, respond, peer, limits, fd));
                }
                Some(Err(e)) => {
                    tracing::debug!(client = %peer, service = %shared.svc.name, "h2: {e}");
                    break;
                }
                None => break,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {
                last_active = Instant::now();
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(since) = closing {
                    if now.saturating_duration_since(since) > t.client.max(t.server) {
                        break;
                    }
                    continue;
                }
                let idle = streams.is_empty()
                    && now.saturating_duration_since(last_active) >= t.keep_alive;
                if idle || shared.draining.load(Ordering::Relaxed) {
                    h2c.graceful_shutdown();
                    closing = Some(now);
                }
            }
        }
    }
    // Streams still running end on their own: dropping the connection
    // fails their reads and writes, and each exchange then ends as one
    // whose client went away, with its access-log line (aborting them
    // would lose it).
    streams.detach_all();
}

/// One stream: its request to an HTTP/1.1 head, the exchange, the end.
async fn stream<I: Io>(
    w: Rc<Worker<I>>,
    req: ::http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: SocketAddr,
    limits: HeadLimits,
    fd: i32,
) {
    let start = Instant::now();
    let shared = &w.shared;
    let (parts, body) = req.into_parts();
    let mut text = Vec::new();
    let mut head = http::RequestHead::default();
    let refused = match convert::request_head(&parts, !body.is_end_stream(), &mut text) {
        Err(r) => Some((r.status(), r.note())),
        Ok(()) => match head.parse_from(&text, limits) {
            Err(e) => Some((e.status(), "bad h2 request")),
            Ok(()) => None,
        },
    };
    if let Some((status, note)) = refused {
        let mut r = ::http::Response::new(());
        *r.status_mut() = ::http::StatusCode::from_u16(status).unwrap_or_default();
        let _ = respond.send_response(r, true);
        let target = parts.uri.path_and_query().map_or("-", |p| p.as_str());
        conn::log_refused(
            shared,
            peer,
            start,
            status,
            note,
            "h2",
            (parts.method.as_str(), target),
        );
        return;
    }
    let client = client::H2Client::new(body, respond, &head, limits, fd);
    tokio::select! {
        _ = conn::serve_request(&w, &client, &head, peer, start, "h2") => client.finish(),
        reason = client.reset_by_client() => {
            // 499: the client went away before its response, nginx's code.
            tracing::debug!(client = %peer, "h2 stream reset by the client: {reason:?}");
            let target = parts.uri.path_and_query().map_or("-", |p| p.as_str());
            let note = "client reset the stream";
            conn::log_refused(shared, peer, start, 499, note, "h2", (parts.method.as_str(), target));
        }
    }
}
