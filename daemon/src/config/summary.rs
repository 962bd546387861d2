//! `halo check`'s one-screen summary of what a validated config sets up.

use std::fmt::Write;

use super::duration::format as dur;
use super::{
    Balance, CheckKind, Config, ExpectStatus, HealthCheck, IoDriver, Priority, ProxyMode,
    ProxyProtocol, ProxyService, TrackTarget, VrrpInstance, VrrpVersion,
};

/// One block per VRRP instance and proxy service, then any warnings.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    for v in &cfg.vrrp {
        vrrp(&mut out, v);
    }
    for g in &cfg.sync_groups {
        let _ = writeln!(
            out,
            "vrrp_sync_group {}: {} change state together",
            g.name,
            g.instances.join(", ")
        );
    }
    for p in &cfg.proxy {
        proxy(&mut out, p);
    }
    for l in &cfg.l4 {
        l4(&mut out, l);
    }
    for a in &cfg.anycast {
        let track: Vec<String> = a
            .track
            .iter()
            .map(|t| match t {
                TrackTarget::Interface(i) => format!("interface {i}"),
                TrackTarget::Proxy(p) => format!("proxy {p}"),
                TrackTarget::Script(s) => format!("script {s}"),
                TrackTarget::L4(s) => format!("l4 {s}"),
            })
            .collect();
        let held = if track.is_empty() {
            "while halo runs (nothing tracked)".to_string()
        } else {
            let verb = if track.len() == 1 { "is" } else { "are" };
            format!("while {} {verb} up", track.join(" and "))
        };
        let _ = writeln!(
            out,
            "anycast {}: {} on {}, held {held} for the routing daemon to announce; drain {}",
            a.name,
            a.address,
            a.interface,
            dur(a.drain)
        );
    }
    for w in &cfg.warnings {
        let _ = writeln!(out, "{w}");
    }
    out.trim_end().to_string()
}

fn vrrp(out: &mut String, v: &VrrpInstance) {
    let version = match v.version {
        VrrpVersion::V2 => 2,
        VrrpVersion::V3 => 3,
    };
    let owner = if v.priority == Priority::OWNER {
        " (address owner)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "vrrp {}: interface {}, vrid {}, version {version}, priority {}{owner}, advert every {}",
        v.name,
        v.interface,
        v.vrid.get(),
        v.priority.get(),
        dur(v.advert_interval.as_duration()),
    );
    let vips: Vec<String> = v.virtual_ips.iter().map(|n| n.to_string()).collect();
    if vips.is_empty() {
        let _ = writeln!(
            out,
            "  no virtual_ips: holds no address, its notify hooks act"
        );
    } else {
        let _ = writeln!(out, "  virtual_ips {}", vips.join(", "));
    }
    let mode = if v.unicast_peers.is_empty() {
        "multicast".to_string()
    } else {
        let peers: Vec<String> = v.unicast_peers.iter().map(|a| a.to_string()).collect();
        let src = v
            .unicast_src
            .map_or(String::new(), |s| format!(" from {s}"));
        format!("unicast to {}{src}", peers.join(", "))
    };
    let preempt = if !v.preempt {
        "nopreempt".to_string()
    } else if v.preempt_delay.is_zero() {
        "preempt".to_string()
    } else {
        format!("preempt after {}", dur(v.preempt_delay))
    };
    let mut extras = String::new();
    if v.auth_pass.is_some() {
        extras.push_str(", auth_pass set");
    }
    if v.v3_checksum_as_v2 {
        extras.push_str(", v3 checksum as v2");
    }
    let refresh = v
        .garp_refresh
        .map_or(String::new(), |r| format!(", refresh every {}", dur(r)));
    let _ = writeln!(
        out,
        "  {mode}, {preempt}, garp {} x {}{refresh}{extras}",
        v.garp_repeat,
        dur(v.garp_interval)
    );
    if !v.track.is_empty() {
        let tracks: Vec<String> = v
            .track
            .iter()
            .map(|t| match &t.what {
                TrackTarget::Interface(i) => format!("interface {i} {:+}", t.weight),
                TrackTarget::Proxy(p) => format!("proxy {p} {:+}", t.weight),
                TrackTarget::Script(s) => format!("script {s} {:+}", t.weight),
                TrackTarget::L4(s) => format!("l4 {s} {:+}", t.weight),
            })
            .collect();
        let _ = writeln!(out, "  track {}", tracks.join(", "));
    }
}

