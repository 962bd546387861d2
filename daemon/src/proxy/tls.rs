//! TLS over any [`Stream`]: a rustls connection fed through the stream's
//! owned buffers, so the same code runs on io_uring and on epoll, and is a
//! [`Stream`] itself, so `conn.rs` and `tcp.rs` serve it unchanged.
//!
//! `Stream` methods take `&self` and a reader and a writer may run at once
//! (full duplex bodies, tunnels): the rustls state sits in a `RefCell`
//! that is never held across an await (each worker is single-threaded),
//! and the TLS bytes going out are serialized by an async mutex, so two
//! writers never interleave records. A reader that finds TLS bytes to send
//! (handshake, alerts, key updates) sends them only when no writer holds
//! that mutex; otherwise the writer's flush loop picks them up. A reader
//! never waits for a writer: the writer may be blocked on a client that
//! reads nothing until its own upload is through.
//!
//! Not here: certificates and the choice of one by SNI (`crate::tls`).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use super::stream::Stream;

/// Ciphertext read per call: one full TLS record (16 KiB + overhead).
const RAW: usize = 17 * 1024;

pub(crate) struct TlsStream<S> {
    io: S,
    st: RefCell<State>,
    /// Taken by whoever writes TLS bytes to `io`; holds the buffer they go
    /// out in.
    out: tokio::sync::Mutex<Vec<u8>>,
}

struct State {
    conn: rustls::Connection,
    /// Ciphertext read from `io` and not yet given to rustls (rustls takes
    /// it a record at a time when its plaintext buffer is full).
    raw: Vec<u8>,
    raw_pos: usize,
    /// `io` reached its end.
    eof: bool,
}

