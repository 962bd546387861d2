//! The few fields of an X.509 certificate halo reads itself: the validity
//! period (`halo check` refuses an expired or not yet valid certificate)
//! and the DNS names it is for (SNI picks a certificate by them).
//!
//! A pure reader over DER bytes (RFC 5280 4.1), no allocation but the
//! names. It does not verify anything: signatures and chains are the
//! client's business, and rustls checks that the key matches.
//!
//! ```text
//! Certificate  ::=  SEQUENCE  { tbsCertificate, signatureAlgorithm, signature }
//! TBSCertificate  ::=  SEQUENCE  {
//!      version         [0]  EXPLICIT Version DEFAULT v1,
//!      serialNumber         INTEGER,
//!      signature            AlgorithmIdentifier,
//!      issuer               Name,
//!      validity             SEQUENCE { notBefore Time, notAfter Time },
//!      subject              Name,
//!      subjectPublicKeyInfo SEQUENCE,
//!      issuerUniqueID  [1]  IMPLICIT OPTIONAL,
//!      subjectUniqueID [2]  IMPLICIT OPTIONAL,
//!      extensions      [3]  EXPLICIT SEQUENCE OF Extension OPTIONAL }
//! Extension  ::=  SEQUENCE  { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
//! ```

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// id-at-commonName, 2.5.4.3
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// GeneralName dNSName: [2] IMPLICIT IA5String
const DNS_NAME: u8 = 0x82;

/// What halo needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The subjectAltName DNS names, lower case; the subject's common name
    /// when there are none (as HAProxy does for SNI).
    pub names: Vec<String>,
}

/// One TLV: (tag, contents, what follows).
type Tlv<'a> = (u8, &'a [u8], &'a [u8]);

fn tlv(b: &[u8]) -> Result<Tlv<'_>, &'static str> {
    let short = "truncated DER";
    let (&tag, rest) = b.split_first().ok_or(short)?;
    let (&first, rest) = rest.split_first().ok_or(short)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad DER length");
        }
        let len = rest[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(short);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The next TLV, which must have tag `want`.
fn expect<'a>(
    b: &'a [u8],
    want: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), &'static str> {
    match tlv(b)? {
        (t, c, r) if t == want => Ok((c, r)),
        _ => Err(what),
    }
}

