//! What the proxy refuses on top of the HTTP/1 codec's rules (`http1`):
//! the codec reads what a message says, the proxy also has to forward it,
//! so it refuses what it could only forward blind.

use crate::http1::{BodyKind, HttpError, ResponseHead};

/// A server's response the proxy will not forward: a chunked body with
/// another transfer coding before `chunked` (gzip, ...), which the proxy
/// would pass on to a client that never asked for it. The codec reads it
/// as chunked (RFC 9112 6.3), a health check hashes it as it comes.
pub(crate) fn check_response(resp: &ResponseHead) -> Result<(), HttpError> {
    if resp.body == BodyKind::Chunked && resp.transfer_codings() > Some(1) {
        return Err(HttpError::BadTransferEncoding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{check_head, parse_response, HeadLimits};

    const LIM: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 100,
    };

    fn checked(bytes: &[u8]) -> Result<ResponseHead, HttpError> {
        let n = check_head(bytes, LIM)?.expect("complete");
        let r = parse_response(&bytes[..n], LIM, "GET")?;
        check_response(&r).map(|()| r)
    }

    #[test]
    fn codings_before_chunked_are_not_forwarded() {
        for te in ["gzip, chunked", "gzip\r\nTransfer-Encoding: chunked"] {
            let m = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                checked(m.as_bytes()),
                Err(HttpError::BadTransferEncoding),
                "{te}"
            );
        }
        let r = checked(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        // Not ending in chunked: read until close, forwarded re-chunked.
        let r = checked(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap();
        assert_eq!(r.body, BodyKind::Close);
    }
}
