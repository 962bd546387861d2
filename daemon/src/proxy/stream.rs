//! The one seam between the connection logic and the two I/O drivers.
//!
//! `Stream` is an owned-buffer TCP stream (the shape io_uring needs: the
//! kernel owns the buffer while an operation is in flight), implemented for
//! `tokio_uring::net::TcpStream` and for `tokio::net::TcpStream`. Methods
//! take `&self` so a tunnel can read and write both directions at once.
//! `Io` adds connecting and accepting; a driver's streams are
//! [`Transport`]s, plain or TLS (`tls.rs`). Nothing here knows HTTP.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use super::tls::TlsStream;

/// A connected TCP stream with owned buffers.
pub(crate) trait Stream: Sized + 'static {
    /// Read into the spare capacity of `buf` (after `buf.len()`), growing
    /// its length by the count read. `Ok(0)` is end of stream. The caller
    /// makes sure there is spare capacity.
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Write every byte of `buf`; the buffer comes back for reuse.
    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Half- or full-close; errors (already closed) do not matter here.
    fn shutdown(&self, how: Shutdown);
    /// Nothing unread and no end of stream: a server connection between
    /// responses, fit to carry the next request. Never waits.
    fn is_idle(&self) -> bool;
    /// No byte unread (the end of the stream may have come): a close now
    /// sends a FIN, not a reset. Never waits. The default, `is_idle`, errs
    /// on the side of "unread".
    fn nothing_unread(&self) -> bool {
        self.is_idle()
    }
    /// The connection closes after the writes that follow (a response
    /// with `Connection: close`): nothing will be read after them that a
    /// write could be batched with. A hint for the driver; the default
    /// ignores it.
    fn closing(&self) {}
    /// A small write (conn.rs `WRITE_ALONE`), once its future was polled,
    /// ends without being polled again and without anybody woken by its
    /// end: so it can go out beside a read that wakes the task instead.
    /// False by default: an epoll write that would block waits for
    /// readiness, which only a poll registers.
    fn writes_alone(&self) -> bool {
        false
    }
    /// The socket's descriptor, so that a `halo server disable` can shut
    /// down the connections in flight to that server from outside.
    fn fd(&self) -> std::os::fd::RawFd;
    /// Whether the bytes are TLS-protected (the client came over HTTPS).
    fn is_tls(&self) -> bool {
        false
    }
    /// The client chose HTTP/2 by ALPN (`http2/` serves it).
    fn is_h2(&self) -> bool {
        false
    }
}

/// A driver's connection: plain TCP, or TLS over it (a TLS bind). One
/// type for both, so the connection code is compiled once per driver.
pub(crate) enum Transport<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

impl<S: Stream> Transport<S> {
    /// The server side of a TLS handshake on an accepted connection.
    pub(crate) async fn accept_tls(
        self,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        match self {
            Transport::Plain(s) => Ok(Transport::Tls(Box::new(
                TlsStream::accept(s, config).await?,
            ))),
            Transport::Tls(_) => Err(io::Error::other("TLS over TLS")),
        }
    }

    /// The client side of a TLS handshake on a connection to a server.
    pub(crate) async fn connect_tls(
        self,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Self> {
        match self {
            Transport::Plain(s) => Ok(Transport::Tls(Box::new(
                TlsStream::connect(s, config, name).await?,
            ))),
            Transport::Tls(_) => Err(io::Error::other("TLS over TLS")),
        }
    }
}

impl<S: Stream> Stream for Transport<S> {
    // A TLS read or write is a future several times the size of a plain
    // one (debug build: 800 bytes against 224 for an epoll read), and every
    // read and write future is built and moved by value a few times on its
    // way into the connection's state: callgrind counted some 1,000
    // instructions of copying per plain write. Boxed, the TLS one costs an
    // allocation per operation beside its cryptography, and the plain one
    // no longer carries its size.
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s) => Box::pin(s.read(buf)).await,
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Transport::Plain(s) => s.write_all(buf).await,
            Transport::Tls(s) => Box::pin(s.write_all(buf)).await,
        }
    }

    fn shutdown(&self, how: Shutdown) {
        match self {
            Transport::Plain(s) => s.shutdown(how),
            Transport::Tls(s) => s.shutdown(how),
        }
    }

    fn is_idle(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_idle(),
            Transport::Tls(s) => s.is_idle(),
        }
    }

    fn nothing_unread(&self) -> bool {
        match self {
            Transport::Plain(s) => s.nothing_unread(),
            Transport::Tls(s) => s.nothing_unread(),
        }
    }

    fn closing(&self) {
        if let Transport::Plain(s) = self {
            s.closing()
        }
    }

    fn writes_alone(&self) -> bool {
        // A TLS write is records written one after another by a loop.
        matches!(self, Transport::Plain(s) if s.writes_alone())
    }

    fn fd(&self) -> RawFd {
        match self {
            Transport::Plain(s) => s.fd(),
            Transport::Tls(s) => s.fd(),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    fn is_h2(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.alpn() == Some(b"h2"))
    }
}

