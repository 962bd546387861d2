//! `H2Client` between the `h2` crate's own client and server over an
//! in-memory pipe: the response goes out only as the client's window
//! allows (a write waits, nothing piles up), and a client's RST_STREAM is
//! seen while the exchange waits. No timing is asserted: "still waiting"
//! is checked after the connections ran out of work.

use std::future::Future;
use std::task::Poll;

use bytes::Bytes;

use super::client::H2Client;
use crate::http1::{self as http, HeadLimits};
use crate::proxy::stream::Stream;

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 16 * 1024,
    max_headers: 100,
};

fn run(f: impl Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

/// Let every spawned task run until none has work left.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A client (with `window` for each stream it receives) that sent one
/// GET; the server's side of that stream as an `H2Client`, and the
/// client's handles.
async fn pair(
    window: u32,
) -> (
    H2Client,
    h2::client::ResponseFuture,
    h2::client::SendRequest<Bytes>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake::<_, Bytes>(a)
        .await
        .unwrap_or_else(|e| panic!("client handshake: {e}"));
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let server = tokio::task::spawn_local(async move {
        let mut c = h2::server::handshake(b).await.unwrap();
        let (req, respond) = c.accept().await.unwrap().unwrap();
        tokio::task::spawn_local(async move { while let Some(Ok(_)) = c.accept().await {} });
        (req, respond)
    });
    let req = ::http::Request::get("https://a.example/big")
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    let (req, respond) = server.await.unwrap();
    let head =
        http::parse_request(b"GET /big HTTP/1.1\r\nHost: a.example\r\n\r\n", LIMITS).unwrap();
    let client = H2Client::new(req.into_body(), respond, &head, LIMITS, -1);
    (client, resp, send)
}

fn response(body: usize) -> Vec<u8> {
    let mut v =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\nConnection: keep-alive\r\n\r\n")
            .into_bytes();
    v.resize(v.len() + body, b'x');
    v
}

#[test]
fn a_write_waits_for_the_window_and_holds_only_its_bytes() {
    run(async {
        let (client, resp, _send) = pair(0).await;
        let write = client.write_all(response(100_000));
        tokio::pin!(write);
        // Nothing can go out (window 0): the write waits...
        for _ in 0..5 {
            assert!(futures::poll!(write.as_mut()).is_pending());
            settle().await;
        }
        // ...while the head went out (HEADERS take no window), without
        // connection-specific fields.
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("connection").is_none());
        assert_eq!(resp.headers()["content-length"], "100000");
        // The client gives up: the write ends with an error, no hang.
        drop(resp);
        settle().await;
        match futures::poll!(write.as_mut()) {
            Poll::Ready((r, _)) => assert!(r.is_err()),
            Poll::Pending => panic!("the write still waits after the client reset"),
        }
    });
}

#[test]
fn a_reset_is_seen_while_the_exchange_waits() {
    run(async {
        let (client, resp, _send) = pair(65_535).await;
        let reset = client.reset_by_client();
        tokio::pin!(reset);
        assert!(futures::poll!(reset.as_mut()).is_pending());
        settle().await;
        assert!(futures::poll!(reset.as_mut()).is_pending());
        // Dropping the client's response future resets the stream (CANCEL).
        drop(resp);
        settle().await;
        match futures::poll!(reset.as_mut()) {
            Poll::Ready(reason) => assert_eq!(reason, h2::Reason::CANCEL),
            Poll::Pending => panic!("the reset was not seen"),
        }
    });
}

#[test]
fn a_whole_response_goes_out_as_the_window_allows() {
    run(async {
        let (client, resp, _send) = pair(65_535).await;
        let reader = tokio::task::spawn_local(async move {
            let mut body = resp.await.unwrap().into_body();
            let mut n = 0;
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                n += d.len();
                let _ = body.flow_control().release_capacity(d.len());
            }
            n
        });
        // 300 KB through a 64 KiB window: the write ends once the client
        // read it all, in two writes (head and part of the body, the rest).
        let mut all = response(300_000);
        let rest = all.split_off(10_000);
        let (r, _) = client.write_all(all).await;
        r.unwrap();
        let (r, _) = client.write_all(rest).await;
        r.unwrap();
        client.finish();
        assert_eq!(reader.await.unwrap(), 300_000);
    });
}
