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

    /// Where the field line of `name` and `value` lies in `bytes`, CRLF
    /// included, when it reads exactly as the encoder would write it
    /// (`Name: value` CRLF: one space, nothing trimmed, a value): such
    /// lines are copied as they are, several at once.
    pub(super) fn field_line(bytes: &[u8], name: Span, value: Span) -> Option<(usize, usize)> {
        // Byte by byte: comparing the slices (`get(..) == Some(b": ")`)
        // cost some 80 instructions a line.
        let line_end = value.end + 2;
        (value.start < value.end
            && value.start == name.end + 2
            && line_end <= bytes.len()
            && bytes[name.end] == b':'
            && bytes[name.end + 1] == b' '
            && bytes[value.end] == b'\r'
            && bytes[value.end + 1] == b'\n')
            .then_some((name.start, line_end))
    }
}

/// The field names the codec acts on, told apart once per field when the
/// head is parsed, so that framing, hop-by-hop removal and the proxy's own
/// fields cost no name comparison each time they are looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Name {
    #[default]
    Other,
    ContentLength,
    TransferEncoding,
    Connection,
    Host,
    Expect,
    Upgrade,
    Te,
    Trailer,
    KeepAlive,
    ProxyConnection,
    XForwardedFor,
    Forwarded,
    XForwardedProto,
}

impl Name {
    pub(super) fn of(name: &[u8]) -> Name {
        // By length first (and a first letter where two share one): one
        // comparison at most.
        let first = name.first().map_or(0, |b| b | 0x20);
        let (known, n): (&[u8], Name) = match (name.len(), first) {
            (2, _) => (b"te", Name::Te),
            (4, _) => (b"host", Name::Host),
            (6, _) => (b"expect", Name::Expect),
            (7, b't') => (b"trailer", Name::Trailer),
            (7, _) => (b"upgrade", Name::Upgrade),
            (9, _) => (b"forwarded", Name::Forwarded),
            (10, b'c') => (b"connection", Name::Connection),
            (10, _) => (b"keep-alive", Name::KeepAlive),
            (14, _) => (b"content-length", Name::ContentLength),
            (15, _) => (b"x-forwarded-for", Name::XForwardedFor),
            (16, _) => (b"proxy-connection", Name::ProxyConnection),
            (17, b't') => (b"transfer-encoding", Name::TransferEncoding),
            (17, _) => (b"x-forwarded-proto", Name::XForwardedProto),
            _ => return Name::Other,
        };
        if lower_eq(name, known) {
            n
        } else {
            Name::Other
        }
    }

    /// Fields that describe one hop, never forwarded (RFC 9110 7.6.1).
    fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Te
                | Name::Trailer
                | Name::Upgrade
                | Name::Connection
                | Name::KeepAlive
                | Name::ContentLength
                | Name::ProxyConnection
                | Name::TransferEncoding
        )
    }
}

/// `name` is `known` in any case, where `known` is lowercase letters and
/// `-` only: then `b | 0x20 == k` holds for exactly `k` and its capital
/// (and CR for `-`, which httparse lets into no name and no value), so
/// the bytes are compared eight at a time. (`eq_ignore_ascii_case` maps byte by byte: measured at
/// some 140 instructions a field name.)
fn lower_eq(name: &[u8], known: &[u8]) -> bool {
    if name.len() != known.len() {
        return false;
    }
    let (mut a, mut k) = (name, known);
    while let (Some((a8, ar)), Some((k8, kr))) =
        (a.split_first_chunk::<8>(), k.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*a8) | 0x2020_2020_2020_2020 != u64::from_ne_bytes(*k8) {
            return false;
        }
        (a, k) = (ar, kr);
    }
    a.iter().zip(k).all(|(&b, &k)| b | 0x20 == k)
}

/// One field of a head: where its name and value lie, which name it is,
/// and whether it stops at this hop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Field {
    pub(super) name: Span,
    pub(super) value: Span,
    pub(super) known: Name,
    /// Hop-by-hop, or named in a Connection field: never forwarded.
    pub(super) hop: bool,
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
    fields: &'a [Field],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    fields
        .iter()
        .map(|f| (f.name.get(bytes), f.value.get(bytes)))
}

/// The value of the first field called `name`.
pub(super) fn field<'a>(bytes: &'a [u8], fs: &[Field], name: &[u8]) -> Option<&'a [u8]> {
    fs.iter()
        .find(|f| f.name.get(bytes).eq_ignore_ascii_case(name))
        .map(|f| f.value.get(bytes))
}

/// The values of the fields that are `name`, in order.
pub(super) fn named<'a>(
    bytes: &'a [u8],
    fs: &'a [Field],
    name: Name,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fs.iter()
        .filter(move |f| f.known == name)
        .map(|f| f.value.get(bytes))
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

