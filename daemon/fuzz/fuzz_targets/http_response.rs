//! Fuzz the response side of the proxy's HTTP framing: `check_head`,
//! `parse_response` (for GET and HEAD) and the chunked / length / close
//! body decoders. Nothing may panic, and decoding the same bytes in one
//! piece or byte by byte must give the same body.
#![no_main]

use halo::proxy::http::{check_head, parse_response, BodyDecoder, HeadLimits};
use libfuzzer_sys::fuzz_target;

const LIM: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
};

fn decode(
    kind: halo::proxy::http::BodyKind,
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
        let Ok(resp) = parse_response(&data[..n], LIM, method) else {
            continue;
        };
        let body = &data[n..];
        let whole = decode(resp.body, body, usize::MAX);
        let bytewise = decode(resp.body, body, 1);
        if let (Some(a), Some(b)) = (&whole, &bytewise) {
            assert_eq!(a, b);
        }
    }
});
