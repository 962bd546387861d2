//! A response head: parsed with httparse into an index over its bytes,
//! and how its body is delimited (RFC 9112 6.3). The proxy reads servers'
//! responses with it, the health checks and the lab's probe theirs.

use super::body::BodyKind;
use super::head::{
    collect_fields, field, fields, header_slots, map_httparse, scan_framing, str_at, Field, Slot,
    Span, STACK_FIELDS,
};
use super::{HeadLimits, HttpError};

/// A parsed response head; like [`RequestHead`], an index into a copy of
/// the head's bytes, reusable with [`ResponseHead::parse_from`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHead {
    pub(super) bytes: Vec<u8>,
    pub status: u16,
    pub(super) reason: Span,
    pub minor: u8,
    pub(super) fields: Vec<Field>,
    pub body: BodyKind,
    /// The server will keep the connection open after the body.
    pub keep_alive: bool,
    /// Every item of every Connection field.
    pub(super) conn: Vec<Span>,
    /// The Content-Length the server sent: re-stated for a response
    /// without body (`0`, or the length a HEAD answer announces).
    pub(super) content_length: Option<u64>,
    /// How many transfer codings its Transfer-Encoding fields list;
    /// `None` without a Transfer-Encoding field.
    pub(super) codings: Option<usize>,
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

    /// The value of the first field called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        field(&self.bytes, &self.fields, name.as_bytes())
    }

    /// How many transfer codings the Transfer-Encoding fields list, in
    /// all (`None` without one; an empty one lists none). Chunked framing
    /// is decided by the last; the users decide what the others mean to
    /// them.
    pub fn transfer_codings(&self) -> Option<usize> {
        self.codings
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
        // Control characters in values: httparse refuses them (see
        // head.rs, `every_control_character_but_htab_refused_in_values`).
        let status = resp.code.unwrap_or(0);
        if !(100..=999).contains(&status) {
            return Err(HttpError::Malformed("invalid status"));
        }
        let minor = resp.version.unwrap_or(1);
        self.status = status;
        self.minor = minor;
        self.reason = Span::of(buf, resp.reason.unwrap_or("").as_bytes());
        collect_fields(buf, resp.headers, &mut self.fields);
        let f = scan_framing(buf, &mut self.fields, &mut self.conn)?;
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
                // RFC 9112 6.3 (4): chunked last, the body is chunked,
                // whatever codings came before it.
                (true, None) if f.te_chunked && minor == 1 => BodyKind::Chunked,
                // RFC 9112 6.3 (4): not ending in chunked -> read until close.
                (true, None) => BodyKind::Close,
                (false, Some(0)) => BodyKind::None,
                (false, Some(n)) => BodyKind::Length(n),
                (false, None) => BodyKind::Close,
            }
        };
        self.keep_alive = minor == 1 && !f.conn_close && self.body != BodyKind::Close;
        self.content_length = f.content_length;
        self.codings = f.te.then_some(f.te_codings);
        self.bytes.extend_from_slice(buf);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::check_head;
    use crate::http1::testing::*;

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
        assert_eq!(r.transfer_codings(), Some(1));
        // Chunked last decides the framing, whatever came before (the
        // proxy refuses to forward that, see proxy::rules).
        let r = resp(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
        )
        .unwrap();
        assert_eq!((r.body, r.transfer_codings()), (BodyKind::Chunked, Some(2)));
        // Chunked applied twice, or not last: read until close.
        for te in ["chunked, chunked", "chunked, gzip"] {
            let m = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(resp(m.as_bytes(), "GET").unwrap().body, BodyKind::Close);
        }
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
}