fn proxy(out: &mut String, p: &ProxyService) {
    let binds: Vec<String> = p
        .bind
        .iter()
        .zip(&p.bind_opts)
        .map(|(a, o)| match (&o.tls, o.redirect_https) {
            (Some(t), _) => format!("{a} (tls: {})", t.names().join(" ")),
            (None, true) => format!("{a} (redirect to https)"),
            (None, false) => a.to_string(),
        })
        .collect();
    let balance = match p.balance {
        Balance::RoundRobin => "roundrobin",
        Balance::LeastConn => "leastconn",
        Balance::Source => "source",
    };
    let io = match p.io {
        IoDriver::Auto => "auto",
        IoDriver::Uring => "uring",
        IoDriver::Epoll => "epoll",
    };
    let limit = |n: u32| {
        if n == 0 {
            "unlimited".to_string()
        } else {
            n.to_string()
        }
    };
    let _ = writeln!(
        out,
        "proxy {}{}: bind {}, balance {balance}, {} workers (io {io}), maxconn {}, queue {}, retries {}",
        p.name,
        if p.mode == ProxyMode::Tcp { " (tcp)" } else { "" },
        binds.join(", "),
        p.workers,
        limit(p.maxconn),
        p.queue_len,
        p.retries,
    );
    let servers: Vec<String> = p
        .servers
        .iter()
        .map(|s| {
            let maxconn = if s.maxconn == 0 {
                String::new()
            } else {
                format!(" maxconn {}", s.maxconn)
            };
            let send_proxy = match s.send_proxy {
                None => "",
                Some(ProxyProtocol::V1) => " send_proxy v1",
                Some(ProxyProtocol::V2) => " send_proxy v2",
            };
            let tls = s
                .tls
                .as_ref()
                .map_or(String::new(), |t| format!(" {}", t.describe()));
            format!(
                "{} {} weight {}{maxconn}{send_proxy}{tls}",
                s.name, s.address, s.weight
            )
        })
        .collect();
    let _ = writeln!(out, "  servers {}", servers.join(", "));
    match &p.health {
        Some(h) => {
            let _ = writeln!(out, "  health {}", health(h));
        }
        None => {
            let _ = writeln!(out, "  health none (servers count as up)");
        }
    }
}

fn l4(out: &mut String, l: &super::L4Service) {
    let forward = match &l.forward {
        super::L4Forward::Nat { snat: true } => "nat (and snat)".to_string(),
        super::L4Forward::Nat { snat: false } => "nat".to_string(),
        super::L4Forward::Dr { interface } => format!("dr on {interface}"),
    };
    let persistence = l
        .persistence
        .map_or(String::new(), |p| format!(", persistence {}", dur(p)));
    let _ = writeln!(
        out,
        "l4 {}: {} {} port {}, forward {forward}, scheduler {}{persistence}",
        l.name,
        l.protocol.as_str(),
        l.address,
        l.port,
        l.scheduler.as_str(),
    );
    let servers: Vec<String> = l
        .servers
        .iter()
        .map(|s| format!("{} {} weight {}", s.name, s.address, s.weight))
        .collect();
    let _ = writeln!(out, "  servers {}", servers.join(", "));
    if let Some(s) = l.sorry {
        let _ = writeln!(out, "  sorry {s}");
    }
    match &l.health {
        Some(h) => {
            let _ = writeln!(out, "  health {}", health(h));
        }
        None => {
            let _ = writeln!(out, "  health none (servers count as up)");
        }
    }
}

fn health(h: &HealthCheck) -> String {
    let what = match &h.kind {
        CheckKind::Tcp => "tcp connect".to_string(),
        CheckKind::Http {
            method,
            path,
            host,
            expect_status,
            expect_body_digest,
        } => {
            let host = host
                .as_ref()
                .map_or(String::new(), |h| format!(" Host {h}"));
            let expect = match expect_status {
                ExpectStatus::Codes(c) => {
                    c.iter().map(u16::to_string).collect::<Vec<_>>().join("|")
                }
                ExpectStatus::Range(lo, hi) => format!("{lo}-{hi}"),
            };
            let digest = if expect_body_digest.is_some() {
                " and body digest"
            } else {
                ""
            };
            format!("http {method} {path}{host} expect {expect}{digest}")
        }
    };
    let fast = if h.fast_interval == h.interval {
        String::new()
    } else {
        format!(" ({} while changing)", dur(h.fast_interval))
    };
    let mut observe = Vec::new();
    if h.observe_connect_errors {
        observe.push("connect");
    }
    if h.observe_5xx {
        observe.push("5xx");
    }
    let observe = if observe.is_empty() {
        String::new()
    } else {
        format!(", observe {}", observe.join("+"))
    };
    format!(
        "{what}, every {}{fast}, timeout {}, rise {}, fall {}, start {}{observe}",
        dur(h.interval),
        dur(h.timeout),
        h.rise,
        h.fall,
        if h.initial_up { "up" } else { "down" },
    )
}
