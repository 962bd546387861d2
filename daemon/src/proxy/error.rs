//! Why one proxied request failed, decided where it failed: what went
//! wrong, on which side, and whether sending the request again is safe.
//!
//! The model is pingora's `Error { etype, esource, retry }`: the code that
//! meets the failure knows whether anything can have reached a server, so
//! it says so there (`Retry`), and the exchange loop only asks
//! [`ProxyError::may_retry`] with the two facts it holds (was the
//! connection reused, can the request be replayed). The status answered,
//! whether an error page can still go out and the access log's note follow
//! from the kind and side, in one place ([`ProxyError::status`],
//! [`ProxyError::note`]). Nothing here does I/O.

use std::io;

use crate::http1::HttpError;

/// Which side of the proxy failed (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The client: it went away, was too slow, or sent a bad body.
    Client,
    /// The server: unreachable, too slow, closed, or answered badly.
    Server,
    /// Neither: no server could take the request.
    Proxy,
}

/// Why no server was obtained (the answer is 503 in every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoServer {
    /// None is up.
    NoneUp,
    /// All at maxconn and the queue is full or timed out.
    QueueFull,
    QueueTimeout,
}

impl NoServer {
    /// The access log's note.
    pub(super) fn note(self) -> &'static str {
        match self {
            NoServer::NoneUp => "no server up",
            NoServer::QueueFull => "queue full",
            NoServer::QueueTimeout => "queue timeout",
        }
    }
}

/// What failed.
#[derive(Debug)]
pub(super) enum Kind {
    /// The request head broke the rules (400, 501 for an unknown
    /// transfer coding).
    BadRequest(HttpError),
    /// The request head did not arrive within `timeouts.http_request`.
    RequestTimeout,
    NoServer(NoServer),
    /// The connect failed (refused, unreachable).
    ConnectFailed,
    ConnectTimeout,
    /// The TLS handshake with a server failed (its certificate, or the
    /// server broke the protocol or closed).
    Tls,
    /// A read or write did not complete by its deadline.
    Timeout,
    Read(io::Error),
    Write(io::Error),
    /// The peer closed before a whole message.
    Closed,
    /// A body broke its framing (bad chunk, cut short).
    BadBody(HttpError),
    /// The response head broke the rules.
    BadHead(HttpError),
    /// A 101 answer to a request that asked for no upgrade.
    UnrequestedUpgrade,
}

/// Whether the request may be sent again (pingora's `RetryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// No: the server may have acted on the request, or the client's
    /// bytes were consumed.
    Never,
    /// Nothing reached a server (a connect failed): another attempt is
    /// safe, within the service's `retries`.
    Safe,
    /// Only on a connection taken from the pool, for a request that can
    /// be replayed (idempotent, no body): a server may close an idle
    /// connection just as a request goes out, and then saw nothing of it
    /// (nothing came back either). On a fresh connection the server got
    /// the request and chose to fail: never again (pingora's
    /// `ReusedOnly`, decided by `decide_reuse`).
    IfReused,
}

/// One request's failure. See the module docs.
#[derive(Debug)]
pub(super) struct ProxyError {
    pub kind: Kind,
    pub side: Side,
    pub retry: Retry,
}

impl ProxyError {
    pub(super) fn client(kind: Kind) -> ProxyError {
        ProxyError {
            kind,
            side: Side::Client,
            retry: Retry::Never,
        }
    }

    pub(super) fn bad_request(e: HttpError) -> ProxyError {
        ProxyError::client(Kind::BadRequest(e))
    }

    pub(super) fn server(kind: Kind, retry: Retry) -> ProxyError {
        ProxyError {
            kind,
            side: Side::Server,
            retry,
        }
    }

    pub(super) fn no_server(why: NoServer) -> ProxyError {
        ProxyError {
            kind: Kind::NoServer(why),
            side: Side::Proxy,
            retry: Retry::Never,
        }
    }

    /// The client is gone: nothing can be answered.
    fn client_gone(&self) -> bool {
        self.side == Side::Client
            && matches!(self.kind, Kind::Read(_) | Kind::Write(_) | Kind::Closed)
    }

    /// May the request go out again on another connection? `reused`: the
    /// failed connection came from the pool; `replayable`: idempotent
    /// without a body. A connect failure (`Safe`) is retried within the
    /// `retries` budget, which the caller keeps.
    pub(super) fn may_retry(&self, reused: bool, replayable: bool) -> bool {
        match self.retry {
            Retry::Never => false,
            Retry::Safe => true,
            Retry::IfReused => reused && replayable,
        }
    }

    /// The status logged, and answered when [`ProxyError::page`] says
    /// the client can still take one. A connect timeout is 503, as
    /// HAProxy answers it; a refusal 502.
    pub(super) fn status(&self) -> u16 {
        match (&self.kind, self.side) {
            (Kind::BadRequest(e), _) => e.status(),
            (Kind::RequestTimeout, _) => 408,
            (Kind::NoServer(_) | Kind::ConnectTimeout, _) => 503,
            (Kind::Timeout, Side::Client) => 408,
            (Kind::Timeout, _) => 504,
            (_, Side::Client) => 400,
            _ => 502,
        }
    }

    /// Whether an error page goes to the client (not when it is gone).
    pub(super) fn page(&self) -> bool {
        !self.client_gone()
    }

