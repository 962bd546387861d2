//! `[anycast.NAME]` sections -> [`Anycast`]s: a service address halo holds
//! on a local interface (the loopback) while everything it tracks is
//! healthy, for a routing daemon on the same host (FRR's bgpd with
//! `redistribute connected`) to announce. halo does not speak BGP.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::diag::Diag;
use super::raw::{Field, Opt, RawDuration, RawTrack};
use super::validate::{at_most, dur, list, no_duplicates, required, take, Span};
use super::vrrp::{interface_name, target};
use super::{Anycast, VrrpInstance};

/// Where the address goes when the file does not say.
pub const DEFAULT_INTERFACE: &str = "lo";
/// How long the address still answers after its route was withdrawn.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
const MAX_DRAIN: Duration = Duration::from_secs(3600);

#[derive(Debug, serde::Deserialize)]
#[serde(expecting = "an [anycast.NAME] table")]
pub struct RawAnycast {
    pub address: Opt<String>,
    pub interface: Opt<String>,
    pub track: Opt<Vec<Field<RawTrack>>>,
    pub drain: Opt<RawDuration>,
}

/// Every section in file order; an address is announced by one section
/// only and is never also a VRRP VIP (two owners would fight over it).
pub fn sections(
    d: &mut Diag,
    raw: Vec<(Spanned<String>, RawAnycast)>,
    proxies: &[String],
    scripts: &BTreeMap<String, Option<i16>>,
    l4: &[String],
    vrrp: &[VrrpInstance],
) -> Vec<Anycast> {
    let mut out = Vec::new();
    let mut addrs: Vec<(Span, IpAddr)> = Vec::new();
    for (name, r) in raw {
        let here = format!("[anycast.{}]", name.get_ref());
        let table = name.span();
        let address = required(d, "address", r.address, &table, &here)
            .and_then(|(at, text)| host_address(d, &at, &text).map(|a| (at, a)));
        if let Some((at, a)) = &address {
            if let Some(v) = vrrp
                .iter()
                .find(|v| v.virtual_ips.iter().any(|n| n.addr() == a.addr()))
            {
                d.error(
                    at,
                    format!(
                        "`address` {} is also a virtual_ips address of [vrrp.{}]: VRRP and anycast would both add and remove it; use another address",
                        a.addr(),
                        v.name
                    ),
                );
            }
            addrs.push((at.clone(), a.addr()));
        }
        let interface = take(d, "interface", r.interface)
            .and_then(|(at, v)| interface_name(d, "interface", &at, v))
            .unwrap_or_else(|| DEFAULT_INTERFACE.to_string());
        let mut track = Vec::new();
        if let Some((_, items)) = list(d, "track", r.track) {
            for (at, t) in items {
                if let Some(w) = t.weight {
                    d.error(
                        &w.span,
                        "an [anycast] track entry has no `weight`: the address is withdrawn while any tracked item is down",
                    );
                }
                let keys = (
                    take(d, "interface", t.interface),
                    take(d, "proxy", t.proxy),
                    take(d, "script", t.script),
                    take(d, "l4", t.l4),
                );
                if let Some(what) = target(d, &at, keys, proxies, scripts, l4) {
                    if track.contains(&what) {
                        d.error(&at, "this item is already tracked");
                    } else {
                        track.push(what);
                    }
                }
            }
        }
        let (dat, drain) = dur(d, "drain", r.drain, DEFAULT_DRAIN);
        at_most(d, "drain", &dat, drain, MAX_DRAIN);
        if let Some((_, address)) = address {
            out.push(Anycast {
                name: name.get_ref().clone(),
                address,
                interface,
                track,
                drain: drain.min(MAX_DRAIN),
            });
        }
    }
    no_duplicates(d, "anycast address", addrs);
    out
}

