//! `/metrics`: a status [`Snapshot`] and the proxy's traffic counters in
//! the Prometheus text exposition format 0.0.4. A pure function of its
//! inputs; the listener takes the snapshot.
//!
//! Label names avoid `instance` and `job` (Prometheus sets those on every
//! scraped series), so a VRRP instance is `vrrp_instance`. States are
//! one-hot gauges (`halo_vrrp_state{state="MASTER"} 1`), which alert rules
//! can match without knowing a numbering.

use std::fmt::Write;

use crate::health::AdminState;
use crate::telemetry::stats::{ServiceTraffic, TrafficSnapshot, CLASSES, LATENCY_BOUNDS};
use crate::telemetry::status::Snapshot;

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const VRRP_STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];
/// One metric family: HELP and TYPE once, then its samples together, as
/// the format requires.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

impl Family<'_> {
    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{}{suffix}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        self.sample("", labels, value);
    }

    /// `_bucket` (cumulative, with `le`), `_sum` and `_count`.
    fn histogram(&mut self, labels: &[(&str, &str)], t: &TrafficSnapshot) {
        let mut cum = 0u64;
        for (i, n) in t.latency.iter().enumerate() {
            cum += n;
            let le = LATENCY_BOUNDS
                .get(i)
                .map_or("+Inf".to_string(), |b| number(*b));
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample("_bucket", &l, cum as f64);
        }
        self.sample("_sum", labels, t.latency_sum_secs);
        self.sample("_count", labels, cum as f64);
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Render everything. `start_time` is the process start in seconds since
/// the Unix epoch.
pub fn render(s: &Snapshot, traffic: &[ServiceTraffic], start_time: f64) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let o = &mut o;

    family(
        o,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    )
    .add(&[], start_time);
    family(
        o,
        "halo_build_info",
        "gauge",
        "Always 1; the version of the running halo.",
    )
    .add(&[("version", &s.version)], 1.0);

    vrrp(o, s);
    proxy(o, s, traffic);
    l4(o, s);
    anycast(o, s);
    o.to_string()
}

/// `[anycast.*]`: one-hot state per address, as `halo_vrrp_state`.
fn anycast(o: &mut String, s: &Snapshot) {
    if s.anycast.is_empty() {
        return;
    }
    let mut f = family(
        o,
        "halo_anycast_announced",
        "gauge",
        "1 while an anycast address is held (so announced by the routing daemon).",
    );
    for a in &s.anycast {
        f.add(
            &[("anycast", &a.name), ("address", &a.address)],
            flag(a.state == "announced"),
        );
    }
    let mut f = family(
        o,
        "halo_anycast_state",
        "gauge",
        "The state of an anycast address: 1 for the current one.",
    );
    for a in &s.anycast {
        for st in ["announced", "draining", "withdrawn"] {
            f.add(&[("anycast", &a.name), ("state", st)], flag(a.state == st));
        }
    }
}

/// `[l4.*]`: health, map membership and the nftables counters.
fn l4(o: &mut String, s: &Snapshot) {
    if s.l4.is_empty() {
        return;
    }
    let mut f = family(
        o,
        "halo_l4_service_up",
        "gauge",
        "1 while an l4 service has a healthy server.",
    );
    for l in &s.l4 {
        f.add(&[("l4_service", &l.name)], flag(l.up));
    }
    let mut f = family(
        o,
        "halo_l4_server_up",
        "gauge",
        "Health of each l4 server: 1 up, 0 down.",
    );
    for l in &s.l4 {
        for v in &l.servers {
            f.add(
                &[("l4_service", &l.name), ("server", &v.name)],
                flag(v.healthy),
            );
        }
    }
    let mut f = family(
        o,
        "halo_l4_server_in_map",
        "gauge",
        "1 while the server takes new flows in the nftables map.",
    );
    for l in &s.l4 {
        for v in &l.servers {
            f.add(
                &[("l4_service", &l.name), ("server", &v.name)],
                flag(v.in_map),
            );
        }
    }
    let mut f = family(
        o,
        "halo_l4_server_weight",
        "gauge",
        "Configured weight of each l4 server.",
    );
    for l in &s.l4 {
        for v in &l.servers {
            f.add(
                &[("l4_service", &l.name), ("server", &v.name)],
                f64::from(v.weight),
            );
        }
    }
    for (name, help, bytes) in [
        (
            "halo_l4_server_packets_total",
            "Packets sent to each l4 server by nftables (NAT: first packets of connections; DR: all client packets). Resets when the table is rebuilt.",
            false,
        ),
        (
            "halo_l4_server_bytes_total",
            "Bytes of those packets.",
            true,
        ),
    ] {
        let mut f = family(o, name, "counter", help);
        for l in &s.l4 {
            for v in &l.servers {
                let n = if bytes { v.bytes } else { v.packets };
                f.add(&[("l4_service", &l.name), ("server", &v.name)], n as f64);
            }
        }
    }
}

