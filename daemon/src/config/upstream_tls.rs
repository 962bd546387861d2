//! TLS to the servers: a server's `tls` table and a health check's `tls`
//! key. The CA file is read here, so `halo check` and a reload refuse an
//! unreadable one, one that is not PEM or one without certificates, at the
//! key's place; its digest makes a changed file a change of the config.
//!
//! ```toml
//! servers = [
//!   { name = "web1", address = "192.0.2.21:443",
//!     tls = { verify = "/etc/halo/tls/ca.pem", sni = "web1.example.org" } },
//! ]
//! [proxy.web.health]
//! tls = true        # the default when servers have `tls`; false: plain
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::diag::Diag;
use super::raw::Opt;
use super::validate::{take, Span};
use crate::tls::client::{ClientTls, SYSTEM_CA};

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "a table such as { verify = \"/etc/halo/tls/ca.pem\", sni = \"web1.example.org\" }"
)]
pub struct RawUpstreamTls {
    pub verify: Opt<String>,
    pub sni: Opt<String>,
}

/// `true`, `false`, or a table of `T`'s keys.
#[derive(Debug)]
pub enum BoolOr<T> {
    Bool(bool),
    Table(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for BoolOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = BoolOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a table such as { verify = \"/etc/halo/tls/ca.pem\" }")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<BoolOr<T>, E> {
                Ok(BoolOr::Bool(b))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BoolOr<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(BoolOr::Table)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// How a health check speaks to the servers.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum HealthTls {
    /// As each server's traffic does: TLS for servers with `tls` (the
    /// default, HAProxy's checks of an `ssl` server).
    #[default]
    Inherit,
    /// Plain TCP/HTTP even to TLS servers (`tls = false`).
    Plain,
    /// TLS to every server: with the server's `tls` where it has one, else
    /// with this (`tls = true`: verified against the system's CAs).
    On(Arc<ClientTls>),
    /// TLS to every server with this table's settings (`tls = { ... }`).
    Own(Arc<ClientTls>),
}

impl HealthTls {
    /// The TLS a check of a server whose traffic uses `server` speaks.
    pub fn for_server(&self, server: Option<&Arc<ClientTls>>) -> Option<Arc<ClientTls>> {
        match self {
            HealthTls::Inherit => server.cloned(),
            HealthTls::Plain => None,
            HealthTls::On(default) => Some(server.unwrap_or(default).clone()),
            HealthTls::Own(t) => Some(t.clone()),
        }
    }
}

/// A `tls` table: `verify` (a CA file, default the system's bundle, or
/// "none") and `sni`.
pub fn upstream_tls(d: &mut Diag, at: &Span, raw: RawUpstreamTls) -> Option<Arc<ClientTls>> {
    let base = Path::new(d.file()).parent().map(Path::to_path_buf);
    let sni = take(d, "sni", raw.sni).and_then(|(sat, name)| {
        let ok = rustls::pki_types::ServerName::try_from(name.as_str())
            .is_ok_and(|n| matches!(n, rustls::pki_types::ServerName::DnsName(_)));
        if !ok {
            d.error(
                &sat,
                format!("`sni` \"{name}\" is not a DNS name such as \"web1.example.org\""),
            );
            return None;
        }
        Some(name)
    });
    let (vat, verify) = match take(d, "verify", raw.verify) {
        Some((vat, v)) if v == "none" => {
            d.warn(
                &vat,
                "`verify = \"none\"`: the server's certificate is not checked, so anyone on the path can pose as the server",
            );
            (vat, None)
        }
        Some((vat, v)) if v.is_empty() || v.contains('\0') => {
            d.error(&vat, "`verify` must be a CA file or \"none\"");
            return None;
        }
        Some((vat, v)) => {
            let p = Path::new(&v);
            let p = match &base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.to_path_buf(),
            };
            (vat, Some(p))
        }
        None => (at.clone(), Some(SYSTEM_CA.into())),
    };
    match ClientTls::new(verify.as_deref(), sni) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            d.error(&vat, e);
            None
        }
    }
}

