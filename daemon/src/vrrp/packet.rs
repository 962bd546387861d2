//! VRRP advertisement codec: bytes <-> [`Advert`], for VRRP v2 (RFC 3768)
//! and v3 (RFC 5798, RFC 9568), over IPv4 and (v3 only) IPv6.
//!
//! Pure functions over byte slices: no sockets, no clock, no allocation
//! beyond the returned values, and no panics on any input (the `vrrp_decode`
//! fuzz target and a deterministic mutation test hold it to that).
//!
//! What this module checks: the VRRP message itself (version, type, lengths,
//! checksum, auth type, address family). What it does not check: the IP
//! layer's TTL / hop limit 255 and protocol 112, and anything that depends on
//! the local configuration (VRID, password, interval, VIP list). The first
//! belongs to the driver (it owns the socket and its control messages), the
//! second to [`crate::vrrp::router`]. [`strip_ipv4_header`] helps the driver
//! with raw IPv4 sockets, which deliver the IP header with the message.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP (both versions).
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group adverts are sent to (RFC 5798 5.1.1.2).
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts are sent to (RFC 5798 5.1.2.2).
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only TTL / hop limit a receiver accepts (RFC 5798 5.1.1.3, 7.1).
pub const VRRP_TTL: u8 = 255;

/// Fixed part of every VRRP message, before the address list.
const HEADER_LEN: usize = 8;
/// v2 carries 8 bytes of authentication data after the addresses, always.
const V2_AUTH_LEN: usize = 8;
/// VRRP message type 1 is the only one defined (ADVERTISEMENT).
const TYPE_ADVERTISEMENT: u8 = 1;
/// v2 authentication types (RFC 3768 5.3.6; RFC 2338 defined 1 and 2).
const AUTH_NONE: u8 = 0;
const AUTH_SIMPLE_TEXT: u8 = 1;
/// v3's Max Adver Int is a 12-bit field.
const V3_MAX_INTERVAL_CS: u16 = 0x0fff;

/// VRRP protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in whole seconds, optional simple auth.
    V2,
    /// RFC 5798 / RFC 9568: IPv4 and IPv6, interval in centiseconds.
    V3,
}

impl Version {
    /// The 4-bit number on the wire.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl From<crate::config::VrrpVersion> for Version {
    fn from(v: crate::config::VrrpVersion) -> Version {
        match v {
            crate::config::VrrpVersion::V2 => Version::V2,
            crate::config::VrrpVersion::V3 => Version::V3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.number())
    }
}

/// Where a message travels: the IP source and destination (the v3 checksum
/// covers them through the pseudo-header, and they fix the address family),
/// and which v3-over-IPv4 checksum form is in use.
///
/// The v3 IPv4 checksum exists in two forms. RFC 5798 5.2.8 sums a
/// pseudo-header (source, destination, protocol, length) and the message;
/// keepalived (2.2.7 in Debian 12, captured in tests/vectors) and most
/// deployed routers send that, so it is the default here. RFC 9568 5.2.8
/// changed IPv4 to the message alone, as v2 always did; keepalived calls
/// that `v3_checksum_as_v2`. IPv6 always uses the pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketCtx {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// v3 over IPv4 only: checksum the VRRP message alone (RFC 9568 form,
    /// keepalived's `v3_checksum_as_v2`) instead of pseudo-header + message
    /// (RFC 5798 form). Ignored for v2 (always message-only) and for IPv6
    /// (always with pseudo-header). A unicast peer running keepalived's
    /// `old_unicast_checksum` (before 1.3.6) summed the multicast group as
    /// destination; a driver can reach it by passing 224.0.0.18 as `dst`.
    pub v3_checksum_as_v2: bool,
}

impl PacketCtx {
    /// Context for a message between `src` and `dst` with the standard checksum.
    pub fn new(src: IpAddr, dst: IpAddr) -> PacketCtx {
        PacketCtx {
            src,
            dst,
            v3_checksum_as_v2: false,
        }
    }
}

