//! Fuzz the response side of the proxy's HTTP framing: `check_head`,
//! `parse_response` (for GET and HEAD) and the chunked / length / close
//! body decoders. Nothing may panic, decoding the same bytes in one piece
//! or byte by byte must give the same body, and a head reused from an
//! earlier response (as a connection does) must parse to the same as a
//! fresh one.
#![no_main]

use halo::http1::{check_head, parse_response, BodyDecoder, HeadLimits};
use libfuzzer_sys::fuzz_target;

const LIM: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
};

fn decode(
    kind: halo::http1::BodyKind,
    input: &[u8],
    piece: usize,
) -> Option<(Vec<u8>, usize)> {
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

fuzz_target!(|data: &[u8]| {
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
