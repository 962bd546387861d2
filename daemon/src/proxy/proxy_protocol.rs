//! PROXY protocol headers (versions 1 and 2), as HAProxy's `send-proxy` /
//! `send-proxy-v2` write them first on a server connection: the server then
//! learns the client's address and port and the address it connected to.
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.
//!
//! A pure encoder: addresses in, bytes out. Only the `PROXY` command over
//! TCP is produced (halo always relays a real client); no TLVs.

use std::net::{IpAddr, SocketAddr};

use crate::config::ProxyProtocol;

/// The 12-byte signature that starts every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Append the header for a connection from `client` to `local` (the
/// address the client reached on this host) to `out`.
///
/// An IPv4 client on an IPv6 socket shows up as `::ffff:a.b.c.d`: such
/// addresses are sent as IPv4 when both ends are IPv4, as the client sees
/// them. If only one end is IPv4, both go out as IPv6 (the IPv4 one
/// mapped), since a header carries one family.
pub fn encode(version: ProxyProtocol, client: SocketAddr, local: SocketAddr, out: &mut Vec<u8>) {
    let (src, dst) = (client.ip().to_canonical(), local.ip().to_canonical());
    let (src, dst) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(v6(s)), IpAddr::V6(v6(d))),
    };
    let (sport, dport) = (client.port(), local.port());
    match version {
        ProxyProtocol::V1 => {
            let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            // Display gives the spec's forms: dotted quad, RFC 5952 IPv6.
            out.extend_from_slice(
                format!("PROXY {fam} {src} {dst} {sport} {dport}\r\n").as_bytes(),
            );
        }
        ProxyProtocol::V2 => {
            out.extend_from_slice(&V2_SIGNATURE);
            // Version 2, command PROXY.
            out.push(0x21);
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    // AF_INET, STREAM; 4 + 4 + 2 + 2 address bytes.
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    // AF_INET6, STREAM; 16 + 16 + 2 + 2 address bytes.
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&sport.to_be_bytes());
            out.extend_from_slice(&dport.to_be_bytes());
        }
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: ProxyProtocol, c: &str, l: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, c.parse().unwrap(), l.parse().unwrap(), &mut out);
        out
    }

    #[test]
    fn v1_matches_the_spec_examples() {
        // Section 2.1's worst-case lines, byte for byte (107 bytes max).
        let max4 = enc(
            ProxyProtocol::V1,
            "255.255.255.255:65535",
            "255.255.255.255:65535",
        );
        assert_eq!(
            max4,
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        let f = "[ffff:f...f:ffff]".replace("f...f", "ffff:ffff:ffff:ffff:ffff:ffff");
        let max6 = enc(
            ProxyProtocol::V1,
            &format!("{f}:65535"),
            &format!("{f}:65535"),
        );
        let line = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                    ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(max6, line.as_bytes());
        assert_eq!(max6.len(), 104);
        // The spec's example of a forwarded connection (section 2.1).
        assert_eq!(
            enc(ProxyProtocol::V1, "192.168.0.1:56324", "192.168.0.11:443"),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
    }

    #[test]
    fn v1_ipv6_is_compressed_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            enc(ProxyProtocol::V1, "[2001:db8::1]:1234", "[2001:db8::2]:80"),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n"
        );
        // An IPv4 client on a dual-stack listener.
        assert_eq!(
            enc(
                ProxyProtocol::V1,
                "[::ffff:192.0.2.7]:1234",
                "[::ffff:192.0.2.1]:80"
            ),
            b"PROXY TCP4 192.0.2.7 192.0.2.1 1234 80\r\n"
        );
        // One family per header: a lone IPv4 end goes out mapped.
        assert_eq!(
            enc(ProxyProtocol::V1, "192.0.2.7:1234", "[2001:db8::2]:80"),
            b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::2 1234 80\r\n"
        );
    }

    #[test]
    fn v2_ipv4_bytes() {
        let got = enc(ProxyProtocol::V2, "192.168.0.1:56324", "192.168.0.11:443");
        let mut want = vec![
            // Signature, section 2.2: \x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
            // \x21: version 2, PROXY; \x11: TCP over IPv4; length 12.
            0x21, 0x11, 0x00, 0x0C,
        ];
        want.extend_from_slice(&[192, 168, 0, 1, 192, 168, 0, 11]);
        want.extend_from_slice(&[0xDC, 0x04, 0x01, 0xBB]); // 56324, 443
        assert_eq!(got, want);
        assert_eq!(got.len(), 16 + 12);
    }

    #[test]
    fn v2_ipv6_bytes() {
        let got = enc(ProxyProtocol::V2, "[2001:db8::1]:1", "[2001:db8::2]:65535");
        assert_eq!(&got[..12], &V2_SIGNATURE);
        // \x21 then \x21: TCP over IPv6; length 36.
        assert_eq!(&got[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = 1;
        assert_eq!(&got[16..32], &a);
        a[15] = 2;
        assert_eq!(&got[32..48], &a);
        assert_eq!(&got[48..], &[0x00, 0x01, 0xFF, 0xFF]);
        assert_eq!(got.len(), 16 + 36);
    }
}