/// A health check's `tls` key.
pub fn health_tls(d: &mut Diag, f: Opt<BoolOr<RawUpstreamTls>>) -> HealthTls {
    match take(d, "tls", f) {
        None => HealthTls::Inherit,
        Some((_, BoolOr::Bool(false))) => HealthTls::Plain,
        Some((at, BoolOr::Bool(true))) => {
            let raw = RawUpstreamTls {
                verify: None,
                sni: None,
            };
            upstream_tls(d, &at, raw).map_or(HealthTls::Inherit, HealthTls::On)
        }
        Some((at, BoolOr::Table(raw))) => {
            upstream_tls(d, &at, raw).map_or(HealthTls::Inherit, HealthTls::Own)
        }
    }
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

    fn service(server_tls: &str) -> String {
        format!("[proxy.web]\nbind = [\"127.0.0.1:8080\"]\nservers = [{{ name = \"a\", address = \"127.0.0.1:9443\", tls = {server_tls} }}]\n")
    }

    #[test]
    fn unreadable_ca_file_is_located_and_named() {
        let e = errors(&service("{ verify = \"ca.pem\" }"));
        assert!(
            e.starts_with("/nonexistent/t.toml:3:71: cannot read /nonexistent/ca.pem:"),
            "{e}"
        );
    }

    #[test]
    fn verify_none_is_a_warning_and_sni_must_be_a_name() {
        let cfg = parse_str("t.toml", &service("{ verify = \"none\" }")).unwrap();
        let t = cfg.proxy[0].servers[0].tls.as_ref().unwrap();
        assert_eq!(t.verify, crate::tls::client::Verify::None);
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.to_string().contains("3:71: warning: `verify = \"none\"`")),
            "{:?}",
            cfg.warnings
        );
        assert!(
            crate::config::summary(&cfg).contains("a 127.0.0.1:9443 weight 1 tls (verify none)"),
            "{}",
            crate::config::summary(&cfg)
        );
        let e = errors(&service("{ verify = \"none\", sni = \"192.0.2.1\" }"));
        assert!(e.contains("`sni` \"192.0.2.1\" is not a DNS name"), "{e}");
        let e = errors(&service("{ verfy = \"none\" }"));
        assert!(e.contains("unknown key `verfy` in a server's `tls`"), "{e}");
    }

    #[test]
    fn health_checks_inherit_the_servers_tls_unless_told() {
        use super::HealthTls;
        let text = format!(
            "{}[proxy.web.health]\ntype = \"tcp\"\n",
            service("{ verify = \"none\", sni = \"a.example\" }")
        );
        let cfg = parse_str("t.toml", &text).unwrap();
        let svc = &cfg.proxy[0];
        let hc = svc.health.as_ref().unwrap();
        assert_eq!(hc.tls, HealthTls::Inherit);
        let t = hc.tls.for_server(svc.servers[0].tls.as_ref()).unwrap();
        assert_eq!(t.sni.as_deref(), Some("a.example"));

        let cfg = parse_str("t.toml", &format!("{text}tls = false\n")).unwrap();
        let svc = &cfg.proxy[0];
        let hc = svc.health.as_ref().unwrap();
        assert!(hc.tls.for_server(svc.servers[0].tls.as_ref()).is_none());

        let cfg = parse_str(
            "t.toml",
            &format!("{text}tls = {{ verify = \"none\", sni = \"check.example\" }}\n"),
        )
        .unwrap();
        let svc = &cfg.proxy[0];
        let hc = svc.health.as_ref().unwrap();
        let t = hc.tls.for_server(svc.servers[0].tls.as_ref()).unwrap();
        assert_eq!(t.sni.as_deref(), Some("check.example"));

        let e = errors(&format!("{text}tls = \"yes\"\n"));
        assert!(e.contains("`tls`:"), "{e}");
    }
}
