//! keepalived `virtual_server IP PORT { ... }` (LVS) -> `[l4.NAME]` and
//! `[l4.NAME.health]`.
//!
//! Carried: `lb_algo` (rr, wrr, sh; the others become the closest of those
//! and are reported), `lb_kind` NAT/DR (TUN cannot be done by nftables: the
//! service is reported and left out), `protocol` TCP/UDP,
//! `persistence_timeout`, `delay_loop`, `sorry_server`, `real_server` with
//! `weight`, and one `TCP_CHECK` or `HTTP_GET` (url path, status_code,
//! digest, connect_timeout, retry / nb_get_retry -> `fall`,
//! delay_before_retry -> `fast_interval`, with keepalived's defaults when
//! absent). halo checks a service's servers all the same way, so the first
//! real_server's checker is used and a different one on another server is
//! reported. DR needs `interface`: it is
//! the interface of the vrrp_instance holding the VIP, if there is one.

use std::net::IpAddr;
use std::time::Duration;

use super::emit::{Entry, Item, Src, Table, Value};
use super::keepalived_syntax::Stmt;
use super::units::keepalived_secs;
use super::{Dropped, Origin};

/// keepalived's `delay_loop` default.
const DELAY_LOOP: Duration = Duration::from_secs(60);
/// halo's largest server weight.
const MAX_WEIGHT: i64 = 256;

/// A name for nftables objects: 1..=32 of letters, digits, `-`, `_`.
fn object_name(prefix: &str, ip: IpAddr, port: Option<u16>, n: usize) -> String {
    let mut s = format!("{prefix}{ip}").replace(['.', ':'], "_");
    if let Some(p) = port {
        s = format!("{s}_{p}");
    }
    if s.len() <= 32 {
        s
    } else {
        format!("{prefix}{n}")
    }
}

/// The interface of the vrrp_instance whose virtual_ipaddress holds `vip`.
fn vip_interface(tree: &[Stmt], vip: IpAddr) -> Option<(Src, String, usize)> {
    for s in tree.iter().filter(|s| s.keyword() == "vrrp_instance") {
        let holds = s
            .children()
            .iter()
            .filter(|c| c.keyword() == "virtual_ipaddress")
            .flat_map(|c| c.children())
            .any(|a| {
                let t = a.keyword();
                t.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) == Some(vip)
            });
        if !holds {
            continue;
        }
        let iface = s.children().iter().find(|c| c.keyword() == "interface");
        if let Some(i) = iface.and_then(|i| i.args().first()) {
            return Some((
                Src {
                    file: String::new(),
                    line: i.line,
                    text: format!("interface {}", i.text),
                },
                i.text.clone(),
                s.line(),
            ));
        }
    }
    None
}

