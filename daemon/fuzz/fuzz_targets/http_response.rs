//! Fuzz the response side of the HTTP/1 codec (`halo::http1`):
//! `check_head`, `parse_response` (for GET and HEAD) and the chunked /
//! length / close body decoders, and its users that read responses: the
//! health checks (`health::response`, with their own bounds) and the lab's
//! probe (`lab::probe::parse_reply`). Nothing may panic, decoding the same
//! bytes in one piece or byte by byte must give the same body, a head
//! reused from an earlier response (as a connection does) must parse to
//! the same as a fresh one, and a health check reads the framing the codec
//! reads.
#![no_main]

use halo::http1::{check_head, parse_response, BodyDecoder, HeadLimits};
use libfuzzer_sys::fuzz_target;

const LIM: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
};

fn decode(kind: halo::http1::BodyKind, input: &[u8], piece: usize) -> Option<(Vec<u8>, usize)> {
    let mut dec = BodyDecoder::new(kind);
    let mut out = Vec::new();
    let mut used = 0;
    while used < input.len() && !dec.is_done() {
        let end = (used + piece).min(input.len());
        let k = dec.decode(&input[used..end], &mut out).ok()?;
        used += k;
        if k == 0 && !dec.is_done() {
            return None;
        }
    }
    Some((out, used))
}

/// A health check reads the same bytes: what it accepts, the codec reads
/// the same way; its body decoder hands out the codec's payload.
fn health(data: &[u8]) {
    use halo::health::response::{parse_head, BodyDecoder as Probe, MAX_HEAD};
    let lim = HeadLimits {
        max_head_bytes: MAX_HEAD,
        max_headers: 64,
    };
    for head_request in [false, true] {
        let Ok(Some((h, n))) = parse_head(data, head_request) else {
            continue;
        };
        let method = if head_request { "HEAD" } else { "GET" };
        let r = parse_response(&data[..n], lim, method).expect("the codec reads it too");
        assert_eq!((h.status, h.framing), (r.status, r.body));
        let mut probe = Probe::new(h.framing);
        let mut payload = Vec::new();
        if probe
            .feed(&data[n..], &mut |b| payload.extend_from_slice(b))
            .is_ok()
        {
            assert_eq!(payload.len() as u64, probe.payload_len());
            if let Some((body, _)) = decode(r.body, &data[n..], usize::MAX) {
                assert!(body.starts_with(&payload) || payload.starts_with(&body));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    health(data);
    let _ = halo::lab::probe::parse_reply(data);
    let Ok(Some(n)) = check_head(data, LIM) else {
        return;
    };
    for method in ["GET", "HEAD"] {
        let fresh = parse_response(&data[..n], LIM, method);
        let mut reused = parse_response(
            b"HTTP/1.1 200 Earlier\r\nConnection: keep-alive, x\r\nTransfer-Encoding: chunked\r\n\r\n",
            LIM,
            "GET",
        )
        .expect("earlier response parses");
        let reparsed = reused.parse_from(&data[..n], LIM, method);
        assert_eq!(fresh.as_ref().err(), reparsed.err().as_ref());
        let Ok(resp) = fresh else {
            continue;
        };
        assert_eq!(reused, resp);
        let body = &data[n..];
        let whole = decode(resp.body, body, usize::MAX);
        let bytewise = decode(resp.body, body, 1);
        if let (Some(a), Some(b)) = (&whole, &bytewise) {
            assert_eq!(a, b);
        }
    }
});
