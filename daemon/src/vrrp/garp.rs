//! Pure builders for the frames that announce a VIP after takeover:
//! gratuitous ARP (IPv4, RFC 5227 §3 "ARP Announcement") and unsolicited
//! neighbour advertisements (IPv6, RFC 4861 §7.2.6).
//!
//! Sending them is the driver's job (`vrrp::sockets`).

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_ARP: u16 = 0x0806;

/// An Ethernet frame carrying a gratuitous ARP request for `ip`:
/// sender and target protocol address are both the VIP, sent to broadcast.
/// This is the form keepalived sends, which every switch and host accepts.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]); // destination: broadcast
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // HTYPE Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // PTYPE IPv4
    f[18] = 6; // HLEN
    f[19] = 4; // PLEN
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // OPER request
    f[22..28].copy_from_slice(&mac); // SHA
    f[28..32].copy_from_slice(&ip.octets()); // SPA
    f[32..38].copy_from_slice(&[0; 6]); // THA: unknown
    f[38..42].copy_from_slice(&ip.octets()); // TPA = SPA: gratuitous
    f
}

/// ICMPv6 body of an unsolicited neighbour advertisement for `target`, with
/// the Router and Override flags and a target link-layer address option
/// (RFC 5798 §6.4.2: R set, S unset, O set; the VIP is a router's address,
/// and without R a host that uses it as its default router may drop it
/// from its router list). The kernel fills in the ICMPv6 checksum on a raw
/// ICMPv6 socket.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136; // Neighbor Advertisement
    m[1] = 0; // code
              // m[2..4] checksum, left to the kernel
    m[4] = 0xa0; // R=1 S=0 O=1: a router's address, unsolicited, override caches
    m[8..24].copy_from_slice(&target.octets());
    m[24] = 2; // option: Target Link-Layer Address
    m[25] = 1; // length in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x01, 0x33];

    #[test]
    fn garp_matches_hand_decoded_frame() {
        let f = garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100));
        // Bytes as tcpdump -xx shows keepalived's GARP for 192.0.2.100.
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x00, 0x01, 0x33, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x00, 0x01, 0x33,
            192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 192, 0, 2, 100,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn na_has_router_and_override_and_lladdr_option() {
        let t: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let m = unsolicited_na(MAC, t);
        assert_eq!(m[0], 136);
        assert_eq!(m[4] & 0xe0, 0xa0, "R and O set, S unset");
        assert_eq!(&m[8..24], &t.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], &MAC);
    }
}
