//! The lab's HTTP client: one `GET` over a fresh TCP connection, and the
//! reading of the reply (status, and which backend served it).
//!
//! It is deliberately minimal (`Connection: close`, read to EOF, bounded
//! size and time) because it only talks to the lab's own nginx and halo. It
//! opens sockets in whatever namespace the calling thread is in: callers
//! run it through `sys::in_netns`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::http1::{self, HeadLimits, HttpError};

/// Replies larger than this are refused: lab pages are a few bytes.
const MAX_REPLY: usize = 64 * 1024;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// From the `X-Served-By` header the lab's nginx adds, else the first
    /// word of the body up to ':' (the page reads "web2: hello from ...").
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    Connect(String),
    Io(String),
    /// The bytes are not an HTTP/1.x response.
    Invalid(String),
    /// The connection closed before a whole response head arrived.
    Truncated,
    TooLarge,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "connect: {e}"),
            ProbeError::Io(e) => write!(f, "i/o: {e}"),
            ProbeError::Invalid(e) => write!(f, "bad response: {e}"),
            ProbeError::Truncated => f.write_str("connection closed mid-response"),
            ProbeError::TooLarge => write!(f, "response over {MAX_REPLY} bytes"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Limits on a reply's head: the whole reply is at most [`MAX_REPLY`].
const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: MAX_REPLY,
    max_headers: 32,
};

/// Parse a whole response (the connection was closed by the server) with
/// the shared codec; the lab's own rules are only which backend it names.
pub fn parse_reply(buf: &[u8]) -> Result<Reply, ProbeError> {
    let invalid = |e: HttpError| ProbeError::Invalid(e.to_string());
    let Some(n) = http1::check_head(buf, LIMITS).map_err(invalid)? else {
        // All of the reply is here: an HTTP reply cut short, or no HTTP.
        let start = &buf[..buf.len().min(5)];
        return Err(if b"HTTP/".starts_with(start) {
            ProbeError::Truncated
        } else {
            ProbeError::Invalid("not an HTTP/1.x response".into())
        });
    };
    let head = http1::parse_response(&buf[..n], LIMITS, "GET").map_err(invalid)?;
    let header = head
        .header("x-served-by")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let server = header.or_else(|| {
        // A body cut short still names its server: what was decoded
        // before an error is enough.
        let mut body = Vec::new();
        let _ = http1::BodyDecoder::new(head.body).decode(&buf[n..], &mut body);
        let body = std::str::from_utf8(&body).ok()?;
        let word = body.split(':').next()?.trim();
        (!word.is_empty() && !word.contains(char::is_whitespace)).then(|| word.to_string())
    });
    Ok(Reply {
        status: head.status,
        server,
    })
}

/// `GET path` from `addr`, within `timeout` for the connect and for each read.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Reply, ProbeError> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    let io = |e: std::io::Error| match e.kind() {
        // A read timeout surfaces as EAGAIN ("resource temporarily unavailable").
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ProbeError::Io(format!("no answer within {} ms", timeout.as_millis()))
        }
        _ => ProbeError::Io(e.to_string()),
    };
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let req = http1::encode::client_request("GET", path, &addr.ip().to_string(), "halo-lab");
    s.write_all(&req).map_err(io)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REPLY {
            return Err(ProbeError::TooLarge);
        }
    }
    parse_reply(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_comes_from_the_header_first() {
        let r =
            parse_reply(b"HTTP/1.1 200 OK\r\nX-Served-By: web2\r\nContent-Length: 4\r\n\r\nweb9")
                .unwrap();
        assert_eq!(
            r,
            Reply {
                status: 200,
                server: Some("web2".into())
            }
        );
    }

    #[test]
    fn server_falls_back_to_the_page_text() {
        let r = parse_reply(b"HTTP/1.0 200 OK\r\n\r\nweb3: hello from 192.0.2.23\n").unwrap();
        assert_eq!(r.server.as_deref(), Some("web3"));
        let r = parse_reply(b"HTTP/1.1 503 Service Unavailable\r\n\r\nno server is up\n").unwrap();
        assert_eq!((r.status, r.server), (503, None));
    }

    #[test]
    fn server_from_a_chunked_page() {
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1c\r\nweb4: hello from 192.0.2.24\n\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.server.as_deref(), Some("web4"));
    }

    #[test]
    fn incomplete_and_invalid_are_errors_not_panics() {
        assert_eq!(parse_reply(b""), Err(ProbeError::Truncated));
        assert_eq!(
            parse_reply(b"HTTP/1.1 200 OK\r\nX-A: b\r\n"),
            Err(ProbeError::Truncated)
        );
        assert!(matches!(
            parse_reply(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ProbeError::Invalid(_))
        ));
        assert!(matches!(
            parse_reply(&[0xff; 40]),
            Err(ProbeError::Invalid(_))
        ));
    }

    #[test]
    fn get_reads_a_real_reply_over_loopback() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let n = c.read(&mut req).unwrap();
            let head = String::from_utf8_lossy(&req[..n]).to_string();
            c.write_all(b"HTTP/1.1 200 OK\r\nX-Served-By: web1\r\n\r\nweb1: hi\n")
                .unwrap();
            head
        });
        let r = get(addr, "/health", Duration::from_secs(5)).unwrap();
        assert_eq!(r.server.as_deref(), Some("web1"));
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Connection: close"));
    }
}
