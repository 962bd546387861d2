//! TLS material for the proxy's binds: certificates and keys read from PEM
//! files and checked (each problem names the file and the reason, for
//! `halo check` and for a reload that must keep the old certificates), the
//! SNI table that picks a certificate for a client, and the rustls server
//! configuration: TLS 1.3 and 1.2 only, the ring provider's suites (ECDHE
//! key exchange and AEAD ciphers only: no RSA key exchange, no CBC).
//!
//! The decisions are pure (`SniTable::pick`, `check_validity`, `x509`);
//! `load` reads files. The byte stream itself is `proxy::tls`.

pub mod client;
pub mod x509;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// A certificate file (PEM: the certificate, then its chain) and the file
/// with its private key, when that is not in the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
}

/// One certificate, read and checked.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub info: x509::CertInfo,
    /// SHA-256 over the files' contents: a reload notices a renewed
    /// certificate even when the config text is unchanged.
    pub digest: [u8; 32],
}

/// ring: X25519 and the NIST curves, no post-quantum key exchange (rustls
/// has that only with aws-lc-rs, which the 4 MiB aarch64 binary cannot
/// afford), hence the deprecation rustls puts on this provider.
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Read a certificate chain and its key, and check that the key matches
/// the certificate and that the certificate is valid at `now` (seconds
/// since the epoch). Errors say which file and why.
pub fn load(files: &CertFiles, now: i64) -> Result<Loaded, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let cert_pem = read(&files.cert)?;
    let cert_name = files.cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert_name}: bad PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "{cert_name}: no certificate in it (a PEM \"BEGIN CERTIFICATE\" block)"
        ));
    };
    let info = x509::parse(leaf).map_err(|e| format!("{cert_name}: bad certificate: {e}"))?;
    check_validity(&info, now).map_err(|e| format!("{cert_name}: {e}"))?;

    let (key_pem, key_name) = match &files.key {
        Some(k) => (read(k)?, k.display().to_string()),
        None => (cert_pem.clone(), cert_name.to_string()),
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound if files.key.is_none() => format!(
            "{key_name}: no private key in it (add it to the file, or give `key = \"FILE\"`)"
        ),
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("{key_name}: no private key in it")
        }
        e => format!("{key_name}: bad PEM: {e}"),
    })?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("the private key in {key_name} does not match the certificate in {cert_name}")
        }
        e => format!("{key_name}: unusable private key: {e}"),
    })?;
    let mut h = Sha256::new();
    h.update(&cert_pem);
    h.update(&key_pem);
    Ok(Loaded {
        key: Arc::new(key),
        info,
        digest: h.finalize().into(),
    })
}

/// A certificate outside its validity period is an error, not a warning:
/// every client would refuse it.
pub fn check_validity(info: &x509::CertInfo, now: i64) -> Result<(), String> {
    if now > info.not_after {
        return Err(format!("certificate expired on {}", date(info.not_after)));
    }
    if now < info.not_before {
        return Err(format!(
            "certificate not valid before {}",
            date(info.not_before)
        ));
    }
    Ok(())
}

/// "2026-12-06 17:48:38 UTC"
pub fn date(t: i64) -> String {
    let days = t.div_euclid(86400);
    let s = t.rem_euclid(86400);
    // H. Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Which certificate answers which server name: exact names first, then
/// wildcards (`*.example.org` covers one label: `www.example.org`, not
/// `example.org` nor `a.b.example.org`, RFC 6125 6.4.3), else the first
/// certificate, the default (also for clients that send no SNI).
#[derive(Debug, Default, Clone)]
pub struct SniTable {
    exact: HashMap<String, usize>,
    /// "example.org" for "*.example.org".
    wildcard: HashMap<String, usize>,
}

impl SniTable {
    /// `names[i]` are certificate i's names; the first certificate that
    /// lists a name gets it.
    pub fn new(names: &[Vec<String>]) -> SniTable {
        let mut t = SniTable::default();
        for (i, list) in names.iter().enumerate() {
            for n in list {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(parent) => t.wildcard.entry(parent.to_string()).or_insert(i),
                    None => t.exact.entry(n).or_insert(i),
                };
            }
        }
        t
    }

    pub fn pick(&self, sni: Option<&str>) -> usize {
        let Some(name) = sni else {
            return 0;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .copied()
            .unwrap_or(0)
    }
}

/// The rustls side of [`SniTable`].
#[derive(Debug)]
struct Resolver {
    table: SniTable,
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.keys.get(self.table.pick(hello.server_name())).cloned()
    }
}