/// One address, as `203.0.113.10`, `203.0.113.10/32` or `2001:db8::10/128`:
/// a host route is what the router learns.
fn host_address(d: &mut Diag, at: &Span, text: &str) -> Option<IpNet> {
    let net = match text.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                d.error(
                    at,
                    format!("`address`: \"{text}\" is not an address (203.0.113.10/32)"),
                );
                return None;
            }
        },
    };
    if net.prefix_len() != net.max_prefix_len() {
        d.error(
            at,
            format!(
                "`address` {text}: an anycast address is one host, /{}: every LB announces the same host route",
                net.max_prefix_len()
            ),
        );
        return None;
    }
    let a = net.addr();
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
        d.error(
            at,
            format!("`address` {a} cannot be announced (unspecified, loopback or multicast)"),
        );
        return None;
    }
    Some(net)
}

#[cfg(test)]
mod tests {
    use super::super::tests::errors;
    use super::super::{parse_str, TrackTarget};
    use super::*;

    const PROXY: &str =
        "[proxy.web]\nbind = [\"0.0.0.0:80\"]\nservers = [{ name = \"a\", address = \"192.0.2.21:80\" }]\n";

    #[test]
    fn an_anycast_address_with_its_defaults() {
        let text = format!(
            "{PROXY}\n[anycast.web]\naddress = \"203.0.113.10\"\ntrack = [{{ proxy = \"web\" }}]\n"
        );
        let cfg = parse_str("t.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.anycast,
            [Anycast {
                name: "web".into(),
                address: "203.0.113.10/32".parse().unwrap(),
                interface: "lo".into(),
                track: vec![TrackTarget::Proxy("web".into())],
                drain: DEFAULT_DRAIN,
            }]
        );
        let v6 =
            "[anycast.six]\naddress = \"2001:db8::10/128\"\ninterface = \"lo\"\ndrain = \"0s\"\n";
        let cfg = parse_str("t.toml", v6).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.anycast[0].address.to_string(), "2001:db8::10/128");
        assert_eq!(
            super::super::summary(&cfg),
            "anycast six: 2001:db8::10/128 on lo, held while halo runs (nothing tracked) for the routing daemon to announce; drain 0s"
        );
        assert_eq!(cfg.anycast[0].drain, Duration::ZERO);
        assert!(cfg.anycast[0].track.is_empty());
    }

    #[test]
    fn bad_anycast_sections_are_located() {
        let text = format!(
            "{PROXY}\n\
             [vrrp.VI_1]\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = [\"192.0.2.100/24\"]\n\n\
             [anycast.a]\naddress = \"203.0.113.0/24\"\n\n\
             [anycast.b]\naddress = \"192.0.2.100\"\ntrack = [{{ proxy = \"wbe\" }}, {{ proxy = \"web\", weight = -10 }}]\n\n\
             [anycast.c]\naddress = \"203.0.113.10\"\ndrain = \"2h\"\nintreface = \"lo\"\n\n\
             [anycast.d]\naddress = \"203.0.113.10/32\"\ninterface = \"a/b\"\n\n\
             [anycast.e]\ntrack = []\n"
        );
        let errs = errors(&text);
        let want = [
            "11:11: `address` 203.0.113.0/24: an anycast address is one host, /32: every LB announces the same host route",
            "14:11: `address` 192.0.2.100 is also a virtual_ips address of [vrrp.VI_1]: VRRP and anycast would both add and remove it; use another address",
            "15:20: track names proxy \"wbe\" but there is no [proxy.wbe] section; did you mean `web`?",
            "15:55: an [anycast] track entry has no `weight`: the address is withdrawn while any tracked item is down",
            "19:9: `drain` must be at most 1h, got 2h",
            "20:1: unknown key `intreface` in [anycast.c]; did you mean `interface`?",
            "24:13: `interface` \"a/b\" is not a network interface name (1 to 15 characters, no '/' or spaces)",
            "23:11: duplicate anycast address 203.0.113.10 (first at 18:11)",
            "26:10: [anycast.e] needs `address`",
        ];
        let mut got = errs.clone();
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{}", errs.join("\n"));
    }
}
