//! The connection logic of `conn.rs` driven over in-memory streams: a
//! scripted client on one side, scripted servers on the other, the real
//! `serve` in between (the same code both I/O drivers run). What the
//! python suites check against nginx end to end, these check case by case
//! with bytes chosen to hit one rule each: when a retry is safe, early
//! closes, chunked bodies, keep-alive reuse, a server writing past its
//! response.
//!
//! No timing is asserted; the one test that needs a timeout to fire uses a
//! short `timeouts.server` and only checks what is answered.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Notify;

use super::{serve, Shared, Worker};
use crate::proxy::stream::{Io, Stream};
use crate::telemetry::stats::TrafficSnapshot;

// === an in-memory duplex stream ===

/// One direction of a connection: bytes written and not yet read, and
/// whether the writer has ended it (FIN) or the reader has gone (writes
/// then fail, as on a socket whose peer closed).
#[derive(Default)]
struct Pipe {
    buf: RefCell<VecDeque<u8>>,
    fin: Cell<bool>,
    reader_gone: Cell<bool>,
    wake: Notify,
}

/// One end of an in-memory connection, with the `Stream` semantics of a
/// TCP socket: reads wait for data or FIN, writes to a peer that closed
/// fail with `BrokenPipe`, dropping the end closes both directions.
struct Mem {
    rx: Rc<Pipe>,
    tx: Rc<Pipe>,
    fd: RawFd,
}

thread_local! {
    /// Fake descriptors for `Stream::fd`: negative, so that a shutdown(2)
    /// through one (`Worker::apply_admin`) can never hit a real socket.
    static NEXT_FD: Cell<RawFd> = const { Cell::new(-1000) };
}

fn pair() -> (Mem, Mem) {
    let (a, b) = (Rc::new(Pipe::default()), Rc::new(Pipe::default()));
    let fd = NEXT_FD.with(|n| {
        let fd = n.get();
        n.set(fd - 2);
        fd
    });
    (
        Mem {
            rx: a.clone(),
            tx: b.clone(),
            fd,
        },
        Mem {
            rx: b,
            tx: a,
            fd: fd - 1,
        },
    )
}

impl Stream for Mem {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            let woken = self.rx.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            {
                let mut q = self.rx.buf.borrow_mut();
                if !q.is_empty() {
                    let n = (buf.capacity() - buf.len()).min(q.len());
                    assert!(n > 0, "read without spare capacity");
                    buf.extend(q.drain(..n));
                    return (Ok(n), buf);
                }
                if self.rx.fin.get() {
                    return (Ok(0), buf);
                }
            }
            woken.await;
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        if self.tx.reader_gone.get() || self.tx.fin.get() {
            return (Err(io::ErrorKind::BrokenPipe.into()), buf);
        }
        self.tx.buf.borrow_mut().extend(&buf);
        self.tx.wake.notify_waiters();
        // Let the reader run, as a socket write would.
        tokio::task::yield_now().await;
        (Ok(()), buf)
    }

    fn shutdown(&self, how: Shutdown) {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.tx.fin.set(true);
            self.tx.wake.notify_waiters();
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.rx.reader_gone.set(true);
            self.rx.fin.set(true);
            self.rx.buf.borrow_mut().clear();
            self.rx.wake.notify_waiters();
        }
    }

    fn is_idle(&self) -> bool {
        self.rx.buf.borrow().is_empty() && !self.rx.fin.get()
    }

    fn writes_alone(&self) -> bool {
        // A write puts its bytes into the pipe at its first poll, as the
        // ring takes a small write at its submission: these tests drive
        // `Attempt::write_with_head` (the io_uring driver's way); the
        // epoll driver's is tests/proxy's with `io = "epoll"`.
        true
    }

    fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        self.shutdown(Shutdown::Both);
    }
}

// === a scripted network ===

type Script = Box<dyn FnOnce(Mem) -> Pin<Box<dyn Future<Output = ()>>>>;

