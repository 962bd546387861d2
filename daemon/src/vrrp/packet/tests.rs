//! Tests of the VRRP codec: scapy-generated vectors in both directions,
//! hand-made malformed messages, and a deterministic mutation run that
//! holds decode to "never panics, and what it accepts round-trips".

use super::*;

/// Output of tests/vectors/gen_vrrp_vectors.py (scapy).
const VECTORS: &str = include_str!("../../../../tests/vectors/vrrp_vectors.txt");
/// Output of tests/vectors/capture_keepalived.py: adverts sent by a real
/// keepalived, with the expected fields taken from its configuration.
const KEEPALIVED: &str = include_str!("../../../../tests/vectors/keepalived_vectors.txt");

struct Vector {
    name: String,
    ctx: PacketCtx,
    advert: Advert,
    msg: Vec<u8>,
    datagram: Option<Vec<u8>>,
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Scapy's vectors.
fn vectors() -> Vec<Vector> {
    parse_vectors(VECTORS)
}

/// Scapy's and keepalived's vectors.
fn all_vectors() -> Vec<Vector> {
    let mut v = parse_vectors(VECTORS);
    v.extend(parse_vectors(KEEPALIVED));
    v
}

fn parse_vectors(text: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(" | ").collect();
        assert_eq!(f.len(), 12, "malformed vector line: {line}");
        let ctx = PacketCtx {
            src: f[1].parse().unwrap(),
            dst: f[2].parse().unwrap(),
            v3_checksum_as_v2: f[3] == "1",
        };
        let version = match f[4] {
            "2" => Version::V2,
            "3" => Version::V3,
            v => panic!("version {v}"),
        };
        let auth = (f[9] != "-").then(|| <[u8; 8]>::try_from(hex(f[9])).unwrap());
        let advert = Advert {
            version,
            vrid: f[5].parse().unwrap(),
            priority: f[6].parse().unwrap(),
            interval_cs: f[7].parse().unwrap(),
            addrs: f[8].split(',').map(|a| a.parse().unwrap()).collect(),
            auth,
        };
        out.push(Vector {
            name: f[0].to_string(),
            ctx,
            advert,
            msg: hex(f[10]),
            datagram: (f[11] != "-").then(|| hex(f[11])),
        });
    }
    out
}

#[test]
fn vectors_cover_every_kind() {
    let v = vectors();
    assert!(v.len() >= 15, "only {} vectors", v.len());
    assert!(v
        .iter()
        .any(|v| v.advert.version == Version::V2 && v.advert.auth.is_some()));
    assert!(v.iter().any(|v| v.ctx.v3_checksum_as_v2));
    assert!(v.iter().any(|v| v.ctx.src.is_ipv6()));
    let k = parse_vectors(KEEPALIVED);
    assert!(k.len() >= 12, "only {} keepalived vectors", k.len());
    assert!(k.iter().any(|v| v.advert.priority == 0));
}

#[test]
fn decode_scapy_and_keepalived_vectors() {
    for v in all_vectors() {
        let got = Advert::decode(&v.msg, &v.ctx).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(got, v.advert, "{}", v.name);
    }
}

#[test]
fn encode_matches_scapy_and_keepalived_bytes() {
    for v in all_vectors() {
        assert_eq!(v.advert.encode(&v.ctx), v.msg, "{}", v.name);
        assert_eq!(
            v.advert.try_encode(&v.ctx).as_ref(),
            Ok(&v.msg),
            "{}",
            v.name
        );
    }
}

#[test]
fn strip_ipv4_header_of_captured_datagrams() {
    for v in all_vectors() {
        let Some(d) = &v.datagram else { continue };
        let (meta, payload) = strip_ipv4_header(d).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(IpAddr::V4(meta.src), v.ctx.src, "{}", v.name);
        assert_eq!(IpAddr::V4(meta.dst), v.ctx.dst, "{}", v.name);
        assert_eq!(meta.ttl, VRRP_TTL);
        assert_eq!(meta.protocol, IPPROTO_VRRP);
        assert_eq!(payload, &v.msg[..], "{}", v.name);
        // The IP header's own checksum (scapy's, the kernel's) verifies with ours.
        assert_eq!(internet_checksum(&d[..20]), 0, "{}", v.name);
    }
}