/// One VRRP ADVERTISEMENT, either version.
///
/// VRRP v2, RFC 3768 section 5.1:
///
/// ```text
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |   Auth Type   |   Adver Int   |          Checksum             |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                         IP Address (1)                        |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                            .                                  |
///    |                            .                                  |
///    |                            .                                  |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                         IP Address (n)                        |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                     Authentication Data (1)                   |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                     Authentication Data (2)                   |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Adver Int is in seconds; Checksum covers the VRRP message only.
///
/// VRRP v3, RFC 5798 section 5.1 (IPv4 and IPv6; n addresses of the family
/// of the IP header, 4 or 16 bytes each):
///
/// ```text
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                    IPv4 Fields or IPv6 Fields                 |
///   ...                                                             ...
///    |                                                               |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |(rsvd) |     Max Adver Int     |          Checksum             |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///    |                                                               |
///    +                                                               +
///    |                       IPvX Address(es)                        |
///    +                                                               +
///    +                                                               +
///    +                                                               +
///    +                                                               +
///    |                                                               |
///    +                                                               +
///    |                                                               |
///    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Max Adver Int is in centiseconds (12 bits); Checksum covers the IPv6
/// pseudo-header and the message, and over IPv4 either an IPv4
/// pseudo-header and the message (RFC 5798) or the message alone (RFC 9568);
/// see [`PacketCtx`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advert {
    pub version: Version,
    /// Virtual Rtr ID, 1..=255.
    pub vrid: u8,
    /// 0 = the master is leaving, 255 = address owner.
    pub priority: u8,
    /// Advertisement interval in centiseconds. v3: Max Adver Int as sent
    /// (1..=4095). v2: Adver Int seconds × 100 (100..=25500).
    pub interval_cs: u16,
    /// The virtual addresses, all of the family of the IP header.
    pub addrs: Vec<IpAddr>,
    /// v2 only: `Some(password)` is auth type 1 (simple text, zero padded);
    /// `None` is auth type 0. Always `None` in v3 (no auth field).
    pub auth: Option<[u8; 8]>,
}

/// Why a message was rejected. Each names what was wrong so the driver can
/// log it usefully (and count it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the fixed header (or the IP header) needs.
    TooShort { need: usize, got: usize },
    /// The version nibble is neither 2 nor 3.
    BadVersion(u8),
    /// The type nibble is not 1 (ADVERTISEMENT).
    BadType(u8),
    /// VRID 0 is not a virtual router.
    BadVrid,
    /// The message length does not match what Count IP Addrs implies.
    BadLength { expected: usize, got: usize },
    /// The checksum does not verify; `computed` is what it should be.
    BadChecksum { got: u16, computed: u16 },
    /// v3 over IPv4: the checksum is wrong for our setting but right for
    /// the other form, so the sender is configured differently, not
    /// corrupt. `message_only`: the sender used the RFC 9568 message-only
    /// form (we expect the pseudo-header form), or the reverse when false.
    ChecksumVariant { message_only: bool },
    /// v2 over IPv6, or source and destination of different families.
    BadAddrFamily,
    /// v2 auth type other than 0 (none) and 1 (simple text), e.g. 2 (IP AH).
    AuthTypeUnsupported(u8),
    /// Advertisement interval 0, which would make every timer expire at once.
    BadInterval,
    /// `strip_ipv4_header`: not an IPv4 header (version nibble given).
    NotIpv4(u8),
    /// `strip_ipv4_header`: header length or total length inconsistent.
    BadIpHeader,
    /// `strip_ipv4_header`: a fragment; the kernel reassembles before raw
    /// sockets see datagrams, so this is malformed.
    Fragment,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::TooShort { need, got } => {
                write!(f, "too short: {got} bytes, need at least {need}")
            }
            DecodeError::BadVersion(v) => write!(f, "unsupported VRRP version {v}"),
            DecodeError::BadType(t) => write!(f, "unknown VRRP message type {t}"),
            DecodeError::BadVrid => write!(f, "virtual router id 0"),
            DecodeError::BadLength { expected, got } => write!(
                f,
                "length {got} does not match the address count (expected {expected})"
            ),
            DecodeError::BadChecksum { got, computed } => {
                write!(f, "bad checksum {got:#06x}, expected {computed:#06x}")
            }
            DecodeError::ChecksumVariant { message_only: true } => write!(
                f,
                "checksum is the RFC 9568 message-only form; the sender has \
                 v3_checksum_as_v2 and we do not"
            ),
            DecodeError::ChecksumVariant {
                message_only: false,
            } => write!(
                f,
                "checksum includes the IPv4 pseudo-header (RFC 5798 form); we have \
                 v3_checksum_as_v2 and the sender does not"
            ),
            DecodeError::BadAddrFamily => {
                write!(f, "address family does not fit the VRRP version")
            }
            DecodeError::AuthTypeUnsupported(t) => {
                write!(f, "unsupported VRRPv2 authentication type {t}")
            }
            DecodeError::BadInterval => write!(f, "advertisement interval 0"),
            DecodeError::NotIpv4(v) => write!(f, "not an IPv4 datagram (version {v})"),
            DecodeError::BadIpHeader => write!(f, "malformed IPv4 header"),
            DecodeError::Fragment => write!(f, "IPv4 fragment"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why an [`Advert`] cannot be put on the wire as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// v2 needs IPv4; or an address's family differs from the context's.
    AddrFamily,
    /// No addresses, or more than 255.
    AddrCount(usize),
    /// v3: not 1..=4095 cs; v2: not a whole number of seconds in 1..=255.
    Interval(u16),
    /// `vrid` 0.
    Vrid,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::AddrFamily => {
                write!(f, "addresses do not fit the VRRP version / IP family")
            }
            EncodeError::AddrCount(n) => write!(f, "{n} addresses (must be 0..=255)"),
            EncodeError::Interval(cs) => write!(f, "interval {cs} cs not encodable"),
            EncodeError::Vrid => write!(f, "virtual router id 0"),
        }
    }
}

