//! Pure HTTP/1.x framing for the proxy (RFC 9110 / RFC 9112).
//!
//! What it does: decides whether a buffer holds a complete message head
//! ([`check_head`], "incomplete vs invalid" before any parsing), parses
//! request and response heads with `httparse`, applies the request-smuggling
//! rules (CL+TE, differing Content-Length, TE not ending in chunked, obs-fold,
//! bare CR, bad names/values, size and count limits), decides body framing,
//! rewrites heads for forwarding (hop-by-hop removal, X-Forwarded-For,
//! X-Forwarded-Proto, Forwarded) and decodes / re-encodes bodies with a
//! small state machine ([`BodyDecoder`], [`BodyEncoder`]).
//!
//! What it does not do: no sockets, no clock, no allocation policy beyond
//! the `Vec`s it is handed. The connection driver in `conn.rs` feeds it bytes.

use std::fmt;
use std::io::Write;
use std::mem::MaybeUninit;
use std::net::IpAddr;

/// Why a message was refused. For requests every variant maps to 400 but
/// an unknown transfer coding (501), see [`HttpError::status`], and the
/// client connection is closed; for responses each maps to 502.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The head is larger than `max_head_bytes`.
    HeadTooLarge,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// A CR not followed by LF anywhere in the head.
    BareCr,
    /// A header line starting with SP/HTAB (RFC 9112 5.2: obs-fold).
    ObsFold,
    /// httparse refused the head (bad token, bad version, bad header name/value...).
    Malformed(&'static str),
    /// Content-Length together with Transfer-Encoding.
    ContentLengthWithTransferEncoding,
    /// Content-Length not 1*DIGIT, or repeated with different values.
    BadContentLength,
    /// Transfer-Encoding whose final coding is not `chunked`, or chunked twice.
    BadTransferEncoding,
    /// A request transfer coding other than `chunked` (gzip, identity,
    /// xchunked... before the final chunked): halo implements no other,
    /// so it neither forwards nor decodes one (RFC 9112 6.1: 501).
    UnsupportedTransferCoding,
    /// A request target that is not origin-form, absolute-form (http or
    /// https, no userinfo) or `*` for OPTIONS, or that has a fragment.
    BadTarget(&'static str),
    /// Transfer-Encoding in an HTTP/1.0 message.
    TransferEncodingInHttp10,
    /// HTTP/1.1 request without Host, or more than one Host.
    BadHost,
    /// A method the proxy does not forward (CONNECT).
    UnsupportedMethod,
    /// Chunked body syntax error.
    BadChunk(&'static str),
    /// The peer closed before the body was complete.
    TruncatedBody,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            HttpError::HeadTooLarge => "message head too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::BareCr => "bare CR in message head",
            HttpError::ObsFold => "obsolete line folding",
            HttpError::Malformed(why) => return write!(f, "malformed head: {why}"),
            HttpError::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            HttpError::BadContentLength => "invalid or conflicting Content-Length",
            HttpError::BadTransferEncoding => "Transfer-Encoding does not end in chunked",
            HttpError::UnsupportedTransferCoding => "transfer coding other than chunked",
            HttpError::BadTarget(why) => return write!(f, "bad request target: {why}"),
            HttpError::TransferEncodingInHttp10 => "Transfer-Encoding in HTTP/1.0",
            HttpError::BadHost => "missing or repeated Host",
            HttpError::UnsupportedMethod => "method not supported by the proxy",
            HttpError::BadChunk(why) => return write!(f, "bad chunked body: {why}"),
            HttpError::TruncatedBody => "body truncated",
        };
        f.write_str(s)
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    /// The status a refused request gets.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::UnsupportedTransferCoding => 501,
            _ => 400,
        }
    }
}

/// Limits on a head, from `ProxyService::limits`.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

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
            // No line end yet: fine while under the limit.
            return if buf.len() > max {
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

/// How a message body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the server closes.
    Close,
}

/// Where a piece of a head (method, target, a field's name or value, a
/// list item) lies in the head's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The span of `part`, a sub-slice of `base` (as httparse hands them
    /// out). An empty part is `0..0` wherever it points.
    fn of(base: &[u8], part: &[u8]) -> Span {
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

    fn get(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start..self.end]
    }
}

/// A span that httparse handed out as `&str` (so it is UTF-8).
fn str_at(bytes: &[u8], s: Span) -> &str {
    std::str::from_utf8(s.get(bytes)).unwrap_or("")
}

/// Header slots httparse gets on the stack; above this `max_headers` the
/// parse borrows a heap vector instead.
const STACK_FIELDS: usize = 128;

type Slot<'b> = MaybeUninit<httparse::Header<'b>>;