#[test]
fn checksum_variant_matters() {
    // A v3 IPv4 message checksummed with the pseudo-header (RFC 5798,
    // keepalived 2.2.7) fails under v3_checksum_as_v2 (RFC 9568 form) and
    // vice versa; v2 and IPv6 ignore the knob.
    for v in all_vectors() {
        let flipped = PacketCtx {
            v3_checksum_as_v2: !v.ctx.v3_checksum_as_v2,
            ..v.ctx
        };
        let r = Advert::decode(&v.msg, &flipped);
        if v.advert.version == Version::V3 && v.ctx.src.is_ipv4() {
            // Reported as a configuration difference, naming the sender's form.
            let sender_message_only = v.ctx.v3_checksum_as_v2;
            assert_eq!(
                r,
                Err(DecodeError::ChecksumVariant {
                    message_only: sender_message_only
                }),
                "{}",
                v.name
            );
            // A genuinely corrupt checksum is still BadChecksum.
            let mut m = v.msg.clone();
            m[7] ^= 0x01;
            assert!(matches!(
                Advert::decode(&m, &v.ctx),
                Err(DecodeError::BadChecksum { .. })
            ));
        } else {
            assert_eq!(r.as_ref(), Ok(&v.advert), "{}", v.name);
        }
    }
}

#[test]
fn v3_checksum_covers_addresses_in_pseudo_header() {
    // Same message, different IP source: the pseudo-header changes the sum.
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "v3_v4_basic")
        .unwrap();
    let other = PacketCtx {
        src: "192.0.2.99".parse().unwrap(),
        ..v.ctx
    };
    assert!(matches!(
        Advert::decode(&v.msg, &other),
        Err(DecodeError::BadChecksum { .. })
    ));
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "v3_v6_basic")
        .unwrap();
    let other = PacketCtx {
        dst: "ff02::13".parse().unwrap(),
        ..v.ctx
    };
    assert!(matches!(
        Advert::decode(&v.msg, &other),
        Err(DecodeError::BadChecksum { .. })
    ));
}

fn v4ctx() -> PacketCtx {
    PacketCtx::new("192.0.2.11".parse().unwrap(), "224.0.0.18".parse().unwrap())
}

fn v6ctx() -> PacketCtx {
    PacketCtx::new("fe80::11".parse().unwrap(), "ff02::12".parse().unwrap())
}

fn v3_advert() -> Advert {
    Advert {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        addrs: vec!["192.0.2.100".parse().unwrap()],
        auth: None,
    }
}

/// Re-checksum a hand-modified message so the test reaches the check it
/// means to exercise rather than the checksum.
fn fix_checksum(msg: &mut [u8], ctx: &PacketCtx) {
    let version = if msg[0] >> 4 == 2 {
        Version::V2
    } else {
        Version::V3
    };
    let ck = message_checksum(version, ctx, msg);
    msg[6..8].copy_from_slice(&ck.to_be_bytes());
}

#[test]
fn rejects_each_malformation_with_its_own_error() {
    let ctx = v4ctx();
    let good = v3_advert().encode(&ctx);
    let decode = |m: &[u8]| Advert::decode(m, &ctx);

    assert_eq!(
        decode(&good[..7]),
        Err(DecodeError::TooShort { need: 8, got: 7 })
    );
    assert_eq!(decode(&[]), Err(DecodeError::TooShort { need: 8, got: 0 }));

    let mut m = good.clone();
    m[0] = 0x41;
    assert_eq!(decode(&m), Err(DecodeError::BadVersion(4)));
    m[0] = 0x11;
    assert_eq!(decode(&m), Err(DecodeError::BadVersion(1)));

    let mut m = good.clone();
    m[0] = 0x32;
    assert_eq!(decode(&m), Err(DecodeError::BadType(2)));

    let mut m = good.clone();
    m[3] = 2;
    assert_eq!(
        decode(&m),
        Err(DecodeError::BadLength {
            expected: 16,
            got: 12
        })
    );
    let mut m = good.clone();
    m.push(0);
    assert_eq!(
        decode(&m),
        Err(DecodeError::BadLength {
            expected: 12,
            got: 13
        })
    );

    let mut m = good.clone();
    m[6] ^= 0xff;
    assert!(matches!(decode(&m), Err(DecodeError::BadChecksum { .. })));
    let mut m = good.clone();
    m[11] ^= 1; // a flipped address bit
    assert!(matches!(decode(&m), Err(DecodeError::BadChecksum { .. })));

    let mut m = good.clone();
    m[1] = 0;
    fix_checksum(&mut m, &ctx);
    assert_eq!(decode(&m), Err(DecodeError::BadVrid));

    // No addresses: what keepalived's v2 instances without
    // virtual_ipaddress send (and halo's without virtual_ips).
    let mut m = good[..8].to_vec();
    m[3] = 0;
    fix_checksum(&mut m, &ctx);
    assert_eq!(decode(&m).map(|a| a.addrs), Ok(vec![]));

    let mut m = good.clone();
    m[4] = 0xf0; // reserved bits set, interval 0
    m[5] = 0;
    fix_checksum(&mut m, &ctx);
    assert_eq!(decode(&m), Err(DecodeError::BadInterval));

    // Mixed families in the context.
    let mixed = PacketCtx::new("192.0.2.11".parse().unwrap(), "ff02::12".parse().unwrap());
    assert_eq!(
        Advert::decode(&good, &mixed),
        Err(DecodeError::BadAddrFamily)
    );
}