/// Read the framing fields; every Connection item goes to `conn`, and
/// the fields it names are marked `hop` with the hop-by-hop ones.
pub(super) fn scan_framing(
    buf: &[u8],
    fields: &mut [Field],
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
    for field in fields.iter() {
        let value = field.value.get(buf);
        if field.known == Name::ContentLength {
            // RFC 9112 6.3 (5): a list of identical values may be accepted;
            // anything else is unrecoverable.
            for item in value.split(|&b| b == b',').map(trim) {
                if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                    return Err(HttpError::BadContentLength);
                }
                // At most 19 digits: no overflow in u64.
                let n = item.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
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
        } else if field.known == Name::TransferEncoding {
            f.te = true;
            for item in list_items(value) {
                chunked_early |= f.te_chunked;
                f.te_chunked = lower_eq(item, b"chunked");
                f.te_codings += 1;
            }
        } else if field.known == Name::Connection {
            for item in list_items(value) {
                conn.push(Span::of(buf, item));
                if lower_eq(item, b"close") {
                    f.conn_close = true;
                } else if lower_eq(item, b"keep-alive") {
                    f.conn_keep_alive = true;
                } else if lower_eq(item, b"upgrade") {
                    f.conn_upgrade = true;
                }
            }
        } else if field.known == Name::Host {
            f.hosts += 1;
        }
    }
    f.te_chunked &= !chunked_early;
    for field in fields.iter_mut() {
        let len = field.name.end - field.name.start;
        field.hop = field.known.hop_by_hop()
            || conn.iter().any(|c| {
                c.end - c.start == len && c.get(buf).eq_ignore_ascii_case(field.name.get(buf))
            });
    }
    Ok(f)
}

pub(super) fn collect_fields(buf: &[u8], h: &[httparse::Header<'_>], out: &mut Vec<Field>) {
    out.extend(h.iter().map(|h| Field {
        name: Span::of(buf, h.name.as_bytes()),
        value: Span::of(buf, h.value),
        known: Name::of(h.name.as_bytes()),
        hop: false,
    }));
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
    fn field_names_told_apart_in_any_case() {
        for (name, known) in [
            ("Te", Name::Te),
            ("HOST", Name::Host),
            ("expect", Name::Expect),
            ("Trailer", Name::Trailer),
            ("upGrade", Name::Upgrade),
            ("Forwarded", Name::Forwarded),
            ("Connection", Name::Connection),
            ("Keep-Alive", Name::KeepAlive),
            ("content-length", Name::ContentLength),
            ("X-Forwarded-For", Name::XForwardedFor),
            ("Proxy-Connection", Name::ProxyConnection),
            ("Transfer-Encoding", Name::TransferEncoding),
            ("x-forwarded-proto", Name::XForwardedProto),
            // Same lengths, other names.
            ("Tx", Name::Other),
            ("Date", Name::Other),
            ("Accept", Name::Other),
            ("Trailex", Name::Other),
            ("Forwardex", Name::Other),
            ("Connectiox", Name::Other),
            ("Content-Type", Name::Other),
            ("Content-Lengthy", Name::Other),
            ("", Name::Other),
        ] {
            assert_eq!(Name::of(name.as_bytes()), known, "{name}");
        }
    }

    #[test]
    fn every_control_character_but_htab_refused_in_values() {
        // RFC 9110 5.5: no CTL but HTAB in a field value. httparse (its
        // default config, which `parse_from` uses) refuses them itself,
        // in its SIMD blocks and its byte-by-byte tail alike, so the
        // parsers make no second pass over the values: this test holds
        // httparse to it, in a short value, at the start and the end of
        // one longer than a 32-byte block, and in a response as well.
        let long = "v".repeat(70);
        for b in (0u8..0x20).chain([0x7f]) {
            if b == b'\t' || b == b'\r' || b == b'\n' {
                continue;
            }
            let c = b as char;
            for value in [
                format!("a{c}b"),
                format!("{c}{long}"),
                format!("{long}{c}"),
                format!("{}{c}{}", &long[..40], &long[40..]),
            ] {
                let m = format!("GET / HTTP/1.1\r\nHost: a\r\nX-V: {value}\r\n\r\n");
                assert!(
                    matches!(req(m.as_bytes()), Err(HttpError::Malformed(_))),
                    "request, byte {b:#04x} in {value:?}"
                );
                let m = format!("HTTP/1.1 200 OK\r\nX-V: {value}\r\nContent-Length: 0\r\n\r\n");
                let n = check_head(m.as_bytes(), LIM).unwrap().unwrap();
                assert!(
                    matches!(
                        crate::http1::parse_response(&m.as_bytes()[..n], LIM, "GET"),
                        Err(HttpError::Malformed(_))
                    ),
                    "response, byte {b:#04x} in {value:?}"
                );
            }
        }
        // HTAB and obs-text stay allowed.
        assert!(req(b"GET / HTTP/1.1\r\nHost: a\r\nX-V: a\tb\xe9\r\n\r\n").is_ok());
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
