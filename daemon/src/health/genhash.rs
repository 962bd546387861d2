//! `halo genhash URL`: fetch a page once and print the digest of its body,
//! as keepalived's `genhash` does, to fill in `expect_body_digest`.
//!
//! URL parsing is a pure function; the fetch is `probe::http_fetch`, the
//! same code the health checks run, so the digest printed is the digest a
//! check will compute. Only plain `http://` is supported.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::probe::{self, HttpRequest, HttpResponse};
use super::response;
use crate::config::DigestAlg;

/// A parsed `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address as written (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// `host[:port]` as it goes in the Host header.
    pub authority: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

pub fn parse_url(url: &str) -> Result<HttpUrl, UrlError> {
    let bad = |why: &str| Err(UrlError(format!("{url:?}: {why}")));
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("not a URL; expected http://host[:port]/path");
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return bad(&format!(
            "scheme {scheme:?} is not supported; only http:// (health checks speak plain HTTP)"
        ));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = match path.split_once('#') {
        Some((p, _)) => p,
        None => path,
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return bad("the path contains spaces or control characters");
    }
    if authority.contains('@') {
        return bad("user information in URLs is not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((ip, after)) = v6.split_once(']') else {
            return bad("unclosed '[' in the host");
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad("junk after ']'"),
            },
        };
        (ip.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return bad("no host");
    }
    if host.contains(':') && !authority.starts_with('[') {
        return bad("IPv6 addresses must be in brackets: http://[2001:db8::1]:80/");
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return bad(&format!("invalid port {p:?}")),
        },
    };
    Ok(HttpUrl {
        host,
        port,
        path,
        authority: authority.to_string(),
    })
}

/// What `halo genhash` found.
#[derive(Debug, Clone)]
pub struct GenHash {
    pub addr: SocketAddr,
    pub alg: DigestAlg,
    pub response: HttpResponse,
}

impl GenHash {
    /// The lines `halo genhash` prints; the last one can be pasted into a
    /// `[proxy.NAME.health]` table.
    pub fn report(&self) -> String {
        let alg = response::alg_name(&self.alg);
        let digest = self.response.digest.as_deref().unwrap_or("");
        format!(
            "address: {}\nstatus: {}\nbytes: {}\n{alg}: {digest}\nexpect_body_digest = \"{alg}:{digest}\"\n",
            self.addr,
            self.response.status_line(),
            self.response.body_len.unwrap_or(0),
        )
    }
}

/// Resolve, fetch once and hash. `host` overrides the Host header
/// (keepalived genhash's `--virtualhost`).
pub async fn genhash(
    url: &HttpUrl,
    alg: DigestAlg,
    host: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<GenHash> {
    let addr = match url.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, url.port),
        Err(_) => tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", url.host))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {}: no address", url.host))?,
    };
    let req = HttpRequest {
        method: "GET",
        path: &url.path,
        host: host.unwrap_or(&url.authority),
        body_only_if: None,
    };
    let response = probe::http_fetch(addr, None, &req, Some(&alg), timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    Ok(GenHash {
        addr,
        alg,
        response,
    })
}

/// The whole subcommand on a runtime of its own.
pub fn run(
    url: &str,
    alg: DigestAlg,
    host: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<GenHash> {
    let url = parse_url(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(genhash(&url, alg, host, timeout))
}

/// `halo genhash`: print the report on stdout, or one error line on stderr
/// and exit status 1.
pub fn cli(
    url: &str,
    sha256: bool,
    host: Option<&str>,
    timeout_secs: f64,
) -> std::process::ExitCode {
    let timeout = match Duration::try_from_secs_f64(timeout_secs) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            eprintln!("halo genhash: --timeout must be a positive number of seconds");
            return std::process::ExitCode::from(2);
        }
    };
    let alg = if sha256 {
        DigestAlg::Sha256
    } else {
        DigestAlg::Md5
    };
    match run(url, alg, host, timeout) {
        Ok(g) => {
            print!("{}", g.report());
            if !(200..300).contains(&g.response.status) {
                eprintln!(
                    "halo genhash: warning: status {} is not 2xx; is this the page to check?",
                    g.response.status_line()
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("halo genhash: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> HttpUrl {
        parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn urls() {
        assert_eq!(
            ok("http://192.0.2.21:8080/health?x=1#frag"),
            HttpUrl {
                host: "192.0.2.21".into(),
                port: 8080,
                path: "/health?x=1".into(),
                authority: "192.0.2.21:8080".into()
            }
        );
        let u = ok("http://web1");
        assert_eq!(
            (u.port, u.path.as_str(), u.authority.as_str()),
            (80, "/", "web1")
        );
        let u = ok("HTTP://[2001:db8::21]/index.html");
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::21", 80));
        assert_eq!(u.authority, "[2001:db8::21]");
        let u = ok("http://[2001:db8::21]:81");
        assert_eq!((u.port, u.path.as_str()), (81, "/"));
        assert_eq!(ok("http://a?q").path, "/?q");
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("https://192.0.2.1/", "only http://"),
            ("192.0.2.1/health", "not a URL"),
            ("http:///health", "no host"),
            ("http://192.0.2.1:0/", "invalid port"),
            ("http://192.0.2.1:99999/", "invalid port"),
            ("http://192.0.2.1:x/", "invalid port"),
            ("http://[2001:db8::1/", "unclosed"),
            ("http://[nope]/", "invalid IPv6"),
            ("http://2001:db8::1/", "brackets"),
            ("http://u:p@192.0.2.1/", "user information"),
            ("http://192.0.2.1/a b", "spaces"),
        ] {
            let e = parse_url(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
