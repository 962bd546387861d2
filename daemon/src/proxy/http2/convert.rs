//! Between an HTTP/2 message and the HTTP/1.1 head the proxy forwards or
//! reads (RFC 9113 8.3, 8.2.2; the rules HAProxy and nginx apply when they
//! forward h2 to HTTP/1.1 servers). Pure: the `h2` crate has already
//! decoded HPACK and refused connection-specific fields in requests
//! (`connection`, `transfer-encoding`, `upgrade`, `keep-alive`,
//! `proxy-connection`, `te` other than "trailers") and a request without
//! `:method`, `:scheme` or `:path`.
//!
//! The request becomes HTTP/1.1 text that `http1::RequestHead` then
//! parses with the service's limits, so an h2 request meets the same
//! size and smuggling rules as an HTTP/1 one.

use std::fmt::Write;

/// Why an HTTP/2 request cannot be forwarded; answered with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// CONNECT (and extended CONNECT): not proxied, as over HTTP/1.
    Connect,
    /// No `:authority` and no `host` (RFC 9113 8.3.1: one is needed
    /// for the HTTP/1.1 `Host`).
    NoAuthority,
}

impl Refused {
    pub(super) fn status(self) -> u16 {
        match self {
            Refused::Connect => 501,
            Refused::NoAuthority => 400,
        }
    }

    pub(super) fn note(self) -> &'static str {
        match self {
            Refused::Connect => "h2 CONNECT not supported",
            Refused::NoAuthority => "h2 request without :authority or host",
        }
    }
}

/// Write the HTTP/1.1 request head for an HTTP/2 request into `out`.
/// `Host` comes from `:authority` (a `host` field is then dropped: the
/// two name the same target, and the pseudo-header wins, RFC 9113
/// 8.3.1); `cookie` fields split by HPACK are joined with "; " (8.2.3);
/// `te` is hop-by-hop in HTTP/1.1. `has_body`: the HEADERS frame did not
/// end the stream; without a `content-length` the body then goes out
/// chunked.
pub(super) fn request_head(
    parts: &http::request::Parts,
    has_body: bool,
    out: &mut Vec<u8>,
) -> Result<(), Refused> {
    if parts.method == http::Method::CONNECT {
        return Err(Refused::Connect);
    }
    let host = match parts.uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => match parts.headers.get(http::header::HOST) {
            Some(h) => h.as_bytes(),
            None => return Err(Refused::NoAuthority),
        },
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.clear();
    let _ = write!(Buf(out), "{} {} HTTP/1.1\r\nhost: ", parts.method, path);
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    let mut cookies = parts.headers.get_all(http::header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(first.as_bytes());
        for c in cookies {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        if name == http::header::HOST || name == http::header::COOKIE || name == http::header::TE {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if has_body && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `write!` into a byte vector.
struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Fields an HTTP/2 message must not carry (RFC 9113 8.2.2): the
/// HTTP/1.1 head the exchange writes may have them (`http1` re-states
/// framing and connection handling for an HTTP/1.1 client).
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The HTTP/2 response (or interim response) for an HTTP/1.1 response
/// head: its status and fields less the connection-specific ones. A
/// field `http` would not carry (a value with bytes HTTP/2 forbids) is
/// dropped rather than failing the whole response.
pub(super) fn response(head: &crate::http1::ResponseHead) -> http::Response<()> {
    let mut r = http::Response::new(());
    *r.status_mut() =
        http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let h = r.headers_mut();
    for (name, value) in head.headers() {
        if CONNECTION_SPECIFIC
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
        {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            h.append(n, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::testing::{req, resp};
    use crate::http1::BodyKind;

    fn parts(b: http::request::Builder) -> http::request::Parts {
        b.body(()).unwrap().into_parts().0
    }

    fn head(p: &http::request::Parts, has_body: bool) -> String {
        let mut out = Vec::new();
        request_head(p, has_body, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn get_takes_host_from_authority_and_joins_cookies() {
        let p = parts(
            http::Request::get("https://www.example.org/a/b?c=d")
                .header("host", "other.example")
                .header("cookie", "a=1")
                .header("accept", "*/*")
                .header("cookie", "b=2")
                .header("te", "trailers"),
        );
        let h = head(&p, false);
        assert_eq!(
            h,
            "GET /a/b?c=d HTTP/1.1\r\nhost: www.example.org\r\ncookie: a=1; b=2\r\naccept: */*\r\n\r\n"
        );
        let r = req(h.as_bytes()).unwrap();
        assert_eq!(r.body, BodyKind::None);
        assert_eq!(r.header("host"), Some(&b"www.example.org"[..]));
    }

    #[test]
    fn a_body_without_length_goes_chunked() {
        let p = parts(http::Request::post("https://a.example/up"));
        let r = req(head(&p, true).as_bytes()).unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        let p = parts(http::Request::post("https://a.example/up").header("content-length", "5"));
        let r = req(head(&p, true).as_bytes()).unwrap();
        assert_eq!(r.body, BodyKind::Length(5));
    }

    #[test]
    fn host_header_when_no_authority_and_refusals() {
        let p = parts(http::Request::get("/x").header("host", "h.example"));
        assert!(head(&p, false).starts_with("GET /x HTTP/1.1\r\nhost: h.example\r\n"));
        let mut out = Vec::new();
        let p = parts(http::Request::get("/x"));
        assert_eq!(request_head(&p, false, &mut out), Err(Refused::NoAuthority));
        let p = parts(http::Request::connect("h.example:443"));
        assert_eq!(request_head(&p, false, &mut out), Err(Refused::Connect));
    }

    #[test]
    fn response_drops_connection_specific_fields() {
        let r = resp(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
            "GET",
        )
        .unwrap();
        let h = response(&r);
        assert_eq!(h.status(), 200);
        let names: Vec<&str> = h.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "set-cookie"]);
        assert_eq!(h.headers().get_all("set-cookie").iter().count(), 2);
    }
}
