//! One HTTP/2 stream as the client side of an exchange (`conn.rs`): a
//! [`Stream`] whose reads give the request body in the HTTP/1.1 framing
//! its head announced, and whose writes take the HTTP/1.1 response the
//! exchange writes and send it as HEADERS and DATA frames.
//!
//! Flow control: a write sends only what the client's windows allow
//! (`reserve_capacity`, then wait for it), so a client that stops
//! reading stops the exchange (its write times out after
//! `timeouts.client`) and nothing piles up in halo. A read releases the
//! window for each DATA frame as it hands it on, so an upload is held to
//! one frame here plus what the exchange holds.
//!
//! The `h2` handles sit in `RefCell`s borrowed only inside a poll, never
//! across an await: the exchange reads and writes at once.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::task::Poll;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};

use super::convert;
use crate::http1::{self as http, BodyDecoder, BodyKind, HeadLimits};
use crate::proxy::stream::Stream;

pub(super) struct H2Client {
    up: RefCell<Upload>,
    down: RefCell<Download>,
    fd: std::os::fd::RawFd,
}

/// The request body, from the client.
struct Upload {
    recv: RecvStream,
    /// The HTTP/1.1 head says chunked: each DATA frame is a chunk.
    chunked: bool,
    /// Framed bytes not yet handed to a read.
    pending: Vec<u8>,
    pos: usize,
    ended: bool,
}

/// The response, to the client.
struct Download {
    /// Until the final response head went out.
    respond: Option<SendResponse<Bytes>>,
    send: Option<SendStream<Bytes>>,
    /// HTTP/1.1 bytes written by the exchange and not yet used.
    input: Vec<u8>,
    head: http::ResponseHead,
    limits: HeadLimits,
    method: String,
    dec: Option<BodyDecoder>,
    /// Decoded body data waiting for window.
    data: Vec<u8>,
    /// The body ended: END_STREAM goes with the last of `data`.
    end: bool,
    /// END_STREAM sent (or the stream reset).
    done: bool,
}