fn vrrp(o: &mut String, s: &Snapshot) {
    let mut f = family(
        o,
        "halo_vrrp_state",
        "gauge",
        "1 for the state each VRRP instance is in, 0 for the others.",
    );
    for v in &s.vrrp {
        for st in VRRP_STATES {
            f.add(
                &[("vrrp_instance", &v.name), ("state", st)],
                flag(v.state.as_str() == st),
            );
        }
    }
    let mut f = family(
        o,
        "halo_vrrp_priority",
        "gauge",
        "Configured (base) priority of each VRRP instance.",
    );
    for v in &s.vrrp {
        f.add(&[("vrrp_instance", &v.name)], v.base_priority.into());
    }
    let mut f = family(
        o,
        "halo_vrrp_effective_priority",
        "gauge",
        "Priority after tracked objects' weights.",
    );
    for v in &s.vrrp {
        f.add(&[("vrrp_instance", &v.name)], v.effective_priority.into());
    }
    let mut f = family(
        o,
        "halo_vrrp_transitions_total",
        "counter",
        "VRRP state changes.",
    );
    for v in &s.vrrp {
        f.add(&[("vrrp_instance", &v.name)], v.transitions as f64);
    }
    let mut f = family(
        o,
        "halo_vrrp_adverts_sent_total",
        "counter",
        "VRRP advertisements sent.",
    );
    for v in &s.vrrp {
        f.add(&[("vrrp_instance", &v.name)], v.adverts_sent as f64);
    }
    let mut f = family(
        o,
        "halo_vrrp_adverts_received_total",
        "counter",
        "VRRP advertisements received and accepted.",
    );
    for v in &s.vrrp {
        f.add(&[("vrrp_instance", &v.name)], v.adverts_received as f64);
    }
    let mut f = family(
        o,
        "halo_vrrp_adverts_dropped_total",
        "counter",
        "VRRP packets dropped, by reason.",
    );
    for v in &s.vrrp {
        for (reason, n) in &v.drops {
            f.add(
                &[("vrrp_instance", &v.name), ("reason", reason.as_str())],
                *n as f64,
            );
        }
    }
    let mut f = family(
        o,
        "halo_vrrp_peer_priority",
        "gauge",
        "Priority in the last advertisement from each peer.",
    );
    for v in &s.vrrp {
        for p in &v.peers {
            f.add(
                &[("vrrp_instance", &v.name), ("peer", &p.address)],
                p.priority.into(),
            );
        }
    }
    let mut f = family(
        o,
        "halo_vrrp_peer_last_advert_age_seconds",
        "gauge",
        "Seconds since the last advertisement from each peer.",
    );
    for v in &s.vrrp {
        for p in &v.peers {
            f.add(
                &[("vrrp_instance", &v.name), ("peer", &p.address)],
                p.secs_ago,
            );
        }
    }
}