/// A driver: how to connect and accept.
pub(crate) trait Io: 'static {
    type Stream: Stream;
    type Listener: 'static;
    const NAME: &'static str;
    /// Accepts each worker keeps in flight per listener. One for epoll: an
    /// accept taken when the listener is readable goes on to the next
    /// connection in the backlog without waiting.
    fn accepts() -> usize {
        1
    }
    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream>;
    async fn accept(l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)>;
    /// Wrap a bound, listening, non-blocking std listener.
    fn listener(l: std::net::TcpListener) -> io::Result<Self::Listener>;
    /// At a drain: end the listener's accepts still waiting for a
    /// connection, so none takes one that nobody would serve. Nothing to
    /// do where dropping the accept's future is its end (epoll).
    async fn cancel_accepts(_l: &Self::Listener) {}
    /// The server side of a TLS handshake on an accepted stream.
    async fn accept_tls(
        s: Self::Stream,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<Self::Stream>;
    /// The client side of a TLS handshake on a connected stream.
    async fn connect_tls(
        s: Self::Stream,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Self::Stream>;
}

fn nodelay(fd: &impl AsFd) {
    // Heads and small bodies go out in one write; Nagle would only delay them.
    let _ = socket2::SockRef::from(fd).set_nodelay(true);
}

/// A non-blocking one-byte peek: `EAGAIN` means nothing unread and no
/// FIN; a byte (data the server wrote outside any response), 0 (the server
/// closed) or another error all mean the connection must not be reused.
/// MSG_DONTWAIT makes it non-blocking on io_uring's blocking sockets too,
/// and a peek consumes nothing, so neither driver's state is disturbed.
fn peek_idle(fd: RawFd) -> bool {
    let mut b = 0u8;
    // SAFETY: a valid descriptor owned by the caller and a 1-byte buffer.
    let r = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Whether a non-blocking one-byte peek finds data. An end of stream or
/// an error (reset) is nothing unread.
fn peek_unread(fd: RawFd) -> bool {
    let mut b = 0u8;
    // SAFETY: as in `peek_idle`.
    let r = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    r > 0
}

/// One non-blocking recv(2) into the spare capacity of `buf` (which must
/// have some), growing its length by the count read; 0 is end of stream.
fn recv_now(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: a valid descriptor owned by the caller; the kernel writes at
    // most `spare.len()` bytes into the vector's spare capacity.
    let r = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = r as usize;
    // SAFETY: the kernel initialised these `n` bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// One non-blocking send(2) of as much of `buf` as the socket takes now.
pub(super) fn send_now(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: a valid descriptor owned by the caller and a live buffer.
    let r = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

// === epoll driver (plain tokio) ===

pub(crate) struct Epoll;

impl Stream for tokio::net::TcpStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            // Wait first: after a short read (below) the readiness is
            // cleared, so a read that would find nothing (the next request
            // on a keep-alive connection, the answer to a request just
            // sent) waits for epoll instead of costing a recv that fails
            // with EAGAIN: measured 1.2 of those per proxied request.
            if let Err(e) = self.readable().await {
                return (Err(e), buf);
            }
            let spare = buf.capacity() - buf.len();
            match self.try_read_buf(&mut buf) {
                Ok(n) => {
                    if n > 0 && n < spare {
                        // The kernel had less than we asked for: the socket
                        // is drained. Clear tokio's readiness for it (what
                        // tokio's own poll_read does); tokio keeps it if an
                        // epoll event arrived since, so no wake-up is lost.
                        let _ = self.try_io(tokio::io::Interest::READABLE, || {
                            Err::<(), _>(io::ErrorKind::WouldBlock.into())
                        });
                    }
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut off = 0;
        while off < buf.len() {
            match self.try_write(&buf[off..]) {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.writable().await {
                        return (Err(e), buf);
                    }
                }
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = socket2::SockRef::from(self).shutdown(how);
    }

    fn is_idle(&self) -> bool {
        // tokio knows when the socket is not readable (our last read
        // drained it and no epoll event came since): then no recv at all.
        // Otherwise peek; a peek finding nothing clears the readiness.
        let r = self.try_io(tokio::io::Interest::READABLE, || {
            if peek_idle(self.as_raw_fd()) {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn nothing_unread(&self) -> bool {
        // Not readable since the last read drained it: no syscall.
        let r = self.try_io(tokio::io::Interest::READABLE, || {
            if peek_unread(self.as_raw_fd()) {
                Ok(())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
        r.is_err()
    }

    fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}

impl Io for Epoll {
    type Stream = Transport<tokio::net::TcpStream>;
    type Listener = tokio::net::TcpListener;
    const NAME: &'static str = "epoll";

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        nodelay(&s);
        Ok(Transport::Plain(s))
    }

    async fn accept(l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        // TCP_NODELAY comes from the listener (listen.rs).
        let (s, a) = l.accept().await?;
        Ok((Transport::Plain(s), a))
    }

    fn listener(l: std::net::TcpListener) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::from_std(l)
    }

    async fn accept_tls(
        s: Self::Stream,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<Self::Stream> {
        s.accept_tls(config).await
    }

    async fn connect_tls(
        s: Self::Stream,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Self::Stream> {
        s.connect_tls(config, name).await
    }
}

// === io_uring driver ===

pub(crate) struct Uring;

/// tokio-uring's stream, closed for real when dropped.
///
/// tokio-uring does not cancel an operation whose future is dropped (a
/// timed-out read): the operation keeps the descriptor open until it
/// completes, which for an idle peer is never. Shutting the socket down on
/// drop completes such reads at once (with 0), so the descriptor is freed.
/// Only then: a stream with no operation left behind closes without the
/// extra syscall.
pub(crate) struct UringStream {
    /// Shared with a read in flight (`Held`; tokio-uring's writes hold
    /// their own reference): the socket stays open until the ring is done.
    s: std::rc::Rc<tokio_uring::net::TcpStream>,
    /// Operations started and not seen to complete: one whose future was
    /// dropped stays counted.
    ops: std::cell::Cell<u32>,
    /// Accepted and not read from yet: the client's first bytes have
    /// most likely arrived with the connection (see `read`).
    fresh: std::cell::Cell<bool>,
    /// The connection closes after its next writes (`Stream::closing`):
    /// they try a send(2) first (see `write_all`).
    closing: std::cell::Cell<bool>,
    /// Written to since the last read: the next read waits for the peer's
    /// answer, which cannot have come yet (see `read`).
    answer_due: std::cell::Cell<bool>,
}

impl UringStream {
    fn new(s: tokio_uring::net::TcpStream) -> Self {
        UringStream {
            s: std::rc::Rc::new(s),
            ops: std::cell::Cell::new(0),
            fresh: std::cell::Cell::new(false),
            closing: std::cell::Cell::new(false),
            answer_due: std::cell::Cell::new(false),
        }
    }

    fn accepted(s: tokio_uring::net::TcpStream) -> Self {
        let s = UringStream::new(s);
        s.fresh.set(true);
        s
    }

    /// An operation starts: counted in `ops` until [`UringStream::done`]
    /// (see the type's doc). Counted around each `.await` in place, not by
    /// an async wrapper: a wrapper took the operation's future by value and
    /// moved it again into its own state; its two lines cost ~1,870
    /// instructions per keep-alive request (two reads, two writes; callgrind).
    fn start(&self) {
        self.ops.set(self.ops.get() + 1);
    }

    /// The operation that [`UringStream::start`] counted completed.
    fn done(&self) {
        self.ops.set(self.ops.get() - 1);
    }
}

impl Drop for UringStream {
    fn drop(&mut self) {
        if self.ops.get() != 0 {
            let _ = self.s.shutdown(Shutdown::Both);
        }
    }
}

impl Stream for UringStream {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // The ring's recv writes into the buffer's spare capacity, after
        // the bytes already in it, as `Stream::read` promises.
        let mut buf = buf;
        let mut nothing_yet = self.answer_due.replace(false);
        if self.fresh.replace(false) && buf.capacity() > buf.len() {
            // The first read of an accepted connection: a client sends its
            // request as it connects, so a non-blocking recv(2) usually
            // finds it, where the ring costs a turn of its loop and a timer.
            match recv_now(self.s.as_raw_fd(), &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => nothing_yet = true,
                r => return (r, buf),
            }
        }
        if buf.capacity() == buf.len() {
            // A read into no room: 0, as the ring would answer it.
            return (Ok(0), buf);
        }
        let len = buf.len();
        let spare = u32::try_from(buf.capacity() - len).unwrap_or(u32::MAX);
        let sqe = io_uring::opcode::Recv::new(
            io_uring::types::Fd(self.s.as_raw_fd()),
            // SAFETY: `len` is within the allocation; the kernel writes at
            // most `spare` bytes after it, into the spare capacity.
            unsafe { buf.as_mut_ptr().add(len) },
            spare,
        )
        .build();
        // A read that comes right after a write waits for the peer's
        // answer (the next request after a response, a response after its
        // request), as does one after a recv(2) that found nothing: the
        // ring would try the socket, find nothing and only then wait for
        // it. POLL_FIRST (Linux 5.19) has it wait at once: one failed
        // tcp_recvmsg less per such read. Other reads (the rest of a body)
        // most likely find bytes, so they try first. An older kernel
        // refuses the flag; its rings were made without Linux 6.0's flags.
        let sqe = if nothing_yet && super::ring_is_modern() {
            poll_first(sqe)
        } else {
            sqe
        };
        self.start();
        let r = submit(sqe, &self.s, buf, |r, mut buf| {
            let r = r.map(|n| {
                let n = n as usize;
                // SAFETY: the kernel wrote `n` bytes after the buffer's
                // length, into its spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                n
            });
            (r, buf)
        })
        .await;
        self.done();
        r
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        // Through the ring, never a send(2) first: the ring submits a
        // write together with the read that follows it on a keep-alive
        // connection in one io_uring_enter, where a send(2) first cost two
        // more syscalls per proxied request (keep-alive 24.5k -> 29.9k
        // req/s without it, `Connection: close` level; docs/benchmarks.md,
        // "io_uring writes").
        //
        // Except the last writes of a connection that closes after them:
        // no read follows for the ring to batch them with, and a write
        // through the ring costs an operation and a wake-up and poll of
        // the connection's task that a send(2) taking the bytes at once
        // does not (~1,600 instructions per `Connection: close` request,
        // callgrind; docs/benchmarks.md, "session 9").
        self.answer_due.set(true);
        let mut off = 0;
        if self.closing.get() {
            match send_now(self.s.as_raw_fd(), &buf) {
                Ok(n) if n == buf.len() => return (Ok(()), buf),
                Ok(n) => off = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
        }
        self.start();
        let r = if off == 0 {
            self.s.write_all(buf).await
        } else {
            use tokio_uring::buf::BoundedBuf;
            let (r, b) = self.s.write_all(buf.slice(off..)).await;
            (r, b.into_inner())
        };
        self.done();
        r
    }

    fn closing(&self) {
        self.closing.set(true);
    }

    fn writes_alone(&self) -> bool {
        // The ring completes a write submitted once; only a write the
        // socket takes in parts makes tokio-uring submit another, which a
        // small write to a socket with nothing queued is not.
        true
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = self.s.shutdown(how);
    }

    fn is_idle(&self) -> bool {
        peek_idle(self.s.as_raw_fd())
    }

    fn nothing_unread(&self) -> bool {
        !peek_unread(self.s.as_raw_fd())
    }

    fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.s)
    }
}

/// An operation submitted through tokio-uring's `UnsubmittedOneshot`: it
/// holds what it works on, open until the ring is done with it even if the
/// operation's future is dropped (tokio-uring keeps an abandoned
/// operation's data until its completion), and its data, which the
/// completion gives back through `done` with the result.
struct Held<T, D, O> {
    _on: std::rc::Rc<T>,
    data: D,
    done: fn(io::Result<u32>, D) -> O,
}

/// Completes a [`Held`] operation.
struct Complete<T, D, O>(std::marker::PhantomData<fn(T, D) -> O>);

impl<T: 'static, D: 'static, O> tokio_uring::OneshotOutputTransform for Complete<T, D, O> {
    type Output = O;
    type StoredData = Held<T, D, O>;

    fn transform_oneshot_output(self, held: Held<T, D, O>, cqe: io_uring::cqueue::Entry) -> O {
        (held.done)(cqe_result(&cqe), held.data)
    }
}

/// Submits `sqe`, which works on `on` with `data`, and waits for it.
async fn submit<T: 'static, D: Unpin + 'static, O: 'static>(
    sqe: io_uring::squeue::Entry,
    on: &std::rc::Rc<T>,
    data: D,
    done: fn(io::Result<u32>, D) -> O,
) -> O {
    let held = Held {
        _on: on.clone(),
        data,
        done,
    };
    tokio_uring::UnsubmittedOneshot::new(held, Complete(std::marker::PhantomData), sqe)
        .submit()
        .await
}

/// A completion's result: what the operation returned (a count, a
/// descriptor), or its error.
fn cqe_result(cqe: &io_uring::cqueue::Entry) -> io::Result<u32> {
    let r = cqe.result();
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r))
    } else {
        Ok(r as u32)
    }
}

/// linux/io_uring.h; io-uring 0.6 does not export it.
const IORING_RECVSEND_POLL_FIRST: u16 = 1;

/// `sqe`, a recv, with IORING_RECVSEND_POLL_FIRST: wait for the socket to
/// be readable before trying it.
fn poll_first(sqe: io_uring::squeue::Entry) -> io_uring::squeue::Entry {
    // SAFETY: `Entry` is repr(C) over the kernel's 64-byte SQE, whose
    // ioprio (a u16 at byte 2) carries a recv's flags.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(sqe) };
    raw[2..4].copy_from_slice(&IORING_RECVSEND_POLL_FIRST.to_ne_bytes());
    // SAFETY: the same SQE back, with a valid recv flag set.
    unsafe { std::mem::transmute(raw) }
}

/// A listening socket of the io_uring driver, with the socket address
/// its accepts write the peer into, kept from one accept to the next.
///
/// tokio-uring's own accept boxes a fresh address per connection (an
/// allocation and a free per `Connection: close` request, a third of the
/// io_uring driver's); this accept is the same ring operation with the
/// listener's box (`accept`, below).
pub(crate) struct UringListener {
    /// Shared with an accept in flight: the descriptor stays open until
    /// the ring is done with it, even if the accept loop is dropped.
    fd: std::rc::Rc<std::net::TcpListener>,
    /// The address box, absent while an accept has it (or an abandoned
    /// accept kept it: the next one makes another).
    addr: std::cell::Cell<Option<Box<PeerAddr>>>,
}

/// The peer's address as accept(2) writes it.
type PeerAddr = (libc::sockaddr_storage, libc::socklen_t);

impl Io for Uring {
    type Stream = Transport<UringStream>;
    type Listener = UringListener;
    const NAME: &'static str = "io_uring";
    /// Eight: the ring completes an accept, and its task makes the next
    /// one a turn of the worker's loop later, so with one in flight a burst
    /// of new clients waited in the backlog a loop turn each; with eight, a
    /// turn takes up to eight. Against two, eight made `Connection: close`
    /// ~5 % faster with ~8 % lower p99 and ~9 % less CPU per request (two
    /// ~5 % below one); `CLOSE=1 bash tests/bench/ab.sh`, docs/benchmarks.md,
    /// "Accepts in flight". Each costs a descriptor (a dup) and an idle task.
    ///
    /// One where the kernel cannot cancel them by descriptor at a drain
    /// (`cancel_accepts`, Linux 5.19): each would then take one more
    /// connection after the drain, and those still pending when the worker
    /// stops, connections nobody serves. Known from the ring's flags
    /// (Linux 6.0, `super::ring_is_modern`).
    fn accepts() -> usize {
        if super::ring_is_modern() {
            8
        } else {
            1
        }
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        // Connect through the tokio reactor under tokio-uring, then hand the
        // socket to io_uring. An io_uring connect cannot be cancelled (see
        // UringStream), and shutdown does not abort one in SYN-SENT: a
        // connect timeout against a host that never answers left the socket
        // retrying SYNs for about two minutes. A dropped tokio connect
        // closes its socket at once. Backend connections are pooled, so the
        // one epoll registration per connect costs little.
        let s = tokio::net::TcpStream::connect(addr).await?;
        nodelay(&s);
        let s = s.into_std()?;
        // io_uring sockets are blocking ones (as tokio-uring's own): the
        // ring waits for readiness instead of failing with EAGAIN.
        s.set_nonblocking(false)?;
        Ok(Transport::Plain(UringStream::new(
            tokio_uring::net::TcpStream::from_std(s),
        )))
    }

    async fn accept(l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        use std::os::fd::FromRawFd;
        let mut addr = l.addr.take().unwrap_or_else(|| {
            // SAFETY: all-zero is a valid sockaddr_storage.
            Box::new((unsafe { std::mem::zeroed() }, 0))
        });
        addr.1 = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let sqe = io_uring::opcode::Accept::new(
            io_uring::types::Fd(l.fd.as_raw_fd()),
            std::ptr::addr_of_mut!(addr.0).cast(),
            std::ptr::addr_of_mut!(addr.1),
        )
        // Blocking sockets, as tokio-uring's accept makes them (see
        // `connect`); TCP_NODELAY comes from the listener (listen.rs).
        .flags(libc::O_CLOEXEC)
        .build();
        // The box lives on the heap: the kernel writes into it wherever
        // the operation's data moves meanwhile.
        let (r, addr) = submit(sqe, &l.fd, addr, |r, addr| (r, addr)).await;
        // SAFETY: the kernel wrote a socket address of `addr.1` bytes.
        let peer = unsafe { socket2::SockAddr::new(addr.0, addr.1) }.as_socket();
        l.addr.set(Some(addr));
        // SAFETY: a descriptor the accept just made, owned by nobody else.
        let s = unsafe { std::net::TcpStream::from_raw_fd(r? as RawFd) };
        let peer = peer.ok_or_else(|| io::Error::other("accept: not an IP peer"))?;
        let s = tokio_uring::net::TcpStream::from_std(s);
        Ok((Transport::Plain(UringStream::accepted(s)), peer))
    }

    async fn cancel_accepts(l: &Self::Listener) {
        // tokio-uring does not cancel an operation whose future is dropped:
        // an accept left in the ring would still take a connection from the
        // queue this socket shares with the next generation, and nobody
        // would serve it. Cancelling every operation on this descriptor
        // (each accept loop has its own dup; IORING_ASYNC_CANCEL_FD, Linux
        // 5.19) ends the accepts still waiting with ECANCELED; one that
        // already took a connection has completed and is served. An older
        // kernel refuses the cancel (EINVAL): its accepts end with the next
        // connection each, which they then serve.
        let sqe = io_uring::opcode::AsyncCancel2::new(
            io_uring::types::CancelBuilder::fd(io_uring::types::Fd(l.fd.as_raw_fd())).all(),
        )
        .build();
        match submit(sqe, &l.fd, (), |r, ()| r).await {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                tracing::debug!("cancelling a draining listener's accepts: {e}");
            }
            _ => {}
        }
    }

    fn listener(l: std::net::TcpListener) -> io::Result<Self::Listener> {
        Ok(UringListener {
            fd: std::rc::Rc::new(l),
            addr: std::cell::Cell::new(None),
        })
    }

    async fn accept_tls(
        s: Self::Stream,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<Self::Stream> {
        s.accept_tls(config).await
    }

    async fn connect_tls(
        s: Self::Stream,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Self::Stream> {
        s.connect_tls(config, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// Whether io_uring works here; where it does not, the epoll driver
    /// serves and these tests have nothing to test.
    fn uring_here() -> bool {
        match super::super::probe_uring() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}): the epoll driver serves");
                false
            }
        }
    }

    /// A stream of this driver connected to `l` (inside a tokio-uring
    /// runtime), and its peer.
    fn connected(
        l: &std::net::TcpListener,
        addr: SocketAddr,
    ) -> (UringStream, std::net::TcpStream) {
        let c = std::net::TcpStream::connect(addr).unwrap();
        let (peer, _) = l.accept().unwrap();
        (
            UringStream::new(tokio_uring::net::TcpStream::from_std(c)),
            peer,
        )
    }

    /// A loopback listener and its address, if io_uring works here.
    fn uring_and_a_listener() -> Option<(std::net::TcpListener, SocketAddr)> {
        if !uring_here() {
            return None;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        Some((l, addr))
    }

    #[test]
    fn a_uring_first_read_appends_after_the_bytes_in_the_buffer() {
        // The first read of an accepted connection is a recv(2) of its
        // own; like the ring's reads it appends to what the buffer holds.
        let Some((l, addr)) = uring_and_a_listener() else {
            return;
        };
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut c, b"GET").unwrap();
        l.set_nonblocking(true).unwrap();
        tokio_uring::start(async move {
            let l = Uring::listener(l).unwrap();
            let (s, peer) = Uring::accept(&l).await.unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            // Let "GET" arrive (loopback: at once; a read through the ring
            // would find it too).
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut buf = Vec::with_capacity(64);
            buf.extend_from_slice(b"xy");
            let (r, buf) = s.read(buf).await;
            assert_eq!(r.unwrap(), 3);
            assert_eq!(&buf, b"xyGET");
            std::io::Write::write_all(&mut c, b" /").unwrap();
            let (r, buf) = s.read(buf).await;
            assert_eq!(r.unwrap(), 2);
            assert_eq!(&buf, b"xyGET /");
        });
    }

    #[test]
    fn uring_reads_after_a_write_wait_for_the_answer_and_append() {
        // A read right after a write waits for the socket before trying it
        // (POLL_FIRST): the answer still arrives, appended to the buffer,
        // whether it comes after the read is made or was there before.
        let Some((l, addr)) = uring_and_a_listener() else {
            return;
        };
        let peer = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = [0u8; 4];
            // Answered after the read is made.
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::io::Write::write_all(&mut c, b"pong").unwrap();
            // Answered before the read is made.
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            std::io::Write::write_all(&mut c, b"PONG").unwrap();
            // The rest of a message, read without a write between (well
            // after the reader's 50 ms pause above).
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::io::Write::write_all(&mut c, b"!").unwrap();
        });
        tokio_uring::start(async move {
            let s = std::net::TcpStream::connect(addr).unwrap();
            let s = UringStream::new(tokio_uring::net::TcpStream::from_std(s));
            let (r, _) = s.write_all(b"ping".to_vec()).await;
            r.unwrap();
            let mut buf = Vec::with_capacity(64);
            buf.extend_from_slice(b"xy");
            let (r, buf) = s.read(buf).await;
            assert_eq!(r.unwrap(), 4);
            assert_eq!(&buf, b"xypong");
            let (r, _) = s.write_all(b"ping".to_vec()).await;
            r.unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            let (r, buf) = s.read(buf).await;
            assert_eq!(r.unwrap(), 4);
            assert_eq!(&buf, b"xypongPONG");
            let (r, buf) = s.read(buf).await;
            assert_eq!(r.unwrap(), 1);
            assert_eq!(&buf, b"xypongPONG!");
            // The peer is gone: end of stream.
            let (r, _) = s.read(buf).await;
            assert_eq!(r.unwrap(), 0);
        });
        peer.join().unwrap();
    }

    #[test]
    fn uring_a_dropped_read_lets_go_of_its_socket() {
        // A read whose future is dropped (a timeout) stays in the ring and
        // holds the socket; dropping the stream shuts the socket down, the
        // read completes, and the socket is closed.
        let Some((l, addr)) = uring_and_a_listener() else {
            return;
        };
        tokio_uring::start(async move {
            let (s, mut peer) = connected(&l, addr);
            let held = std::rc::Rc::downgrade(&s.s);
            let read = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                s.read(Vec::with_capacity(64)),
            );
            assert!(read.await.is_err(), "nothing was sent: the read times out");
            assert!(held.upgrade().is_some(), "the ring's read holds the socket");
            drop(s);
            for _ in 0..100 {
                if held.upgrade().is_none() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(held.upgrade().is_none(), "the socket was never let go");
            let mut rest = Vec::new();
            assert_eq!(peer.read_to_end(&mut rest).unwrap(), 0, "closed");
        });
    }

    #[test]
    fn uring_a_write_to_a_peer_that_reset_fails() {
        // An error, not a signal and not a write that seems to succeed.
        let Some((l, addr)) = uring_and_a_listener() else {
            return;
        };
        tokio_uring::start(async move {
            let (s, peer) = connected(&l, addr);
            // Linger 0: the close sends a reset.
            socket2::SockRef::from(&peer)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
            drop(peer);
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut r = Ok(());
            for _ in 0..3 {
                r = s.write_all(vec![b'x'; 64 << 10]).await.0;
                if r.is_err() {
                    break;
                }
            }
            let e = r.expect_err("writes to a reset peer fail");
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{e}"
            );
        });
    }

    #[test]
    fn uring_accepts_give_each_connection_its_own_peer() {
        // The listener's address box serves one accept after another;
        // IPv6 too (the larger address).
        if !uring_here() {
            return;
        }
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = std::net::TcpListener::bind(bind) else {
                continue; // no IPv6 here
            };
            let addr = l.local_addr().unwrap();
            let cs: Vec<_> = (0..3)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            l.set_nonblocking(true).unwrap();
            tokio_uring::start(async move {
                let l = Uring::listener(l).unwrap();
                for c in &cs {
                    let (_, peer) = Uring::accept(&l).await.unwrap();
                    assert_eq!(peer, c.local_addr().unwrap());
                }
            });
        }
    }

    #[test]
    fn uring_writes_larger_than_the_socket_buffer_arrive_whole_and_in_order() {
        // 8 MiB cannot fit a loopback socket's buffer while nobody reads:
        // the ring's write goes on as the reader drains it.
        large_write(false);
    }

    #[test]
    fn uring_writes_of_a_closing_connection_arrive_whole_and_in_order() {
        // The send(2) first takes what fits in the socket's buffer; the
        // ring writes the rest after it.
        large_write(true);
    }

    fn large_write(closing: bool) {
        let Some((l, addr)) = uring_and_a_listener() else {
            return;
        };
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let want = data.clone();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // Let the writer fill the buffer first.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        tokio_uring::start(async move {
            let s = std::net::TcpStream::connect(addr).unwrap();
            let s = UringStream::new(tokio_uring::net::TcpStream::from_std(s));
            if closing {
                s.closing();
            }
            let (r, back) = s.write_all(data).await;
            r.unwrap();
            assert_eq!(back.len(), 8 << 20);
            s.shutdown(Shutdown::Write);
        });
        let got = reader.join().unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes reordered or lost");
    }
}