fn h2_err(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

impl H2Client {
    pub(super) fn new(
        recv: RecvStream,
        respond: SendResponse<Bytes>,
        req: &http::RequestHead,
        limits: HeadLimits,
        fd: std::os::fd::RawFd,
    ) -> H2Client {
        H2Client {
            up: RefCell::new(Upload {
                ended: req.body == BodyKind::None,
                recv,
                chunked: req.body == BodyKind::Chunked,
                pending: Vec::new(),
                pos: 0,
            }),
            down: RefCell::new(Download {
                respond: Some(respond),
                send: None,
                input: Vec::new(),
                head: http::ResponseHead::default(),
                limits,
                method: req.method().to_string(),
                dec: None,
                data: Vec::new(),
                end: false,
                done: false,
            }),
            fd,
        }
    }

    /// After the exchange: a response it did not finish (cut off, or no
    /// response at all) is reset, so the client does not take a
    /// truncated body for a whole one.
    pub(super) fn finish(&self) {
        let mut d = self.down.borrow_mut();
        if !d.done {
            d.reset(h2::Reason::INTERNAL_ERROR);
        }
    }

    /// Resolves when the client resets the stream (RST_STREAM) before the
    /// response is complete: the exchange is then abandoned, so a client
    /// that opens and resets streams in a loop cannot keep more requests
    /// running on the servers than it may have streams open.
    pub(super) async fn reset_by_client(&self) -> h2::Reason {
        poll_fn(|cx| {
            let mut guard = self.down.borrow_mut();
            let d = &mut *guard;
            let r = match (d.respond.as_mut(), d.send.as_mut(), d.done) {
                (Some(r), _, _) => r.poll_reset(cx),
                (None, Some(s), false) => s.poll_reset(cx),
                _ => return Poll::Pending,
            };
            match r {
                Poll::Ready(Ok(reason)) => Poll::Ready(reason),
                Poll::Ready(Err(_)) => Poll::Ready(h2::Reason::CANCEL),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Wait until the client's windows let at least one byte go; how many.
    async fn capacity(&self, want: usize) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut d = self.down.borrow_mut();
            let Some(s) = d.send.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            };
            s.reserve_capacity(want);
            loop {
                let c = s.capacity();
                if c > 0 {
                    return Poll::Ready(Ok(c));
                }
                match s.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => continue,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_err(e))),
                    Poll::Ready(None) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                    Poll::Pending => {
                        // A client that resets the stream while we wait.
                        if let Poll::Ready(r) = s.poll_reset(cx) {
                            let e = r.map_or_else(h2_err, |reason| {
                                io::Error::new(
                                    io::ErrorKind::ConnectionReset,
                                    format!("stream reset by the client: {reason:?}"),
                                )
                            });
                            return Poll::Ready(Err(e));
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await
    }
}

impl Download {
    /// Use what `input` holds: interim heads go out as they are, the
    /// final head as HEADERS, body bytes decoded into `data`. Returns
    /// whether `data` (or the end of the stream) waits to be sent.
    fn advance(&mut self) -> io::Result<bool> {
        let bad = |e: http::HttpError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        while self.dec.is_none() && !self.done {
            let Some(n) = http::check_head(&self.input, self.limits).map_err(bad)? else {
                return Ok(false);
            };
            self.head
                .parse_from(&self.input[..n], self.limits, &self.method)
                .map_err(bad)?;
            self.input.drain(..n);
            let r = convert::response(&self.head);
            let Some(respond) = self.respond.as_mut() else {
                return Err(io::ErrorKind::BrokenPipe.into());
            };
            if self.head.status < 200 {
                // 100 Continue and friends: best effort, as HAProxy does.
                let _ = respond.send_informational(r);
                continue;
            }
            let end = self.head.body == BodyKind::None;
            let send = respond.send_response(r, end).map_err(h2_err)?;
            self.respond = None;
            if end {
                self.done = true;
            } else {
                self.send = Some(send);
                self.dec = Some(BodyDecoder::new(self.head.body));
            }
        }
        if let Some(dec) = self.dec.as_mut() {
            if !self.input.is_empty() && !dec.is_done() {
                let used = dec.decode(&self.input, &mut self.data).map_err(bad)?;
                self.input.drain(..used);
            }
            if dec.is_done() {
                self.end = true;
            }
        }
        // Bytes after a complete response: the exchange never writes
        // any; dropped.
        if self.done || self.end {
            self.input.clear();
        }
        Ok(!self.done && (!self.data.is_empty() || self.end))
    }

    fn reset(&mut self, reason: h2::Reason) {
        if let Some(r) = self.respond.as_mut() {
            r.send_reset(reason);
        } else if let Some(s) = self.send.as_mut() {
            s.send_reset(reason);
        }
        self.done = true;
    }
}

impl Stream for H2Client {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            {
                let mut u = self.up.borrow_mut();
                if u.pos < u.pending.len() {
                    let room = (buf.capacity() - buf.len()).max(1);
                    let n = room.min(u.pending.len() - u.pos);
                    buf.extend_from_slice(&u.pending[u.pos..u.pos + n]);
                    u.pos += n;
                    return (Ok(n), buf);
                }
                if u.ended {
                    return (Ok(0), buf);
                }
            }
            let next = poll_fn(|cx| self.up.borrow_mut().recv.poll_data(cx)).await;
            let mut u = self.up.borrow_mut();
            u.pending.clear();
            u.pos = 0;
            match next {
                Some(Ok(data)) => {
                    // In our hands now: the client may send the next frame.
                    let _ = u.recv.flow_control().release_capacity(data.len());
                    if data.is_empty() {
                        continue;
                    }
                    if u.chunked {
                        let size = format!("{:x}\r\n", data.len());
                        u.pending.extend_from_slice(size.as_bytes());
                        u.pending.extend_from_slice(&data);
                        u.pending.extend_from_slice(b"\r\n");
                    } else {
                        u.pending.extend_from_slice(&data);
                    }
                }
                None => {
                    // END_STREAM. Trailers are not forwarded.
                    u.ended = true;
                    if u.chunked {
                        u.pending.extend_from_slice(b"0\r\n\r\n");
                    }
                }
                Some(Err(e)) => return (Err(h2_err(e)), buf),
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.down.borrow_mut().input.extend_from_slice(&buf);
        loop {
            match self.down.borrow_mut().advance() {
                Ok(true) => {}
                Ok(false) => return (Ok(()), buf),
                Err(e) => return (Err(e), buf),
            }
            // Send `data` as the client's windows allow.
            loop {
                let want = {
                    let d = self.down.borrow();
                    if d.data.is_empty() && !d.end {
                        break;
                    }
                    d.data.len()
                };
                let n = if want == 0 {
                    0
                } else {
                    match self.capacity(want).await {
                        Ok(c) => c.min(want),
                        Err(e) => return (Err(e), buf),
                    }
                };
                let mut d = self.down.borrow_mut();
                let chunk = Bytes::copy_from_slice(&d.data[..n]);
                d.data.drain(..n);
                let last = d.end && d.data.is_empty();
                let Some(s) = d.send.as_mut() else {
                    return (Err(io::ErrorKind::BrokenPipe.into()), buf);
                };
                if let Err(e) = s.send_data(chunk, last) {
                    return (Err(h2_err(e)), buf);
                }
                if last {
                    d.done = true;
                    break;
                }
            }
        }
    }

    fn shutdown(&self, how: Shutdown) {
        if how != Shutdown::Read {
            let mut d = self.down.borrow_mut();
            if !d.done {
                d.reset(h2::Reason::INTERNAL_ERROR);
            }
        }
    }

    fn is_idle(&self) -> bool {
        false
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }

    fn is_tls(&self) -> bool {
        true
    }
}
