//! What every head shares: finding its end ([`check_head`]), the header
//! slots httparse fills, where each piece lies ([`Span`]), and what the
//! framing fields (Content-Length, Transfer-Encoding, Connection, Host)
//! say ([`scan_framing`]). Requests and responses are parsed on top of
//! this in `request` and `response`.

use std::mem::MaybeUninit;

use super::{HeadLimits, HttpError};

/// Is there a complete head at the start of `buf`?
///
/// `Ok(None)`: incomplete, read more. `Ok(Some(n))`: the head is `buf[..n]`
/// (terminator included). `Err`: invalid whatever follows; this is decided
/// from the bytes seen so far, before any parsing.
pub fn check_head(buf: &[u8], limits: HeadLimits) -> Result<Option<usize>, HttpError> {
    // Line by line: memchr finds each line's CR or LF, and the checks are
    // made in the order a byte-by-byte scan meets them (size, obs-fold at
    // the line's start, the line end). Leading empty lines before a request
    // line are allowed (RFC 9112 2.2) and skipped by httparse; treat them
    // as part of the head.
    let max = limits.max_head_bytes;
    let mut line_start = 0;
    let mut lines = 0usize;
    loop {
        let Some(&first) = buf.get(line_start) else {
            return Ok(None);
        };
        if line_start >= max {
            return Err(HttpError::HeadTooLarge);
        }
        if matches!(first, b' ' | b'\t') && lines > 1 {
            return Err(HttpError::ObsFold);
        }
        let Some(end) = memchr::memchr2(b'\r', b'\n', &buf[line_start..]) else {
            // No line end yet: fine while one can still come within the
            // limit (at index `max - 1` at the latest).
            return if buf.len() >= max {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        let end = line_start + end;
        if end >= max {
            return Err(HttpError::HeadTooLarge);
        }
        let lf = if buf[end] == b'\r' {
            match buf.get(end + 1) {
                None if end + 1 >= max => return Err(HttpError::HeadTooLarge),
                None => return Ok(None),
                Some(b'\n') if end + 1 >= max => return Err(HttpError::HeadTooLarge),
                Some(b'\n') => end + 1,
                Some(_) => return Err(HttpError::BareCr),
            }
        } else {
            end
        };
        if end == line_start {
            if lines > 0 {
                return Ok(Some(lf + 1));
            }
        } else {
            lines += 1;
            // lines - 1 header fields plus the start line.
            if lines > limits.max_headers + 1 {
                return Err(HttpError::TooManyHeaders);
            }
        }
        line_start = lf + 1;
    }
}

/// Where a piece of a head (method, target, a field's name or value, a
/// list item) lies in the head's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The span of `part`, a sub-slice of `base` (as httparse hands them
    /// out). An empty part is `0..0` wherever it points.
    pub(super) fn of(base: &[u8], part: &[u8]) -> Span {
        if part.is_empty() {
            return Span::default();
        }
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        debug_assert!(start <= base.len() && part.len() <= base.len() - start);
        Span {
            start,
            end: start + part.len(),
        }
    }

    pub(super) fn get(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start..self.end]
    }
}

/// A span that httparse handed out as `&str` (so it is UTF-8).
pub(super) fn str_at(bytes: &[u8], s: Span) -> &str {
    std::str::from_utf8(s.get(bytes)).unwrap_or("")
}

/// Header slots httparse gets on the stack; above this `max_headers` the
/// parse borrows a heap vector instead.
pub(super) const STACK_FIELDS: usize = 128;

pub(super) type Slot<'b> = MaybeUninit<httparse::Header<'b>>;

pub(super) fn header_slots<'s, 'b>(
    stack: &'s mut [Slot<'b>; STACK_FIELDS],
    heap: &'s mut Vec<Slot<'b>>,
    n: usize,
) -> &'s mut [Slot<'b>] {
    if n <= STACK_FIELDS {
        &mut stack[..n]
    } else {
        heap.resize_with(n, MaybeUninit::uninit);
        heap
    }
}

pub(super) fn map_httparse(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Status => HttpError::Malformed("invalid status"),
        httparse::Error::Token => HttpError::Malformed("invalid token"),
        httparse::Error::Version => HttpError::Malformed("invalid HTTP version"),
    }
}

/// Split a comma-separated field value into trimmed, non-empty elements.
pub(super) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|s| !s.is_empty())
}

pub(super) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

pub(super) fn fields<'a>(
    bytes: &'a [u8],
    fields: &'a [(Span, Span)],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    fields.iter().map(|&(n, v)| (n.get(bytes), v.get(bytes)))
}

/// The value of the first field called `name`.
pub(super) fn field<'a>(bytes: &'a [u8], fs: &[(Span, Span)], name: &[u8]) -> Option<&'a [u8]> {
    fs.iter()
        .find(|(n, _)| n.get(bytes).eq_ignore_ascii_case(name))
        .map(|&(_, v)| v.get(bytes))
}

/// The values of the fields called `name`, in order.
pub(super) fn named<'a>(
    bytes: &'a [u8],
    fs: &'a [(Span, Span)],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields(bytes, fs)
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// What the framing-relevant fields say, common to requests and responses.
pub(super) struct Framing {
    pub(super) content_length: Option<u64>,
    /// A Transfer-Encoding field is present.
    pub(super) te: bool,
    /// How many transfer codings its values list in all.
    pub(super) te_codings: usize,
    /// The last coding is `chunked` and no earlier one is.
    pub(super) te_chunked: bool,
    pub(super) conn_close: bool,
    pub(super) conn_keep_alive: bool,
    pub(super) conn_upgrade: bool,
    pub(super) hosts: usize,
}