fn header_slots<'s, 'b>(
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

/// A parsed request head, ready to be rewritten for the server.
///
/// It keeps a copy of the head's bytes and indexes into them (method,
/// target, each field's name and value as ranges), so parsing into a head
/// that already served a request ([`RequestHead::parse_from`]) allocates
/// nothing: a connection keeps one for all its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// The head as received; everything below indexes into it.
    bytes: Vec<u8>,
    method: Span,
    target: Span,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Every field in order, as received: (name, value).
    fields: Vec<(Span, Span)>,
    pub body: BodyKind,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` field: tunnel after a 101.
    upgrade: Option<Span>,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The authority of an absolute-form target: the Host sent upstream.
    authority: Option<Span>,
    /// The target sent upstream: the target itself, or for absolute-form
    /// the part after the authority (path and query, possibly empty).
    origin: Span,
    /// Every item of every Connection field: more hop-by-hop field names.
    conn: Vec<Span>,
}

impl RequestHead {
    pub fn method(&self) -> &str {
        str_at(&self.bytes, self.method)
    }

    pub fn target(&self) -> &str {
        str_at(&self.bytes, self.target)
    }

    /// Every field in order, as received: (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        fields(&self.bytes, &self.fields)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The `Upgrade` value of a request that asks to upgrade.
    pub fn upgrade(&self) -> Option<&[u8]> {
        self.upgrade.map(|s| s.get(&self.bytes))
    }

    /// The authority of an absolute-form target (`http://HOST:PORT/...`).
    pub fn authority(&self) -> Option<&[u8]> {
        self.authority.map(|s| s.get(&self.bytes))
    }

    /// RFC 9110 9.2.2: safe to repeat if the server may not have seen it.
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        )
    }

    /// Parse a complete request head (`buf` as delimited by
    /// [`check_head`]) into `self`, reusing its storage. On error `self`
    /// holds nothing meaningful.
    pub fn parse_from(&mut self, buf: &[u8], limits: HeadLimits) -> Result<(), HttpError> {
        self.bytes.clear();
        self.fields.clear();
        self.conn.clear();
        self.upgrade = None;
        self.authority = None;
        let mut stack = [const { Slot::uninit() }; STACK_FIELDS];
        let mut heap = Vec::new();
        let slots = header_slots(&mut stack, &mut heap, limits.max_headers);
        let mut req = httparse::Request::new(&mut []);
        match req
            .parse_with_uninit_headers(buf, slots)
            .map_err(map_httparse)?
        {
            httparse::Status::Complete(_) => {}
            httparse::Status::Partial => return Err(HttpError::Malformed("incomplete head")),
        }
        check_values(req.headers)?;
        let method = req.method.unwrap_or_default();
        let target = req.path.unwrap_or_default();
        let minor = req.version.unwrap_or(1);
        if method == "CONNECT" {
            return Err(HttpError::UnsupportedMethod);
        }
        if target.is_empty() {
            return Err(HttpError::Malformed("empty request target"));
        }
        let (authority, origin) = target_form(method, target.as_bytes())?;
        self.authority = authority.map(|a| Span::of(buf, a));
        self.origin = Span::of(buf, origin);
        self.method = Span::of(buf, method.as_bytes());
        self.target = Span::of(buf, target.as_bytes());
        self.minor = minor;
        collect_fields(buf, req.headers, &mut self.fields);
        let f = scan_framing(buf, &self.fields, &mut self.conn)?;
        if f.hosts > 1 || (minor == 1 && f.hosts == 0) {
            return Err(HttpError::BadHost);
        }
        self.body = match (f.te, f.content_length) {
            (true, Some(_)) => return Err(HttpError::ContentLengthWithTransferEncoding),
            (true, None) if minor == 0 => return Err(HttpError::TransferEncodingInHttp10),
            (true, None) => {
                // RFC 9112 6.3 (4): a request whose final coding is not chunked
                // cannot be delimited; chunked may not be applied twice.
                if !f.te_chunked {
                    return Err(HttpError::BadTransferEncoding);
                }
                // Any coding before it is one halo does not implement:
                // forwarding it would leave the server to decide what the
                // body is (HAProxy answers 422, RFC 9112 6.1 says 501).
                if f.te_codings > 1 {
                    return Err(HttpError::UnsupportedTransferCoding);
                }
                BodyKind::Chunked
            }
            (false, Some(0)) => BodyKind::None,
            (false, Some(n)) => BodyKind::Length(n),
            (false, None) => BodyKind::None,
        };
        self.keep_alive = if minor == 0 {
            f.conn_keep_alive && !f.conn_close
        } else {
            !f.conn_close
        };
        if f.conn_upgrade && minor == 1 {
            self.upgrade = self
                .fields
                .iter()
                .find(|(n, _)| n.get(buf).eq_ignore_ascii_case(b"upgrade"))
                .map(|&(_, v)| v)
                // RFC 9113 3.1 deprecates `h2c`; tunnelling it would give
                // the client HTTP/2 straight to the server, past the
                // proxy's view of requests (h2c smuggling). The request
                // goes on without the upgrade (Upgrade is hop-by-hop).
                .filter(|v| !list_items(v.get(buf)).any(|p| p.eq_ignore_ascii_case(b"h2c")));
        }
        self.expect_continue = minor == 1
            && named(buf, &self.fields, b"expect")
                .any(|v| trim(v).eq_ignore_ascii_case(b"100-continue"));
        self.bytes.extend_from_slice(buf);
        Ok(())
    }
}

/// A parsed response head; like [`RequestHead`], an index into a copy of
/// the head's bytes, reusable with [`ResponseHead::parse_from`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHead {
    bytes: Vec<u8>,
    pub status: u16,
    reason: Span,
    pub minor: u8,
    fields: Vec<(Span, Span)>,
    pub body: BodyKind,
    /// The server will keep the connection open after the body.
    pub keep_alive: bool,
    /// Every item of every Connection field.
    conn: Vec<Span>,
    /// The Content-Length the server sent: re-stated for a response
    /// without body (`0`, or the length a HEAD answer announces).
    content_length: Option<u64>,
}

impl ResponseHead {
    /// The reason phrase; empty if it was missing or not plain ASCII.
    pub fn reason(&self) -> &str {
        str_at(&self.bytes, self.reason)
    }

    /// Every field in order, as received: (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        fields(&self.bytes, &self.fields)
    }

    /// Parse a complete response head into `self`, reusing its storage.
    /// `request_method` decides HEAD's empty body. On error `self` holds
    /// nothing meaningful.
    pub fn parse_from(
        &mut self,
        buf: &[u8],
        limits: HeadLimits,
        request_method: &str,
    ) -> Result<(), HttpError> {
        self.bytes.clear();
        self.fields.clear();
        self.conn.clear();
        let mut stack = [const { Slot::uninit() }; STACK_FIELDS];
        let mut heap = Vec::new();
        let slots = header_slots(&mut stack, &mut heap, limits.max_headers);
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, slots)
            .map_err(map_httparse)?
        {
            httparse::Status::Complete(_) => {}
            httparse::Status::Partial => return Err(HttpError::Malformed("incomplete head")),
        }
        check_values(resp.headers)?;
        let status = resp.code.unwrap_or(0);
        if !(100..=999).contains(&status) {
            return Err(HttpError::Malformed("invalid status"));
        }
        let minor = resp.version.unwrap_or(1);
        self.status = status;
        self.minor = minor;
        self.reason = Span::of(buf, resp.reason.unwrap_or("").as_bytes());
        collect_fields(buf, resp.headers, &mut self.fields);
        let f = scan_framing(buf, &self.fields, &mut self.conn)?;
        let no_body = request_method == "HEAD"
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        self.body = if no_body {
            BodyKind::None
        } else {
            match (f.te, f.content_length) {
                // RFC 9112 6.1: "ought to be handled as an error" by a proxy.
                (true, Some(_)) => return Err(HttpError::ContentLengthWithTransferEncoding),
                (true, None) if f.te_chunked && minor == 1 => {
                    if f.te_codings > 1 {
                        // A coding the proxy would have to forward without
                        // the client asking for it; refuse rather than guess.
                        return Err(HttpError::BadTransferEncoding);
                    }
                    BodyKind::Chunked
                }
                // RFC 9112 6.3 (4): not ending in chunked -> read until close.
                (true, None) => BodyKind::Close,
                (false, Some(0)) => BodyKind::None,
                (false, Some(n)) => BodyKind::Length(n),
                (false, None) => BodyKind::Close,
            }
        };
        self.keep_alive = minor == 1 && !f.conn_close && self.body != BodyKind::Close;
        self.content_length = f.content_length;
        self.bytes.extend_from_slice(buf);
        Ok(())
    }
}