impl std::error::Error for EncodeError {}

// === impl Advert ===

impl Advert {
    /// Decode a VRRP message: `payload` starts at the VRRP header (after the
    /// IP header). `ctx` gives the IP source/destination for the v3
    /// pseudo-header checksum and the address family.
    ///
    /// The message length must match the address count exactly: raw sockets
    /// deliver exactly the IP payload, and the checksum covers all of it.
    /// Reserved bits (v3) and v2 auth data under auth type 0 are ignored on
    /// receive, as the RFCs say.
    pub fn decode(payload: &[u8], ctx: &PacketCtx) -> Result<Advert, DecodeError> {
        if payload.len() < HEADER_LEN {
            return Err(DecodeError::TooShort {
                need: HEADER_LEN,
                got: payload.len(),
            });
        }
        let version = match payload[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            v => return Err(DecodeError::BadVersion(v)),
        };
        let msg_type = payload[0] & 0x0f;
        if msg_type != TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType(msg_type));
        }
        let v6 = family_is_v6(ctx)?;
        if v6 && version == Version::V2 {
            return Err(DecodeError::BadAddrFamily);
        }
        let count = usize::from(payload[3]);
        let addr_len = if v6 { 16 } else { 4 };
        let trailer = if version == Version::V2 {
            V2_AUTH_LEN
        } else {
            0
        };
        let expected = HEADER_LEN + count * addr_len + trailer;
        if payload.len() != expected {
            return Err(DecodeError::BadLength {
                expected,
                got: payload.len(),
            });
        }
        // Checksum before interpreting fields: a corrupted message should be
        // reported as corrupted, not as whatever its garbage looks like.
        let got = u16::from_be_bytes([payload[6], payload[7]]);
        let computed = message_checksum(version, ctx, payload);
        if got != computed {
            if version == Version::V3 && !v6 {
                let other = PacketCtx {
                    v3_checksum_as_v2: !ctx.v3_checksum_as_v2,
                    ..*ctx
                };
                if got == message_checksum(version, &other, payload) {
                    return Err(DecodeError::ChecksumVariant {
                        message_only: other.v3_checksum_as_v2,
                    });
                }
            }
            return Err(DecodeError::BadChecksum { got, computed });
        }
        let vrid = payload[1];
        if vrid == 0 {
            return Err(DecodeError::BadVrid);
        }
        // Count 0 is decoded: RFC 5798 5.2.5 wants at least one address,
        // but keepalived's VRRPv2 instances without virtual_ipaddress (an
        // election for scripts only) send none, and so do halo's. The
        // router drops it unless its own address list is empty too.
        let priority = payload[2];
        let (interval_cs, auth) = match version {
            Version::V2 => {
                let auth = match payload[4] {
                    AUTH_NONE => None,
                    AUTH_SIMPLE_TEXT => {
                        let mut pw = [0u8; 8];
                        pw.copy_from_slice(&payload[expected - V2_AUTH_LEN..]);
                        Some(pw)
                    }
                    t => return Err(DecodeError::AuthTypeUnsupported(t)),
                };
                (u16::from(payload[5]) * 100, auth)
            }
            Version::V3 => (
                u16::from_be_bytes([payload[4], payload[5]]) & V3_MAX_INTERVAL_CS,
                None,
            ),
        };
        if interval_cs == 0 {
            return Err(DecodeError::BadInterval);
        }
        let addrs = payload[HEADER_LEN..HEADER_LEN + count * addr_len]
            .chunks_exact(addr_len)
            .map(|c| match <[u8; 16]>::try_from(c) {
                Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
                Err(_) => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            })
            .collect();
        Ok(Advert {
            version,
            vrid,
            priority,
            interval_cs,
            addrs,
            auth,
        })
    }

    /// Check that this advert can be encoded for `ctx` without adjustment.
    /// Adverts built from a validated config always can; the driver may
    /// call this once at setup to turn a surprise into an error message.
    pub fn check(&self, ctx: &PacketCtx) -> Result<(), EncodeError> {
        let v6 = family_is_v6(ctx).map_err(|_| EncodeError::AddrFamily)?;
        if (v6 && self.version == Version::V2) || self.addrs.iter().any(|a| a.is_ipv6() != v6) {
            return Err(EncodeError::AddrFamily);
        }
        if self.addrs.len() > 255 {
            return Err(EncodeError::AddrCount(self.addrs.len()));
        }
        let ok = match self.version {
            Version::V2 => self.interval_cs % 100 == 0 && (100..=25500).contains(&self.interval_cs),
            Version::V3 => (1..=V3_MAX_INTERVAL_CS).contains(&self.interval_cs),
        };
        if !ok {
            return Err(EncodeError::Interval(self.interval_cs));
        }
        if self.vrid == 0 {
            return Err(EncodeError::Vrid);
        }
        Ok(())
    }

    /// [`encode`](Advert::encode), but refuse an advert that
    /// [`check`](Advert::check) rejects instead of adjusting it.
    pub fn try_encode(&self, ctx: &PacketCtx) -> Result<Vec<u8>, EncodeError> {
        self.check(ctx)?;
        Ok(self.encode(ctx))
    }

    /// Encode to a VRRP message (without IP header), checksum included.
    ///
    /// Total: an advert that [`check`](Advert::check) rejects is adjusted
    /// rather than refused, so the daemon never dies on a send path:
    /// addresses not of the context's family are left out and at most 255
    /// are sent; the v2 interval is rounded up to whole seconds within
    /// 1..=255; the v3 interval is clamped to 1..=4095 cs. v2 auth data is
    /// zero under auth type 0; `auth` is ignored in v3.
    pub fn encode(&self, ctx: &PacketCtx) -> Vec<u8> {
        let v6 = matches!(family_is_v6(ctx), Ok(true));
        let addrs: Vec<&IpAddr> = self
            .addrs
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .take(255)
            .collect();
        let mut out = Vec::with_capacity(HEADER_LEN + addrs.len() * 16 + V2_AUTH_LEN);
        out.push(self.version.number() << 4 | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        // `take(255)` above keeps this in range.
        out.push(u8::try_from(addrs.len()).unwrap_or(u8::MAX));
        match self.version {
            Version::V2 => {
                out.push(if self.auth.is_some() {
                    AUTH_SIMPLE_TEXT
                } else {
                    AUTH_NONE
                });
                let secs = self.interval_cs.div_ceil(100).clamp(1, 255);
                out.push(u8::try_from(secs).unwrap_or(u8::MAX));
            }
            Version::V3 => {
                let cs = self.interval_cs.clamp(1, V3_MAX_INTERVAL_CS);
                out.extend_from_slice(&cs.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0]);
        for a in addrs {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            out.extend_from_slice(&self.auth.unwrap_or([0; 8]));
        }
        let ck = message_checksum(self.version, ctx, &out);
        out[6..8].copy_from_slice(&ck.to_be_bytes());
        out
    }
}

/// Whether the context is IPv6; source and destination must agree.
fn family_is_v6(ctx: &PacketCtx) -> Result<bool, DecodeError> {
    match (ctx.src, ctx.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => Ok(false),
        (IpAddr::V6(_), IpAddr::V6(_)) => Ok(true),
        _ => Err(DecodeError::BadAddrFamily),
    }
}

/// The checksum a message should carry, computed with its checksum field
/// taken as zero. v2 and `v3_checksum_as_v2`: message only. Otherwise v3:
/// the pseudo-header of RFC 5798 5.2.8 (IPv4 laid out as UDP's in RFC 768,
/// IPv6 as in RFC 8200 8.1) followed by the message.
fn message_checksum(version: Version, ctx: &PacketCtx, msg: &[u8]) -> u16 {
    let mut sum = Checksum::default();
    let with_pseudo = match ctx.src {
        IpAddr::V4(_) => version == Version::V3 && !ctx.v3_checksum_as_v2,
        IpAddr::V6(_) => true,
    };
    if with_pseudo {
        // The length is the VRRP message's; it fits u16 for IPv4 payloads
        // and is written as 32 bits for IPv6. Longer slices cannot come from
        // one datagram, so saturating is only there to stay total.
        let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        match (ctx.src, ctx.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                sum.add(&s.octets());
                sum.add(&d.octets());
                sum.add(&[0, IPPROTO_VRRP]);
                sum.add(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
            }
            (s, d) => {
                sum.add(&ip_octets16(s));
                sum.add(&ip_octets16(d));
                sum.add(&len.to_be_bytes());
                sum.add(&[0, 0, 0, IPPROTO_VRRP]);
            }
        }
    }
    if msg.len() >= HEADER_LEN {
        sum.add(&msg[..6]);
        sum.add(&msg[8..]);
    } else {
        sum.add(msg);
    }
    sum.finish()
}

/// IPv4-mapped for the impossible mixed-family case so the sum stays total.
fn ip_octets16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// RFC 1071 Internet checksum accumulator. Every chunk added must have an
/// even length except the last; all callers add even-length pieces (the
/// 6-byte prefix, addresses, lengths) before the possibly odd tail.
#[derive(Default)]
struct Checksum {
    sum: u64,
}

impl Checksum {
    fn add(&mut self, data: &[u8]) {
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            self.sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            self.sum += u64::from(*last) << 8;
        }
    }

    fn finish(mut self) -> u16 {
        while self.sum > 0xffff {
            self.sum = (self.sum & 0xffff) + (self.sum >> 16);
        }
        // The loop leaves at most 16 bits.
        !(u16::try_from(self.sum).unwrap_or(u16::MAX))
    }
}