impl<S: Stream> TlsStream<S> {
    /// The server side of a handshake on an accepted connection. The caller
    /// bounds it in time.
    pub(crate) async fn accept(
        io: S,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<TlsStream<S>> {
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        TlsStream::start(io, conn.into()).await
    }

    /// The client side of a handshake on a connection to a server: its
    /// certificate is verified for `name` (see `crate::tls::client`). The
    /// caller bounds it in time. A verification failure is an
    /// `InvalidData` error whose text says why.
    pub(crate) async fn connect(
        io: S,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<TlsStream<S>> {
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        TlsStream::start(io, conn.into()).await
    }

    async fn start(io: S, conn: rustls::Connection) -> io::Result<TlsStream<S>> {
        let s = TlsStream {
            io,
            st: RefCell::new(State {
                conn,
                raw: Vec::with_capacity(RAW),
                raw_pos: 0,
                eof: false,
            }),
            out: tokio::sync::Mutex::new(Vec::new()),
        };
        s.handshake().await?;
        Ok(s)
    }

    /// The protocol the client and halo agreed on by ALPN, if any.
    pub(crate) fn alpn(&self) -> Option<&'static [u8]> {
        match self.st.borrow().conn.alpn_protocol() {
            Some(b"h2") => Some(b"h2"),
            Some(b"http/1.1") => Some(b"http/1.1"),
            _ => None,
        }
    }

    async fn handshake(&self) -> io::Result<()> {
        loop {
            {
                let mut g = self.out.lock().await;
                self.flush_locked(&mut g).await?;
            }
            if !self.st.borrow().conn.is_handshaking() {
                return Ok(());
            }
            if !self.fill().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Give rustls more ciphertext: what is left of the last read, else a
    /// new read. Returns false at the end of the stream. A TLS error is
    /// returned after its alert went out (when no writer is busy).
    async fn fill(&self) -> io::Result<bool> {
        enum Next {
            Fed(Result<(), rustls::Error>),
            End,
            Read(Vec<u8>),
        }
        let next = {
            let mut st = self.st.borrow_mut();
            if st.raw_pos < st.raw.len() {
                Next::Fed(st.feed())
            } else if st.eof {
                Next::End
            } else {
                Next::Read(std::mem::take(&mut st.raw))
            }
        };
        let mut raw = match next {
            Next::Fed(r) => return self.after_feed(r).await,
            Next::End => return Ok(false),
            Next::Read(raw) => raw,
        };
        raw.clear();
        if raw.capacity() < RAW {
            raw.reserve(RAW);
        }
        let (r, raw) = self.io.read(raw).await;
        let fed = {
            let mut st = self.st.borrow_mut();
            st.raw = raw;
            st.raw_pos = 0;
            match r {
                Ok(0) => {
                    st.eof = true;
                    // Tell rustls: it then knows whether the peer closed
                    // cleanly (close_notify) or not.
                    let _ = st.conn.read_tls(&mut io::empty());
                    st.conn.process_new_packets().map(|_| ())
                }
                Ok(_) => st.feed(),
                Err(e) => return Err(e),
            }
        };
        let more = self.after_feed(fed).await?;
        Ok(more && !self.st.borrow().eof)
    }

    async fn after_feed(&self, r: Result<(), rustls::Error>) -> io::Result<bool> {
        match r {
            Ok(()) => Ok(true),
            Err(e) => {
                // The alert rustls queued for the peer; best effort.
                let _ = self.flush_if_free().await;
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Send pending TLS bytes unless a writer is already at it (it will).
    async fn flush_if_free(&self) -> io::Result<()> {
        match self.out.try_lock() {
            Ok(mut g) => self.flush_locked(&mut g).await,
            Err(_) => Ok(()),
        }
    }

    /// Write every TLS byte rustls has for the peer, including what it
    /// queues while we wait.
    async fn flush_locked(&self, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let mut v = std::mem::take(out);
            v.clear();
            {
                let mut st = self.st.borrow_mut();
                while st.conn.wants_write() {
                    st.conn.write_tls(&mut v)?;
                }
            }
            if v.is_empty() {
                *out = v;
                return Ok(());
            }
            let (r, v) = self.io.write_all(v).await;
            *out = v;
            r?;
        }
    }

    /// Plaintext from rustls into `buf`'s spare room: `None` when it has
    /// none yet.
    fn take_plain(&self, buf: &mut Vec<u8>) -> Option<io::Result<usize>> {
        let mut st = self.st.borrow_mut();
        let len = buf.len();
        let room = (buf.capacity() - len).max(1);
        buf.resize(len + room, 0);
        let r = st.conn.reader().read(&mut buf[len..]);
        let n = *r.as_ref().unwrap_or(&0);
        buf.truncate(len + n);
        match r {
            Ok(n) => Some(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            // The peer closed without close_notify. For a client that is
            // an ordinary close (most do after their last response); halo
            // never reads a length from a close on this side.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(Ok(0)),
            Err(e) => Some(Err(e)),
        }
    }
}

impl State {
    /// Give rustls what it takes of the unread ciphertext, and process it.
    fn feed(&mut self) -> Result<(), rustls::Error> {
        let mut slice = &self.raw[self.raw_pos..];
        let before = slice.len();
        match self.conn.read_tls(&mut slice) {
            Ok(_) => {}
            // Its plaintext buffer is full: the reader takes that first.
            Err(_) => return self.conn.process_new_packets().map(|_| ()),
        }
        self.raw_pos += before - slice.len();
        self.conn.process_new_packets().map(|_| ())
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            if let Some(r) = self.take_plain(&mut buf) {
                return (r, buf);
            }
            if let Err(e) = self.flush_if_free().await {
                return (Err(e), buf);
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => {
                    // The end: whatever rustls says about it (clean or not).
                    return match self.take_plain(&mut buf) {
                        Some(r) => (r, buf),
                        None => (Ok(0), buf),
                    };
                }
                Err(e) => return (Err(e), buf),
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut g = self.out.lock().await;
        let mut off = 0;
        loop {
            let r = self.st.borrow_mut().conn.writer().write(&buf[off..]);
            match r {
                Ok(n) => off += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush_locked(&mut g).await {
                return (Err(e), buf);
            }
            if off >= buf.len() {
                return (Ok(()), buf);
            }
        }
    }

    fn shutdown(&self, how: Shutdown) {
        if how != Shutdown::Read {
            // close_notify, then the TCP close. This is not async: the
            // alert (a few dozen bytes) goes out with a non-blocking send
            // when no writer is busy, which always fits in an idle socket.
            let mut st = self.st.borrow_mut();
            st.conn.send_close_notify();
            if let Ok(_g) = self.out.try_lock() {
                let mut v = Vec::new();
                while st.conn.wants_write() {
                    if st.conn.write_tls(&mut v).is_err() {
                        break;
                    }
                }
                let _ = super::stream::send_now(self.io.fd(), &v);
            }
        }
        self.io.shutdown(how);
    }

    /// A pooled connection to a TLS server: idle when nothing of a
    /// response waits, in rustls or on the socket. TLS records a server
    /// sends between responses are read and processed here, without
    /// waiting: a session ticket (TLS 1.3 sends them after the handshake,
    /// possibly after the first response) or a key update leaves the
    /// connection fit for the next request; data, an alert (close_notify:
    /// the server is closing it) or the end of the stream do not.
    fn is_idle(&self) -> bool {
        let mut st = self.st.borrow_mut();
        // A few rounds at most: a server that keeps sending is not idle.
        for _ in 0..8 {
            if st.raw_pos < st.raw.len() || st.eof {
                return false;
            }
            match st.conn.process_new_packets() {
                Ok(s) if s.plaintext_bytes_to_read() == 0 && !s.peer_has_closed() => {}
                _ => return false,
            }
            if self.io.is_idle() {
                return true;
            }
            let mut b = vec![0u8; RAW];
            // SAFETY: a descriptor the stream owns and a live buffer.
            let n = unsafe {
                libc::recv(
                    self.io.fd(),
                    b.as_mut_ptr().cast(),
                    b.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                // The end, or an error: not reusable either way.
                st.eof = n == 0;
                return false;
            }
            b.truncate(n as usize);
            st.raw = b;
            st.raw_pos = 0;
            if st.feed().is_err() {
                return false;
            }
        }
        false
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.io.fd()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    //! The client side against a rustls server on a loopback socket (a
    //! thread with blocking I/O): what a pooled connection's idle check
    //! makes of the TLS records a server sends between responses.

    use std::io::{Read, Write};
    use std::sync::mpsc;

    use super::*;
    use crate::tls::client::ClientTls;

    #[derive(Clone, Copy, Debug)]
    enum Between {
        /// A TLS 1.3 KeyUpdate: a handshake record, like a late session
        /// ticket, that leaves the connection usable.
        KeyUpdate,
        /// close_notify: the server is closing the connection.
        CloseNotify,
        /// Bytes outside any response.
        Data,
    }

    fn server_config() -> Arc<rustls::ServerConfig> {
        let dir = std::env::temp_dir().join(format!("halo-proxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("site.pem");
        std::fs::write(&cert, crate::tls::TEST_PEM).unwrap();
        let files = crate::tls::CertFiles { cert, key: None };
        let loaded = crate::tls::load(&files, 1_800_000_000).unwrap();
        crate::tls::ServerTls::new(vec![(files, loaded)], &[])
            .unwrap()
            .config
    }

    /// Wait (without a time limit that matters) until `fd` has bytes or
    /// its end to read.
    fn wait_readable(fd: std::os::fd::RawFd) {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 30_000) };
        assert_eq!(n, 1, "the server's record never arrived");
    }

    /// One request and response, then `between` from the server: whether
    /// the idle check finds the connection reusable, and (when it does)
    /// whether a second request on it is answered.
    fn idle_after(between: Between) -> (bool, bool) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = server_config();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut req = [0u8; 5];
            tls.read_exact(&mut req).unwrap();
            tls.write_all(b"pong\n").unwrap();
            go_rx.recv().unwrap();
            match between {
                Between::KeyUpdate => tls.conn.refresh_traffic_keys().unwrap(),
                Between::CloseNotify => tls.conn.send_close_notify(),
                Between::Data => tls.conn.writer().write_all(b"junk").unwrap(),
            }
            tls.flush().unwrap();
            // A second request, when the client sends one.
            if tls.read_exact(&mut req).is_ok() {
                let _ = tls.write_all(b"pong\n");
                let _ = tls.flush();
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(async {
            let client = ClientTls::new(None, None).unwrap();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = client.server_name(addr.ip());
            let s = TlsStream::connect(tcp, client.config.clone(), name)
                .await
                .unwrap();
            let ask = || async {
                s.write_all(b"ping\n".to_vec()).await.0.unwrap();
                let mut got = Vec::with_capacity(64);
                while got.len() < 5 {
                    let (r, b) = s.read(got).await;
                    got = b;
                    if r.unwrap() == 0 {
                        break;
                    }
                }
                got
            };
            assert_eq!(ask().await, b"pong\n");
            assert!(s.is_idle(), "idle right after a whole response");
            go_tx.send(()).unwrap();
            wait_readable(s.fd());
            // Let tokio's reactor hear of the bytes (the epoll driver's
            // idle check trusts its readiness), as it has long before a
            // pooled connection is taken again.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let idle = s.is_idle();
            let again = idle && ask().await == b"pong\n";
            s.shutdown(Shutdown::Both);
            (idle, again)
        });
        server.join().unwrap();
        r
    }

    #[test]
    fn a_key_update_between_responses_leaves_a_pooled_connection_idle() {
        assert_eq!(idle_after(Between::KeyUpdate), (true, true));
    }

    #[test]
    fn close_notify_or_stray_data_make_a_pooled_connection_unusable() {
        assert_eq!(idle_after(Between::CloseNotify), (false, false));
        assert_eq!(idle_after(Between::Data), (false, false));
    }
}
