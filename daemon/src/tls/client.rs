//! TLS to the servers: the rustls client configuration of one server's
//! `tls` table (the proxy's connections and its HTTPS health checks use the
//! same one), and the name a server is verified against.
//!
//! Verification is on unless `verify = "none"` says otherwise: the server's
//! chain must lead to a certificate of the CA file (`verify = "FILE"`, else
//! the system's bundle, Debian's `/etc/ssl/certs/ca-certificates.crt`) and
//! name the server: `sni` when given (sent as SNI too), else the server's
//! IP address (an IP subjectAltName; no SNI is sent for an address), as
//! nginx checks `proxy_ssl_name` and HAProxy `verifyhost`. With `"none"`
//! the handshake's signatures are still checked (the peer holds the key of
//! the certificate it sent), not who it is.
//!
//! Not here: the byte stream (`proxy::tls`), the `tls` table's syntax
//! (`config::upstream_tls`).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// The CA bundle used when a `tls` table names none (Debian's
/// ca-certificates).
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the CA certificates in this PEM file (with the SHA-256 of
    /// its content: a reload notices a changed file).
    Ca(PathBuf, [u8; 32]),
    /// Not at all (`verify = "none"`).
    None,
}

/// One server's TLS client side: what it was built from and the rustls
/// configuration (whose session cache lets connections resume).
pub struct ClientTls {
    pub verify: Verify,
    /// The name sent as SNI and checked in the certificate.
    pub sni: Option<String>,
    pub config: Arc<rustls::ClientConfig>,
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.verify == other.verify && self.sni == other.sni
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("verify", &self.verify)
            .field("sni", &self.sni)
            .finish()
    }
}

/// The trust anchors of a PEM file, with the digest of its content. Errors
/// name the file and say why.
pub fn load_ca(path: &Path) -> Result<(RootCertStore, [u8; 32]), String> {
    let name = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{name}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{name}: no certificate in it (a PEM \"BEGIN CERTIFICATE\" block)"
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        roots
            .add(c)
            .map_err(|e| format!("{name}: certificate {} is not usable: {e}", i + 1))?;
    }
    Ok((roots, Sha256::digest(&pem).into()))
}

impl ClientTls {
    /// The client configuration for `verify` (a CA file is read here;
    /// `None` verifies nothing) and `sni`.
    pub fn new(verify: Option<&Path>, sni: Option<String>) -> Result<ClientTls, String> {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(super::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let (verify, config) = match verify {
            Some(path) => {
                let (roots, digest) = load_ca(path)?;
                let config = builder.with_root_certificates(roots).with_no_client_auth();
                (Verify::Ca(path.to_path_buf(), digest), config)
            }
            None => {
                let v = NoVerify(super::provider().signature_verification_algorithms);
                let config = builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(v))
                    .with_no_client_auth();
                (Verify::None, config)
            }
        };
        Ok(ClientTls {
            verify,
            sni,
            config: Arc::new(config),
        })
    }

    /// "tls (verify ca.pem, sni www.example.org)", for `halo check`.
    pub fn describe(&self) -> String {
        let verify = match &self.verify {
            Verify::Ca(p, _) => p.display().to_string(),
            Verify::None => "none".to_string(),
        };
        let sni = self
            .sni
            .as_ref()
            .map_or(String::new(), |n| format!(", sni {n}"));
        format!("tls (verify {verify}{sni})")
    }

    /// The name a connection to `ip` presents and verifies: `sni`, else the
    /// address (rustls sends no SNI for an address).
    pub fn server_name(&self, ip: IpAddr) -> ServerName<'static> {
        self.sni
            .as_deref()
            .and_then(|n| ServerName::try_from(n.to_string()).ok())
            .unwrap_or(ServerName::IpAddress(ip.into()))
    }
}

/// `verify = "none"`: any certificate, but the handshake signatures are
/// still checked against it.
#[derive(Debug)]
struct NoVerify(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("halo-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn ca_file_errors_name_the_file_and_the_reason() {
        let e = load_ca(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.starts_with("cannot read /nonexistent/ca.pem:"), "{e}");
        let p = tmp("empty.pem", "not a pem file\n");
        let e = load_ca(&p).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}: no certificate in it (a PEM \"BEGIN CERTIFICATE\" block)",
                p.display()
            )
        );
        let p = tmp(
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let e = load_ca(&p).unwrap_err();
        assert!(e.contains("certificate 1 is not usable"), "{e}");
    }

    #[test]
    fn the_name_checked_is_sni_else_the_address() {
        let t = ClientTls::new(None, None).unwrap();
        let ip: IpAddr = "192.0.2.21".parse().unwrap();
        assert_eq!(t.server_name(ip), ServerName::IpAddress(ip.into()));
        let t = ClientTls::new(None, Some("api.example.org".into())).unwrap();
        assert_eq!(
            t.server_name(ip),
            ServerName::try_from("api.example.org").unwrap()
        );
        assert_eq!(t.verify, Verify::None);
    }
}