fn map_httparse(e: httparse::Error) -> HttpError {
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
fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|s| !s.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn fields<'a>(
    bytes: &'a [u8],
    fields: &'a [(Span, Span)],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    fields.iter().map(|&(n, v)| (n.get(bytes), v.get(bytes)))
}

/// The values of the fields called `name`, in order.
fn named<'a>(
    bytes: &'a [u8],
    fs: &'a [(Span, Span)],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields(bytes, fs)
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// What the framing-relevant fields say, common to requests and responses.
struct Framing {
    content_length: Option<u64>,
    /// A Transfer-Encoding field is present.
    te: bool,
    /// How many transfer codings its values list in all.
    te_codings: usize,
    /// The last coding is `chunked` and no earlier one is.
    te_chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    hosts: usize,
}

/// Read the framing fields; every Connection item goes to `conn`.
fn scan_framing(
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

fn collect_fields(buf: &[u8], h: &[httparse::Header<'_>], out: &mut Vec<(Span, Span)>) {
    out.extend(
        h.iter()
            .map(|h| (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value))),
    );
}

/// Values may not contain CTLs other than HTAB (RFC 9110 5.5); httparse
/// lets obs-text and some CTLs through, the proxy is stricter.
fn check_values(h: &[httparse::Header<'_>]) -> Result<(), HttpError> {
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

/// Classify a request target (RFC 9112 3.2): `(authority, origin)`, where
/// `origin` is what goes upstream (for absolute-form, the path and query
/// after the authority, possibly empty). CONNECT is refused before this,
/// so authority-form is never valid here.
fn target_form<'a>(
    method: &str,
    target: &'a [u8],
) -> Result<(Option<&'a [u8]>, &'a [u8]), HttpError> {
    // RFC 9110 4.1: a fragment is never sent; one that is could mean
    // different resources to halo's log and to the server.
    if target.contains(&b'#') {
        return Err(HttpError::BadTarget("fragment"));
    }
    if target == b"*" {
        return if method == "OPTIONS" {
            Ok((None, target))
        } else {
            Err(HttpError::BadTarget("asterisk-form is for OPTIONS only"))
        };
    }
    if target[0] == b'/' {
        return Ok((None, target));
    }
    // absolute-form: scheme "://" authority path-abempty [ "?" query ].
    let colon = target.iter().position(|&b| b == b':');
    let scheme = match colon {
        Some(c) if target[c..].starts_with(b"://") => &target[..c],
        _ => return Err(HttpError::BadTarget("not origin-form or absolute-form")),
    };
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        return Err(HttpError::BadTarget("scheme is not http or https"));
    }
    let rest = &target[scheme.len() + 3..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    if authority.is_empty() {
        return Err(HttpError::BadTarget("empty authority"));
    }
    // RFC 9110 4.2.4: userinfo is deprecated and a phishing device.
    if authority.contains(&b'@') {
        return Err(HttpError::BadTarget("userinfo in the authority"));
    }
    Ok((Some(authority), origin))
}

/// Parse a complete request head (`buf` as delimited by [`check_head`])
/// into a new [`RequestHead`].
pub fn parse_request(buf: &[u8], limits: HeadLimits) -> Result<RequestHead, HttpError> {
    let mut head = RequestHead::default();
    head.parse_from(buf, limits)?;
    Ok(head)
}

/// Parse a complete response head into a new [`ResponseHead`].
/// `request_method` decides HEAD's empty body.
pub fn parse_response(
    buf: &[u8],
    limits: HeadLimits,
    request_method: &str,
) -> Result<ResponseHead, HttpError> {
    let mut head = ResponseHead::default();
    head.parse_from(buf, limits, request_method)?;
    Ok(head)
}

/// Fields that describe one hop, never forwarded (RFC 9110 7.6.1).
fn is_hop_by_hop(name: &[u8]) -> bool {
    // By length first: most names are none of these and fail at once.
    let hop: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        14 => &[b"content-length"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        _ => return false,
    };
    hop.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Hop-by-hop, or named in a Connection field (`conn`, spans of `bytes`).
fn dropped(name: &[u8], bytes: &[u8], conn: &[Span]) -> bool {
    is_hop_by_hop(name) || conn.iter().any(|s| s.get(bytes).eq_ignore_ascii_case(name))
}

/// What the proxy adds about the client.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInfo {
    pub client: IpAddr,
    /// Add X-Forwarded-For / Forwarded / X-Forwarded-Proto.
    pub add_forwarded: bool,
    /// The client is in `forwardfor.except`: no X-Forwarded-For for it.
    pub except: bool,
    /// The client came over TLS: `proto=https`, `X-Forwarded-Proto: https`.
    pub https: bool,
}

/// How the request body goes to the server.
pub fn request_body_out(head: &RequestHead) -> BodyKind {
    head.body
}

/// Serialize the request for the server: always HTTP/1.1 with keep-alive,
/// hop-by-hop fields removed and framing re-stated. Written straight from
/// the received bytes; allocates nothing beyond growing `out`.
pub fn encode_request(head: &RequestHead, fwd: ForwardInfo, default_host: &str, out: &mut Vec<u8>) {
    let bytes = &head.bytes;
    out.extend_from_slice(head.method.get(bytes));
    out.push(b' ');
    let origin = head.origin.get(bytes);
    if head.authority.is_some() {
        // Absolute-form goes upstream in origin-form (RFC 9112 3.2.4): an
        // empty path is `/`, or `*` for OPTIONS without a query.
        if origin.is_empty() && head.method() == "OPTIONS" {
            out.push(b'*');
        } else if !origin.starts_with(b"/") {
            out.push(b'/');
        }
    }
    out.extend_from_slice(origin);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Fields forwarded as received, and those whose values the proxy merges
    // into its own (X-Forwarded-For, Forwarded) when it adds them.
    let forwarded = |name: &[u8]| !dropped(name, bytes, &head.conn);
    let mut has_host = false;
    if let Some(authority) = head.authority() {
        // RFC 9112 3.2.2: a proxy ignores the Host a request with an
        // absolute-form target came with and sends the target's authority,
        // so the server sees one host, the one halo logged.
        put_header(out, b"Host", authority);
        has_host = true;
    }
    for (name, value) in head.headers() {
        if !forwarded(name) {
            continue;
        }
        if head.authority.is_some() && name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        if head.expect_continue && name.eq_ignore_ascii_case(b"expect") {
            // The proxy answers 100 Continue itself.
            continue;
        }
        if fwd.add_forwarded
            && (name.eq_ignore_ascii_case(b"x-forwarded-for")
                || name.eq_ignore_ascii_case(b"forwarded")
                || name.eq_ignore_ascii_case(b"x-forwarded-proto"))
        {
            continue;
        }
        has_host |= name.eq_ignore_ascii_case(b"host");
        put_header(out, name, value);
    }
    if !has_host {
        put_header(out, b"Host", default_host.as_bytes());
    }
    if fwd.add_forwarded {
        let ip = fwd.client.to_canonical();
        // Earlier values in order, then the client; the field only if
        // that comes to something.
        let merged = |out: &mut Vec<u8>, field: &[u8], own: &dyn Fn(&mut Vec<u8>)| {
            let start = out.len();
            out.extend_from_slice(field);
            out.extend_from_slice(b": ");
            let value = out.len();
            for v in head
                .headers()
                .filter(|(n, _)| forwarded(n) && n.eq_ignore_ascii_case(field))
                .map(|(_, v)| v)
            {
                if out.len() > value {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(v);
            }
            if !fwd.except {
                if out.len() > value {
                    out.extend_from_slice(b", ");
                }
                own(out);
            }
            if out.len() > value {
                out.extend_from_slice(b"\r\n");
            } else {
                out.truncate(start);
            }
        };
        merged(out, b"X-Forwarded-For", &|out| {
            put_ip(out, ip);
        });
        let proto: &[u8] = if fwd.https { b"https" } else { b"http" };
        merged(out, b"Forwarded", &|out| {
            match ip {
                IpAddr::V4(_) => {
                    out.extend_from_slice(b"for=");
                    put_ip(out, ip);
                }
                // RFC 7239 6: IPv6 in brackets, and then quoted.
                IpAddr::V6(a) => {
                    let _ = write!(out, "for=\"[{a}]\"");
                }
            }
            out.extend_from_slice(b";proto=");
            out.extend_from_slice(proto);
        });
        put_header(out, b"X-Forwarded-Proto", proto);
    }
    match head.body {
        BodyKind::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyKind::Chunked => put_header(out, b"Transfer-Encoding", b"chunked"),
        BodyKind::None | BodyKind::Close => {}
    }
    if let Some(up) = head.upgrade() {
        put_header(out, b"Connection", b"upgrade");
        put_header(out, b"Upgrade", up);
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body goes to the client, given what the server sent
/// and what the client understands.
pub fn response_body_out(resp: &ResponseHead, client_minor: u8) -> BodyKind {
    match resp.body {
        BodyKind::None => BodyKind::None,
        BodyKind::Length(n) => BodyKind::Length(n),
        // An HTTP/1.0 client cannot read chunked: close-delimit instead.
        BodyKind::Chunked | BodyKind::Close if client_minor == 0 => BodyKind::Close,
        // Re-chunk a close-delimited body so the client connection survives.
        BodyKind::Chunked | BodyKind::Close => BodyKind::Chunked,
    }
}

/// Serialize the response for the client. `keep_alive` is whether the proxy
/// keeps the client connection; `upgrade` is set for a 101 being tunnelled.
pub fn encode_response(
    resp: &ResponseHead,
    body_out: BodyKind,
    client_minor: u8,
    keep_alive: bool,
    upgrade: bool,
    out: &mut Vec<u8>,
) {
    let bytes = &resp.bytes;
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, resp.status.into());
    out.push(b' ');
    out.extend_from_slice(resp.reason.get(bytes));
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        if upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            put_header(out, name, value);
            continue;
        }
        if dropped(name, bytes, &resp.conn) {
            continue;
        }
        put_header(out, name, value);
    }
    match body_out {
        BodyKind::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyKind::Chunked => put_header(out, b"Transfer-Encoding", b"chunked"),
        // Content-Length is re-stated by the proxy like all framing: for a
        // response without body, the server's value (a 200 with
        // `Content-Length: 0` without it would be read until close; a HEAD
        // answer keeps the length it announces). Never on 1xx and 204.
        BodyKind::None => {
            if let Some(n) = resp.content_length {
                if resp.status >= 200 && resp.status != 204 {
                    out.extend_from_slice(b"Content-Length: ");
                    put_decimal(out, n);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        BodyKind::Close => {}
    }
    if upgrade {
        put_header(out, b"Connection", b"upgrade");
    } else if !keep_alive || body_out == BodyKind::Close {
        put_header(out, b"Connection", b"close");
    } else if client_minor == 0 {
        put_header(out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, as `Display` writes it, without the formatting
/// machinery (numbers and the client's address are on every head).
fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// An address as `Display` writes it; IPv4 by hand.
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    out.push(b'.');
                }
                put_decimal(out, octet.into());
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChunkState {
    /// Reading the chunk-size line; bytes of it seen so far.
    Size {
        line: Vec<u8>,
    },
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting CRLF after chunk data; how many of the 2 bytes seen.
    DataEnd {
        seen: u8,
    },
    /// After the last chunk: trailer lines until an empty line.
    Trailers {
        line: Vec<u8>,
        total: usize,
    },
    Done,
}

/// Decodes a message body incrementally: give it bytes, get body data out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkState2),
    Close,
    Done,
}

/// Opaque chunked-decoder state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkState2(ChunkState);

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> BodyDecoder {
        match kind {
            BodyKind::None | BodyKind::Length(0) => BodyDecoder::Done,
            BodyKind::Length(n) => BodyDecoder::Length { remaining: n },
            BodyKind::Chunked => {
                BodyDecoder::Chunked(ChunkState2(ChunkState::Size { line: Vec::new() }))
            }
            BodyKind::Close => BodyDecoder::Close,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }

    /// Consume a prefix of `input`, appending decoded body data to `out`.
    /// Returns how many bytes were consumed; stops at the end of the body,
    /// leaving any following bytes (a pipelined message) unconsumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        match self {
            BodyDecoder::Done => Ok(0),
            BodyDecoder::Close => {
                out.extend_from_slice(input);
                Ok(input.len())
            }
            BodyDecoder::Length { remaining } => {
                let n = (*remaining).min(input.len() as u64) as usize;
                out.extend_from_slice(&input[..n]);
                *remaining -= n as u64;
                if *remaining == 0 {
                    *self = BodyDecoder::Done;
                }
                Ok(n)
            }
            BodyDecoder::Chunked(ChunkState2(st)) => {
                let n = decode_chunked(st, input, out)?;
                if *st == ChunkState::Done {
                    *self = BodyDecoder::Done;
                }
                Ok(n)
            }
        }
    }

    /// The peer closed: fine for a close-delimited body, an error otherwise.
    pub fn on_eof(&mut self) -> Result<(), HttpError> {
        match self {
            BodyDecoder::Close | BodyDecoder::Done => {
                *self = BodyDecoder::Done;
                Ok(())
            }
            _ => Err(HttpError::TruncatedBody),
        }
    }
}

fn decode_chunked(
    st: &mut ChunkState,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, HttpError> {
    let mut i = 0;
    while i < input.len() {
        match st {
            ChunkState::Done => break,
            ChunkState::Size { line } => {
                let b = input[i];
                i += 1;
                if b == b'\n' {
                    let l = line
                        .strip_suffix(b"\r")
                        .ok_or(HttpError::BadChunk("bare LF"))?;
                    let size = parse_chunk_size(l)?;
                    *st = if size == 0 {
                        ChunkState::Trailers {
                            line: Vec::new(),
                            total: 0,
                        }
                    } else {
                        ChunkState::Data { remaining: size }
                    };
                } else {
                    if line.last() == Some(&b'\r') {
                        return Err(HttpError::BadChunk("bare CR"));
                    }
                    if line.len() >= MAX_CHUNK_LINE {
                        return Err(HttpError::BadChunk("chunk-size line too long"));
                    }
                    line.push(b);
                }
            }
            ChunkState::Data { remaining } => {
                let n = (*remaining).min((input.len() - i) as u64) as usize;
                out.extend_from_slice(&input[i..i + n]);
                i += n;
                *remaining -= n as u64;
                if *remaining == 0 {
                    *st = ChunkState::DataEnd { seen: 0 };
                }
            }
            ChunkState::DataEnd { seen } => {
                let want = if *seen == 0 { b'\r' } else { b'\n' };
                if input[i] != want {
                    return Err(HttpError::BadChunk("missing CRLF after chunk data"));
                }
                i += 1;
                *seen += 1;
                if *seen == 2 {
                    *st = ChunkState::Size { line: Vec::new() };
                }
            }
            ChunkState::Trailers { line, total } => {
                let b = input[i];
                i += 1;
                *total += 1;
                if *total > MAX_TRAILERS {
                    return Err(HttpError::BadChunk("trailer section too large"));
                }
                if b == b'\n' {
                    let l = line
                        .strip_suffix(b"\r")
                        .ok_or(HttpError::BadChunk("bare LF"))?;
                    if l.is_empty() {
                        *st = ChunkState::Done;
                    } else {
                        if l[0] == b' ' || l[0] == b'\t' || !l.contains(&b':') {
                            return Err(HttpError::BadChunk("malformed trailer field"));
                        }
                        line.clear();
                    }
                } else {
                    if line.last() == Some(&b'\r') {
                        return Err(HttpError::BadChunk("bare CR"));
                    }
                    line.push(b);
                }
            }
        }
    }
    Ok(i)
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    // chunk-size [ chunk-ext ]; extensions are ignored but must not hide CTLs.
    let (size, ext) = match line.iter().position(|&b| b == b';') {
        Some(p) => (&line[..p], &line[p..]),
        None => (line, &line[line.len()..]),
    };
    if ext.iter().any(|&b| b < 0x20 && b != b'\t') {
        return Err(HttpError::BadChunk("control character in chunk extension"));
    }
    let size = trim(size);
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(HttpError::BadChunk("invalid chunk size"));
    }
    let s = std::str::from_utf8(size).map_err(|_| HttpError::BadChunk("invalid chunk size"))?;
    u64::from_str_radix(s, 16).map_err(|_| HttpError::BadChunk("invalid chunk size"))
}

/// Encodes body data for the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoder {
    /// Content-Length or close-delimited: bytes as they are.
    Raw,
    Chunked,
    None,
}

impl BodyEncoder {
    pub fn new(kind: BodyKind) -> BodyEncoder {
        match kind {
            BodyKind::None => BodyEncoder::None,
            BodyKind::Length(_) | BodyKind::Close => BodyEncoder::Raw,
            BodyKind::Chunked => BodyEncoder::Chunked,
        }
    }

    pub fn encode(&self, data: &[u8], out: &mut Vec<u8>) {
        match self {
            BodyEncoder::None => {}
            BodyEncoder::Raw => out.extend_from_slice(data),
            BodyEncoder::Chunked => {
                if data.is_empty() {
                    return;
                }
                let _ = write!(out, "{:x}\r\n", data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Bytes that end the body (the last chunk for chunked).
    pub fn finish(&self, out: &mut Vec<u8>) {
        if *self == BodyEncoder::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
}

/// Add a field to a head just encoded into `out` (which ends with the
/// blank line): Strict-Transport-Security on responses over TLS.
pub fn add_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
        put_header(out, name, value);
        out.extend_from_slice(b"\r\n");
    }
}

/// The answer of a `redirect_https` bind: `308 Permanent Redirect` (the
/// method and body stay the same, RFC 9110 15.4.9) to the request's URL
/// with `https`, on `port` (omitted when 443). The host is the target's
/// authority or the Host field, without its port; `None` when there is
/// none or it is not a plain host name or address (it goes into Location
/// unchanged, so nothing else may pass). `keep_alive`: the connection
/// stays open.
pub fn redirect_https(req: &RequestHead, port: u16, keep_alive: bool) -> Option<Vec<u8>> {
    let host = req.authority().or_else(|| req.header("host"))?;
    // Strip the port: "[2001:db8::1]:80" -> "[2001:db8::1]", "a.example:80" -> "a.example".
    let host = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[i..].contains(&b']') => &host[..i],
        _ => host,
    };
    let ok = |b: &u8| b.is_ascii_alphanumeric() || b"-._[]:".contains(b);
    if host.is_empty() || !host.iter().all(ok) {
        return None;
    }
    let path: &[u8] = if req.authority().is_some() {
        req.origin.get(&req.bytes)
    } else {
        req.target().as_bytes()
    };
    let path: &[u8] = if path.starts_with(b"/") { path } else { b"/" };
    let mut out = Vec::with_capacity(128 + host.len() + path.len());
    out.extend_from_slice(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://");
    out.extend_from_slice(host);
    if port != 443 {
        out.push(b':');
        put_decimal(&mut out, port.into());
    }
    out.extend_from_slice(path);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n");
    if !keep_alive {
        put_header(&mut out, b"Connection", b"close");
    } else if req.minor == 0 {
        put_header(&mut out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// A small complete response the proxy generates itself.
pub fn error_response(status: u16, close: bool) -> Vec<u8> {
    let (reason, text) = match status {
        400 => (
            "Bad Request",
            "The request could not be understood by the proxy.",
        ),
        408 => (
            "Request Timeout",
            "The request head did not arrive in time.",
        ),
        501 => (
            "Not Implemented",
            "The request uses a transfer coding the proxy does not implement.",
        ),
        502 => (
            "Bad Gateway",
            "The server sent an invalid response or could not be reached.",
        ),
        503 => (
            "Service Unavailable",
            "No server is available to handle this request.",
        ),
        504 => ("Gateway Timeout", "The server did not answer in time."),
        _ => ("Error", "The proxy could not handle this request."),
    };
    let body = format!(
        "<html><head><title>{status} {reason}</title></head>\n<body><h1>{status} {reason}</h1>\n<p>{text}</p>\n<hr><p>halo</p></body></html>\n"
    );
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n",
        body.len()
    );
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 100,
    };

    fn req(bytes: &[u8]) -> Result<RequestHead, HttpError> {
        match check_head(bytes, LIM)? {
            Some(n) => parse_request(&bytes[..n], LIM),
            None => panic!("incomplete: {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn resp(bytes: &[u8], method: &str) -> Result<ResponseHead, HttpError> {
        let n = check_head(bytes, LIM)?.expect("complete");
        parse_response(&bytes[..n], LIM, method)
    }

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
    fn simple_get_keeps_alive() {
        let r = req(b"GET /x?y=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(r.method(), "GET");
        assert_eq!(r.target(), "/x?y=1");
        assert_eq!(r.body, BodyKind::None);
        assert!(r.keep_alive);
        assert!(r.idempotent());
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        assert!(!req(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn smuggling_cl_and_te_refused() {
        let e = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(e, Err(HttpError::ContentLengthWithTransferEncoding));
    }

    #[test]
    fn smuggling_differing_content_length_refused() {
        let e =
            req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert_eq!(e, Err(HttpError::BadContentLength));
        let e = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n");
        assert_eq!(e, Err(HttpError::BadContentLength));
        // Identical repeats are one value (RFC 9112 6.3).
        let r =
            req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.unwrap().body, BodyKind::Length(5));
    }

    #[test]
    fn bad_content_length_values_refused() {
        for v in ["+5", "-1", "0x10", "5 5", "", "99999999999999999999"] {
            let m = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(req(m.as_bytes()), Err(HttpError::BadContentLength), "{v}");
        }
    }

    #[test]
    fn smuggling_te_not_ending_in_chunked_refused() {
        for v in [
            "gzip",
            "chunked, gzip",
            "chunked, chunked",
            "chunkedx",
            "identity",
        ] {
            let m = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
            assert_eq!(
                req(m.as_bytes()),
                Err(HttpError::BadTransferEncoding),
                "{v}"
            );
        }
        let r = req(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
    }

    #[test]
    fn codings_other_than_chunked_are_501() {
        for v in [
            "gzip, chunked",
            "xchunked, chunked",
            "identity, chunked",
            "gzip\r\nTransfer-Encoding: chunked",
            "chunked\r\nTransfer-Encoding: x, chunked",
        ] {
            let m = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
            let e = req(m.as_bytes());
            let want = if v.starts_with("chunked") {
                HttpError::BadTransferEncoding
            } else {
                HttpError::UnsupportedTransferCoding
            };
            assert_eq!(e, Err(want.clone()), "{v}");
            assert_eq!(
                want.status(),
                if v.starts_with("chunked") { 400 } else { 501 }
            );
        }
    }

    #[test]
    fn content_length_past_i64_refused() {
        let ok = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n");
        assert_eq!(ok.unwrap().body, BodyKind::Length(i64::MAX as u64));
        for v in [
            "9223372036854775808",
            "18446744073709551615",
            "0009223372036854775808",
        ] {
            let m = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(req(m.as_bytes()), Err(HttpError::BadContentLength), "{v}");
        }
        let r = resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
            "GET",
        );
        assert_eq!(r, Err(HttpError::BadContentLength));
    }

    #[test]
    fn target_forms() {
        for (t, why) in [
            ("/a#b", "fragment"),
            ("http://a/b#c", "fragment"),
            ("a", "not origin-form or absolute-form"),
            ("a.example:80", "not origin-form or absolute-form"),
            ("*", "asterisk-form is for OPTIONS only"),
            ("ftp://a/", "scheme is not http or https"),
            ("http:///x", "empty authority"),
            ("http://?x", "empty authority"),
            ("http://u:p@a/", "userinfo in the authority"),
        ] {
            let m = format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(req(m.as_bytes()), Err(HttpError::BadTarget(why)), "{t}");
        }
        assert!(req(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        let r = req(b"GET /p?q HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.authority(), None);
        assert!(encoded(&r, no_forwarding()).starts_with("GET /p?q HTTP/1.1\r\nHost: a\r\n"));
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        for (line, host, want_line, want_host) in [
            (
                "GET http://evil/x?y HTTP/1.1",
                "Host: good\r\n",
                "GET /x?y HTTP/1.1",
                "evil",
            ),
            (
                "GET HTTPS://a:8443 HTTP/1.1",
                "Host: a\r\n",
                "GET / HTTP/1.1",
                "a:8443",
            ),
            (
                "GET http://a?q HTTP/1.1",
                "Host: a\r\n",
                "GET /?q HTTP/1.1",
                "a",
            ),
            (
                "OPTIONS http://a HTTP/1.1",
                "Host: b\r\n",
                "OPTIONS * HTTP/1.1",
                "a",
            ),
            (
                "OPTIONS http://a?q HTTP/1.1",
                "Host: b\r\n",
                "OPTIONS /?q HTTP/1.1",
                "a",
            ),
            ("GET http://a/p HTTP/1.0", "", "GET /p HTTP/1.1", "a"),
        ] {
            let m = format!("{line}\r\n{host}X-A: 1\r\n\r\n");
            let r = req(m.as_bytes()).unwrap();
            let s = encoded(&r, no_forwarding());
            assert_eq!(
                s,
                format!("{want_line}\r\nHost: {want_host}\r\nX-A: 1\r\n\r\n"),
                "{line}"
            );
            // What halo logs is what the client sent.
            assert_eq!(r.target(), line.split(' ').nth(1).unwrap());
        }
    }

    #[test]
    fn te_in_http10_refused() {
        let e = req(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(e, Err(HttpError::TransferEncodingInHttp10));
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
    fn host_rules() {
        assert_eq!(req(b"GET / HTTP/1.1\r\n\r\n"), Err(HttpError::BadHost));
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HttpError::BadHost)
        );
        assert!(req(b"GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn connect_and_garbage_refused() {
        assert_eq!(
            req(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            Err(HttpError::UnsupportedMethod)
        );
        assert!(req(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n").is_err());
        assert!(req(b"\x16\x03\x01 / HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn upgrade_and_expect() {
        let r = req(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.upgrade(), Some(&b"websocket"[..]));
        let r = req(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert_eq!(r.upgrade(), None);
        // h2c is not an upgrade halo forwards.
        let r = req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: H2C\r\nHTTP2-Settings: AA\r\n\r\n").unwrap();
        assert_eq!(r.upgrade(), None);
        assert_eq!(
            encoded(&r, no_forwarding()),
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let r =
            req(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
                .unwrap();
        assert!(r.expect_continue);
    }

    fn fwd(ip: &str, except: bool) -> ForwardInfo {
        ForwardInfo {
            client: ip.parse().unwrap(),
            add_forwarded: true,
            except,
            https: false,
        }
    }

    #[test]
    fn proto_https_when_the_client_came_over_tls() {
        let r = req(b"GET / HTTP/1.1\r\nHost: site\r\nX-Forwarded-Proto: http\r\n\r\n").unwrap();
        let f = ForwardInfo {
            https: true,
            ..fwd("203.0.113.5", false)
        };
        let s = encoded(&r, f);
        assert!(
            s.contains("Forwarded: for=203.0.113.5;proto=https\r\n"),
            "{s}"
        );
        assert!(s.contains("X-Forwarded-Proto: https\r\n"), "{s}");
        assert!(!s.contains("X-Forwarded-Proto: http\r\n"), "{s}");
        let f = ForwardInfo {
            https: true,
            ..fwd("2001:db8::1", false)
        };
        let s = encoded(&r, f);
        assert!(
            s.contains("Forwarded: for=\"[2001:db8::1]\";proto=https\r\n"),
            "{s}"
        );
    }

    fn redirect(head: &[u8], port: u16, keep: bool) -> Option<String> {
        let r = req(head).unwrap();
        redirect_https(&r, port, keep).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn redirect_https_location() {
        let s = redirect(
            b"GET /a/b?q=1 HTTP/1.1\r\nHost: www.example.org:80\r\n\r\n",
            443,
            true,
        )
        .unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://www.example.org/a/b?q=1\r\nContent-Length: 0\r\n\r\n"
        );
        let s = redirect(
            b"POST /x HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\nContent-Length: 3\r\n\r\n",
            8443,
            false,
        )
        .unwrap();
        assert!(
            s.contains("Location: https://[2001:db8::1]:8443/x\r\n"),
            "{s}"
        );
        assert!(s.ends_with("Connection: close\r\n\r\n"), "{s}");
        // Absolute-form: its authority, not Host.
        let s = redirect(
            b"GET http://a.example/p HTTP/1.1\r\nHost: b.example\r\n\r\n",
            443,
            true,
        )
        .unwrap();
        assert!(s.contains("Location: https://a.example/p\r\n"), "{s}");
        let s = redirect(b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", 443, true).unwrap();
        assert!(s.contains("Location: https://a.example/\r\n"), "{s}");
        let s = redirect(
            b"GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n",
            443,
            true,
        )
        .unwrap();
        assert!(s.contains("Connection: keep-alive\r\n"), "{s}");
        // No host, or one that would change the URL's meaning.
        assert_eq!(redirect(b"GET / HTTP/1.0\r\n\r\n", 443, true), None);
        assert_eq!(
            redirect(b"GET / HTTP/1.1\r\nHost: evil/x\r\n\r\n", 443, true),
            None
        );
        assert_eq!(
            redirect(b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 443, true),
            None
        );
    }

    #[test]
    fn add_header_before_the_blank_line() {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
        add_header(&mut out, b"Strict-Transport-Security", b"max-age=5");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nStrict-Transport-Security: max-age=5\r\n\r\n"
        );
    }

    /// Forwarding off: the head goes out with only hop-by-hop changes.
    fn no_forwarding() -> ForwardInfo {
        ForwardInfo {
            add_forwarded: false,
            ..fwd("192.0.2.1", false)
        }
    }

    fn encoded(r: &RequestHead, f: ForwardInfo) -> String {
        let mut out = Vec::new();
        encode_request(r, f, "backend", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_rewrite_hop_by_hop_and_forwarded() {
        let r = req(b"GET / HTTP/1.1\r\nHost: site\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nX-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n")
            .unwrap();
        let s = encoded(&r, fwd("203.0.113.5", false));
        assert_eq!(
            s,
            "GET / HTTP/1.1\r\nHost: site\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.9, 203.0.113.5\r\nForwarded: for=203.0.113.5;proto=http\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn forwarded_ipv6_quoted_and_except() {
        let r = req(b"GET / HTTP/1.1\r\nHost: site\r\n\r\n").unwrap();
        let s = encoded(&r, fwd("2001:db8::1", false));
        assert!(s.contains("X-Forwarded-For: 2001:db8::1\r\n"), "{s}");
        assert!(
            s.contains("Forwarded: for=\"[2001:db8::1]\";proto=http\r\n"),
            "{s}"
        );
        // IPv4-mapped clients (dual-stack listener) show as IPv4.
        let s = encoded(&r, fwd("::ffff:192.0.2.7", false));
        assert!(s.contains("X-Forwarded-For: 192.0.2.7\r\n"), "{s}");
        let s = encoded(&r, fwd("127.0.0.1", true));
        assert!(!s.contains("X-Forwarded-For"), "{s}");
        assert!(!s.contains("Forwarded: for"), "{s}");
        assert!(s.contains("X-Forwarded-Proto: http"), "{s}");
    }

    #[test]
    fn request_rewrite_framing_restated() {
        let r = req(b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let s = encoded(&r, no_forwarding());
        assert_eq!(
            s,
            "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let r = req(b"POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\n").unwrap();
        let s = encoded(&r, no_forwarding());
        assert_eq!(
            s,
            "POST /p HTTP/1.1\r\nHost: backend\r\nContent-Length: 3\r\n\r\n"
        );
        let r = req(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
        let s = encoded(&r, no_forwarding());
        assert!(
            s.ends_with("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{s}"
        );
    }

    #[test]
    fn a_reused_head_parses_as_a_fresh_one() {
        // A connection parses each request into the same head: nothing of
        // the one before may survive (fields, codings, upgrade, the names
        // its Connection field made hop-by-hop), not after an error either.
        let first = b"POST http://x.example/a HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Secret\r\nUpgrade: websocket\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
        let second = b"GET /b HTTP/1.1\r\nHost: b\r\nX-Secret: 1\r\n\r\n";
        let fresh = req(second).unwrap();
        let mut head = req(first).unwrap();
        head.parse_from(second, LIM).unwrap();
        assert_eq!(head, fresh);
        let s = encoded(&head, fwd("192.0.2.1", false));
        assert_eq!(s, encoded(&fresh, fwd("192.0.2.1", false)));
        assert!(s.contains("X-Secret: 1\r\n"), "{s}");
        assert!(head.parse_from(b"GET / HTTP/1.1\r\n\r\n", LIM).is_err());
        head.parse_from(second, LIM).unwrap();
        assert_eq!(head, fresh);

        let mut r = resp(
            b"HTTP/1.1 101 Switching\r\nConnection: upgrade, X-Hop\r\nUpgrade: ws\r\n\r\n",
            "GET",
        )
        .unwrap();
        let next = b"HTTP/1.1 200 OK\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n";
        r.parse_from(next, LIM, "GET").unwrap();
        assert_eq!(r, resp(next, "GET").unwrap());
        assert_eq!(r.reason(), "OK");
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

    #[test]
    fn numbers_and_addresses_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 255, 1024, 4_294_967_296, u64::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "192.0.2.255",
            "255.255.255.255",
            "2001:db8::1",
            "::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            put_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }

    #[test]
    fn response_framing() {
        let r = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "GET").unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::Length(10), true));
        let r = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD").unwrap();
        assert_eq!(r.body, BodyKind::None);
        for s in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let m = format!("HTTP/1.1 {s}\r\nContent-Length: 10\r\n\r\n");
            assert_eq!(
                resp(m.as_bytes(), "GET").unwrap().body,
                BodyKind::None,
                "{s}"
            );
        }
        let r = resp(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
        )
        .unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        let r = resp(b"HTTP/1.1 200 OK\r\n\r\n", "GET").unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::Close, false));
        let r = resp(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET").unwrap();
        assert!(!r.keep_alive);
        let r = resp(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            "GET",
        )
        .unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn malformed_responses_refused() {
        assert!(resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET"
        )
        .is_err());
        assert!(resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET"
        )
        .is_err());
        assert!(resp(b"HTTP/1.1 2000 OK\r\n\r\n", "GET").is_err());
        assert!(resp(b"HTTX/1.1 200 OK\r\n\r\n", "GET").is_err());
        assert!(check_head(b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", LIM).is_err());
    }

    #[test]
    fn response_rewrite() {
        let r = resp(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n\r\n", "GET").unwrap();
        let mut out = Vec::new();
        let body = response_body_out(&r, 1);
        encode_response(&r, body, 1, true, false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        // HTTP/1.0 client: no chunked, close-delimited.
        let body = response_body_out(&r, 0);
        assert_eq!(body, BodyKind::Close);
        let mut out = Vec::new();
        encode_response(&r, body, 0, true, false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: close\r\n\r\n"
        );
        // An empty body keeps its Content-Length; a HEAD answer the length
        // it announces; a 204 none.
        for (head, method, want) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
                "GET",
                "Content-Length: 0\r\n",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
                "HEAD",
                "Content-Length: 42\r\n",
            ),
            (b"HTTP/1.1 204 No\r\nContent-Length: 0\r\n\r\n", "GET", ""),
            (b"HTTP/1.1 200 OK\r\n\r\n", "HEAD", ""),
        ] {
            let r = resp(head, method).unwrap();
            let mut out = Vec::new();
            encode_response(&r, response_body_out(&r, 1), 1, true, false, &mut out);
            let s = String::from_utf8(out).unwrap();
            assert!(s.starts_with("HTTP/1.1 "), "{s}");
            assert_eq!(
                s.split_once("\r\n").unwrap().1,
                format!("{want}\r\n"),
                "{method}"
            );
        }
        // Close-delimited from the server is re-chunked for a 1.1 client.
        let r = resp(b"HTTP/1.1 200 OK\r\n\r\n", "GET").unwrap();
        assert_eq!(response_body_out(&r, 1), BodyKind::Chunked);
    }

    fn decode_all(kind: BodyKind, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
        let mut d = BodyDecoder::new(kind);
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for p in pieces {
            let n = d.decode(p, &mut out)?;
            rest.extend_from_slice(&p[n..]);
        }
        if !d.is_done() {
            d.on_eof()?;
        }
        Ok((out, rest))
    }

    #[test]
    fn chunked_decode_byte_by_byte_and_whole() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, rest) = decode_all(BodyKind::Chunked, &[body]).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(rest, b"NEXT");
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let (out2, rest2) = decode_all(BodyKind::Chunked, &bytes).unwrap();
        assert_eq!((out2, rest2), (out, rest));
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWikiXX0\r\n\r\n",
            b"4\r\nWiki\r\n0\r\n\r\r\n",
            b"ffffffffffffffffff\r\n",
            b"4\r\nWiki\r\n0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                decode_all(BodyKind::Chunked, &[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Truncated.
        assert_eq!(
            decode_all(BodyKind::Chunked, &[b"4\r\nWi"]),
            Err(HttpError::TruncatedBody)
        );
    }

    #[test]
    fn length_and_close_bodies() {
        let (out, rest) = decode_all(BodyKind::Length(3), &[b"ab", b"cdef"]).unwrap();
        assert_eq!(
            (out.as_slice(), rest.as_slice()),
            (&b"abc"[..], &b"def"[..])
        );
        assert_eq!(
            decode_all(BodyKind::Length(3), &[b"ab"]),
            Err(HttpError::TruncatedBody)
        );
        let (out, _) = decode_all(BodyKind::Close, &[b"ab", b"cd"]).unwrap();
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn chunked_encode_roundtrip() {
        let enc = BodyEncoder::new(BodyKind::Chunked);
        let mut wire = Vec::new();
        enc.encode(b"hello ", &mut wire);
        enc.encode(b"", &mut wire);
        enc.encode(b"world", &mut wire);
        enc.finish(&mut wire);
        assert_eq!(wire, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
        let (out, rest) = decode_all(BodyKind::Chunked, &[&wire]).unwrap();
        assert_eq!(out, b"hello world");
        assert!(rest.is_empty());
    }

    #[test]
    fn error_pages_are_complete_responses() {
        for s in [400, 502, 503, 504] {
            let page = error_response(s, true);
            let r = resp(&page, "GET").unwrap();
            assert_eq!(r.status, s);
            let n = check_head(&page, LIM).unwrap().unwrap();
            assert_eq!(r.body, BodyKind::Length((page.len() - n) as u64));
        }
    }
}
