//! Fuzz the request side of the HTTP/1 codec (`halo::http1`): `check_head`
//! then `parse_request`, re-encoding for the server, and the body decoder
//! fed the rest of the input in odd-sized pieces; and the admin listener's
//! parse on top of it (`admin::http::parse`). Nothing may panic; a parsed
//! head re-encoded by the proxy must parse again to the same framing, and a
//! head reused from an earlier request (as a connection does) must parse to
//! the same as a fresh one.
#![no_main]

use halo::http1::{
    check_head, encode_request, parse_request, BodyDecoder, BodyKind, ForwardInfo, HeadLimits,
};
use libfuzzer_sys::fuzz_target;

const LIM: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(r)) = halo::admin::http::parse(data) {
        assert!(r.path.starts_with('/'));
    }
    let Ok(Some(n)) = check_head(data, LIM) else {
        return;
    };
    let fresh = parse_request(&data[..n], LIM);
    let mut reused = parse_request(
        b"POST /earlier HTTP/1.1\r\nHost: a\r\nConnection: upgrade, x\r\nUpgrade: y\r\nTransfer-Encoding: chunked\r\n\r\n",
        LIM,
    )
    .expect("earlier request parses");
    let reparsed = reused.parse_from(&data[..n], LIM);
    assert_eq!(fresh.as_ref().err(), reparsed.err().as_ref());
    let Ok(req) = fresh else {
        return;
    };
    assert_eq!(reused, req);
    let mut out = Vec::new();
    let fwd = ForwardInfo {
        client: "192.0.2.1".parse().unwrap(),
        add_forwarded: true,
        except: false,
    };
    encode_request(&req, fwd, "backend", &mut out);
    let m = check_head(
        &out,
        HeadLimits {
            max_head_bytes: 1 << 20,
            max_headers: 1024,
        },
    )
    .expect("re-encoded head is valid")
    .expect("re-encoded head is complete");
    let again = parse_request(
        &out[..m],
        HeadLimits {
            max_head_bytes: 1 << 20,
            max_headers: 1024,
        },
    )
    .expect("re-encoded head parses");
    assert_eq!(again.body, req.body);
    assert_eq!(again.method(), req.method());
    // Absolute-form goes upstream in origin-form with its authority as Host.
    assert_eq!(again.authority(), None);
    if req.authority().is_none() {
        assert_eq!(again.target(), req.target());
    }

    let mut dec = BodyDecoder::new(req.body);
    let mut body = Vec::new();
    let mut rest = &data[n..];
    let mut step = 1;
    while !rest.is_empty() && !dec.is_done() {
        let take = step.min(rest.len());
        match dec.decode(&rest[..take], &mut body) {
            Ok(k) => rest = &rest[k..],
            Err(_) => return,
        }
        step = step * 3 % 17 + 1;
    }
    if let BodyKind::Length(len) = req.body {
        assert!(body.len() as u64 <= len);
    }
});
