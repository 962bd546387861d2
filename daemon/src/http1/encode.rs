//! Heads for the wire. A request or response the proxy forwards is written
//! straight from the received bytes: hop-by-hop fields out, its own
//! X-Forwarded-For / Forwarded / X-Forwarded-Proto in, framing re-stated.
//! Also the small complete responses the proxy makes itself.

use std::io::Write;
use std::net::IpAddr;

use super::body::BodyKind;
use super::head::{Field, Name, Span};
use super::request::RequestHead;
use super::response::ResponseHead;

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
    let mut has_host = false;
    if let Some(authority) = head.authority() {
        // RFC 9112 3.2.2: a proxy ignores the Host a request with an
        // absolute-form target came with and sends the target's authority,
        // so the server sees one host, the one halo logged.
        put_header(out, b"Host", authority);
        has_host = true;
    }
    let mut lines = Lines::new(bytes);
    for f in &head.fields {
        let skip = f.hop
            || match f.known {
                Name::Host => head.authority.is_some(),
                // The proxy answers 100 Continue itself.
                Name::Expect => head.expect_continue,
                // Merged into the proxy's own below.
                Name::XForwardedFor | Name::Forwarded | Name::XForwardedProto => fwd.add_forwarded,
                _ => false,
            };
        if skip {
            continue;
        }
        has_host |= f.known == Name::Host;
        lines.push(out, f);
    }
    lines.flush(out);
    if !has_host {
        put_header(out, b"Host", default_host.as_bytes());
    }
    if fwd.add_forwarded {
        let ip = fwd.client.to_canonical();
        // Written once, copied into both fields.
        let ip_text = IpText::of(ip);
        let ip_text = ip_text.as_bytes();
        // Earlier values in order, then the client; the field only if
        // that comes to something.
        // Fields forwarded as received whose values the proxy merges into
        // its own (X-Forwarded-For, Forwarded).
        let merged = |out: &mut Vec<u8>, field: &[u8], known: Name, own: &dyn Fn(&mut Vec<u8>)| {
            let start = out.len();
            out.extend_from_slice(field);
            out.extend_from_slice(b": ");
            let value = out.len();
            for v in head
                .fields
                .iter()
                .filter(|f| !f.hop && f.known == known)
                .map(|f| f.value.get(bytes))
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
        merged(out, b"X-Forwarded-For", Name::XForwardedFor, &|out| {
            out.extend_from_slice(ip_text);
        });
        let proto: &[u8] = if fwd.https { b"https" } else { b"http" };
        merged(out, b"Forwarded", Name::Forwarded, &|out| {
            match ip {
                IpAddr::V4(_) => {
                    out.extend_from_slice(b"for=");
                    out.extend_from_slice(ip_text);
                }
                // RFC 7239 6: IPv6 in brackets, and then quoted.
                IpAddr::V6(_) => {
                    out.extend_from_slice(b"for=\"[");
                    out.extend_from_slice(ip_text);
                    out.extend_from_slice(b"]\"");
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

/// What becomes of the client's connection after a response. One value
/// instead of two flags (keep-alive, upgrade), which could also say
/// "upgrade but close".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientConn {
    /// The proxy keeps it for the client's next request.
    KeepAlive,
    /// The proxy closes it after this response.
    Close,
    /// A 101 being tunnelled: it carries the upgraded protocol from now on.
    Upgrade,
}

/// Serialize the response for the client; `conn` says what becomes of the
/// client's connection after it.
pub fn encode_response(
    resp: &ResponseHead,
    body_out: BodyKind,
    client_minor: u8,
    conn: ClientConn,
    out: &mut Vec<u8>,
) {
    let bytes = &resp.bytes;
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, resp.status.into());
    out.push(b' ');
    out.extend_from_slice(resp.reason.get(bytes));
    out.extend_from_slice(b"\r\n");
    let mut lines = Lines::new(bytes);
    for f in &resp.fields {
        let upgrade = conn == ClientConn::Upgrade && f.known == Name::Upgrade;
        if upgrade || !f.hop {
            lines.push(out, f);
        }
    }
    lines.flush(out);
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
    if conn == ClientConn::Upgrade {
        put_header(out, b"Connection", b"upgrade");
    } else if conn == ClientConn::Close || body_out == BodyKind::Close {
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

/// An address as `Display` writes it, on the stack; IPv4 by hand (it
/// goes into two fields of every request: by `put_decimal` per octet
/// it cost ~1,000 instructions a request).
struct IpText {
    /// The longest IPv6 text is 45 bytes.
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn of(ip: IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            IpAddr::V4(a) => {
                for (k, o) in a.octets().into_iter().enumerate() {
                    if k > 0 {
                        t.push(b'.');
                    }
                    if o >= 100 {
                        t.push(b'0' + o / 100);
                    }
                    if o >= 10 {
                        t.push(b'0' + o / 10 % 10);
                    }
                    t.push(b'0' + o % 10);
                }
            }
            IpAddr::V6(a) => {
                let mut c = std::io::Cursor::new(&mut t.buf[..]);
                let _ = write!(c, "{a}");
                t.len = c.position() as usize;
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Forwarded field lines on their way to `out`: a line received as the
/// encoder would write it joins the run of such lines before it, and each
/// run goes out in one copy (a response from nginx: one copy instead of
/// four per field). Other lines are written anew. Call `flush` before
/// writing anything else to `out`.
struct Lines<'a> {
    bytes: &'a [u8],
    /// The run not copied yet (`start == end`: none).
    run: (usize, usize),
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Lines { bytes, run: (0, 0) }
    }

    fn push(&mut self, out: &mut Vec<u8>, f: &Field) {
        let (name, value) = (f.name, f.value);
        match Span::field_line(self.bytes, name, value) {
            Some((start, end)) if start == self.run.1 && self.run.0 < self.run.1 => {
                self.run.1 = end;
            }
            Some(line) => {
                self.flush(out);
                self.run = line;
            }
            None => {
                self.flush(out);
                put_header(out, name.get(self.bytes), value.get(self.bytes));
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes[self.run.0..self.run.1]);
        self.run = (0, 0);
    }
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A client's simple request, as the health checks and the lab's probe
/// send it: no body, `Connection: close` (the answer may then be read to
/// the end of the connection, and the server frees it at once).
pub fn client_request(method: &str, target: &str, host: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The reason phrase halo writes for a status it answers with itself.
pub fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
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

/// A small complete response the proxy generates itself. It always says
/// `Connection: close`: the proxy closes after every error, as it may not
/// have read the whole request.
pub fn error_response(status: u16) -> Vec<u8> {
    let reason = reason_phrase(status).unwrap_or("Error");
    let text = match status {
        400 => "The request could not be understood by the proxy.",
        408 => "The request head did not arrive in time.",
        501 => "The request uses a transfer coding the proxy does not implement.",
        502 => "The server sent an invalid response or could not be reached.",
        503 => "No server is available to handle this request.",
        504 => "The server did not answer in time.",
        _ => "The proxy could not handle this request.",
    };
    let body = format!(
        "<html><head><title>{status} {reason}</title></head>\n<body><h1>{status} {reason}</h1>\n<p>{text}</p>\n<hr><p>halo</p></body></html>\n"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::testing::*;
    use crate::http1::{check_head, parse_request};

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
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:0.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::of(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn field_lines_come_out_normalised_whether_copied_or_rewritten() {
        // Lines received as the encoder writes them are copied in runs;
        // the others (no space, more spaces, trailing blanks, a bare LF,
        // an empty value) are written anew; dropped fields split a run.
        let fields = "A: 1\r\nB:2\r\nC:   3 \t\r\nD: 4\nE: 5\r\nF:\r\nConnection: x-hop\r\nX-Hop: 6\r\nG: 7\r\nH: 8\r\n";
        let want = "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: \r\nG: 7\r\nH: 8\r\n";
        let r = req(format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n").as_bytes()).unwrap();
        assert_eq!(
            encoded(&r, no_forwarding()),
            format!("GET / HTTP/1.1\r\nHost: h\r\n{want}\r\n")
        );
        let r = resp(
            format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 2\r\n\r\n").as_bytes(),
            "GET",
        )
        .unwrap();
        let mut out = Vec::new();
        encode_response(
            &r,
            response_body_out(&r, 1),
            1,
            ClientConn::KeepAlive,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("HTTP/1.1 200 OK\r\n{want}Content-Length: 2\r\n\r\n")
        );
    }

    #[test]
    fn response_rewrite() {
        let r = resp(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n\r\n", "GET").unwrap();
        let mut out = Vec::new();
        let body = response_body_out(&r, 1);
        encode_response(&r, body, 1, ClientConn::KeepAlive, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        // HTTP/1.0 client: no chunked, close-delimited.
        let body = response_body_out(&r, 0);
        assert_eq!(body, BodyKind::Close);
        let mut out = Vec::new();
        encode_response(&r, body, 0, ClientConn::KeepAlive, &mut out);
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
            encode_response(
                &r,
                response_body_out(&r, 1),
                1,
                ClientConn::KeepAlive,
                &mut out,
            );
            let s = String::from_utf8(out).unwrap();
            assert!(s.starts_with("HTTP/1.1 "), "{s}");
            assert_eq!(
                s.split_once("\r\n").unwrap().1,
                format!("{want}\r\n"),
                "{method}"
            );
        }
        // The connection's fate is one value: closed, or a 101 tunnelled
        // (its Upgrade field kept, although hop-by-hop).
        let mut out = Vec::new();
        encode_response(&r, BodyKind::Chunked, 1, ClientConn::Close, &mut out);
        assert!(out.ends_with(b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"));
        let up = resp(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET",
        )
        .unwrap();
        let mut out = Vec::new();
        encode_response(&up, BodyKind::None, 1, ClientConn::Upgrade, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        );
        // Close-delimited from the server is re-chunked for a 1.1 client.
        let r = resp(b"HTTP/1.1 200 OK\r\n\r\n", "GET").unwrap();
        assert_eq!(response_body_out(&r, 1), BodyKind::Chunked);
    }

    #[test]
    fn a_client_request_parses_back() {
        let m = client_request("HEAD", "/health?x=1", "192.0.2.21:8080", "halo-test");
        let n = check_head(&m, LIM).unwrap().unwrap();
        assert_eq!(n, m.len());
        let r = parse_request(&m, LIM).unwrap();
        assert_eq!((r.method(), r.target()), ("HEAD", "/health?x=1"));
        assert_eq!(r.header("host"), Some(&b"192.0.2.21:8080"[..]));
        assert_eq!(r.header("user-agent"), Some(&b"halo-test"[..]));
        assert_eq!((r.body, r.keep_alive), (BodyKind::None, false));
    }

    #[test]
    fn error_pages_are_complete_responses() {
        for s in [400, 502, 503, 504] {
            let page = error_response(s);
            let r = resp(&page, "GET").unwrap();
            assert_eq!(r.status, s);
            assert!(!r.keep_alive, "{s}");
            let n = check_head(&page, LIM).unwrap().unwrap();
            assert_eq!(r.body, BodyKind::Length((page.len() - n) as u64));
        }
    }
}