/// Read a DER certificate.
pub fn parse(der: &[u8]) -> Result<CertInfo, &'static str> {
    let (cert, _) = expect(der, SEQUENCE, "not a certificate")?;
    let (tbs, _) = expect(cert, SEQUENCE, "not a certificate")?;
    let mut rest = tbs;
    if let (0xa0, _, r) = tlv(rest)? {
        rest = r; // version
    }
    let (_, r) = expect(rest, 0x02, "no serial number")?;
    let (_, r) = expect(r, SEQUENCE, "no signature algorithm")?;
    let (_, r) = expect(r, SEQUENCE, "no issuer")?;
    let (validity, r) = expect(r, SEQUENCE, "no validity")?;
    let (subject, r) = expect(r, SEQUENCE, "no subject")?;
    let (_, mut rest) = expect(r, SEQUENCE, "no public key")?;

    let (t1, c1, vr) = tlv(validity)?;
    let (t2, c2, _) = tlv(vr)?;
    let not_before = time(t1, c1)?;
    let not_after = time(t2, c2)?;

    let mut names = Vec::new();
    while !rest.is_empty() {
        let (tag, c, r) = tlv(rest)?;
        rest = r;
        if tag == 0xa3 {
            let (exts, _) = expect(c, SEQUENCE, "bad extensions")?;
            san(exts, &mut names)?;
        }
    }
    if names.is_empty() {
        if let Some(cn) = common_name(subject)? {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok(CertInfo {
        not_before,
        not_after,
        names,
    })
}

/// The DNS names of the subjectAltName extension, if there is one.
fn san(mut exts: &[u8], names: &mut Vec<String>) -> Result<(), &'static str> {
    while !exts.is_empty() {
        let (ext, r) = expect(exts, SEQUENCE, "bad extension")?;
        exts = r;
        let (oid, mut v) = expect(ext, OID, "bad extension")?;
        if oid != OID_SAN {
            continue;
        }
        if let (0x01, _, r) = tlv(v)? {
            v = r; // critical
        }
        let (value, _) = expect(v, 0x04, "bad subjectAltName")?;
        let (mut general, _) = expect(value, SEQUENCE, "bad subjectAltName")?;
        while !general.is_empty() {
            let (tag, c, r) = tlv(general)?;
            general = r;
            if tag == DNS_NAME {
                let name = std::str::from_utf8(c).map_err(|_| "bad DNS name")?;
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    Ok(())
}

/// The subject's (last) common name.
fn common_name(mut name: &[u8]) -> Result<Option<&str>, &'static str> {
    let mut cn = None;
    while !name.is_empty() {
        let (rdn, r) = expect(name, SET, "bad name")?;
        name = r;
        let mut atvs = rdn;
        while !atvs.is_empty() {
            let (atv, r) = expect(atvs, SEQUENCE, "bad name")?;
            atvs = r;
            let (oid, v) = expect(atv, OID, "bad name")?;
            if oid == OID_CN {
                let (_, value, _) = tlv(v)?;
                cn = std::str::from_utf8(value).ok();
            }
        }
    }
    Ok(cn)
}

/// UTCTime (YYMMDDHHMMSSZ, 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ),
/// the two forms RFC 5280 4.1.2.5 allows, to seconds since the epoch.
fn time(tag: u8, c: &[u8]) -> Result<i64, &'static str> {
    let bad = "bad time in validity";
    let digits = match (tag, c.split_last()) {
        (UTC_TIME | GENERALIZED_TIME, Some((b'Z', d))) => d,
        _ => return Err(bad),
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let num = |s: &[u8]| s.iter().fold(0i64, |a, &d| a * 10 + (d - b'0') as i64);
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(&digits[..2]);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (num(&digits[..4]), &digits[4..]),
        _ => return Err(bad),
    };
    let (mo, d, h, mi, s) = (
        num(&rest[0..2]),
        num(&rest[2..4]),
        num(&rest[4..6]),
        num(&rest[6..8]),
        num(&rest[8..10]),
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad);
    }
    Ok(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    // Made with `openssl req -x509 -newkey ec ... -subj "/O=halo test/CN=www.example.org"
    // -addext "subjectAltName=DNS:www.example.org,DNS:*.example.net,IP:192.0.2.1"`;
    // `openssl x509 -noout -dates` says Dec 5 17:48:38 2026 to Dec 6 17:48:38 2026 GMT.
    const WITH_SAN: &str = "-----BEGIN CERTIFICATE-----
MIIB0DCCAXegAwIBAgIBBzAKBggqhkjOPQQDAjAuMRIwEAYDVQQKDAloYWxvIHRl
c3QxGDAWBgNVBAMMD3d3dy5leGFtcGxlLm9yZzAeFw0yNjEyMDUxNzQ4MzhaFw0y
NjEyMDYxNzQ4MzhaMC4xEjAQBgNVBAoMCWhhbG8gdGVzdDEYMBYGA1UEAwwPd3d3
LmV4YW1wbGUub3JnMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4hCTkk7YgJDV
LynH5OB+FJDklXgLtRHP4+k/5HmO7k5HC7Y748dGVpnNdSfSN4eqem51w81CUUtJ
1pf5u6tcBKOBhTCBgjAdBgNVHQ4EFgQUo3lNDhXNzuQSiqfYvQT9lKcRjZgwHwYD
VR0jBBgwFoAUo3lNDhXNzuQSiqfYvQT9lKcRjZgwDwYDVR0TAQH/BAUwAwEB/zAv
BgNVHREEKDAmgg93d3cuZXhhbXBsZS5vcmeCDSouZXhhbXBsZS5uZXSHBMAAAgEw
CgYIKoZIzj0EAwIDRwAwRAIgS4mVHAjmXOU5BO1KSUJS7F8RTrpeRyO/Cz2WliKp
I2ECIDeY3rEAuaO6rEnSRxJUsRWAyKK0vzenlXV4RkGweimz
-----END CERTIFICATE-----";

    // `-subj "/CN=Only.Example.COM" -days 10000`: no extension list with a
    // SAN, and a notAfter in 2054, which DER writes as GeneralizedTime.
    const CN_ONLY: &str = "-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUWEozrCRllAxSyxmXAiBo7FgCtrgwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQT25seS5FeGFtcGxlLkNPTTAgFw0yNjEyMDUxNzQ4NDBaGA8y
MDU0MDQyMjE3NDg0MFowGzEZMBcGA1UEAwwQT25seS5FeGFtcGxlLkNPTTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABLF01J8eqDnEASGppoHAiJ/2mEVWkZnDZ0i2
Xg5gZHowWfdFiT1qEZjTQXvJ+I9dICYel2B1qKW2rtFypNIohNSjUzBRMB0GA1Ud
DgQWBBScZ+gPI1TEB3EPc7z1yUtHYNa0EzAfBgNVHSMEGDAWgBScZ+gPI1TEB3EP
c7z1yUtHYNa0EzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDR
v3G8zGmU3V1L2vS7uDPneUiM6axUVl1gjypRGMTmvQIgHOg9vwKGUSdsd1IsG6T7
FBDLlR/HUoYvUzTLg62rXL0=
-----END CERTIFICATE-----";

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn reads_validity_and_san_dns_names() {
        let info = parse(&der(WITH_SAN)).unwrap();
        // `date -u -d "Dec 5 17:48:38 2026" +%s`
        assert_eq!(info.not_before, 1796492918);
        assert_eq!(info.not_after, 1796579318);
        // The IP SAN is not a DNS name; the CN is not used when a SAN is there.
        assert_eq!(info.names, ["www.example.org", "*.example.net"]);
    }

    #[test]
    fn common_name_without_san_and_generalized_time() {
        let info = parse(&der(CN_ONLY)).unwrap();
        assert_eq!(info.not_before, 1796492920);
        // Apr 22 17:48:40 2054 GMT
        assert_eq!(info.not_after, 2660492920);
        assert_eq!(info.names, ["only.example.com"]);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let full = der(WITH_SAN);
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
        assert!(parse(b"").is_err());
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse(b"-----BEGIN CERTIFICATE-----").is_err());
    }

    #[test]
    fn time_forms() {
        assert_eq!(time(UTC_TIME, b"700101000000Z"), Ok(0));
        assert_eq!(time(UTC_TIME, b"491231235959Z"), Ok(2524607999));
        assert_eq!(time(GENERALIZED_TIME, b"20000229120000Z"), Ok(951825600));
        assert!(time(UTC_TIME, b"700101000000").is_err());
        assert!(time(UTC_TIME, b"701301000000Z").is_err());
        assert!(time(GENERALIZED_TIME, b"700101000000Z").is_err());
    }
}
