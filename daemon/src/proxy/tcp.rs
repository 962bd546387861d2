//! One client connection of a `mode = "tcp"` service, for either I/O driver.
//!
//! What it does: picks a server with the HTTP path's balancer and slots
//! (`conn::acquire`: health, weights, per-server maxconn and its queue),
//! connects under `timeouts.connect` and, when that fails, tries another
//! server (`retries`, preferring servers not tried yet). Nothing was read
//! from the client by then, so a retry can never replay or lose a byte.
//! Then it writes the PROXY protocol header if the server has `send_proxy`
//! and relays bytes both ways at once until both sides have closed.
//!
//! Half-close: a side that ends its stream (FIN) gets its peer's write
//! side shut, and the other direction keeps flowing. Idle timeout: when no
//! byte moved either way for the longer of `timeouts.client` and
//! `timeouts.server`, both sockets are shut down. That is done by a
//! watchdog instead of a timeout on each read because io_uring cannot
//! cancel a read: a read dropped at its deadline would still take bytes
//! later, and lose them; a shutdown completes every pending read and write.
//!
//! Server connections are never pooled (each belongs to one client).

use std::cell::Cell;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::Instant;

use tokio::time::timeout_at;

use super::conn::{acquire, connect_failed, connect_server, InFlight, Worker, BUF};
use super::proxy_protocol;
use super::stream::{Io, Stream};

/// Serve one client connection: connect a server, relay, log one line.
pub(crate) async fn serve<I: Io>(w: Rc<Worker<I>>, client: I::Stream, peer: SocketAddr) {
    let shared = w.shared.clone();
    let svc = &shared.svc;
    let t = &svc.timeouts;
    let start = Instant::now();
    let n = svc.servers.len();
    let mut tried = vec![false; n];
    let mut up = Vec::new();
    let mut attempts = 0u32;
    let mut line = Line {
        peer,
        server: None,
        up: 0,
        down: 0,
        retries: 0,
        note: "",
        start,
    };

    let (slot, server) = loop {
        let slot = match acquire(&w, peer.ip(), &tried, &mut up, Instant::now()).await {
            Ok((s, _)) => s,
            Err(why) => {
                line.note = why.note();
                line.emit(&w, 503);
                client.shutdown(Shutdown::Both);
                return;
            }
        };
        let srv = slot.srv;
        line.server = Some(srv);
        match connect_server::<I>(svc, srv, Instant::now() + t.connect).await {
            Ok(s) => break (slot, s),
            Err(e) => {
                let retry = connect_failed(&shared, srv, &mut tried, &mut attempts);
                line.retries = attempts;
                if !retry {
                    line.note = e.note();
                    line.emit(&w, 503);
                    client.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    };
    let srv = slot.srv;
    // `halo server disable` cuts the connection (see `Worker::apply_admin`).
    let _in_flight = InFlight::new(&w, srv, &server);

    if let Some(version) = svc.servers[srv].send_proxy {
        let Some(local) = local_addr(client.fd()) else {
            line.note = "no local address";
            line.emit(&w, 503);
            return;
        };
        let mut head = Vec::with_capacity(64);
        proxy_protocol::encode(version, peer, local, &mut head);
        let deadline = Instant::now() + t.server;
        match timeout_at(deadline.into(), server.write_all(head)).await {
            Ok((Ok(()), head)) => shared.stats.sent(srv, head.len() as u64),
            _ => {
                line.note = "server gone";
                line.emit(&w, 503);
                return;
            }
        }
    }

    let idle = t.client.max(t.server);
    let last = Cell::new(Instant::now());
    let timed_out = Cell::new(false);
    let watchdog = async {
        loop {
            let due = last.get() + idle;
            tokio::time::sleep_until(due.into()).await;
            if Instant::now() >= last.get() + idle {
                timed_out.set(true);
                client.shutdown(Shutdown::Both);
                server.shutdown(Shutdown::Both);
                return;
            }
        }
    };
    let relay =
        async { tokio::join!(pump(&client, &server, &last), pump(&server, &client, &last)) };
    tokio::pin!(relay);
    let (a, b) = tokio::select! {
        r = &mut relay => r,
        // Every pending read and write ends at the shutdown.
        () = watchdog => relay.await,
    };
    line.up = a.0;
    line.down = b.0;
    shared.stats.sent(srv, a.0);
    line.note = if timed_out.get() {
        "idle timeout"
    } else if !(a.1 && b.1) {
        "reset"
    } else {
        ""
    };
    // Release the server slot first: once the line is out, leastconn
    // and maxconn no longer count this connection.
    drop(slot);
    line.emit(&w, 0);
}

/// Copy `src` to `dst` until `src` ends (then shut `dst`'s write side and
/// return: the half-close) or either fails (then shut both down, which
/// ends the other direction too). Returns bytes copied and whether it
/// ended cleanly. `last` is when a byte last moved, for the idle timeout.
async fn pump<A: Stream, B: Stream>(src: &A, dst: &B, last: &Cell<Instant>) -> (u64, bool) {
    let mut buf: Vec<u8> = Vec::with_capacity(BUF);
    let mut total = 0u64;
    loop {
        buf.clear();
        let (r, b) = src.read(buf).await;
        buf = b;
        match r {
            Ok(0) => {
                dst.shutdown(Shutdown::Write);
                return (total, true);
            }
            Ok(n) => {
                last.set(Instant::now());
                total += n as u64;
                let (r, b) = dst.write_all(buf).await;
                buf = b;
                if r.is_err() {
                    break;
                }
                last.set(Instant::now());
            }
            Err(_) => break,
        }
    }
    src.shutdown(Shutdown::Both);
    dst.shutdown(Shutdown::Both);
    (total, false)
}

/// The address the client connected to (for the PROXY header).
fn local_addr(fd: std::os::fd::RawFd) -> Option<SocketAddr> {
    // SAFETY: the descriptor belongs to the client stream, open for the
    // whole call; it is only borrowed for getsockname(2).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).local_addr().ok()?.as_socket()
}

/// What the access log says about one TCP connection.
struct Line {
    peer: SocketAddr,
    server: Option<usize>,
    /// Bytes client -> server and server -> client.
    up: u64,
    down: u64,
    retries: u32,
    note: &'static str,
    start: Instant,
}

impl Line {
    /// One access line; `status` 0 for a relayed connection, 503 when no
    /// server could be reached (counted as an error in the stats). With
    /// `dontlognull`, a relayed connection that carried no byte either way
    /// (a port probe) is counted but not logged.
    fn emit<I: Io>(&self, w: &Worker<I>, status: u16) {
        let shared = &w.shared;
        let tt = self.start.elapsed();
        shared.stats.response(self.server, status, self.down, tt);
        if shared.svc.dontlognull && status == 0 && self.up == 0 && self.down == 0 {
            return;
        }
        let server = self
            .server
            .map(|i| shared.svc.servers[i].name.as_str())
            .unwrap_or("-");
        tracing::info!(
            target: "halo::access",
            client = %self.peer,
            service = %shared.svc.name,
            server,
            status,
            bytes_up = self.up,
            bytes = self.down,
            Tt = tt.as_millis() as i64,
            retries = self.retries,
            note = self.note,
            "{} tcp",
            self.peer,
        );
    }
}