fn proxy(o: &mut String, s: &Snapshot, traffic: &[ServiceTraffic]) {
    let mut f = family(
        o,
        "halo_service_up",
        "gauge",
        "1 while a proxy service has a usable server and its listeners work.",
    );
    for p in &s.proxy {
        f.add(&[("service", &p.name)], flag(p.up));
    }
    let mut f = family(
        o,
        "halo_server_up",
        "gauge",
        "Health of each server: 1 up, 0 down.",
    );
    for p in &s.proxy {
        for v in &p.servers {
            f.add(
                &[("service", &p.name), ("server", &v.name)],
                flag(v.healthy),
            );
        }
    }
    let mut f = family(
        o,
        "halo_server_admin_state",
        "gauge",
        "1 for each server's admin state (enabled, drain, disabled), 0 for the others.",
    );
    for p in &s.proxy {
        for v in &p.servers {
            for st in AdminState::ALL {
                f.add(
                    &[
                        ("service", &p.name),
                        ("server", &v.name),
                        ("state", st.as_str()),
                    ],
                    flag(v.admin == st),
                );
            }
        }
    }
    let mut f = family(
        o,
        "halo_server_weight",
        "gauge",
        "Configured weight of each server.",
    );
    for p in &s.proxy {
        for v in &p.servers {
            f.add(
                &[("service", &p.name), ("server", &v.name)],
                v.weight.into(),
            );
        }
    }

    // Traffic: the service lines count every request, including those
    // refused before a server was picked; the server lines count the
    // requests each server was picked for.
    let per_service = |o: &mut String, name, kind, help, get: &dyn Fn(&TrafficSnapshot) -> f64| {
        let mut f = family(o, name, kind, help);
        for t in traffic {
            f.add(&[("service", &t.name)], get(&t.total));
        }
    };
    let per_server = |o: &mut String, name, kind, help, get: &dyn Fn(&TrafficSnapshot) -> f64| {
        let mut f = family(o, name, kind, help);
        for t in traffic {
            for (srv, c) in &t.servers {
                f.add(&[("service", &t.name), ("server", srv)], get(c));
            }
        }
    };

    let mut f = family(
        o,
        "halo_service_requests_total",
        "counter",
        "Requests answered or ended, by status class (other: no status was sent).",
    );
    for t in traffic {
        for (i, class) in CLASSES.iter().enumerate() {
            f.add(
                &[("service", &t.name), ("code", class)],
                t.total.classes[i] as f64,
            );
        }
    }
    per_service(
        o,
        "halo_service_connections",
        "gauge",
        "Client connections open.",
        &|t| t.active as f64,
    );
    per_service(
        o,
        "halo_service_retries_total",
        "counter",
        "Connect failures followed by another attempt.",
        &|t| t.retries as f64,
    );
    per_service(
        o,
        "halo_service_connect_errors_total",
        "counter",
        "Failed connects to servers.",
        &|t| t.connect_errors as f64,
    );
    per_service(
        o,
        "halo_service_sent_bytes_total",
        "counter",
        "Request bytes sent to servers.",
        &|t| t.bytes_in as f64,
    );
    per_service(
        o,
        "halo_service_response_bytes_total",
        "counter",
        "Response bytes written to clients.",
        &|t| t.bytes_out as f64,
    );
    let mut f = family(
        o,
        "halo_service_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to the end of its response.",
    );
    for t in traffic {
        f.histogram(&[("service", &t.name)], &t.total);
    }

    let mut f = family(
        o,
        "halo_server_requests_total",
        "counter",
        "Requests sent to each server, by the status class returned to the client.",
    );
    for t in traffic {
        for (srv, c) in &t.servers {
            for (i, class) in CLASSES.iter().enumerate() {
                f.add(
                    &[("service", &t.name), ("server", srv), ("code", class)],
                    c.classes[i] as f64,
                );
            }
        }
    }
    per_server(
        o,
        "halo_server_active_requests",
        "gauge",
        "Requests in flight on each server.",
        &|t| t.active as f64,
    );
    per_server(
        o,
        "halo_server_retries_total",
        "counter",
        "Failed connects to each server that were retried.",
        &|t| t.retries as f64,
    );
    per_server(
        o,
        "halo_server_connect_errors_total",
        "counter",
        "Failed connects to each server.",
        &|t| t.connect_errors as f64,
    );
    per_server(
        o,
        "halo_server_sent_bytes_total",
        "counter",
        "Request bytes sent to each server.",
        &|t| t.bytes_in as f64,
    );
    per_server(
        o,
        "halo_server_response_bytes_total",
        "counter",
        "Response bytes from each server's requests written to clients.",
        &|t| t.bytes_out as f64,
    );
    let mut f = family(
        o,
        "halo_server_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to the end of its response, per server.",
    );
    for t in traffic {
        for (srv, c) in &t.servers {
            f.histogram(&[("service", &t.name), ("server", srv)], c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::status::{
        L4ServerView, L4View, PeerView, ServerView, ServiceView, VrrpStatus,
    };

    /// Label values are escaped (the exposition format's three escapes);
    /// names of servers and instances come from the config.
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("bad \"ttl\"\n\\x"), "bad \\\"ttl\\\"\\n\\\\x");
        let mut o = String::new();
        family(&mut o, "m", "gauge", "h").add(&[("l", "a\"b")], 1.0);
        assert!(o.contains("m{l=\"a\\\"b\"} 1\n"), "{o}");
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            pid: 1,
            uptime_secs: 5.0,
            config: "/etc/halo/halo.toml".into(),
            vrrp: vec![VrrpStatus {
                name: "VI_1".into(),
                state: crate::telemetry::status::VrrpState::Master,
                base_priority: 101,
                effective_priority: 99,
                transitions: 2,
                adverts_sent: 10,
                drops: [(crate::telemetry::status::DropReason::Ttl, 3)].into(),
                peers: vec![PeerView {
                    address: "192.0.2.12".into(),
                    priority: 100,
                    interval_ms: 1000,
                    secs_ago: 0.5,
                }],
                ..Default::default()
            }],
            proxy: vec![ServiceView {
                name: "web".into(),
                up: true,
                listeners_ok: true,
                servers: vec![ServerView {
                    name: "web1".into(),
                    address: "192.0.2.21:80".into(),
                    healthy: false,
                    admin: AdminState::Drain,
                    usable: false,
                    checked: true,
                    weight: 3,
                    last_result: None,
                    last_check_secs_ago: None,
                    state_secs: 1.0,
                    requests: 0,
                    errors: 0,
                    active: 0,
                    rate: 0.0,
                }],
            }],
            l4: vec![L4View {
                name: "dns".into(),
                address: "192.0.2.100:53/udp".into(),
                forward: "dr".into(),
                scheduler: "rr".into(),
                up: true,
                packets: 12,
                bytes: 900,
                servers: vec![L4ServerView {
                    name: "ns1".into(),
                    address: "192.0.2.21:53".into(),
                    weight: 2,
                    healthy: true,
                    in_map: true,
                    last_result: None,
                    packets: 7,
                    bytes: 500,
                }],
            }],
            anycast: vec![crate::telemetry::status::AnycastView {
                name: "web".into(),
                address: "203.0.113.10/32".into(),
                interface: "lo".into(),
                state: "draining".into(),
                reason: "withdrawn by hand".into(),
                withdrawn_by_hand: true,
                drain_secs_left: Some(1.0),
                state_secs: 1.0,
            }],
        }
    }

    fn traffic() -> Vec<ServiceTraffic> {
        let mut t = TrafficSnapshot {
            latency: vec![0; LATENCY_BOUNDS.len() + 1],
            ..Default::default()
        };
        t.classes[1] = 4;
        t.latency[0] = 1;
        t.latency[3] = 3;
        t.latency_sum_secs = 0.0301;
        vec![ServiceTraffic {
            name: "web".into(),
            total: t.clone(),
            servers: vec![("web1".into(), t)],
        }]
    }

    #[test]
    fn families_and_samples() {
        let m = render(&snapshot(), &traffic(), 1.7e9);
        assert!(m.contains("process_start_time_seconds 1700000000\n"));
        assert!(m.contains("halo_vrrp_state{vrrp_instance=\"VI_1\",state=\"MASTER\"} 1\n"));
        assert!(m.contains("halo_vrrp_state{vrrp_instance=\"VI_1\",state=\"BACKUP\"} 0\n"));
        assert!(m.contains("halo_vrrp_effective_priority{vrrp_instance=\"VI_1\"} 99\n"));
        assert!(m.contains(
            "halo_vrrp_adverts_dropped_total{vrrp_instance=\"VI_1\",reason=\"ttl\"} 3\n"
        ));
        assert!(m.contains("halo_server_up{service=\"web\",server=\"web1\"} 0\n"));
        assert!(m.contains(
            "halo_server_admin_state{service=\"web\",server=\"web1\",state=\"drain\"} 1\n"
        ));
        assert!(m.contains(
            "halo_server_requests_total{service=\"web\",server=\"web1\",code=\"2xx\"} 4\n"
        ));
        assert!(m.contains(
            "halo_server_request_duration_seconds_bucket{service=\"web\",server=\"web1\",le=\"0.001\"} 1\n"
        ));
        assert!(m.contains(
            "halo_server_request_duration_seconds_bucket{service=\"web\",server=\"web1\",le=\"0.01\"} 4\n"
        ));
        assert!(m.contains(
            "halo_server_request_duration_seconds_bucket{service=\"web\",server=\"web1\",le=\"+Inf\"} 4\n"
        ));
        assert!(m.contains(
            "halo_server_request_duration_seconds_count{service=\"web\",server=\"web1\"} 4\n"
        ));
        assert!(m.contains("halo_l4_server_in_map{l4_service=\"dns\",server=\"ns1\"} 1\n"));
        assert!(m.contains("halo_l4_server_packets_total{l4_service=\"dns\",server=\"ns1\"} 7\n"));
        assert!(
            m.contains("halo_anycast_announced{anycast=\"web\",address=\"203.0.113.10/32\"} 0\n")
        );
        assert!(m.contains("halo_anycast_state{anycast=\"web\",state=\"draining\"} 1\n"));
        // Each family is declared once, before its samples.
        let mut seen = std::collections::BTreeSet::new();
        for line in m.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).expect("name");
            assert!(seen.insert(name.to_string()), "{name} declared twice");
        }
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().expect("name");
            assert!(
                seen.iter().any(|f| name.starts_with(f.as_str())),
                "{name} has no TYPE"
            );
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.0025), "0.0025");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