/// `TCP_CHECK` / `HTTP_GET` / `SSL_GET` -> health entries, the rest
/// reported. `SSL_GET` is `HTTP_GET` over TLS, which keepalived does not
/// verify: `tls = { verify = "none" }`, which `halo check` warns about.
/// Also the lines carried without a key of their own (a `connect_port` that
/// is the server's port, which halo checks anyway).
fn checker(
    o: &Origin,
    c: &Stmt,
    port: u16,
    drops: &mut Vec<Dropped>,
) -> Option<(Vec<Entry>, Vec<Src>)> {
    let (http, tls) = match c.keyword() {
        "TCP_CHECK" => (false, false),
        "HTTP_GET" => (true, false),
        "SSL_GET" => (true, true),
        _ => return None,
    };
    let mut out = vec![Entry::one(
        "type",
        Value::Str(if http { "http" } else { "tcp" }.into()),
        vec![o.src(&c.words)],
    )];
    if tls {
        out.push(
            Entry::one(
                "tls",
                Value::Inline(vec![("verify", Value::Str("none".into()))]),
                vec![],
            )
            .note("keepalived's SSL_GET does not verify the server's certificate: a CA file in `verify` would"),
        );
    }
    let mut urls = 0;
    let mut cited = Vec::new();
    let (mut retry_seen, mut delay_seen) = (false, false);
    for k in c.children() {
        let arg = k.args().first().map(|w| w.text.as_str());
        let src = vec![o.src(&k.words)];
        match (k.keyword(), arg) {
            ("connect_timeout", Some(t)) => match keepalived_secs(t) {
                Ok(d) if !d.is_zero() => out.push(Entry::one("timeout", Value::Dur(d), src)),
                _ => drops.push(o.drop(k.line(), "connect_timeout", "not a number of seconds above 0")),
            },
            ("retry" | "nb_get_retry", Some(n)) => match n.parse::<i64>() {
                Ok(n) if (0..=99).contains(&n) => {
                    retry_seen = true;
                    out.push(
                        Entry::one("fall", Value::Int(n + 1), src)
                            .note("keepalived marks a server down after the first failure and its retries"),
                    )
                }
                _ => drops.push(o.drop(k.line(), k.keyword(), "halo takes 0..=99 retries")),
            },
            ("delay_before_retry", Some(t)) => match keepalived_secs(t) {
                Ok(d) if !d.is_zero() => {
                    delay_seen = true;
                    out.push(
                        Entry::one("fast_interval", Value::Dur(d), src)
                            .note("keepalived checks again after delay_before_retry while a server fails"),
                    )
                }
                _ => drops.push(o.drop(k.line(), "delay_before_retry", "not a number of seconds above 0")),
            },
            ("url", _) if http => {
                urls += 1;
                if urls > 1 {
                    drops.push(o.drop(k.line(), "url", "halo checks one URL per service: the first is carried"));
                    continue;
                }
                let url_src = o.src(&k.words);
                for u in k.children() {
                    let a = u.args().first().map(|w| w.text.as_str());
                    let src = vec![url_src.clone(), o.src(&u.words)];
                    match (u.keyword(), a) {
                        ("path", Some(p)) if p.starts_with('/') => {
                            out.push(Entry::one("path", Value::Str(p.into()), src))
                        }
                        ("status_code", Some(s)) if u.args().len() == 1 => {
                            let v = match s.parse::<i64>() {
                                Ok(n) => Value::Int(n),
                                Err(_) => Value::Str(s.into()),
                            };
                            out.push(Entry::one("expect_status", v, src))
                        }
                        ("digest", Some(d)) => out.push(Entry::one(
                            "expect_body_digest",
                            Value::Str(format!("md5:{}", d.to_ascii_lowercase())),
                            src,
                        )),
                        (kw, _) => drops.push(o.drop(u.line(), kw, "not a url setting halo carries")),
                    }
                }
            }
            ("connect_port", Some(p)) if p.parse::<u16>() == Ok(port) => cited.extend(src),
            (kw, _) => drops.push(o.drop(k.line(), kw, "not a checker setting halo carries (halo checks the server's own address and port)")),
        }
    }
    // keepalived's defaults (check_api.c, check_http.c) differ from halo's
    // (fall 3, checks at `interval`): one retry, 1 s (TCP_CHECK) or 3 s
    // (HTTP_GET) after the failure.
    if !retry_seen {
        out.push(
            Entry::one("fall", Value::Int(2), vec![])
                .note("keepalived's default: one retry after the first failure"),
        );
    }
    if !delay_seen {
        let d = Duration::from_secs(if http { 3 } else { 1 });
        out.push(
            Entry::one("fast_interval", Value::Dur(d), vec![])
                .note("keepalived's default delay_before_retry"),
        );
    }
    if http && !out.iter().any(|e| e.key == "expect_status") {
        out.push(
            Entry::one("expect_status", Value::Str("200-299".into()), vec![])
                .note("keepalived's HTTP_GET takes any 2xx without status_code"),
        );
    }
    out.push(
        Entry::one("rise", Value::Int(1), vec![])
            .note("keepalived puts a server back after one good check"),
    );
    Some((out, cited))
}