/// A TLS bind's server side: the files it was built from (with their
/// digests, so that equal means "same certificates") and the rustls
/// configuration new connections use.
pub struct ServerTls {
    pub files: Vec<(CertFiles, [u8; 32])>,
    pub config: Arc<rustls::ServerConfig>,
    /// Each certificate's names, for `halo check`'s summary.
    names: Vec<Vec<String>>,
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        // ALPN too: a reload that turns `h2` on or off is a change.
        self.files == other.files && self.config.alpn_protocols == other.config.alpn_protocols
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.files.iter().map(|(c, _)| &c.cert))
            .finish()
    }
}

impl ServerTls {
    /// The server configuration for these certificates (the first is the
    /// default). `alpn` is what the bind speaks over TLS ("http/1.1"), or
    /// nothing for a TCP relay.
    pub fn new(loaded: Vec<(CertFiles, Loaded)>, alpn: &[&[u8]]) -> Result<ServerTls, String> {
        let names: Vec<Vec<String>> = loaded.iter().map(|(_, l)| l.info.names.clone()).collect();
        let resolver = Resolver {
            table: SniTable::new(&names),
            keys: loaded.iter().map(|(_, l)| l.key.clone()).collect(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(ServerTls {
            files: loaded.into_iter().map(|(f, l)| (f, l.digest)).collect(),
            config: Arc::new(config),
            names,
        })
    }

    /// "site.pem=www.example.org,*.example.org" per certificate.
    pub fn names(&self) -> Vec<String> {
        self.files
            .iter()
            .zip(&self.names)
            .map(|((f, _), n)| {
                let file = f.cert.file_name().unwrap_or_default().to_string_lossy();
                format!("{file}={}", n.join(","))
            })
            .collect()
    }
}

/// A self-signed certificate and key for www.example.org valid until 2126
/// (`openssl req -x509 -newkey ec ... -days 36500`), for tests.
#[cfg(test)]
pub(crate) const TEST_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUXyFMFLqVlOUMFZ+Z0wq7fmDUcEkwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPd3d3LmV4YW1wbGUub3JnMCAXDTI2MTIwNTE4MjAyM1oYDzIx
MjYxMTExMTgyMDIzWjAaMRgwFgYDVQQDDA93d3cuZXhhbXBsZS5vcmcwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAASO7mz+aEI5FMvjzSc/4GILa+/BSFR3tjh+jvHx
XtCDqDVDAYXwnaP1stl1tN2XLb+PLc/UeFvU/Ga58T/jID4vo1MwUTAdBgNVHQ4E
FgQUkDyAONgxnPBg74yGdnWFNRbUGbwwHwYDVR0jBBgwFoAUkDyAONgxnPBg74yG
dnWFNRbUGbwwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiA9Oi4J
j/+XiiqQCMaQg1tUdkSSV2Kcvdgcwp4fHFpf6wIhALCT0GrBcFjz6+/kxGW32Iez
ng2dEAWDk2T0EwcUgSKl
-----END CERTIFICATE-----
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgbDqypchLHm9j3e24
yvVRLtGdfXPWKbWD1uHE4l+/9yKhRANCAASO7mz+aEI5FMvjzSc/4GILa+/BSFR3
tjh+jvHxXtCDqDVDAYXwnaP1stl1tN2XLb+PLc/UeFvU/Ga58T/jID4v
-----END PRIVATE KEY-----
";

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn sni_exact_then_wildcard_then_default() {
        let t = SniTable::new(&names(&[
            &["default.example"],
            &["www.example.org", "*.example.net"],
            &["api.example.net", "*.example.org"],
        ]));
        assert_eq!(t.pick(None), 0);
        assert_eq!(t.pick(Some("unknown.example")), 0);
        assert_eq!(t.pick(Some("www.example.org")), 1);
        assert_eq!(t.pick(Some("WWW.Example.ORG.")), 1);
        // An exact name beats a wildcard listed earlier.
        assert_eq!(t.pick(Some("api.example.net")), 2);
        assert_eq!(t.pick(Some("x.example.net")), 1);
        assert_eq!(t.pick(Some("mail.example.org")), 2);
        // A wildcard covers exactly one label.
        assert_eq!(t.pick(Some("example.net")), 0);
        assert_eq!(t.pick(Some("a.b.example.net")), 0);
    }

    #[test]
    fn first_certificate_listing_a_name_wins() {
        let t = SniTable::new(&names(&[&["a.example"], &["a.example"]]));
        assert_eq!(t.pick(Some("a.example")), 0);
    }

    #[test]
    fn validity_window() {
        let info = x509::CertInfo {
            not_before: 1796492918,
            not_after: 1796579318,
            names: vec![],
        };
        assert!(check_validity(&info, 1796500000).is_ok());
        let e = check_validity(&info, 1796579319).unwrap_err();
        assert_eq!(e, "certificate expired on 2026-12-06 17:48:38 UTC");
        let e = check_validity(&info, 1796492917).unwrap_err();
        assert_eq!(e, "certificate not valid before 2026-12-05 17:48:38 UTC");
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(951825600), "2000-02-29 12:00:00 UTC");
    }
}