/// Read the framing fields; every Connection item goes to `conn`.
pub(super) fn scan_framing(
    buf: &[u8],
    fields: &[(Span, Span)],
    conn: &mut Vec<Span>,
) -> Result<Framing, HttpError> {
    let mut f = Framing {
        content_length: None,
        te: false,
        te_codings: 0,
        te_chunked: false,
        conn_close: false,
        conn_keep_alive: false,
        conn_upgrade: false,
        hosts: 0,
    };
    // A `chunked` that some later coding followed.
    let mut chunked_early = false;
    for &(name, value) in fields {
        let (name, value) = (name.get(buf), value.get(buf));
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9112 6.3 (5): a list of identical values may be accepted;
            // anything else is unrecoverable.
            for item in value.split(|&b| b == b',').map(trim) {
                if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                    return Err(HttpError::BadContentLength);
                }
                let n: u64 = std::str::from_utf8(item)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(HttpError::BadContentLength)?;
                // Lengths are counted in u64 and i64 (logs, stats, the
                // peers' own counters): 2^63 and beyond is refused.
                if n > i64::MAX as u64 {
                    return Err(HttpError::BadContentLength);
                }
                match f.content_length {
                    Some(m) if m != n => return Err(HttpError::BadContentLength),
                    _ => f.content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.te = true;
            for item in list_items(value) {
                chunked_early |= f.te_chunked;
                f.te_chunked = item.eq_ignore_ascii_case(b"chunked");
                f.te_codings += 1;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for item in list_items(value) {
                conn.push(Span::of(buf, item));
                if item.eq_ignore_ascii_case(b"close") {
                    f.conn_close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    f.conn_keep_alive = true;
                } else if item.eq_ignore_ascii_case(b"upgrade") {
                    f.conn_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            f.hosts += 1;
        }
    }
    f.te_chunked &= !chunked_early;
    Ok(f)
}

pub(super) fn collect_fields(buf: &[u8], h: &[httparse::Header<'_>], out: &mut Vec<(Span, Span)>) {
    out.extend(
        h.iter()
            .map(|h| (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value))),
    );
}

/// Values may not contain CTLs other than HTAB (RFC 9110 5.5); httparse
/// lets obs-text and some CTLs through, the proxy is stricter.
pub(super) fn check_values(h: &[httparse::Header<'_>]) -> Result<(), HttpError> {
    for h in h {
        if h.value
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(HttpError::Malformed("control character in header value"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request;
    use crate::http1::testing::*;

    #[test]
    fn check_head_incomplete_vs_complete() {
        assert_eq!(check_head(b"GET / HTTP/1.1\r\nHost: a\r\n", LIM), Ok(None));
        assert_eq!(
            check_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r", LIM),
            Ok(None)
        );
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nEXTRA";
        assert_eq!(check_head(full, LIM), Ok(Some(full.len() - 5)));
        assert_eq!(check_head(b"", LIM), Ok(None));
    }

    #[test]
    fn obs_fold_refused() {
        let m = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n";
        assert_eq!(check_head(m, LIM), Err(HttpError::ObsFold));
    }

    #[test]
    fn bare_cr_refused() {
        let m = b"GET / HTTP/1.1\r\nHost: a\rX-B: 1\r\n\r\n";
        assert_eq!(check_head(m, LIM), Err(HttpError::BareCr));
    }

    #[test]
    fn invalid_header_name_and_value_refused() {
        assert!(matches!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: 1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_head_and_too_many_headers_refused() {
        let small = HeadLimits {
            max_head_bytes: 64,
            max_headers: 3,
        };
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(100)
        );
        assert_eq!(
            check_head(big.as_bytes(), small),
            Err(HttpError::HeadTooLarge)
        );
        // A head as long as the limit without its line end yet: the end
        // can only come past the limit, so it is refused now, not after
        // one more byte (which a client that stops sending never sends).
        let mut at_limit = b"GET / HTTP/1.1\r\nX: ".to_vec();
        at_limit.resize(small.max_head_bytes, b'a');
        assert_eq!(check_head(&at_limit, small), Err(HttpError::HeadTooLarge));
        at_limit.pop();
        assert_eq!(check_head(&at_limit, small), Ok(None));
        // The same for a CR whose LF could only come past the limit.
        at_limit.push(b'\r');
        assert_eq!(check_head(&at_limit, small), Err(HttpError::HeadTooLarge));
        at_limit.pop();
        at_limit.pop();
        at_limit.push(b'\r');
        assert_eq!(check_head(&at_limit, small), Ok(None));
        // Incomplete but already over the limit: refused, not waited for.
        assert_eq!(
            check_head(&big.as_bytes()[..80], small),
            Err(HttpError::HeadTooLarge)
        );
        let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(check_head(many, small), Err(HttpError::TooManyHeaders));
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(check_head(three, small).unwrap().is_some());
    }

    #[test]
    fn more_fields_than_the_stack_slots() {
        // Above STACK_FIELDS httparse gets its slots from the heap; the
        // limit is still exact.
        let lim = HeadLimits {
            max_head_bytes: 1 << 16,
            max_headers: 300,
        };
        let mut m = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..300 {
            m.push_str(&format!("X-{i}: {i}\r\n"));
        }
        let ok = format!("{m}\r\n");
        let r = parse_request(ok.as_bytes(), lim).unwrap();
        assert_eq!(r.headers().count(), 300);
        assert_eq!(r.header("x-299"), Some(&b"299"[..]));
        let over = format!("{m}X-300: 300\r\n\r\n");
        assert_eq!(
            parse_request(over.as_bytes(), lim),
            Err(HttpError::TooManyHeaders)
        );
    }
}