/// RFC 1071 Internet checksum of `data` (one's complement of the one's
/// complement sum). A buffer that already contains its correct checksum
/// sums to 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum = Checksum::default();
    sum.add(data);
    sum.finish()
}

// === IPv4 header ===

/// What the driver needs from the IPv4 header of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Meta {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Must be 255 for VRRP ([`VRRP_TTL`]); the driver checks.
    pub ttl: u8,
    /// Must be 112 ([`IPPROTO_VRRP`]); the driver checks.
    pub protocol: u8,
}

/// Split a datagram read from a raw IPv4 socket (which includes the IP
/// header) into the header fields and the VRRP message.
///
/// Uses the header's Total Length to bound the payload, so trailing bytes
/// are not taken for VRRP. Does not verify the header checksum: the kernel
/// drops datagrams whose header checksum fails before raw sockets see them.
pub fn strip_ipv4_header(datagram: &[u8]) -> Result<(Ipv4Meta, &[u8]), DecodeError> {
    const MIN: usize = 20;
    if datagram.len() < MIN {
        return Err(DecodeError::TooShort {
            need: MIN,
            got: datagram.len(),
        });
    }
    let version = datagram[0] >> 4;
    if version != 4 {
        return Err(DecodeError::NotIpv4(version));
    }
    let ihl = usize::from(datagram[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if ihl < MIN || total < ihl {
        return Err(DecodeError::BadIpHeader);
    }
    if total > datagram.len() {
        return Err(DecodeError::TooShort {
            need: total,
            got: datagram.len(),
        });
    }
    // More-fragments flag or a non-zero fragment offset.
    let frag = u16::from_be_bytes([datagram[6], datagram[7]]);
    if frag & 0x3fff != 0 {
        return Err(DecodeError::Fragment);
    }
    let meta = Ipv4Meta {
        src: Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]),
        dst: Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]),
        ttl: datagram[8],
        protocol: datagram[9],
    };
    Ok((meta, &datagram[ihl..total]))
}

#[cfg(test)]
mod tests;
