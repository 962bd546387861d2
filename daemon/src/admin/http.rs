//! The admin listener's HTTP/1.1, as pure functions: parse one request
//! head from bytes, build one response. GET and HEAD only, no bodies in,
//! `Connection: close` on every answer.
//!
//! "Incomplete" (`Ok(None)`, read more) is told apart from "invalid"
//! before anything is used, and a head past [`MAX_HEAD`] is refused, so a
//! client cannot make the listener buffer without bound. Parsing is the
//! shared codec's (`http1`).

use crate::http1::{self, encode::reason_phrase, HeadLimits, HttpError};

/// Largest request head accepted. The admin paths need a request line, a
/// Host and an Authorization header; browsers add a few more.
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;
const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: MAX_HEAD,
    max_headers: MAX_HEADERS,
};

/// What the listener needs from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub authorization: Option<String>,
}

/// Why a head was refused, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    /// 431: head larger than [`MAX_HEAD`] or too many headers.
    TooLarge,
    /// 400, with the parser's reason.
    Invalid(String),
}

impl BadRequest {
    pub fn status(&self) -> u16 {
        match self {
            BadRequest::TooLarge => 431,
            BadRequest::Invalid(_) => 400,
        }
    }
}

/// Parse the head at the start of `buf`: `Ok(None)` until it is complete.
/// The shared codec reads it; the listener's own rules are origin-form
/// targets only and at most one Authorization.
pub fn parse(buf: &[u8]) -> Result<Option<Request>, BadRequest> {
    let Some(n) = http1::check_head(buf, LIMITS).map_err(refused)? else {
        return Ok(None);
    };
    let head = http1::parse_request(&buf[..n], LIMITS).map_err(refused)?;
    let target = head.target();
    // Origin form only ("/metrics"); the absolute form is for proxies.
    if !target.starts_with('/') {
        return Err(BadRequest::Invalid(format!(
            "request target {target:?} is not a path"
        )));
    }
    let path = target.split('?').next().unwrap_or("/").to_string();
    let mut authorization = None;
    for (name, value) in head.headers() {
        if name.eq_ignore_ascii_case(b"authorization") {
            if authorization.is_some() {
                return Err(BadRequest::Invalid("two Authorization headers".into()));
            }
            let v = std::str::from_utf8(value)
                .map_err(|_| BadRequest::Invalid("Authorization is not UTF-8".into()))?;
            authorization = Some(v.trim().to_string());
        }
    }
    Ok(Some(Request {
        method: head.method().to_string(),
        path,
        authorization,
    }))
}

/// 431 for a head over the limits, 400 with the codec's reason otherwise.
fn refused(e: HttpError) -> BadRequest {
    match e {
        HttpError::HeadTooLarge | HttpError::TooManyHeaders => BadRequest::TooLarge,
        e => BadRequest::Invalid(e.to_string()),
    }
}

/// One answer: status, content type, body and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A short plain-text error page.
    pub fn error(status: u16) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            format!("{status} {}\n", reason(status)),
        )
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire; `head_only` for HEAD (length kept, no body).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            // Values are made here, never taken from a request; a line break
            // would still split the head, so drop any.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase of a status the listener answers with.
fn reason(status: u16) -> &'static str {
    reason_phrase(status).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_partial_and_bad() {
        let r =
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nauthorization:  Basic eDp5 \r\n\r\n")
                .expect("valid")
                .expect("complete");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.authorization.as_deref(), Some("Basic eDp5"));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(BadRequest::Invalid(_))
        ));
        assert!(matches!(
            parse(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(BadRequest::Invalid(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n"),
            Err(BadRequest::Invalid(_))
        ));
    }

    #[test]
    fn heads_are_bounded() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big), Err(BadRequest::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend_from_slice(format!("X{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(BadRequest::TooLarge));
        assert_eq!(BadRequest::TooLarge.status(), 431);
    }

    #[test]
    fn never_panics_on_prefixes_and_noise() {
        let good = b"GET /status.json HTTP/1.1\r\nHost: h\r\nAuthorization: Basic eDp5\r\n\r\n";
        for i in 0..good.len() {
            let _ = parse(&good[..i]);
            for b in [0u8, b'\r', b'\n', b':', 0xff, b' '] {
                let mut m = good.to_vec();
                m[i] = b;
                let _ = parse(&m);
            }
        }
    }

    #[test]
    fn encode_head_and_body() {
        let r = Response::new(200, "text/plain", "hi").header("X-A", "1\r\nInjected: 2");
        let full = String::from_utf8(r.encode(false)).expect("utf-8");
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(full.contains("Content-Length: 2\r\n"));
        assert!(full.contains("X-A: 1Injected: 2\r\n"));
        assert!(full.ends_with("\r\n\r\nhi"));
        let head = String::from_utf8(r.encode(true)).expect("utf-8");
        assert!(head.ends_with("\r\n\r\n"));
        assert!(head.contains("Content-Length: 2\r\n"));
        assert!(String::from_utf8(Response::error(404).encode(false))
            .expect("utf-8")
            .ends_with("404 Not Found\n"));
    }
}
