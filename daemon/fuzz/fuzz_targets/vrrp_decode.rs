//! Fuzz the VRRP codec: `Advert::decode` must never panic on any bytes,
//! under every checksum context, and whatever it accepts must survive
//! encode -> decode unchanged. Also runs `strip_ipv4_header` on the input
//! as a whole datagram and decodes its payload in the context it names.

#![no_main]

use std::net::IpAddr;

use halo::vrrp::packet::{strip_ipv4_header, Advert, PacketCtx};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8], ctx: &PacketCtx) {
    if let Ok(advert) = Advert::decode(data, ctx) {
        let bytes = advert
            .try_encode(ctx)
            .expect("a decoded advert is encodable");
        assert_eq!(Advert::decode(&bytes, ctx).as_ref(), Ok(&advert));
    }
}

fuzz_target!(|data: &[u8]| {
    let v4 = |s: &str| -> IpAddr { s.parse().unwrap() };
    let contexts = [
        PacketCtx::new(v4("192.0.2.11"), v4("224.0.0.18")),
        PacketCtx {
            v3_checksum_as_v2: true,
            ..PacketCtx::new(v4("192.0.2.11"), v4("224.0.0.18"))
        },
        PacketCtx::new(v4("fe80::11"), v4("ff02::12")),
        // Mixed families must be refused, not mis-summed.
        PacketCtx::new(v4("192.0.2.11"), v4("ff02::12")),
    ];
    for ctx in &contexts {
        check(data, ctx);
    }
    if let Ok((meta, payload)) = strip_ipv4_header(data) {
        assert!(payload.len() <= data.len().saturating_sub(20));
        for as_v2 in [false, true] {
            let ctx = PacketCtx {
                src: meta.src.into(),
                dst: meta.dst.into(),
                v3_checksum_as_v2: as_v2,
            };
            check(payload, &ctx);
        }
    }
});
