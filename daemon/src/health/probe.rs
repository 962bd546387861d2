//! Active probes: the I/O half of health checking.
//!
//! [`run_check`] performs one configured check (HTTP or TCP connect) against
//! a server within its timeout, over TLS when the server's check has it
//! (the proxy's own TLS stream and client configuration, so a check
//! verifies the server as its traffic does), and turns the outcome into a
//! [`CheckResult`] for the pure checker. [`http_fetch`] is the HTTP request
//! underneath, shared with `halo genhash`. Response parsing lives in the
//! pure `response` module; this one only moves bytes and measures nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::checker::CheckResult;
use super::response::{self, BodyDecoder, BodyHasher, ResponseError};
use crate::config::{CheckKind, DigestAlg, ExpectStatus};
use crate::http1::BodyKind;
use crate::proxy::stream::{Stream, Transport};
use crate::tls::client::ClientTls;

/// Why a probe failed before a response could be judged.
#[derive(Debug)]
pub enum ProbeError {
    Connect(std::io::Error),
    /// The TLS handshake failed (the certificate, or the server broke
    /// the protocol or closed).
    Tls(std::io::Error),
    Timeout(Duration),
    /// Reading or writing after the connection was made.
    Io(std::io::Error),
    /// The server closed the connection before a full response head.
    ClosedBeforeResponse,
    Response(ResponseError),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "{}", io_text(e)),
            ProbeError::Tls(e) => write!(f, "TLS handshake: {}", io_text(e)),
            ProbeError::Timeout(d) => write!(f, "timeout after {}", fmt_duration(*d)),
            ProbeError::Io(e) => write!(f, "{}", io_text(e)),
            ProbeError::ClosedBeforeResponse => write!(f, "connection closed before a response"),
            ProbeError::Response(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Short lowercase texts for the errors a probe sees most, as they read in
/// a log line (`connection refused` rather than `Connection refused (os
/// error 111)`).
fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        TimedOut => "timed out".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        AddrNotAvailable => "address not available".into(),
        BrokenPipe => "connection closed while sending".into(),
        _ => e.to_string(),
    }
}

/// `2s`, `500ms`, `1.5s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// One HTTP request to make.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The Host header.
    pub host: &'a str,
    /// With a digest asked for, read the body only when the status matches
    /// this: a wrong status already decides a check, and its error page
    /// need not be read. `None`: always read it.
    pub body_only_if: Option<&'a ExpectStatus>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    /// Payload bytes read, when the body was read.
    pub body_len: Option<u64>,
    /// Lowercase hex digest of the body, when one was asked for.
    pub digest: Option<String>,
}

impl HttpResponse {
    /// `200 OK`.
    pub fn status_line(&self) -> String {
        if self.reason.is_empty() {
            self.status.to_string()
        } else {
            format!("{} {}", self.status, self.reason)
        }
    }
}

/// The Host header for a server known only by address: `192.0.2.21:8080`,
/// `[2001:db8::21]:8080`, or without the port when it is 80.
pub fn host_for(addr: SocketAddr) -> String {
    match (addr, addr.port()) {
        (SocketAddr::V4(a), 80) => a.ip().to_string(),
        (SocketAddr::V6(a), 80) => format!("[{}]", a.ip()),
        _ => addr.to_string(),
    }
}

/// A probe's connection: TCP, then the TLS handshake when `tls` is given.
async fn open(
    addr: SocketAddr,
    tls: Option<&Arc<ClientTls>>,
) -> Result<Transport<TcpStream>, ProbeError> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    // Small writes, one round trip: no Nagle delay.
    let _ = s.set_nodelay(true);
    let s = Transport::Plain(s);
    match tls {
        None => Ok(s),
        Some(t) => s
            .connect_tls(t.config.clone(), t.server_name(addr.ip()))
            .await
            .map_err(ProbeError::Tls),
    }
}

/// Read more into `buf` (growing it as needed); 0 at the end.
async fn read_more(s: &Transport<TcpStream>, buf: &mut Vec<u8>) -> Result<usize, ProbeError> {
    buf.reserve(16 * 1024);
    let (r, b) = s.read(std::mem::take(buf)).await;
    *buf = b;
    r.map_err(ProbeError::Io)
}