#[test]
fn v3_reserved_bits_are_ignored_on_receive() {
    let ctx = v4ctx();
    let mut m = v3_advert().encode(&ctx);
    m[4] |= 0xf0;
    fix_checksum(&mut m, &ctx);
    assert_eq!(Advert::decode(&m, &ctx), Ok(v3_advert()));
}

#[test]
fn v2_auth_types() {
    let ctx = v4ctx();
    let mut a = v3_advert();
    a.version = Version::V2;
    let mut m = a.encode(&ctx);
    assert_eq!(m.len(), 20);
    // Auth type 0 with non-zero data: data ignored (RFC 3768 5.3.10).
    m[12..].copy_from_slice(b"garbage!");
    fix_checksum(&mut m, &ctx);
    assert_eq!(Advert::decode(&m, &ctx), Ok(a.clone()));
    // Type 2 (IP AH, removed from RFC 3768) and unknown types are refused.
    for t in [2u8, 3, 255] {
        m[4] = t;
        fix_checksum(&mut m, &ctx);
        assert_eq!(
            Advert::decode(&m, &ctx),
            Err(DecodeError::AuthTypeUnsupported(t))
        );
    }
}

#[test]
fn v2_over_ipv6_is_refused() {
    let ctx = v6ctx();
    let mut a = v3_advert();
    a.version = Version::V2;
    a.addrs = vec!["2001:db8::1".parse().unwrap()];
    assert_eq!(a.check(&ctx), Err(EncodeError::AddrFamily));
    let mut m = vec![0x21, 51, 100, 1, 0, 1, 0, 0];
    m.extend_from_slice(&[0; 16 + 8]);
    assert_eq!(Advert::decode(&m, &ctx), Err(DecodeError::BadAddrFamily));
}

#[test]
fn encode_adjusts_what_check_refuses() {
    let ctx = v4ctx();
    let mut a = v3_advert();
    a.version = Version::V2;
    a.interval_cs = 150; // not whole seconds
    assert_eq!(a.check(&ctx), Err(EncodeError::Interval(150)));
    let d = Advert::decode(&a.encode(&ctx), &ctx).unwrap();
    assert_eq!(d.interval_cs, 200, "rounded up to whole seconds");

    let mut a = v3_advert();
    a.interval_cs = 5000;
    assert_eq!(a.check(&ctx), Err(EncodeError::Interval(5000)));
    assert_eq!(
        Advert::decode(&a.encode(&ctx), &ctx).unwrap().interval_cs,
        4095
    );

    let mut a = v3_advert();
    a.addrs.push("2001:db8::1".parse().unwrap());
    assert_eq!(a.check(&ctx), Err(EncodeError::AddrFamily));
    assert_eq!(Advert::decode(&a.encode(&ctx), &ctx), Ok(v3_advert()));

    let mut a = v3_advert();
    a.addrs = (0..300u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc000_0200 + i)))
        .collect();
    assert_eq!(a.check(&ctx), Err(EncodeError::AddrCount(300)));
    assert_eq!(
        Advert::decode(&a.encode(&ctx), &ctx).unwrap().addrs.len(),
        255
    );

    let mut a = v3_advert();
    a.vrid = 0;
    assert_eq!(a.try_encode(&ctx), Err(EncodeError::Vrid));
}

#[test]
fn round_trip_all_shapes() {
    for (ctx, version, addrs) in [
        (v4ctx(), Version::V2, vec!["192.0.2.100", "192.0.2.101"]),
        (v4ctx(), Version::V3, vec!["192.0.2.100"]),
        // No addresses: an instance that only elects (keepalived v2
        // without virtual_ipaddress, halo without virtual_ips).
        (v4ctx(), Version::V2, vec![]),
        (v4ctx(), Version::V3, vec![]),
        (
            v6ctx(),
            Version::V3,
            vec!["fe80::1", "2001:db8::1", "2001:db8::2"],
        ),
    ] {
        for prio in [0u8, 1, 100, 254, 255] {
            for auth in [None, Some(*b"pass\0\0\0\0")] {
                let a = Advert {
                    version,
                    vrid: 200,
                    priority: prio,
                    interval_cs: if version == Version::V2 { 300 } else { 4095 },
                    addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
                    auth: if version == Version::V2 { auth } else { None },
                };
                for as_v2 in [false, true] {
                    let ctx = PacketCtx {
                        v3_checksum_as_v2: as_v2,
                        ..ctx
                    };
                    let m = a.try_encode(&ctx).unwrap();
                    assert_eq!(Advert::decode(&m, &ctx), Ok(a.clone()));
                }
            }
        }
    }
}

