//! One HTTP/1.x codec (RFC 9110 / RFC 9112) for every part of halo that
//! speaks HTTP: the proxy (both sides), the health checks, the admin
//! listener and the lab's probe. Pure: no sockets, no clock, no allocation
//! policy beyond the `Vec`s it is handed; the callers feed it bytes.
//!
//! - [`head`]: is there a whole head yet ([`check_head`], "incomplete vs
//!   invalid" before any parsing), and what its fields say about framing.
//! - [`request`] / [`response`]: parse a head (with `httparse`) into an
//!   index over a copy of its bytes, reusable from one message to the next.
//! - [`body`]: how a body is delimited ([`BodyKind`]), decoding it
//!   ([`BodyDecoder`], chunked included) and encoding it ([`BodyEncoder`]).
//! - [`encode`]: heads for the wire: a request or response rewritten for
//!   forwarding (hop-by-hop fields out, X-Forwarded-For in, framing
//!   re-stated), the proxy's own error pages, a client's simple request.
//!
//! The codec holds the rules every recipient keeps (framing, smuggling,
//! size limits). Each user adds its own on top: the proxy refuses what it
//! would have to forward blind, a health check tolerates what it only
//! reads, the admin listener takes paths only.

pub mod body;
pub mod encode;
pub mod head;
pub mod request;
pub mod response;

use std::fmt;

pub use body::{BodyDecoder, BodyEncoder, BodyKind};
pub use encode::{
    add_header, encode_request, encode_response, error_response, redirect_https, response_body_out,
    ClientConn, ForwardInfo,
};
pub use head::check_head;
pub use request::{parse_request, RequestHead};
pub use response::{parse_response, ResponseHead};

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

#[cfg(test)]
pub(crate) mod testing {
    //! What the tests of every file here share.
    use super::*;

    pub const LIM: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 100,
    };

    pub fn req(bytes: &[u8]) -> Result<RequestHead, HttpError> {
        match check_head(bytes, LIM)? {
            Some(n) => parse_request(&bytes[..n], LIM),
            None => panic!("incomplete: {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    pub fn resp(bytes: &[u8], method: &str) -> Result<ResponseHead, HttpError> {
        let n = check_head(bytes, LIM)?.expect("complete");
        parse_response(&bytes[..n], LIM, method)
    }

    pub fn fwd(ip: &str, except: bool) -> ForwardInfo {
        ForwardInfo {
            client: ip.parse().unwrap(),
            add_forwarded: true,
            except,
            https: false,
        }
    }

    /// Forwarding off: the head goes out with only hop-by-hop changes.
    pub fn no_forwarding() -> ForwardInfo {
        ForwardInfo {
            add_forwarded: false,
            ..fwd("192.0.2.1", false)
        }
    }

    pub fn encoded(r: &RequestHead, f: ForwardInfo) -> String {
        let mut out = Vec::new();
        encode_request(r, f, "backend", &mut out);
        String::from_utf8(out).unwrap()
    }
}