/// Send one request and read the response head; with `digest`, read and
/// hash the whole body too. All of it within `timeout`; over TLS with
/// `tls`.
pub async fn http_fetch(
    addr: SocketAddr,
    tls: Option<&Arc<ClientTls>>,
    req: &HttpRequest<'_>,
    digest: Option<&DigestAlg>,
    timeout: Duration,
) -> Result<HttpResponse, ProbeError> {
    match tokio::time::timeout(timeout, http_fetch_inner(addr, tls, req, digest)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

async fn http_fetch_inner(
    addr: SocketAddr,
    tls: Option<&Arc<ClientTls>>,
    req: &HttpRequest<'_>,
    digest: Option<&DigestAlg>,
) -> Result<HttpResponse, ProbeError> {
    let stream = open(addr, tls).await?;
    let request = response::build_request(req.method, req.path, req.host);
    stream.write_all(request).await.0.map_err(ProbeError::Io)?;

    let head_request = req.method.eq_ignore_ascii_case("HEAD");
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // Read until a final (non-1xx) head is complete.
    let head = loop {
        match response::parse_head(&buf, head_request).map_err(ProbeError::Response)? {
            Some((h, n)) if (100..200).contains(&h.status) && h.status != 101 => {
                buf.drain(..n);
            }
            Some((h, n)) => {
                buf.drain(..n);
                break h;
            }
            None => {
                if read_more(&stream, &mut buf).await? == 0 {
                    return Err(ProbeError::ClosedBeforeResponse);
                }
            }
        }
    };

    let mut resp = HttpResponse {
        status: head.status,
        reason: head.reason,
        body_len: None,
        digest: None,
    };
    let wanted = req.body_only_if.is_none_or(|e| e.matches(head.status));
    let Some(alg) = digest.filter(|_| wanted) else {
        // The status is all that is judged; dropping the connection ends it.
        return Ok(resp);
    };
    let mut hasher = BodyHasher::new(alg);
    let mut body = BodyDecoder::new(if head.status == 101 {
        BodyKind::None
    } else {
        head.framing
    });
    loop {
        let used = body
            .feed(&buf, &mut |b| hasher.update(b))
            .map_err(ProbeError::Response)?;
        buf.drain(..used);
        if body.is_done() {
            break;
        }
        if read_more(&stream, &mut buf).await? == 0 {
            body.finish_on_close().map_err(ProbeError::Response)?;
            break;
        }
    }
    resp.body_len = Some(body.payload_len());
    resp.digest = Some(hasher.finish_hex());
    Ok(resp)
}

/// Open a TCP connection (and complete a TLS handshake with `tls`)
/// within `timeout`, then close it.
pub async fn tcp_connect(
    addr: SocketAddr,
    tls: Option<&Arc<ClientTls>>,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, open(addr, tls)).await {
        Ok(Ok(s)) => {
            // close_notify after a handshake: a clean close in its log.
            s.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

/// Run one configured check against `addr`, over TLS with `tls`.
pub async fn run_check(
    addr: SocketAddr,
    tls: Option<&Arc<ClientTls>>,
    kind: &CheckKind,
    timeout: Duration,
) -> CheckResult {
    match kind {
        CheckKind::Tcp => match tcp_connect(addr, tls, timeout).await {
            Ok(()) if tls.is_some() => CheckResult::success("TLS handshake done"),
            Ok(()) => CheckResult::success("connected"),
            Err(e) => CheckResult::failure(e.to_string()),
        },
        CheckKind::Http {
            method,
            path,
            host,
            expect_status,
            expect_body_digest,
        } => {
            let default_host;
            let host = match host {
                Some(h) => h.as_str(),
                None => {
                    default_host = host_for(addr);
                    &default_host
                }
            };
            let req = HttpRequest {
                method,
                path,
                host,
                body_only_if: Some(expect_status),
            };
            let want = expect_body_digest.as_ref();
            match http_fetch(addr, tls, &req, want.map(|(alg, _)| alg), timeout).await {
                Err(e) => CheckResult::failure(e.to_string()),
                Ok(r) => judge(&r, expect_status, want),
            }
        }
    }
}

/// Whether a response passes the check, with the text to show either way.
pub fn judge(
    r: &HttpResponse,
    expect_status: &crate::config::ExpectStatus,
    want: Option<&(DigestAlg, String)>,
) -> CheckResult {
    let status = r.status_line();
    if !expect_status.matches(r.status) {
        return CheckResult::failure(format!(
            "status {status}, expected {}",
            expected_text(expect_status)
        ));
    }
    if let Some((alg, hex)) = want {
        let got = r.digest.as_deref().unwrap_or("");
        if !got.eq_ignore_ascii_case(hex) {
            return CheckResult::failure(format!(
                "{status} but body {} {got} is not the expected {hex}",
                response::alg_name(alg)
            ));
        }
        return CheckResult::success(format!(
            "{status}, body {} matches",
            response::alg_name(alg)
        ));
    }
    CheckResult::success(status)
}

fn expected_text(e: &crate::config::ExpectStatus) -> String {
    match e {
        crate::config::ExpectStatus::Codes(c) => c
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
        crate::config::ExpectStatus::Range(lo, hi) => format!("{lo}-{hi}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, reason: &str, digest: Option<&str>) -> HttpResponse {
        HttpResponse {
            status,
            reason: reason.into(),
            body_len: digest.map(|_| 3),
            digest: digest.map(String::from),
        }
    }

    #[test]
    fn judge_status() {
        let ok = judge(
            &resp(200, "OK", None),
            &ExpectStatus::Codes(vec![200]),
            None,
        );
        assert_eq!(ok, CheckResult::success("200 OK"));
        let bad = judge(
            &resp(503, "Service Unavailable", None),
            &ExpectStatus::Codes(vec![200, 204]),
            None,
        );
        assert_eq!(
            bad,
            CheckResult::failure("status 503 Service Unavailable, expected 200 or 204")
        );
        let range = judge(&resp(302, "", None), &ExpectStatus::Range(200, 399), None);
        assert_eq!(range, CheckResult::success("302"));
        let out = judge(
            &resp(404, "Not Found", None),
            &ExpectStatus::Range(200, 399),
            None,
        );
        assert_eq!(
            out,
            CheckResult::failure("status 404 Not Found, expected 200-399")
        );
    }

    #[test]
    fn judge_digest() {
        let want = (
            DigestAlg::Md5,
            "900150983CD24FB0D6963F7D28E17F72".to_string(),
        );
        let r = resp(200, "OK", Some("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(
            judge(&r, &ExpectStatus::Codes(vec![200]), Some(&want)),
            CheckResult::success("200 OK, body md5 matches")
        );
        let r = resp(200, "OK", Some("d41d8cd98f00b204e9800998ecf8427e"));
        let res = judge(&r, &ExpectStatus::Codes(vec![200]), Some(&want));
        assert!(!res.ok);
        assert_eq!(
            res.detail,
            "200 OK but body md5 d41d8cd98f00b204e9800998ecf8427e is not the expected 900150983CD24FB0D6963F7D28E17F72"
        );
    }

    #[test]
    fn host_header_for_addresses() {
        assert_eq!(host_for("192.0.2.1:80".parse().unwrap()), "192.0.2.1");
        assert_eq!(
            host_for("192.0.2.1:8080".parse().unwrap()),
            "192.0.2.1:8080"
        );
        assert_eq!(
            host_for("[2001:db8::1]:80".parse().unwrap()),
            "[2001:db8::1]"
        );
        assert_eq!(
            host_for("[2001:db8::1]:8080".parse().unwrap()),
            "[2001:db8::1]:8080"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn errors_read_naturally() {
        let e = ProbeError::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(e.to_string(), "connection refused");
        assert_eq!(
            ProbeError::Timeout(Duration::from_secs(2)).to_string(),
            "timeout after 2s"
        );
    }

    #[test]
    fn refused_tcp_and_http_checks_fail_with_the_reason() {
        // A port just released on loopback: nothing listens there.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(run_check(
            addr,
            None,
            &CheckKind::Tcp,
            Duration::from_secs(5),
        ));
        assert_eq!(r, CheckResult::failure("connection refused"));
        let http = CheckKind::Http {
            method: "GET".into(),
            path: "/health".into(),
            host: None,
            expect_status: ExpectStatus::Codes(vec![200]),
            expect_body_digest: None,
        };
        let r = rt.block_on(run_check(addr, None, &http, Duration::from_secs(5)));
        assert_eq!(r, CheckResult::failure("connection refused"));
    }
}