/// The servers of one test: per address, the scripts that answer its next
/// connections (an address without a script refuses), and every connect.
#[derive(Default)]
struct Net {
    scripts: HashMap<SocketAddr, VecDeque<Script>>,
    connects: Vec<SocketAddr>,
}

thread_local! {
    static NET: RefCell<Net> = RefCell::new(Net::default());
}

/// The next connection to `addr` runs `script` with the server's end.
fn server<F, Fut>(addr: &str, script: F)
where
    F: FnOnce(Mem) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let addr: SocketAddr = addr.parse().unwrap();
    NET.with(|n| {
        n.borrow_mut()
            .scripts
            .entry(addr)
            .or_default()
            .push_back(Box::new(move |s| Box::pin(script(s))))
    });
}

fn connects() -> Vec<SocketAddr> {
    NET.with(|n| n.borrow().connects.clone())
}

struct MemIo;

impl Io for MemIo {
    type Stream = Mem;
    type Listener = ();
    const NAME: &'static str = "memory";

    async fn connect(addr: SocketAddr) -> io::Result<Mem> {
        let script = NET.with(|n| {
            let mut n = n.borrow_mut();
            n.connects.push(addr);
            n.scripts.get_mut(&addr).and_then(|q| q.pop_front())
        });
        let Some(script) = script else {
            return Err(io::ErrorKind::ConnectionRefused.into());
        };
        let (ours, theirs) = pair();
        tokio::task::spawn_local(script(theirs));
        Ok(ours)
    }

    async fn accept(_: &()) -> io::Result<(Mem, SocketAddr)> {
        Err(io::ErrorKind::Unsupported.into())
    }

    // These tests drive plain HTTP/1; TLS is tests/proxy/test_tls.py's.
    async fn accept_tls(_: Mem, _: std::sync::Arc<rustls::ServerConfig>) -> io::Result<Mem> {
        Err(io::ErrorKind::Unsupported.into())
    }

    async fn connect_tls(
        _: Mem,
        _: std::sync::Arc<rustls::ClientConfig>,
        _: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Mem> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn listener(_: std::net::TcpListener) -> io::Result<()> {
        Ok(())
    }
}

// === harness ===

const A: &str = "192.0.2.1:80";
const B: &str = "192.0.2.2:80";

/// A service with `servers` (named a, b, ... in order) and `extra` lines.
fn shared(extra: &str, servers: &[&str]) -> Arc<Shared> {
    let list: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "{{ name = \"{}\", address = \"{a}\" }}",
                (b'a' + i as u8) as char
            )
        })
        .collect();
    let text = format!(
        "[proxy.web]\nbind = [\"127.0.0.1:8080\"]\nio = \"epoll\"\nservers = [{}]\n{extra}\n",
        list.join(", ")
    );
    let svcs = crate::config::parse_str("t.toml", &text)
        .expect("valid config")
        .proxy;
    let board = crate::health::HealthBoard::new(&svcs);
    let stats = crate::telemetry::stats::ProxyStats::new(&svcs, None);
    Arc::new(Shared::new(0, svcs[0].clone(), board, stats.service(0)))
}

/// Run `test` with a client connected to `serve` for a service made by
/// `shared(extra, servers)`; returns what `test` returns and the
/// service's totals once `serve` has ended.
fn run<T, F, Fut>(extra: &str, servers: &[&str], test: F) -> (T, TrafficSnapshot)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let sh = shared(extra, servers);
    let r = local.block_on(&rt, async {
        let (ours, theirs) = pair();
        let w = Rc::new(Worker::<MemIo>::new(sh.clone()));
        let peer: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let served = tokio::task::spawn_local(serve(w, theirs, peer));
        let r = test(Client(ours)).await;
        // The client is gone (dropped with `test`'s future): serve ends,
        // at once or after its linger.
        served.await.unwrap();
        r
    });
    (r, sh.stats.total())
}

/// The test's end of the client connection.
struct Client(Mem);

impl Client {
    async fn send(&self, bytes: &[u8]) {
        write(&self.0, bytes).await;
    }