/// One `virtual_server` -> its `[l4.NAME]` (and `.health`) tables, or none
/// with the reason reported.
pub fn service(
    o: &Origin,
    s: &Stmt,
    tree: &[Stmt],
    n: usize,
    used: &mut Vec<String>,
    drops: &mut Vec<Dropped>,
) -> Vec<Table> {
    let args = s.args();
    let head = o.src(&s.words);
    let (ip, port) = match args {
        [a, p, ..] if a.text == "fwmark" || a.text == "group" => {
            let _ = p;
            drops.push(o.drop(
                s.line(),
                &format!("virtual_server {}", a.text),
                "halo's [l4] takes one address and port per service",
            ));
            return vec![];
        }
        [a, p] => match (a.text.parse::<IpAddr>(), p.text.parse::<u16>()) {
            (Ok(ip), Ok(port)) if port > 0 => (ip, port),
            _ => {
                drops.push(o.drop(s.line(), "virtual_server", "not IP PORT"));
                return vec![];
            }
        },
        _ => {
            drops.push(o.drop(s.line(), "virtual_server", "not IP PORT"));
            return vec![];
        }
    };
    // TCP and UDP on one address and port are two services (DNS).
    let udp = s.children().iter().any(|c| {
        c.keyword() == "protocol"
            && c.args()
                .first()
                .is_some_and(|p| p.text.eq_ignore_ascii_case("udp"))
    });
    let mut name = object_name("vs_", ip, Some(port), n);
    if udp {
        name = if name.len() <= 28 {
            format!("{name}_udp")
        } else {
            format!("vs_{n}_udp")
        };
    }
    if used.contains(&name) {
        drops.push(o.drop(
            s.line(),
            &format!("virtual_server {ip} {port}"),
            "the same address, port and protocol as an earlier virtual_server: the first is imported",
        ));
        return vec![];
    }
    used.push(name.clone());
    let mut t = Table::new(&["l4", &name], vec![head]);
    t.entries
        .push(Entry::one("address", Value::Str(ip.to_string()), vec![]));
    t.entries
        .push(Entry::one("port", Value::Int(port.into()), vec![]));
    let mut forward_dr = None;
    let mut health: Option<(Vec<Entry>, Vec<Src>)> = None;
    let mut health_at = 0;
    let mut interval: Option<(Src, Duration)> = None;
    let mut servers = Vec::new();
    let mut sorry = None;
    let mut names: Vec<String> = Vec::new();
    let mut out_keys: Vec<Entry> = Vec::new();
    for c in s.children() {
        let arg = c.args().first().map(|w| w.text.as_str());
        let src = vec![o.src(&c.words)];
        match (c.keyword(), arg) {
            ("lb_algo", Some(a)) => {
                let (sched, why) = match a {
                    "rr" | "wrr" | "sh" => (a, None),
                    "wlc" | "lc" | "sed" | "nq" | "fo" | "ovf" | "lblc" | "lblcr" => (
                        "wrr",
                        Some(
                            "halo's nftables balancing knows no connection counts: carried as wrr",
                        ),
                    ),
                    "mh" | "dh" => ("sh", Some("carried as sh (source-address hash)")),
                    _ => ("rr", Some("not an LVS scheduler halo knows: carried as rr")),
                };
                if let Some(why) = why {
                    drops.push(o.drop(c.line(), &format!("lb_algo {a}"), why));
                }
                out_keys.push(Entry::one("scheduler", Value::Str(sched.into()), src));
            }
            ("lb_kind", Some(k)) => match k.to_ascii_uppercase().as_str() {
                "NAT" => {
                    forward_dr = Some(false);
                    out_keys.push(Entry::one("forward", Value::Str("nat".into()), src.clone()));
                    out_keys.push(
                        Entry::one("snat", Value::Bool(false), src)
                            .note("LVS-NAT: the servers must route replies through the balancer, as with keepalived"),
                    );
                }
                "DR" => {
                    forward_dr = Some(true);
                    out_keys.push(Entry::one("forward", Value::Str("dr".into()), src));
                }
                _ => {
                    drops.push(o.drop(s.line(), &format!("virtual_server {ip} {port}"), format!("lb_kind {k} at line {}: nftables cannot tunnel (IPIP); only NAT and DR are carried", c.line())));
                    return vec![];
                }
            },
            ("protocol", Some(p)) => match p.to_ascii_uppercase().as_str() {
                "TCP" => out_keys.push(Entry::one("protocol", Value::Str("tcp".into()), src)),
                "UDP" => out_keys.push(Entry::one("protocol", Value::Str("udp".into()), src)),
                _ => {
                    drops.push(o.drop(
                        s.line(),
                        &format!("virtual_server {ip} {port}"),
                        format!(
                            "protocol {p} at line {}: halo's [l4] balances TCP and UDP only",
                            c.line()
                        ),
                    ));
                    return vec![];
                }
            },
            ("persistence_timeout", Some(t)) => match keepalived_secs(t) {
                Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(30 * 86400) => {
                    out_keys.push(Entry::one("persistence", Value::Dur(d), src))
                }
                _ => drops.push(o.drop(c.line(), "persistence_timeout", "halo takes 1s..=30d")),
            },
            ("delay_loop", Some(t)) => match keepalived_secs(t) {
                Ok(d) if !d.is_zero() => interval = Some((src[0].clone(), d)),
                _ => drops.push(o.drop(c.line(), "delay_loop", "not a number of seconds above 0")),
            },
            ("sorry_server", Some(a)) => {
                let p = c.args().get(1).map_or(port.to_string(), |w| w.text.clone());
                match (a.parse::<IpAddr>(), p.parse::<u16>()) {
                    (Ok(sip), Ok(sp)) if sp > 0 => {
                        sorry = Some(Entry::one("sorry", Value::Str(sock(sip, sp)), src))
                    }
                    _ => drops.push(o.drop(c.line(), "sorry_server", "not IP PORT")),
                }
            }
            ("real_server", Some(a)) => {
                let p = c.args().get(1).map_or(port.to_string(), |w| w.text.clone());
                let (Ok(rip), Ok(rp)) = (a.parse::<IpAddr>(), p.parse::<u16>()) else {
                    drops.push(o.drop(c.line(), "real_server", "not IP PORT"));
                    continue;
                };
                let mut from = src.clone();
                let mut weight = 1;
                let mut has_check = false;
                for k in c.children() {
                    let ks = o.src(&k.words);
                    match k.keyword() {
                        "weight" => match k.args().first().and_then(|w| w.text.parse::<i64>().ok()) {
                            Some(w) if (1..=MAX_WEIGHT).contains(&w) => {
                                weight = w;
                                from.push(ks);
                            }
                            Some(w) if w > MAX_WEIGHT => {
                                weight = MAX_WEIGHT;
                                drops.push(o.drop(k.line(), "weight", "halo takes 1..=256: carried as 256"));
                            }
                            _ => drops.push(o.drop(k.line(), "weight", "halo takes 1..=256 (weight 0, quiesced, is not carried): carried as 1")),
                        },
                        "TCP_CHECK" | "HTTP_GET" | "SSL_GET" => {
                            if has_check {
                                drops.push(o.drop(k.line(), k.keyword(), "halo runs one checker per server"));
                                continue;
                            }
                            has_check = true;
                            match &health {
                                None => {
                                    health = checker(o, k, rp, drops);
                                    health_at = k.line();
                                }
                                Some(h) => {
                                    let mut ignore = Vec::new();
                                    let this = checker(o, k, rp, &mut ignore);
                                    let same = this.as_ref().map(|e| shape(&e.0)) == Some(shape(&h.0));
                                    if same {
                                        // Carried by the first server's checker: cite
                                        // every line at this server, and report
                                        // what the checker itself drops.
                                        let mut lines = Vec::new();
                                        cite(o, k, &mut lines);
                                        lines.retain(|l| !ignore.iter().any(|d| d.line == l.line));
                                        from.extend(lines);
                                        drops.append(&mut ignore);
                                    } else {
                                        drops.push(o.drop(k.line(), k.keyword(), format!("halo checks all servers of a service alike: the checker at line {health_at} is used")));
                                    }
                                }
                            }
                        }
                        kw => drops.push(o.drop(k.line(), kw, "not a real_server setting halo carries")),
                    }
                }
                let rname = object_name("", rip, None, servers.len() + 1);
                let rname = if names.contains(&rname) || rname.is_empty() {
                    format!("rs{}", servers.len() + 1)
                } else {
                    rname
                };
                names.push(rname.clone());
                servers.push(Item {
                    value: Value::Inline(vec![
                        ("name", Value::Str(rname)),
                        ("address", Value::Str(sock(rip, rp))),
                        ("weight", Value::Int(weight)),
                    ]),
                    from,
                });
            }
            (kw, _) => {
                drops.push(o.drop(c.line(), kw, "not a virtual_server setting halo carries"))
            }
        }
    }
    if servers.is_empty() {
        drops.push(o.drop(
            s.line(),
            &format!("virtual_server {ip} {port}"),
            "no real_server halo can carry",
        ));
        return vec![];
    }
    if forward_dr == Some(true) {
        if ip.is_ipv6() {
            drops.push(o.drop(
                s.line(),
                &format!("virtual_server {ip} {port}"),
                "halo's direct routing is IPv4 only",
            ));
            return vec![];
        }
        match vip_interface(tree, ip) {
            Some((mut isrc, iface, inst_line)) => {
                isrc.file = o.src(&s.words).file;
                t.entries
                    .push(
                        Entry::one("interface", Value::Str(iface), vec![isrc]).note(format!(
                            "the vrrp_instance at line {inst_line} holds this VIP"
                        )),
                    );
            }
            None => {
                drops.push(o.drop(s.line(), &format!("virtual_server {ip} {port}"), "lb_kind DR needs `interface` in halo and no vrrp_instance holds this VIP: add interface = \"...\" by hand"));
                return vec![];
            }
        }
    }
    t.entries.extend(out_keys);
    t.entries.push(Entry::many("servers", servers));
    t.entries.extend(sorry);
    let mut out = vec![t];
    if let Some((mut h, cited)) = health {
        let (from, d) = match interval {
            Some((src, d)) => (vec![src], d),
            None => (vec![], DELAY_LOOP),
        };
        let mut e = Entry::one("interval", Value::Dur(d), from);
        if e.from.is_empty() {
            e = e.note("keepalived's default delay_loop");
        }
        // halo refuses a timeout longer than the interval.
        for x in h.iter_mut().filter(|x| x.key == "timeout") {
            if matches!(x.rhs, super::emit::Rhs::One(Value::Dur(t)) if t > d) {
                x.rhs = super::emit::Rhs::One(Value::Dur(d));
                x.notes.push(
                    "halo's timeout must not exceed the interval (delay_loop): shortened to it"
                        .into(),
                );
            }
        }
        h.insert(1, e);
        let mut ht = Table::new(&["l4", &name, "health"], cited);
        ht.entries = h;
        out.push(ht);
    } else if let Some((src, _)) = interval {
        drops.push(o.drop(
            src.line,
            "delay_loop",
            "no real_server has a checker halo carries",
        ));
    }
    out
}

/// Every line of `s` and its blocks, as source comments.
fn cite(o: &Origin, s: &Stmt, out: &mut Vec<Src>) {
    out.push(o.src(&s.words));
    for c in s.children() {
        cite(o, c, out);
    }
}

fn shape(e: &[Entry]) -> Vec<(&'static str, String)> {
    e.iter().map(|x| (x.key, format!("{:?}", x.rhs))).collect()
}

fn sock(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}