    /// The access log's note for a failure before the response head went
    /// to the client.
    pub(super) fn note(&self) -> &'static str {
        if self.client_gone() {
            return "client gone";
        }
        match (&self.kind, self.side) {
            (Kind::BadRequest(_), _) => "bad request",
            (Kind::RequestTimeout, _) => "http_request timeout",
            (Kind::NoServer(why), _) => why.note(),
            (Kind::ConnectFailed, _) => "connect failed",
            (Kind::ConnectTimeout, _) => "connect timeout",
            (Kind::Tls, _) => "tls handshake failed",
            (Kind::Timeout, Side::Client) => "client timeout",
            (Kind::Timeout, _) => "server timeout",
            (Kind::BadBody(_), Side::Client) => "bad request body",
            (Kind::BadBody(_), _) => "bad server body",
            (Kind::Read(_), _) => "server read error",
            (Kind::Write(_), _) => "server error",
            (Kind::Closed, _) => "server closed before responding",
            (Kind::BadHead(_), _) => "bad response",
            (Kind::UnrequestedUpgrade, _) => "unrequested 101",
        }
    }

    /// The note for a failure while the response body was relayed (the
    /// client has the head; it can only be cut off).
    pub(super) fn note_in_body(&self) -> &'static str {
        match (&self.kind, self.side) {
            (_, Side::Client) => "client error in body",
            (Kind::Timeout, _) => "server timeout in body",
            _ => "server error in body",
        }
    }

    /// The detail worth a log line beside the access line: the I/O error
    /// or the rule broken. A bad response head is a warning (the server
    /// is broken); the rest is debug.
    pub(super) fn trace(&self, client: std::net::SocketAddr, service: &str, server: &str) {
        match &self.kind {
            Kind::BadRequest(e) => {
                tracing::debug!(%client, service, "refusing request: {e}");
            }
            Kind::RequestTimeout => {
                tracing::debug!(%client, service, "refusing request: http_request timeout");
            }
            Kind::BadHead(e) => {
                tracing::warn!(service, server, "bad response: {e}");
            }
            Kind::Read(e) | Kind::Write(e) => {
                tracing::debug!(%client, service, server, "{:?} I/O error: {e}", self.side);
            }
            Kind::BadBody(e) => {
                tracing::debug!(%client, service, server, "bad {:?} body: {e}", self.side);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, side: Side) -> ProxyError {
        ProxyError {
            kind,
            side,
            retry: Retry::Never,
        }
    }

    #[test]
    fn statuses_and_notes_by_kind_and_side() {
        let io = || io::Error::from(io::ErrorKind::BrokenPipe);
        let bad = || HttpError::TruncatedBody;
        let cases = [
            (
                ProxyError::bad_request(HttpError::BadHost),
                400,
                true,
                "bad request",
            ),
            (
                ProxyError::bad_request(HttpError::UnsupportedTransferCoding),
                501,
                true,
                "bad request",
            ),
            (
                e(Kind::RequestTimeout, Side::Client),
                408,
                true,
                "http_request timeout",
            ),
            (
                e(Kind::NoServer(NoServer::QueueFull), Side::Proxy),
                503,
                true,
                "queue full",
            ),
            (
                e(Kind::ConnectFailed, Side::Server),
                502,
                true,
                "connect failed",
            ),
            (
                e(Kind::Tls, Side::Server),
                502,
                true,
                "tls handshake failed",
            ),
            (
                e(Kind::ConnectTimeout, Side::Server),
                503,
                true,
                "connect timeout",
            ),
            (e(Kind::Timeout, Side::Server), 504, true, "server timeout"),
            (e(Kind::Timeout, Side::Client), 408, true, "client timeout"),
            (
                e(Kind::Read(io()), Side::Server),
                502,
                true,
                "server read error",
            ),
            (
                e(Kind::Write(io()), Side::Server),
                502,
                true,
                "server error",
            ),
            (
                e(Kind::Closed, Side::Server),
                502,
                true,
                "server closed before responding",
            ),
            (
                e(Kind::BadBody(bad()), Side::Server),
                502,
                true,
                "bad server body",
            ),
            (
                e(Kind::BadBody(bad()), Side::Client),
                400,
                true,
                "bad request body",
            ),
            (
                e(Kind::BadHead(bad()), Side::Server),
                502,
                true,
                "bad response",
            ),
            (
                e(Kind::UnrequestedUpgrade, Side::Server),
                502,
                true,
                "unrequested 101",
            ),
            (e(Kind::Read(io()), Side::Client), 400, false, "client gone"),
            (
                e(Kind::Write(io()), Side::Client),
                400,
                false,
                "client gone",
            ),
            (e(Kind::Closed, Side::Client), 400, false, "client gone"),
        ];
        for (err, status, page, note) in cases {
            assert_eq!(
                (err.status(), err.page(), err.note()),
                (status, page, note),
                "{err:?}"
            );
        }
    }

    #[test]
    fn notes_in_the_body_name_the_side() {
        let io = || io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(
            e(Kind::Timeout, Side::Server).note_in_body(),
            "server timeout in body"
        );
        assert_eq!(
            e(Kind::Read(io()), Side::Server).note_in_body(),
            "server error in body"
        );
        assert_eq!(
            e(Kind::Timeout, Side::Client).note_in_body(),
            "client error in body"
        );
    }

    #[test]
    fn a_retry_is_decided_by_reuse_only_when_the_error_left_it_open() {
        let with = |retry| ProxyError::server(Kind::Closed, retry);
        for (reused, replayable) in [(false, false), (false, true), (true, false), (true, true)] {
            assert!(!with(Retry::Never).may_retry(reused, replayable));
            assert!(with(Retry::Safe).may_retry(reused, replayable));
            assert_eq!(
                with(Retry::IfReused).may_retry(reused, replayable),
                reused && replayable
            );
        }
    }
}