    /// One whole response (Content-Length or chunked body; none for 1xx,
    /// 204 or 304 or when `head_only`), or what came before the end.
    async fn response(&self, head_only: bool) -> Vec<u8> {
        read_message(&self.0, head_only).await
    }

    /// Everything until the proxy closes.
    async fn rest(&self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = read_some(&self.0).await {
            all.extend(b);
        }
        all
    }
}

async fn read_some(s: &Mem) -> Option<Vec<u8>> {
    let (r, b) = s.read(Vec::with_capacity(4096)).await;
    match r {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(b),
    }
}

/// Read one message: a head, then the body its framing says. Used by both
/// the client (responses) and the servers (requests).
async fn read_message(s: &Mem, head_only: bool) -> Vec<u8> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match read_some(s).await {
            Some(b) => buf.extend(b),
            None => return buf,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let no_body = head_only
        || head.starts_with("http/1.1 1")
        || head.starts_with("http/1.1 204")
        || head.starts_with("http/1.1 304");
    let done = |b: &[u8]| -> bool {
        let body = &b[head_end..];
        if no_body {
            true
        } else if head.contains("transfer-encoding: chunked") {
            find(body, b"0\r\n\r\n").is_some()
        } else if let Some(i) = head.find("content-length: ") {
            let n: usize = head[i + 16..]
                .split("\r\n")
                .next()
                .unwrap()
                .parse()
                .unwrap();
            body.len() >= n
        } else {
            true
        }
    };
    while !done(&buf) {
        match read_some(s).await {
            Some(b) => buf.extend(b),
            None => break,
        }
    }
    buf
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn write(s: &Mem, bytes: &[u8]) {
    let (r, _) = s.write_all(bytes.to_vec()).await;
    r.unwrap();
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A server that answers `n` requests on one connection with `OK`, then
/// waits for the proxy to close.
async fn answers(s: Mem, n: usize) {
    for _ in 0..n {
        let req = read_message(&s, false).await;
        if req.is_empty() {
            return;
        }
        write(&s, OK).await;
    }
    while read_some(&s).await.is_some() {}
}

/// The next connection to `addr` reads one request, answers `bytes` and
/// waits for the proxy to close.
fn replies(addr: &str, bytes: &'static [u8]) {
    server(addr, move |s| async move {
        read_message(&s, false).await;
        write(&s, bytes).await;
        while read_some(&s).await.is_some() {}
    });
}

/// One GET from a new client: all the proxy sent until it closed.
fn get_until_close(extra: &str, servers: &[&str]) -> (Vec<u8>, TrafficSnapshot) {
    run(extra, servers, |c| async move {
        c.send(GET).await;
        c.rest().await
    })
}

fn status_of(resp: &[u8]) -> String {
    text(resp.get(9..12).unwrap_or(b"---"))
}

fn body_of(resp: &[u8]) -> String {
    let i = find(resp, b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
    text(&resp[i..])
}

// === keep-alive and reuse ===

#[test]
fn keep_alive_reuses_the_pooled_server_connection() {
    server(A, |s| answers(s, 2));
    let ((one, two), total) = run("", &[A], |c| async move {
        c.send(GET).await;
        let one = c.response(false).await;
        c.send(GET).await;
        (one, c.response(false).await)
    });
    assert_eq!(body_of(&one), "ok", "{}", text(&one));
    assert_eq!(body_of(&two), "ok", "{}", text(&two));
    assert_eq!(connects().len(), 1);
    assert_eq!(total.classes[1], 2);
}

#[test]
fn a_server_writing_past_its_response_is_not_reused() {
    // Two more bytes than its Content-Length: they must reach no client,
    // and the connection must not carry the next request.
    replies(A, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokXX");
    server(A, |s| answers(s, 1));
    let ((one, two), _) = run("", &[A], |c| async move {
        c.send(GET).await;
        let one = c.response(false).await;
        c.send(GET).await;
        (one, c.response(false).await)
    });
    assert_eq!(body_of(&one), "ok");
    assert_eq!(text(&two[..]).matches("XX").count(), 0, "{}", text(&two));
    assert_eq!(body_of(&two), "ok");
    assert_eq!(connects().len(), 2);
}

#[test]
fn a_server_answering_twice_is_not_reused() {
    // A second response to one request arrives after the first one is
    // relayed: the pool's check before reuse sees it.
    server(A, |s| async move {
        read_message(&s, false).await;
        write(&s, OK).await;
        tokio::task::yield_now().await;
        write(&s, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").await;
        while read_some(&s).await.is_some() {}
    });
    server(A, |s| answers(s, 1));
    let ((one, two), _) = run("", &[A], |c| async move {
        c.send(GET).await;
        let one = c.response(false).await;
        // Let the stray response arrive before the next request.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        c.send(GET).await;
        (one, c.response(false).await)
    });
    assert_eq!(status_of(&one), "200");
    assert_eq!(status_of(&two), "200", "{}", text(&two));
    assert_eq!(connects().len(), 2);
}

// === retries: when sending again is safe ===

/// A server that answers its first request and closes its connection when
/// the second arrives, without answering: the race every keep-alive proxy
/// meets (the server's idle timeout fired as the request went out).
async fn answers_once_then_drops(s: Mem) {
    read_message(&s, false).await;
    write(&s, OK).await;
    read_message(&s, false).await;
}

#[test]
fn a_get_on_a_pooled_connection_the_server_closed_is_sent_again() {
    server(A, answers_once_then_drops);
    server(A, |s| answers(s, 1));
    let ((one, two), total) = run("", &[A], |c| async move {
        c.send(GET).await;
        let one = c.response(false).await;
        c.send(GET).await;
        (one, c.response(false).await)
    });
    assert_eq!(status_of(&one), "200");
    assert_eq!(status_of(&two), "200", "{}", text(&two));
    assert_eq!(connects().len(), 2);
    // A replay on a new connection is not a connect retry.
    assert_eq!(total.retries, 0);
}

#[test]
fn a_large_head_on_a_pooled_connection_the_server_closed_is_sent_again() {
    // Over `WRITE_ALONE`: the head is written before the response is
    // read (the other path of `Attempt::send_request`), with the same
    // outcomes.
    let big: &'static [u8] = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
        "c".repeat(2000)
    )
    .into_bytes()
    .leak();
    server(A, answers_once_then_drops);
    server(A, |s| answers(s, 1));
    let ((one, two), total) = run("", &[A], |c| async move {
        c.send(big).await;
        let one = c.response(false).await;
        c.send(big).await;
        (one, c.response(false).await)
    });
    assert_eq!(status_of(&one), "200", "{}", text(&one));
    assert_eq!(status_of(&two), "200", "{}", text(&two));
    assert_eq!(connects().len(), 2);
    assert_eq!(total.classes[1], 2);
}

#[test]
fn a_post_on_a_pooled_connection_the_server_closed_is_not_sent_again() {
    server(A, answers_once_then_drops);
    server(A, |s| answers(s, 1));
    let ((one, two), total) = run("", &[A], |c| async move {
        c.send(GET).await;
        let one = c.response(false).await;
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            .await;
        (one, c.rest().await)
    });
    assert_eq!(status_of(&one), "200");
    assert_eq!(status_of(&two), "502", "{}", text(&two));
    assert_eq!(connects().len(), 1, "a POST is never replayed");
    assert_eq!(total.classes[4], 1);
}

#[test]
fn a_fresh_connection_closed_before_the_response_is_not_retried() {
    // Not pooled: the server saw the request on a connection made for it,
    // so even a GET is not sent again.
    server(A, |s| async move {
        read_message(&s, false).await;
    });
    server(A, |s| answers(s, 1));
    let (resp, _) = get_until_close("", &[A]);
    assert_eq!(status_of(&resp), "502", "{}", text(&resp));
    assert_eq!(connects().len(), 1);
}

#[test]
fn a_partial_response_then_close_is_not_retried() {
    // Part of a head arrived: the server acted on the request.
    server(A, |s| async move {
        read_message(&s, false).await;
        write(&s, OK).await;
        read_message(&s, false).await;
        write(&s, b"HTTP/1.1 200 OK\r\nContent-Le").await;
    });
    server(A, |s| answers(s, 1));
    let (two, _) = run("", &[A], |c| async move {
        c.send(GET).await;
        c.response(false).await;
        c.send(GET).await;
        c.rest().await
    });
    assert_eq!(status_of(&two), "502", "{}", text(&two));
    assert_eq!(connects().len(), 1);
}

#[test]
fn a_refused_connect_is_retried_on_another_server() {
    // No script for A: it refuses. Round robin picks A first.
    server(B, |s| answers(s, 1));
    let (resp, total) = run("retries = 3", &[A, B], |c| async move {
        c.send(GET).await;
        c.response(false).await
    });
    assert_eq!(body_of(&resp), "ok", "{}", text(&resp));
    let a: SocketAddr = A.parse().unwrap();
    let b: SocketAddr = B.parse().unwrap();
    assert_eq!(connects(), [a, b]);
    assert_eq!((total.retries, total.connect_errors), (1, 1));
}

#[test]
fn connects_refused_everywhere_end_in_502_after_the_retries() {
    let (resp, total) = get_until_close("retries = 2", &[A, B]);
    assert_eq!(status_of(&resp), "502", "{}", text(&resp));
    assert_eq!(connects().len(), 3, "one attempt and two retries");
    assert_eq!((total.retries, total.connect_errors), (2, 3));
}

// === bodies ===

#[test]
fn chunked_bodies_go_through_both_ways() {
    server(A, |s| async move {
        let req = read_message(&s, false).await;
        let req = text(&req);
        // The request body is relayed chunked as it came (sizes may be
        // re-cut, the data may not).
        assert!(
            req.contains("transfer-encoding: chunked")
                || req.contains("Transfer-Encoding: chunked"),
            "{req}"
        );
        assert!(req.contains("hello") && req.ends_with("0\r\n\r\n"), "{req}");
        write(
            &s,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        while read_some(&s).await.is_some() {}
    });
    let (resp, _) = run("", &[A], |c| async move {
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .await;
        c.response(false).await
    });
    assert_eq!(status_of(&resp), "200");
    let body = body_of(&resp);
    assert!(
        body.contains("abc") && body.contains("de") && body.ends_with("0\r\n\r\n"),
        "{body}"
    );
}

#[test]
fn a_bad_chunk_from_the_client_is_answered_400() {
    server(A, |s| async move { while read_some(&s).await.is_some() {} });
    let (resp, _) = run("", &[A], |c| async move {
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .await;
        c.rest().await
    });
    assert_eq!(status_of(&resp), "400", "{}", text(&resp));
}

#[test]
fn a_client_closing_mid_body_is_logged_and_the_server_connection_closed() {
    let server_saw = Rc::new(RefCell::new(Vec::new()));
    let seen = server_saw.clone();
    server(A, move |s| async move {
        while let Some(b) = read_some(&s).await {
            seen.borrow_mut().extend(b);
        }
    });
    let ((), total) = run("", &[A], |c| async move {
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await;
        c.0.shutdown(Shutdown::Write);
        c.rest().await;
    });
    let seen = text(&server_saw.borrow());
    assert!(seen.ends_with("0123456789"), "{seen}");
    // Counted as a client error (4xx), not a server one.
    assert_eq!((total.classes[3], total.classes[4]), (1, 0));
}

#[test]
fn a_response_before_the_request_body_ends_reaches_the_client() {
    // A refused upload: the server answers 413 and closes without reading
    // the body, which the client has not finished sending.
    server(A, |s| async move {
        read_message(&s, true).await;
        write(
            &s,
            b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
    });
    let (resp, _) = run("", &[A], |c| async move {
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
            .await;
        c.response(false).await
    });
    assert_eq!(status_of(&resp), "413", "{}", text(&resp));
}

// === server failures ===

#[test]
fn a_bad_response_head_is_answered_502() {
    replies(A, b"HTTP/1.1 2OO OK\r\n\r\n");
    let (resp, _) = get_until_close("", &[A]);
    assert_eq!(status_of(&resp), "502", "{}", text(&resp));
}

#[test]
fn a_silent_server_is_answered_504() {
    server(A, |s| async move { while read_some(&s).await.is_some() {} });
    let (resp, total) = get_until_close("[proxy.web.timeouts]\nserver = \"50ms\"", &[A]);
    assert_eq!(status_of(&resp), "504", "{}", text(&resp));
    assert_eq!(total.classes[4], 1);
}

#[test]
fn a_server_silent_on_the_second_request_of_a_connection_is_answered_504() {
    // The response heads of a connection's requests are read under one
    // timer, moved from one request's deadline to the next's (conn.rs,
    // `timed`): after a first request answered, it must still fire for
    // the second.
    server(A, |s| async move {
        read_message(&s, false).await;
        write(&s, OK).await;
        while read_some(&s).await.is_some() {}
    });
    let ((one, two), total) = run(
        "[proxy.web.timeouts]\nserver = \"50ms\"",
        &[A],
        |c| async move {
            c.send(GET).await;
            let one = c.response(false).await;
            c.send(GET).await;
            (one, c.rest().await)
        },
    );
    assert_eq!(status_of(&one), "200", "{}", text(&one));
    assert_eq!(status_of(&two), "504", "{}", text(&two));
    assert_eq!(total.classes[4], 1);
}

#[test]
fn an_unrequested_101_is_answered_502() {
    replies(
        A,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    );
    let (resp, _) = get_until_close("", &[A]);
    assert_eq!(status_of(&resp), "502", "{}", text(&resp));
}

#[test]
fn an_upgrade_tunnels_bytes_both_ways() {
    server(A, |s| async move {
        read_message(&s, false).await;
        write(
            &s,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n",
        )
        .await;
        while let Some(b) = read_some(&s).await {
            write(&s, &b).await;
        }
    });
    let (echo, _) = run("", &[A], |c| async move {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
            .await;
        let head = c.response(true).await;
        assert_eq!(status_of(&head), "101", "{}", text(&head));
        c.send(b"ping").await;
        let echo = read_some(&c.0).await.unwrap_or_default();
        c.0.shutdown(Shutdown::Write);
        echo
    });
    assert_eq!(text(&echo), "ping");
}

#[test]
fn a_pooled_connection_closed_after_an_interim_response_is_not_replayed() {
    // A 102 says the server has the request: a close after it is the
    // server failing, not an idle connection closed under us.
    server(A, |s| async move {
        read_message(&s, false).await;
        write(&s, OK).await;
        read_message(&s, false).await;
        write(&s, b"HTTP/1.1 102 Processing\r\n\r\n").await;
    });
    server(A, |s| answers(s, 1));
    let (two, _) = run("", &[A], |c| async move {
        c.send(GET).await;
        c.response(false).await;
        c.send(GET).await;
        let interim = c.response(false).await;
        (interim, c.rest().await)
    });
    assert_eq!(status_of(&two.0), "102", "{}", text(&two.0));
    assert_eq!(status_of(&two.1), "502", "{}", text(&two.1));
    assert_eq!(connects().len(), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    server(A, |s| async move {
        for body in ["one", "two"] {
            read_message(&s, false).await;
            let r = format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{body}");
            write(&s, r.as_bytes()).await;
        }
        while read_some(&s).await.is_some() {}
    });
    let ((one, two), total) = run("", &[A], |c| async move {
        c.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let one = c.response(false).await;
        (one, c.response(false).await)
    });
    assert_eq!((body_of(&one), body_of(&two)), ("one".into(), "two".into()));
    assert_eq!(total.classes[1], 2);
}

#[test]
fn a_body_after_a_head_response_is_not_relayed_nor_the_connection_reused() {
    replies(A, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    server(A, |s| answers(s, 1));
    let ((one, two), _) = run("", &[A], |c| async move {
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let one = c.response(true).await;
        c.send(GET).await;
        (one, c.response(false).await)
    });
    assert_eq!(status_of(&one), "200");
    assert!(!text(&one).contains("hello") && !text(&two).contains("hello"));
    assert_eq!(body_of(&two), "ok");
    assert_eq!(connects().len(), 2);
}

#[test]
fn a_server_closing_mid_body_cuts_the_client_off() {
    // The head went out: no error page can follow, the client connection
    // closes with the body short.
    server(A, |s| async move {
        read_message(&s, false).await;
        write(&s, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
    });
    let (resp, total) = run("", &[A], |c| async move {
        c.send(GET).await;
        c.rest().await
    });
    assert_eq!(status_of(&resp), "200");
    assert_eq!(body_of(&resp), "abc");
    assert_eq!(total.classes[1], 1);
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    server(A, |s| async move {
        let req = text(&read_message(&s, false).await);
        assert!(!req.to_ascii_lowercase().contains("expect"), "{req}");
        assert!(req.ends_with("abc"), "{req}");
        write(&s, OK).await;
        while read_some(&s).await.is_some() {}
    });
    let ((cont, resp), _) = run("", &[A], |c| async move {
        c.send(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
            .await;
        let cont = c.response(false).await;
        c.send(b"abc").await;
        (cont, c.response(false).await)
    });
    assert_eq!(status_of(&cont), "100", "{}", text(&cont));
    assert_eq!(body_of(&resp), "ok");
}

#[test]
fn bad_request_heads_are_refused_before_any_server() {
    for (head, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "400"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501",
        ),
    ] {
        let (resp, total) = run("", &[A], |c| async move {
            c.send(head).await;
            c.rest().await
        });
        assert_eq!(status_of(&resp), status, "{}", text(&resp));
        assert_eq!(total.classes[3] + total.classes[4], 1);
    }
    assert!(connects().is_empty());
}

// === closing ===

/// After the response, whether the proxy still reads what the client
/// sends (it lingers) or has closed its end.
async fn proxy_still_reads(c: &Client) -> bool {
    let (r, _) = c.0.write_all(b"x".to_vec()).await;
    r.is_ok()
}

#[test]
fn a_client_asking_to_close_is_closed_at_once_after_its_response() {
    // `Connection: close` and the request read whole: nothing unread can
    // turn the close into a reset, so the proxy closes (as nginx does)
    // instead of half-closing and waiting for the client's end, which cost
    // a read, two shutdowns and the connection's task for a round trip.
    server(A, |s| answers(s, 1));
    let ((resp, reads), _) = run("", &[A], |c| async move {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let resp = c.rest().await;
        (resp, proxy_still_reads(&c).await)
    });
    assert_eq!(body_of(&resp), "ok", "{}", text(&resp));
    assert!(!reads, "the proxy lingered after a clean Connection: close");
}

#[test]
fn a_connection_the_proxy_closes_on_a_keep_alive_client_lingers() {
    // The proxy ends a connection the client wanted to keep (here: the
    // server's response is delimited by its close, which an HTTP/1.0
    // client can only get the same way): the client may be sending its
    // next request right now, and a close with that unread would reset
    // the connection under the response. Half-close and drain instead.
    server(A, |s| async move {
        read_message(&s, false).await;
        write(&s, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok").await;
    });
    let ((resp, reads), _) = run("", &[A], |c| async move {
        c.send(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let resp = c.rest().await;
        (resp, proxy_still_reads(&c).await)
    });
    assert_eq!(body_of(&resp), "ok", "{}", text(&resp));
    assert!(reads, "the proxy closed without lingering");
}

#[test]
fn a_client_asking_to_close_with_more_unread_gets_a_lingering_close() {
    // Bytes after the request (a pipelined request the client should not
    // have sent): closing with them unread would reset the connection.
    server(A, |s| answers(s, 1));
    let ((resp, reads), _) = run("", &[A], |c| async move {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /more HTTP/1.1\r\n")
            .await;
        let resp = c.rest().await;
        (resp, proxy_still_reads(&c).await)
    });
    assert_eq!(body_of(&resp), "ok", "{}", text(&resp));
    assert!(reads, "the proxy closed with bytes unread");
}
