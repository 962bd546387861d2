//! `[vrrp.NAME]` sections -> [`VrrpInstance`]s: keepalived's
//! `vrrp_instance` rules (RFC 3768 for v2, RFC 5798/9568 for v3), checked
//! per instance and across instances (one vrid per interface and family).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::diag::{did_you_mean, Diag};
use super::raw::{Field, RawTrack, RawVrrp};
use super::validate::{
    at_most, boolean, dur, in_range, int, list, no_duplicates, parse_as, positive, required, take,
    Span,
};
use super::{
    duration, AdvertInterval, AuthPass, Priority, Track, TrackTarget, Vrid, VrrpInstance,
    VrrpVersion,
};

/// RFC 3768/5798 "Count IPvX Addr" is one octet.
const MAX_VIPS: usize = 255;
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(a: IpAddr) -> Family {
        if a.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// All instances in file order, then the cross-instance vrid check.
pub fn instances(
    d: &mut Diag,
    raw: Vec<(Spanned<String>, RawVrrp)>,
    proxies: &[String],
    scripts: &BTreeMap<String, Option<i16>>,
    l4: &[String],
) -> Vec<VrrpInstance> {
    let mut out = Vec::new();
    // (interface, family, vrid) -> (instance, place of its vrid)
    let mut taken: BTreeMap<(String, Family, u8), (String, Span)> = BTreeMap::new();
    for (name, r) in raw {
        let Some((inst, vrid_at, family)) = instance(d, &name, r, proxies, scripts, l4) else {
            continue;
        };
        let key = (inst.interface.clone(), family, inst.vrid.get());
        if let Some((other, first)) = taken.get(&key) {
            let msg = format!(
                "vrid {} on {} ({}) is already used by [vrrp.{other}] at {}: each virtual router on a link needs its own vrid",
                key.2,
                key.0,
                family.name(),
                d.place(first)
            );
            d.error(&vrid_at, msg);
        } else {
            taken.insert(key, (inst.name.clone(), vrid_at));
        }
        out.push(inst);
    }
    out
}

fn instance(
    d: &mut Diag,
    name: &Spanned<String>,
    mut r: RawVrrp,
    proxies: &[String],
    scripts: &BTreeMap<String, Option<i16>>,
    l4: &[String],
) -> Option<(VrrpInstance, Span, Family)> {
    let here = format!("[vrrp.{}]", name.get_ref());
    let table = name.span();
    // First, while `r` is whole: it takes its keys out of `r`.
    let hooks = super::scripts::hooks(d, &mut r);

    let interface = required(d, "interface", r.interface, &table, &here)
        .and_then(|(at, v)| interface_name(d, "interface", &at, v));
    let vrid = required(d, "vrid", r.vrid, &table, &here)
        .filter(|(at, v)| in_range(d, "vrid", at, *v, 1..=255))
        .and_then(|(at, v)| Some((at, Vrid::new(v as u8)?)));
    let version = version(d, r.version);
    let priority = take(d, "priority", r.priority).and_then(|(at, v)| {
        if (1..=255).contains(&v) {
            Priority::new(v as u8)
        } else {
            let why = if v == 0 {
                " (0 is sent only by a master that is leaving)"
            } else {
                ""
            };
            d.error(&at, format!("`priority` must be 1..=255, got {v}{why}"));
            None
        }
    });
    let priority = priority.unwrap_or(Priority::new(100).expect("100 is a valid priority"));

    // An instance may hold no address when a hook does what it is for
    // (seed 000: notify_master moves a provider's floating IP by API).
    let has_hook = [
        &hooks.master,
        &hooks.backup,
        &hooks.fault,
        &hooks.stop,
        &hooks.notify,
    ]
    .iter()
    .any(|h| h.is_some());
    // Without addresses, a v3 instance's family is its unicast peers'.
    let peer_family = r.unicast_peers.as_ref().and_then(|f| {
        let first = f.value.as_ref().ok()?.first()?;
        first
            .value
            .as_ref()
            .ok()?
            .parse::<IpAddr>()
            .ok()
            .map(Family::of)
    });
    // Addresses first: several later rules depend on the family.
    let vips = virtual_ips(d, r.virtual_ips, &table, &here, version, has_hook);
    let family = match version {
        VrrpVersion::V2 => Some(Family::V4),
        VrrpVersion::V3 => vips
            .first()
            .map(|n| Family::of(n.addr()))
            .or(peer_family)
            .or((vips.is_empty() && has_hook).then_some(Family::V4)),
    };

    let advert_interval = advert_interval(d, r.advert_interval, version);
    let preempt = !boolean(d, "nopreempt", r.nopreempt, false);
    let (delay_at, preempt_delay) = dur(d, "preempt_delay", r.preempt_delay, Duration::ZERO);
    at_most(
        d,
        "preempt_delay",
        &delay_at,
        preempt_delay,
        MAX_PREEMPT_DELAY,
    );

    let unicast_peers = match list(d, "unicast_peers", r.unicast_peers) {
        Some((_, items)) => addresses(d, "unicast_peers", items, family),
        None => Vec::new(),
    };
    let unicast_src = take(d, "unicast_src", r.unicast_src).and_then(|(at, text)| {
        let a: IpAddr = parse_as(d, "unicast_src", &at, &text, "an IP address")?;
        if unicast_peers.is_empty() {
            d.error(
                &at,
                "`unicast_src` needs `unicast_peers` (it is the source of unicast adverts)",
            );
        }
        same_family(d, "unicast_src", &at, a, family);
        Some(a)
    });

    let auth_pass =
        take(d, "auth_pass", r.auth_pass).and_then(|(at, text)| auth_pass(d, &at, &text, version));
    let v3_checksum_as_v2 = take(d, "v3_checksum_as_v2", r.v3_checksum_as_v2).is_some_and(|(at, on)| {
        if on && version == VrrpVersion::V2 {
            d.error(&at, "`v3_checksum_as_v2` only applies to version 3 instances");
        } else if on && family == Some(Family::V6) {
            d.error(&at, "`v3_checksum_as_v2` only applies to IPv4 (an IPv6 checksum always covers the pseudo-header)");
        }
        on
    });

    let garp_repeat = int(d, "garp_repeat", r.garp_repeat, 0..=100, 5) as u32;
    let (_, garp_interval) = dur(
        d,
        "garp_interval",
        r.garp_interval,
        Duration::from_millis(10),
    );
    let (refresh_at, garp_refresh) = positive(d, "garp_refresh", r.garp_refresh, Duration::ZERO);
    let garp_refresh = refresh_at.map(|_| garp_refresh);

    let track = match list(d, "track", r.track) {
        Some((_, items)) => items
            .into_iter()
            .filter_map(|(at, t)| track(d, &at, t, proxies, scripts, l4))
            .collect(),
        None => Vec::new(),
    };

    let inst = VrrpInstance {
        name: name.get_ref().clone(),
        interface: interface?,
        vrid: vrid.as_ref()?.1,
        version,
        priority,
        advert_interval: advert_interval?,
        virtual_ips: vips,
        preempt,
        preempt_delay,
        unicast_peers,
        unicast_src,
        auth_pass,
        v3_checksum_as_v2,
        garp_repeat,
        garp_interval,
        garp_refresh,
        track,
        hooks,
    };
    if inst.virtual_ips.is_empty() && !has_hook {
        return None;
    }
    Some((inst, vrid?.0, family?))
}

fn version(d: &mut Diag, f: Option<Field<i64>>) -> VrrpVersion {
    let Some((at, v)) = take(d, "version", f) else {
        return VrrpVersion::V3;
    };
    match v {
        2 => VrrpVersion::V2,
        3 => VrrpVersion::V3,
        _ => {
            d.error(&at, format!("`version` must be 2 or 3, got {v}"));
            VrrpVersion::V3
        }
    }
}

/// Linux interface names: 1..=15 bytes (IFNAMSIZ), no '/' or whitespace.
pub(super) fn interface_name(d: &mut Diag, key: &str, at: &Span, v: String) -> Option<String> {
    if v.is_empty() || v.len() > 15 || v.contains(|c: char| c == '/' || c.is_whitespace()) {
        d.error(at, format!("`{key}` \"{v}\" is not a network interface name (1 to 15 characters, no '/' or spaces)"));
        return None;
    }
    Some(v)
}

fn advert_interval(
    d: &mut Diag,
    f: Option<Field<super::raw::RawDuration>>,
    version: VrrpVersion,
) -> Option<AdvertInterval> {
    let (at, v) = dur(d, "advert_interval", f, Duration::from_secs(1));
    let at = at.unwrap_or(0..0);
    let ms = v.as_millis();
    let exact_ms = v.subsec_nanos() % 1_000_000 == 0;
    match version {
        VrrpVersion::V2 => {
            let whole_secs = exact_ms && ms % 1000 == 0;
            let secs = if whole_secs { ms / 1000 } else { 0 };
            match u8::try_from(secs).ok().and_then(AdvertInterval::from_secs) {
                Some(i) => Some(i),
                None => {
                    d.error(
                        &at,
                        format!(
                            "`advert_interval` {} is not possible with version 2: VRRPv2 (RFC 3768) advertises whole seconds, 1s..255s; use version = 3 for sub-second intervals",
                            duration::format(v)
                        ),
                    );
                    None
                }
            }
        }
        VrrpVersion::V3 => {
            let centis = if exact_ms && ms % 10 == 0 { ms / 10 } else { 0 };
            match u16::try_from(centis)
                .ok()
                .and_then(AdvertInterval::from_centis)
            {
                Some(i) => Some(i),
                None => {
                    d.error(
                        &at,
                        format!(
                            "`advert_interval` must be 10ms..40.95s in steps of 10ms for version 3 (RFC 5798 counts centiseconds), got {}",
                            duration::format(v)
                        ),
                    );
                    None
                }
            }
        }
    }
}

fn virtual_ips(
    d: &mut Diag,
    f: Option<Field<Vec<Field<String>>>>,
    table: &Span,
    here: &str,
    version: VrrpVersion,
    has_hook: bool,
) -> Vec<IpNet> {
    const NONE: &str = "or, for an instance that holds no address, a notify hook";
    if f.is_none() && !has_hook {
        d.error(table, format!("{here} needs `virtual_ips` ({NONE})"));
    }
    let Some((at, items)) = list(d, "virtual_ips", f) else {
        return Vec::new();
    };
    if items.is_empty() && !has_hook {
        d.error(
            &at,
            format!("`virtual_ips` is empty: give at least one address ({NONE})"),
        );
    }
    if items.len() > MAX_VIPS {
        d.error(
            &at,
            format!(
                "`virtual_ips` has {} addresses; an advertisement carries at most {MAX_VIPS}",
                items.len()
            ),
        );
    }
    let mut nets: Vec<(Span, IpNet)> = Vec::new();
    for (at, text) in items {
        // A bare address is a host route: /32 or /128.
        let net = text
            .parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
        match net {
            Some(n) => nets.push((at, n)),
            None => d.error(
                &at,
                format!("`virtual_ips`: \"{text}\" is not an address or address/prefix"),
            ),
        }
    }
    // v2 is IPv4 only; a v3 instance takes the family of its first address.
    let first = match version {
        VrrpVersion::V2 => Some(Family::V4),
        VrrpVersion::V3 => nets.first().map(|(_, n)| Family::of(n.addr())),
    };
    for (at, n) in &nets {
        let (fam, a) = (Family::of(n.addr()), n.addr());
        if version == VrrpVersion::V2 && fam == Family::V6 {
            d.error(
                at,
                format!("`virtual_ips` {a} is IPv6 but VRRP version 2 (RFC 3768) is IPv4 only: use version = 3"),
            );
        } else if Some(fam) != first {
            d.error(at, format!("`virtual_ips` {a} mixes address families: a VRRPv3 instance carries one family (RFC 5798); put IPv4 and IPv6 addresses in separate [vrrp.*] instances"));
        }
    }
    no_duplicates(
        d,
        "virtual_ips address",
        nets.iter().map(|(at, n)| (at.clone(), n.addr())),
    );
    nets.into_iter().map(|(_, n)| n).collect()
}

fn addresses(
    d: &mut Diag,
    key: &str,
    items: Vec<(Span, String)>,
    family: Option<Family>,
) -> Vec<IpAddr> {
    let mut out: Vec<(Span, IpAddr)> = Vec::new();
    for (at, text) in items {
        if let Some(a) = parse_as::<IpAddr>(d, key, &at, &text, "an IP address") {
            same_family(d, key, &at, a, family);
            out.push((at, a));
        }
    }
    no_duplicates(d, &format!("{key} address"), out.iter().cloned());
    out.into_iter().map(|(_, a)| a).collect()
}

fn same_family(d: &mut Diag, key: &str, at: &Span, a: IpAddr, family: Option<Family>) {
    if let Some(f) = family.filter(|f| *f != Family::of(a)) {
        d.error(
            at,
            format!(
                "`{key}` {a} is not {} like the instance's virtual_ips",
                f.name()
            ),
        );
    }
}

fn auth_pass(d: &mut Diag, at: &Span, text: &str, version: VrrpVersion) -> Option<AuthPass> {
    if version == VrrpVersion::V3 {
        d.error(at, "`auth_pass` is VRRP version 2 only: RFC 5798 (version 3) removed authentication; set version = 2 or remove it");
        return None;
    }
    if text.is_empty() {
        d.error(at, "`auth_pass` is empty: remove it for no authentication");
        return None;
    }
    if text.len() > 8 {
        d.warn(
            at,
            format!(
                "`auth_pass` is {} bytes; only the first 8 are used, as keepalived does",
                text.len()
            ),
        );
    }
    let mut pass = [0u8; 8];
    let n = text.len().min(8);
    pass[..n].copy_from_slice(&text.as_bytes()[..n]);
    Some(AuthPass(pass))
}

fn track(
    d: &mut Diag,
    at: &Span,
    t: RawTrack,
    proxies: &[String],
    scripts: &BTreeMap<String, Option<i16>>,
    l4: &[String],
) -> Option<Track> {
    let interface = take(d, "interface", t.interface);
    let proxy = take(d, "proxy", t.proxy);
    let script = take(d, "script", t.script);
    let l4_name = take(d, "l4", t.l4);
    let weight = match t.weight {
        // A script carries its own weight; a bad one was reported there.
        None if script.is_some() => script
            .as_ref()
            .and_then(|(_, name)| scripts.get(name).copied().flatten()),
        None => {
            d.error(at, "track entry needs a `weight` (-254..=254, added to the priority while the target is down)");
            None
        }
        some => super::scripts::weight(d, some),
    };
    let what = target(
        d,
        at,
        (interface, proxy, script, l4_name),
        proxies,
        scripts,
        l4,
    )?;
    Some(Track {
        what,
        weight: weight?,
    })
}

/// A track entry's `interface`, `proxy`, `script` and `l4` values, each
/// with its place.
pub(super) type TargetKeys = (
    Option<(Span, String)>,
    Option<(Span, String)>,
    Option<(Span, String)>,
    Option<(Span, String)>,
);

/// A track entry's `interface`, `proxy`, `script` or `l4` key (exactly
/// one), checked against the sections that exist. Shared with
/// `[anycast.*]`, whose entries have no weight.
pub(super) fn target(
    d: &mut Diag,
    at: &Span,
    keys: TargetKeys,
    proxies: &[String],
    scripts: &BTreeMap<String, Option<i16>>,
    l4: &[String],
) -> Option<TrackTarget> {
    let (interface, proxy, script, l4_name) = keys;
    Some(match (interface, proxy, script, l4_name) {
        (None, None, None, Some((lat, name))) => {
            if !l4.contains(&name) {
                let known: Vec<&str> = l4.iter().map(String::as_str).collect();
                d.error(
                    &lat,
                    format!(
                        "track names l4 \"{name}\" but there is no [l4.{name}] section{}",
                        did_you_mean(&name, &known)
                    ),
                );
                return None;
            }
            TrackTarget::L4(name)
        }
        (Some((iat, name)), None, None, None) => {
            TrackTarget::Interface(interface_name(d, "interface", &iat, name)?)
        }
        (None, None, Some((sat, name)), None) => {
            if !scripts.contains_key(&name) {
                let known: Vec<&str> = scripts.keys().map(String::as_str).collect();
                d.error(
                    &sat,
                    format!(
                        "track names script \"{name}\" but there is no [track_script.{name}] section{}",
                        did_you_mean(&name, &known)
                    ),
                );
                return None;
            }
            TrackTarget::Script(name)
        }
        (None, Some((pat, name)), None, None) => {
            if !proxies.contains(&name) {
                let known: Vec<&str> = proxies.iter().map(String::as_str).collect();
                d.error(
                    &pat,
                    format!(
                        "track names proxy \"{name}\" but there is no [proxy.{name}] section{}",
                        did_you_mean(&name, &known)
                    ),
                );
                return None;
            }
            TrackTarget::Proxy(name)
        }
        _ => {
            d.error(
                at,
                "track entry needs exactly one of `interface`, `proxy`, `script` or `l4`",
            );
            return None;
        }
    })
}
