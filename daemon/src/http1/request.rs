//! A request head: parsed with httparse into an index over its bytes,
//! then the rules a recipient keeps (Host, target form, body framing,
//! smuggling). The proxy's and the admin listener's requests.

use super::body::BodyKind;
use super::head::{
    collect_fields, field, fields, header_slots, list_items, map_httparse, named, scan_framing,
    str_at, trim, Field, Name, Slot, Span, STACK_FIELDS,
};
use super::{HeadLimits, HttpError};

/// A parsed request head, ready to be rewritten for the server.
///
/// It keeps a copy of the head's bytes and indexes into them (method,
/// target, each field's name and value as ranges), so parsing into a head
/// that already served a request ([`RequestHead::parse_from`]) allocates
/// nothing: a connection keeps one for all its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// The head as received; everything below indexes into it.
    pub(super) bytes: Vec<u8>,
    pub(super) method: Span,
    pub(super) target: Span,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Every field in order, as received: (name, value).
    pub(super) fields: Vec<Field>,
    pub body: BodyKind,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` field: tunnel after a 101.
    pub(super) upgrade: Option<Span>,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The authority of an absolute-form target: the Host sent upstream.
    pub(super) authority: Option<Span>,
    /// The target sent upstream: the target itself, or for absolute-form
    /// the part after the authority (path and query, possibly empty).
    pub(super) origin: Span,
    /// Every item of every Connection field: more hop-by-hop field names.
    pub(super) conn: Vec<Span>,
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

    /// The value of the first field called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        field(&self.bytes, &self.fields, name.as_bytes())
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
        // Control characters in values: httparse refuses them (see
        // head.rs, `every_control_character_but_htab_refused_in_values`).
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
        let f = scan_framing(buf, &mut self.fields, &mut self.conn)?;
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
                .find(|f| f.known == Name::Upgrade)
                .map(|f| f.value)
                // RFC 9113 3.1 deprecates `h2c`; tunnelling it would give
                // the client HTTP/2 straight to the server, past the
                // proxy's view of requests (h2c smuggling). The request
                // goes on without the upgrade (Upgrade is hop-by-hop).
                .filter(|v| !list_items(v.get(buf)).any(|p| p.eq_ignore_ascii_case(b"h2c")));
        }
        self.expect_continue = minor == 1
            && named(buf, &self.fields, Name::Expect)
                .any(|v| trim(v).eq_ignore_ascii_case(b"100-continue"));
        self.bytes.extend_from_slice(buf);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::testing::*;

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
}
