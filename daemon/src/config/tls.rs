//! A proxy service's `bind` entries: `"ip:port"`, or a table with a `tls`
//! subtable (certificates, read and checked here so that `halo check` and
//! a reload refuse a bad one, naming the file and the reason) or
//! `redirect_https`; and the service's `hsts` value.
//!
//! ```toml
//! bind = [
//!   { address = "0.0.0.0:80", redirect_https = true },
//!   { address = "0.0.0.0:443", tls = { certificates = [
//!       "/etc/halo/tls/example.pem",                                  # chain + key
//!       { cert = "/etc/halo/tls/api.crt", key = "/etc/halo/tls/api.key" },
//!   ], h2 = true } },
//! ]
//! hsts = "max-age=63072000"
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::diag::Diag;
use super::raw::{Field, Opt};
use super::validate::{required, required_list, take, Span};
use super::{BindOpts, ProxyMode};
use crate::tls::{CertFiles, ServerTls};

/// A string, or a table of `T`'s keys.
#[derive(Debug)]
pub enum StrOr<T> {
    Str(String),
    Table(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a table")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StrOr<T>, E> {
                Ok(StrOr::Str(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrOr<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(StrOr::Table)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "a table such as { address = \"0.0.0.0:443\", tls = { certificates = [\"/etc/halo/tls/site.pem\"] } }"
)]
pub struct RawBind {
    pub address: Opt<String>,
    pub tls: Opt<RawTls>,
    pub redirect_https: Opt<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table such as { certificates = [\"/etc/halo/tls/site.pem\"] }")]
pub struct RawTls {
    pub certificates: Opt<Vec<Field<StrOr<RawCert>>>>,
    /// Offer HTTP/2 by ALPN ("h2", then "http/1.1").
    pub h2: Opt<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table such as { cert = \"site.crt\", key = \"site.key\" }")]
pub struct RawCert {
    pub cert: Opt<String>,
    pub key: Opt<String>,
}

/// A certificate with less time left than this is a `halo check` warning.
const EXPIRY_WARNING: i64 = 14 * 86400;

/// One validated bind entry.
pub struct Bind {
    pub at: Span,
    pub address: SocketAddr,
    pub opts: BindOpts,
}

/// `bind`: each entry's address and what it speaks. `address` checks and
/// parses one "ip:port" (the plain form's rules).
pub fn binds(
    d: &mut Diag,
    f: Opt<Vec<Field<StrOr<RawBind>>>>,
    table: &Span,
    here: &str,
    mode: ProxyMode,
    address: &mut dyn FnMut(&mut Diag, &Span, &str) -> Option<SocketAddr>,
) -> Vec<Bind> {
    let Some((at, items)) = required_list(d, "bind", f, table, here) else {
        return Vec::new();
    };
    if items.is_empty() {
        d.error(&at, "`bind` is empty: give at least one \"ip:port\"");
    }
    let base = Path::new(d.file()).parent().map(Path::to_path_buf);
    let mut out = Vec::new();
    for (at, item) in items {
        let b = match item {
            StrOr::Str(text) => address(d, &at, &text).map(|a| (a, BindOpts::default())),
            StrOr::Table(t) => {
                let addr = required(d, "address", t.address, &at, "a bind entry")
                    .and_then(|(aat, text)| address(d, &aat, &text));
                let redirect = take(d, "redirect_https", t.redirect_https);
                let tls = take(d, "tls", t.tls)
                    .and_then(|(tat, raw)| server_tls(d, &tat, raw, mode, base.as_deref()));
                let redirect_https = match redirect {
                    Some((rat, true)) if mode == ProxyMode::Tcp => {
                        d.error(&rat, "`redirect_https` only applies to mode = \"http\"");
                        false
                    }
                    Some((rat, true)) if tls.is_some() => {
                        d.error(
                            &rat,
                            "`redirect_https` is for a plain bind: this one already has `tls`",
                        );
                        false
                    }
                    Some((_, v)) => v,
                    None => false,
                };
                addr.map(|a| {
                    (
                        a,
                        BindOpts {
                            tls: tls.map(Arc::new),
                            redirect_https,
                        },
                    )
                })
            }
        };
        if let Some((address, opts)) = b {
            out.push(Bind { at, address, opts });
        }
    }
    out
}

fn server_tls(
    d: &mut Diag,
    at: &Span,
    raw: RawTls,
    mode: ProxyMode,
    base: Option<&Path>,
) -> Option<ServerTls> {
    let h2 = match take(d, "h2", raw.h2) {
        Some((hat, true)) if mode == ProxyMode::Tcp => {
            d.error(&hat, "`h2` only applies to mode = \"http\"");
            false
        }
        Some((_, v)) => v,
        None => false,
    };
    let (lat, items) = required_list(d, "certificates", raw.certificates, at, "`tls`")?;
    if items.is_empty() {
        d.error(
            &lat,
            "`certificates` is empty: give at least one PEM file (the first is the default)",
        );
        return None;
    }
    // The one wall-clock read of validation: a certificate that has expired
    // is an error of `halo check` and of a reload, today.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs() as i64);
    let mut loaded = Vec::new();
    let mut ok = true;
    for (cat, item) in items {
        let files = match item {
            StrOr::Str(p) => {
                path(d, &cat, "certificates", &p, base).map(|cert| CertFiles { cert, key: None })
            }
            StrOr::Table(t) => {
                let cert = required(d, "cert", t.cert, &cat, "a certificate entry")
                    .and_then(|(pat, p)| path(d, &pat, "cert", &p, base));
                let key = take(d, "key", t.key).map(|(kat, k)| path(d, &kat, "key", &k, base));
                match (cert, key) {
                    (Some(cert), None) => Some(CertFiles { cert, key: None }),
                    (Some(cert), Some(Some(key))) => Some(CertFiles {
                        cert,
                        key: Some(key),
                    }),
                    _ => None,
                }
            }
        };
        let Some(files) = files else {
            ok = false;
            continue;
        };
        match crate::tls::load(&files, now) {
            Ok(l) => {
                // Renewal (certbot: 30 days before) has failed by then.
                if l.info.not_after - now < EXPIRY_WARNING {
                    let msg = format!(
                        "{}: certificate expires on {}",
                        files.cert.display(),
                        crate::tls::date(l.info.not_after)
                    );
                    d.warn(&cat, msg);
                }
                loaded.push((files, l))
            }
            Err(e) => {
                d.error(&cat, e);
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let alpn: &[&[u8]] = match mode {
        // h2 first: a client offering both gets HTTP/2 (RFC 7301 3.2
        // lets the server choose; this is the order it prefers).
        ProxyMode::Http if h2 => &[b"h2", b"http/1.1"],
        ProxyMode::Http => &[b"http/1.1"],
        ProxyMode::Tcp => &[],
    };
    match ServerTls::new(loaded, alpn) {
        Ok(t) => Some(t),
        Err(e) => {
            d.error(at, format!("`tls`: {e}"));
            None
        }
    }
}

/// A file name; relative ones are relative to the config file's directory.
fn path(d: &mut Diag, at: &Span, key: &str, p: &str, base: Option<&Path>) -> Option<PathBuf> {
    if p.is_empty() || p.contains('\0') {
        d.error(at, format!("`{key}` must be a non-empty path"));
        return None;
    }
    let p = PathBuf::from(p);
    Some(match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    })
}

/// `hsts = "max-age=..."`: the Strict-Transport-Security value added to
/// responses to clients that came over TLS (RFC 6797 6.1).
pub fn hsts(d: &mut Diag, f: Opt<String>, binds: &[Bind], mode: ProxyMode) -> Option<String> {
    let (at, v) = take(d, "hsts", f)?;
    if mode == ProxyMode::Tcp {
        d.error(&at, "`hsts` only applies to mode = \"http\"");
        return None;
    }
    let max_age = v
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("max-age="));
    if !max_age.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || !v.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
    {
        d.error(
            &at,
            format!("`hsts` \"{v}\" must be a Strict-Transport-Security value such as \"max-age=63072000; includeSubDomains\""),
        );
        return None;
    }
    if !binds.iter().any(|b| b.opts.tls.is_some()) {
        d.error(
            &at,
            "`hsts` is sent only over TLS, and no `bind` of this service has `tls`",
        );
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    fn errors(text: &str) -> String {
        parse_str("/nonexistent/t.toml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    const SERVERS: &str = "servers = [{ name = \"a\", address = \"127.0.0.1:9\" }]\n";

    #[test]
    fn plain_string_and_table_forms() {
        let text = format!(
            "[proxy.web]\nbind = [\"127.0.0.1:8080\", {{ address = \"127.0.0.1:8081\", redirect_https = true }}]\n{SERVERS}"
        );
        let cfg = parse_str("t.toml", &text).unwrap();
        let p = &cfg.proxy[0];
        assert_eq!(p.bind.len(), 2);
        assert!(!p.bind_opts[0].redirect_https);
        assert!(p.bind_opts[1].redirect_https);
        assert!(p.bind_opts.iter().all(|o| o.tls.is_none()));
    }

    #[test]
    fn missing_certificate_file_is_located_and_named() {
        let text = format!(
            "[proxy.web]\nbind = [{{ address = \"127.0.0.1:8443\", tls = {{ certificates = [\"site.pem\"] }} }}]\n{SERVERS}"
        );
        let e = errors(&text);
        assert!(
            e.starts_with("/nonexistent/t.toml:2:63: cannot read /nonexistent/site.pem:"),
            "{e}"
        );
    }

    #[test]
    fn bad_keys_in_bind_tables() {
        let text = format!(
            "[proxy.web]\nbind = [{{ address = \"127.0.0.1:80\", tsl = {{}} }}, {{ address = \"127.0.0.1:81\", tls = {{ certificates = [] }} }}]\n{SERVERS}"
        );
        let e = errors(&text);
        assert!(e.contains("unknown key `tsl` in a bind entry"), "{e}");
        assert!(e.contains("`certificates` is empty"), "{e}");
    }

    #[test]
    fn h2_is_for_http_binds() {
        let text = format!(
            "[proxy.web]\nmode = \"tcp\"\nbind = [{{ address = \"127.0.0.1:8443\", tls = {{ certificates = [\"site.pem\"], h2 = true }} }}]\n{SERVERS}"
        );
        let e = errors(&text);
        assert!(
            e.contains("t.toml:3:81: `h2` only applies to mode = \"http\""),
            "{e}"
        );
        let text = format!(
            "[proxy.web]\nbind = [{{ address = \"127.0.0.1:8443\", tls = {{ certificates = [\"site.pem\"], h2 = \"yes\" }} }}]\n{SERVERS}"
        );
        assert!(errors(&text).contains("t.toml:2:"), "{}", errors(&text));
    }

    #[test]
    fn redirect_and_hsts_rules() {
        let text = format!(
            "[proxy.web]\nmode = \"tcp\"\nbind = [{{ address = \"127.0.0.1:80\", redirect_https = true }}]\nhsts = \"max-age=1\"\n{SERVERS}"
        );
        let e = errors(&text);
        assert!(
            e.contains("`redirect_https` only applies to mode = \"http\""),
            "{e}"
        );
        assert!(e.contains("`hsts` only applies to mode = \"http\""), "{e}");
        let text = format!("[proxy.web]\nbind = [\"127.0.0.1:80\"]\nhsts = \"1 year\"\n{SERVERS}");
        assert!(errors(&text).contains("must be a Strict-Transport-Security value"));
        let text =
            format!("[proxy.web]\nbind = [\"127.0.0.1:80\"]\nhsts = \"max-age=5\"\n{SERVERS}");
        assert!(errors(&text).contains("no `bind` of this service has `tls`"));
    }
}