#[test]
fn strip_ipv4_header_rejects_malformed() {
    let d = vectors().into_iter().find_map(|v| v.datagram).unwrap();
    assert_eq!(
        strip_ipv4_header(&d[..19]),
        Err(DecodeError::TooShort { need: 20, got: 19 })
    );
    let mut m = d.clone();
    m[0] = 0x65;
    assert_eq!(strip_ipv4_header(&m), Err(DecodeError::NotIpv4(6)));
    let mut m = d.clone();
    m[0] = 0x44; // IHL 16 bytes
    assert_eq!(strip_ipv4_header(&m), Err(DecodeError::BadIpHeader));
    let mut m = d.clone();
    m[2..4].copy_from_slice(&10u16.to_be_bytes()); // total < IHL
    assert_eq!(strip_ipv4_header(&m), Err(DecodeError::BadIpHeader));
    let mut m = d.clone();
    m[2..4].copy_from_slice(&(d.len() as u16 + 1).to_be_bytes());
    assert!(matches!(
        strip_ipv4_header(&m),
        Err(DecodeError::TooShort { .. })
    ));
    let mut m = d.clone();
    m[6] = 0x20; // more fragments
    assert_eq!(strip_ipv4_header(&m), Err(DecodeError::Fragment));
    // Trailing bytes beyond Total Length are not part of the payload.
    let mut m = d.clone();
    m.extend_from_slice(&[0xde, 0xad]);
    assert_eq!(strip_ipv4_header(&m).unwrap().1, &d[20..]);
    // Options: IHL 6 with a 4-byte option (NOPs), total length adjusted.
    let mut m = d[..20].to_vec();
    m[0] = 0x46;
    m.extend_from_slice(&[1, 1, 1, 1]);
    m.extend_from_slice(&d[20..]);
    let total = m.len() as u16;
    m[2..4].copy_from_slice(&total.to_be_bytes());
    assert_eq!(strip_ipv4_header(&m).unwrap().1, &d[20..]);
}

#[test]
fn internet_checksum_rfc1071_example() {
    // RFC 1071 section 3: the one's complement sum of these is 0xddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(internet_checksum(&data), !0xddf2);
    // Odd length pads with a zero byte.
    assert_eq!(internet_checksum(&[0x01]), !0x0100);
}

/// xorshift64*: a tiny deterministic generator, so this test needs no
/// dependency and fails the same way every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the fuzz target asserts, for one input under one context.
fn decode_never_panics_and_round_trips(data: &[u8], ctx: &PacketCtx) -> bool {
    match Advert::decode(data, ctx) {
        Ok(a) => {
            let again = a.try_encode(ctx).expect("a decoded advert is encodable");
            assert_eq!(
                Advert::decode(&again, ctx).as_ref(),
                Ok(&a),
                "input {data:02x?}"
            );
            true
        }
        Err(_) => false,
    }
}

#[test]
fn decode_survives_300k_mutated_inputs() {
    let seeds: Vec<(Vec<u8>, PacketCtx)> = vectors().into_iter().map(|v| (v.msg, v.ctx)).collect();
    let ctxs = [v4ctx(), v6ctx()];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for i in 0..300_000 {
        let (seed, seed_ctx) = &seeds[i % seeds.len()];
        let mut m = seed.clone();
        // A few mutations: flip bytes, truncate, extend, or pure noise.
        match rng.below(6) {
            0 => {
                let len = rng.below(64);
                m = (0..len).map(|_| rng.next() as u8).collect();
            }
            1 => m.truncate(rng.below(m.len() + 1)),
            2 => m.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
            _ => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(m.len());
                    m[at] = rng.next() as u8;
                }
            }
        }
        // Mutating with a fixed checksum would only test the checksum;
        // half the time recompute it so the deeper checks are reached.
        if m.len() >= 8 && rng.below(2) == 0 {
            let version = if m[0] >> 4 == 2 {
                Version::V2
            } else {
                Version::V3
            };
            let ck = message_checksum(version, seed_ctx, &m);
            m[6..8].copy_from_slice(&ck.to_be_bytes());
        }
        for ctx in [seed_ctx, &ctxs[i % 2]] {
            for as_v2 in [false, true] {
                let ctx = PacketCtx {
                    v3_checksum_as_v2: as_v2,
                    ..*ctx
                };
                if decode_never_panics_and_round_trips(&m, &ctx) {
                    accepted += 1;
                }
            }
        }
    }
    // The run must reach the accept path often, or it proves little.
    assert!(accepted > 50_000, "only {accepted} inputs decoded");
}
