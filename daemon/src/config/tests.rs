//! Whole-file tests of `parse_str`: the issue's example, the defaults, and
//! each class of error with its exact `LINE:COL`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::*;

/// The example from the issue; it must be accepted unchanged.
const ISSUE_EXAMPLE: &str = r#"[vrrp.VI_1]
interface = "eth0"
vrid = 51
priority = 101
advert_interval = "1s"
virtual_ips = ["192.0.2.100/24"]

[proxy.web]
bind = ["0.0.0.0:80"]
balance = "roundrobin"
servers = [
  { name = "web1", address = "192.0.2.21:80" },
  { name = "web2", address = "192.0.2.22:80" },
  { name = "web3", address = "192.0.2.23:80", weight = 2 },
]

[proxy.web.health]
path = "/health"
expect_status = 200
interval = "2s"
rise = 2
fall = 3
"#;

const MIN_VRRP: &str = "[vrrp.v]\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"192.0.2.1\"]\n";
const MIN_PROXY: &str =
    "[proxy.p]\nbind = [\"192.0.2.1:80\"]\nservers = [{ name = \"a\", address = \"192.0.2.2:80\" }]\n";

fn ok(text: &str) -> Config {
    match parse_str("t.toml", text) {
        Ok(c) => c,
        Err(e) => panic!("expected OK, got:\n{e}"),
    }
}

/// Errors as "LINE:COL: message", after checking the file name is there.
/// Every error `text` gives, as `LINE:COL: message` (also used by the
/// config submodules' tests).
pub(super) fn errors(text: &str) -> Vec<String> {
    let errs = parse_str("t.toml", text).expect_err("expected errors").0;
    assert!(!errs.is_empty());
    errs.iter()
        .map(|e| {
            assert_eq!(e.file, "t.toml");
            format!("{}:{}: {}", e.line, e.col, e.message)
        })
        .collect()
}

/// The single error of a file.
fn error(text: &str) -> String {
    let mut e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.remove(0)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// === accepted files ===

#[test]
fn issue_example_is_accepted_with_its_values() {
    let c = ok(ISSUE_EXAMPLE);
    assert_eq!(c.vrrp.len(), 1);
    let v = &c.vrrp[0];
    assert_eq!(v.name, "VI_1");
    assert_eq!(v.interface, "eth0");
    assert_eq!(v.vrid.get(), 51);
    assert_eq!(v.priority.get(), 101);
    assert_eq!(v.version, VrrpVersion::V3);
    assert_eq!(v.advert_interval.centis(), 100);
    assert_eq!(
        v.virtual_ips,
        vec!["192.0.2.100/24".parse::<ipnet::IpNet>().unwrap()]
    );

    assert_eq!(c.proxy.len(), 1);
    let p = &c.proxy[0];
    assert_eq!(p.name, "web");
    assert_eq!(p.bind, vec![sa("0.0.0.0:80")]);
    assert_eq!(p.balance, Balance::RoundRobin);
    let servers: Vec<(&str, SocketAddr, u32)> = p
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.address, s.weight))
        .collect();
    assert_eq!(
        servers,
        vec![
            ("web1", sa("192.0.2.21:80"), 1),
            ("web2", sa("192.0.2.22:80"), 1),
            ("web3", sa("192.0.2.23:80"), 2),
        ]
    );
    let h = p.health.as_ref().expect("health table");
    assert_eq!(
        h.kind,
        CheckKind::Http {
            method: "GET".into(),
            path: "/health".into(),
            host: None,
            expect_status: ExpectStatus::Codes(vec![200]),
            expect_body_digest: None,
        }
    );
    assert_eq!(h.interval, Duration::from_secs(2));
    assert_eq!((h.rise, h.fall), (2, 3));
    assert!(c.warnings.is_empty());
}

#[test]
fn shipped_example_is_accepted() {
    let text = include_str!("../../../docs/examples/halo.toml");
    let c = ok(text);
    assert!(!c.vrrp.is_empty() && !c.proxy.is_empty());
}

#[test]
fn vrrp_defaults() {
    let c = ok(MIN_VRRP);
    let v = &c.vrrp[0];
    assert_eq!(v.version, VrrpVersion::V3);
    assert_eq!(v.priority.get(), 100);
    assert_eq!(v.advert_interval.as_duration(), Duration::from_secs(1));
    assert!(v.preempt);
    assert_eq!(v.preempt_delay, Duration::ZERO);
    assert!(v.unicast_peers.is_empty() && v.unicast_src.is_none());
    assert_eq!(v.auth_pass, None);
    assert!(!v.v3_checksum_as_v2);
    assert_eq!(v.garp_repeat, 5);
    assert_eq!(v.garp_interval, Duration::from_millis(10));
    assert_eq!(v.garp_refresh, None);
    assert!(v.track.is_empty());
    // A bare address is a host route.
    assert_eq!(v.virtual_ips[0].to_string(), "192.0.2.1/32");
    assert_eq!(
        c.global.control_socket,
        std::path::PathBuf::from("/run/halo/halo.sock")
    );
    assert_eq!(c.global.pid_file, None);
    assert_eq!(c.global.log_level, None);
    assert!(c.proxy.is_empty());
}

#[test]
fn proxy_defaults() {
    let c = ok(MIN_PROXY);
    assert!(c.vrrp.is_empty());
    let p = &c.proxy[0];
    assert_eq!(p.balance, Balance::RoundRobin);
    assert_eq!((p.retries, p.maxconn, p.queue_len), (3, 2000, 1024));
    assert_eq!(
        p.forwardfor,
        ForwardFor {
            enabled: true,
            except: vec![]
        }
    );
    assert_eq!(p.io, IoDriver::Auto);
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64);
    assert_eq!(p.workers, cores);
    assert!(p.dontlognull);
    assert_eq!(p.health, None);
    assert_eq!((p.servers[0].weight, p.servers[0].maxconn), (1, 0));
    let s = Duration::from_secs;
    assert_eq!(
        p.timeouts,
        Timeouts {
            connect: s(5),
            client: s(30),
            server: s(30),
            http_request: s(10),
            keep_alive: s(10),
            queue: s(5)
        }
    );
    assert_eq!(
        p.limits,
        Limits {
            max_head_bytes: 16384,
            max_headers: 100
        }
    );
}

#[test]
fn health_defaults() {
    let c = ok(&format!("{MIN_PROXY}[proxy.p.health]\n"));
    let h = c.proxy[0]
        .health
        .clone()
        .expect("an empty health table still checks");
    assert_eq!(
        h,
        HealthCheck {
            kind: CheckKind::Http {
                method: "GET".into(),
                path: "/".into(),
                host: None,
                expect_status: ExpectStatus::Range(200, 399),
                expect_body_digest: None,
            },
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            initial_up: true,
            observe_connect_errors: true,
            observe_5xx: false,
            tls: crate::config::HealthTls::Inherit,
        }
    );
}

#[test]
fn every_key_set() {
    let c = ok(r#"
[global]
log_level = "halo=debug,info"
control_socket = "/run/halo-a/halo.sock"
pid_file = "/run/halo-a/halo.pid"

[vrrp.six]
interface = "eth1"
vrid = 7
version = 3
priority = 255
advert_interval = "50ms"
virtual_ips = ["2001:db8::10/64", "2001:db8::11"]
nopreempt = true
preempt_delay = "1.5s"
unicast_peers = ["2001:db8::2", "2001:db8::3"]
unicast_src = "2001:db8::1"
garp_repeat = 0
garp_interval = "100ms"
garp_refresh = "1m"
track = [{ interface = "eth0", weight = -20 }, { proxy = "api", weight = -50 }]

[vrrp.old]
interface = "eth0"
vrid = 7
version = 2
advert_interval = "255s"
virtual_ips = ["192.0.2.50/24"]
auth_pass = "pw"

[proxy.api]
bind = ["[::]:8080", "192.0.2.1:8080"]
balance = "leastconn"
servers = [{ name = "a", address = "[2001:db8::21]:80", weight = 256, maxconn = 10 }]
retries = 0
maxconn = 0
queue = 5
forwardfor = false
forwardfor_except = ["192.0.2.0/24", "2001:db8::1"]
io = "epoll"
workers = 3
dontlognull = false
timeouts = { connect = "1s", client = "2s", server = "3s", http_request = "4s", keep_alive = "5s", queue = "6s" }
limits = { max_head_bytes = 1024, max_headers = 1000 }

[proxy.api.health]
type = "http"
method = "HEAD"
path = "/ping?x=1"
host = "example.test"
expect_status = [200, 204]
expect_body_digest = "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
interval = "5s"
fast_interval = "1s"
timeout = "5s"
rise = 1
fall = 100
initial = "down"
observe = ["connect", "5xx"]
"#);
    assert_eq!(c.global.log_level.as_deref(), Some("halo=debug,info"));
    assert_eq!(c.global.pid_file, Some("/run/halo-a/halo.pid".into()));
    let v = &c.vrrp[0];
    assert_eq!(v.name, "six", "instances keep file order");
    assert_eq!(v.priority, Priority::OWNER);
    assert_eq!(v.advert_interval.centis(), 5);
    assert!(!v.preempt);
    assert_eq!(v.preempt_delay, Duration::from_millis(1500));
    assert_eq!(v.unicast_peers, vec![ip("2001:db8::2"), ip("2001:db8::3")]);
    assert_eq!(v.unicast_src, Some(ip("2001:db8::1")));
    assert_eq!(v.garp_repeat, 0);
    assert_eq!(v.garp_refresh, Some(Duration::from_secs(60)));
    assert_eq!(
        v.track,
        vec![
            Track {
                what: TrackTarget::Interface("eth0".into()),
                weight: -20
            },
            Track {
                what: TrackTarget::Proxy("api".into()),
                weight: -50
            },
        ]
    );
    let old = &c.vrrp[1];
    assert_eq!(old.version, VrrpVersion::V2);
    assert_eq!(old.advert_interval.as_duration(), Duration::from_secs(255));
    assert_eq!(old.auth_pass, Some(AuthPass(*b"pw\0\0\0\0\0\0")));

    let p = &c.proxy[0];
    assert_eq!(p.bind, vec![sa("[::]:8080"), sa("192.0.2.1:8080")]);
    assert_eq!(p.balance, Balance::LeastConn);
    assert_eq!((p.servers[0].weight, p.servers[0].maxconn), (256, 10));
    assert_eq!((p.retries, p.maxconn, p.queue_len, p.workers), (0, 0, 5, 3));
    assert!(!p.forwardfor.enabled && !p.dontlognull);
    assert_eq!(p.forwardfor.except.len(), 2);
    assert_eq!(p.io, IoDriver::Epoll);
    assert_eq!(p.timeouts.queue, Duration::from_secs(6));
    assert_eq!(
        p.limits,
        Limits {
            max_head_bytes: 1024,
            max_headers: 1000
        }
    );
    let h = p.health.as_ref().unwrap();
    match &h.kind {
        CheckKind::Http {
            method,
            host,
            expect_status,
            expect_body_digest,
            ..
        } => {
            assert_eq!(method, "HEAD");
            assert_eq!(host.as_deref(), Some("example.test"));
            assert!(expect_status.matches(204) && !expect_status.matches(201));
            let (alg, hex) = expect_body_digest.as_ref().unwrap();
            assert_eq!(*alg, DigestAlg::Sha256);
            assert_eq!(
                hex,
                "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
            );
        }
        CheckKind::Tcp => panic!("http expected"),
    }
    assert_eq!(
        (h.fast_interval, h.rise, h.fall, h.initial_up),
        (Duration::from_secs(1), 1, 100, false)
    );
    assert!(h.observe_5xx && h.observe_connect_errors);
}

#[test]
fn tcp_check_and_status_range() {
    let c = ok(&format!(
        "{MIN_PROXY}[proxy.p.health]\ntype = \"tcp\"\nobserve = []\n"
    ));
    let h = c.proxy[0].health.as_ref().unwrap();
    assert_eq!(h.kind, CheckKind::Tcp);
    assert!(!h.observe_connect_errors && !h.observe_5xx);
    let c = ok(&format!(
        "{MIN_PROXY}[proxy.p.health]\nexpect_status = \"200-299\"\n"
    ));
    match &c.proxy[0].health.as_ref().unwrap().kind {
        CheckKind::Http { expect_status, .. } => {
            assert_eq!(*expect_status, ExpectStatus::Range(200, 299))
        }
        CheckKind::Tcp => panic!(),
    }
}

#[test]
fn same_vrid_is_fine_on_another_interface_or_family() {
    ok(r#"
[vrrp.a]
interface = "eth0"
vrid = 9
virtual_ips = ["192.0.2.1"]
[vrrp.b]
interface = "eth0"
vrid = 9
virtual_ips = ["2001:db8::1"]
[vrrp.c]
interface = "eth1"
vrid = 9
virtual_ips = ["192.0.2.2"]
"#);
}

#[test]
fn long_auth_pass_is_a_warning_and_truncated() {
    let c = ok("[vrrp.v]\ninterface = \"eth0\"\nvrid = 1\nversion = 2\nvirtual_ips = [\"192.0.2.1\"]\nauth_pass = \"0123456789\"\n");
    assert_eq!(c.vrrp[0].auth_pass, Some(AuthPass(*b"01234567")));
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(
        c.warnings[0].to_string(),
        "t.toml:6:13: warning: `auth_pass` is 10 bytes; only the first 8 are used, as keepalived does"
    );
    assert!(summary(&c).contains("only the first 8 are used"));
}

#[test]
fn summary_shows_each_part() {
    let s = summary(&ok(ISSUE_EXAMPLE));
    for part in [
        "vrrp VI_1: interface eth0, vrid 51, version 3, priority 101, advert every 1s",
        "virtual_ips 192.0.2.100/24",
        "multicast, preempt",
        "proxy web: bind 0.0.0.0:80, balance roundrobin",
        "servers web1 192.0.2.21:80 weight 1, web2 192.0.2.22:80 weight 1, web3 192.0.2.23:80 weight 2",
        "health http GET /health expect 200, every 2s, timeout 1s, rise 2, fall 3",
    ] {
        assert!(s.contains(part), "{part:?} missing from:\n{s}");
    }
    let s = summary(&ok(&format!(
        "{MIN_PROXY}[vrrp.v]\ninterface = \"eth0\"\nvrid = 1\npriority = 255\nvirtual_ips = [\"192.0.2.1\"]\nunicast_peers = [\"192.0.2.9\"]\ntrack = [{{ proxy = \"p\", weight = -50 }}]\n"
    )));
    assert!(s.contains("priority 255 (address owner)"), "{s}");
    assert!(s.contains("unicast to 192.0.2.9"), "{s}");
    assert!(s.contains("track proxy p -50"), "{s}");
    assert!(s.contains("health none"), "{s}");
    let s = summary(&ok(
        "[vrrp.A]\ninterface = \"eth0\"\nvrid = 1\nnotify_master = [\"/bin/true\"]\n\
         [vrrp.B]\ninterface = \"eth1\"\nvrid = 2\nvirtual_ips = [\"192.0.2.1\"]\n\
         [vrrp_sync_group.g]\ninstances = [\"A\", \"B\"]\n",
    ));
    assert!(s.contains("no virtual_ips: holds no address"), "{s}");
    assert!(
        s.contains("vrrp_sync_group g: A, B change state together"),
        "{s}"
    );
}

// === whole-file errors ===

#[test]
fn empty_file_has_nothing_to_do() {
    let want = "1:1: nothing to do: no [vrrp.*], [proxy.*], [l4.*] or [anycast.*] section";
    assert_eq!(error(""), want);
    assert_eq!(error("# only a comment\n[global]\n"), want);
}

#[test]
fn syntax_error_is_located() {
    let e = error("[vrrp.v]\ninterface = \"eth0\nvrid = 1\n");
    assert!(e.starts_with("2:"), "{e}");
    let e = error("[vrrp.v]\nvrid = 1\nvrid = 2\n");
    assert!(e.starts_with("3:1: "), "{e}");
}

#[test]
fn many_errors_are_reported_at_once_in_file_order() {
    let e = errors(
        r#"[vrrp.v]
interface = "eth0"
vrid = 0
priorty = 5
virtual_ips = ["192.0.2.1"]
advert_interval = 1

[proxy.p]
bind = ["192.0.2.1:80"]
balance = "round-robin"
servers = [{ name = "a", address = "192.0.2.2:80", weight = 0 }]
"#,
    );
    assert_eq!(
        e,
        vec![
            "3:8: `vrid` must be 1..=255, got 0",
            "4:1: unknown key `priorty` in [vrrp.v]; did you mean `priority`?",
            "6:19: `advert_interval`: a duration needs a unit: write \"1s\" (units: ms, s, m, h)",
            "10:11: `balance` must be one of \"roundrobin\", \"leastconn\", \"source\", got \"round-robin\"; did you mean `roundrobin`?",
            "11:61: server `weight` must be 1..=256, got 0 (to take a server out, remove it)",
        ]
    );
}

// === unknown keys ===

#[test]
fn unknown_keys_everywhere_with_suggestions() {
    let e = errors(
        r#"vrrps = 1
[global]
loglevel = "info"
[vrrp.v]
interface = "eth0"
vrid = 1
virtual_ips = ["192.0.2.1"]
track = [{ proxy = "p", wieght = -5 }]
colour = "red"
[proxy.p]
bind = ["192.0.2.1:80"]
servers = [{ name = "a", adress = "192.0.2.2:80" }]
timeouts = { conect = "1s" }
limits = { max_header = 5 }
[proxy.p.health]
intervall = "1s"
"#,
    );
    assert_eq!(
        e,
        vec![
            "1:1: unknown key `vrrps` in the top level; did you mean `vrrp`?",
            "3:1: unknown key `loglevel` in [global]; did you mean `log_level`?",
            "8:10: track entry needs a `weight` (-254..=254, added to the priority while the target is down)",
            "8:25: unknown key `wieght` in a track entry; did you mean `weight`?",
            "9:1: unknown key `colour` in [vrrp.v]",
            "12:12: a server entry needs `address`",
            "12:26: unknown key `adress` in a server entry; did you mean `address`?",
            "13:14: unknown key `conect` in [proxy.p.timeouts]; did you mean `connect`?",
            "14:12: unknown key `max_header` in [proxy.p.limits]; did you mean `max_headers`?",
            "16:1: unknown key `intervall` in [proxy.p.health]; did you mean `interval`?",
        ]
    );
}

// === types ===

#[test]
fn wrong_types_say_what_was_expected() {
    let e = errors(
        r#"[vrrp.v]
interface = 5
vrid = "51"
nopreempt = "yes"
virtual_ips = "192.0.2.1"
[proxy.p]
bind = ["192.0.2.1:80", 80]
servers = [{ name = "a", address = "192.0.2.2:80" }]
limits = 5
"#,
    );
    assert_eq!(
        e,
        vec![
            "2:13: `interface`: expected a string, found integer `5`",
            "3:8: `vrid`: expected an integer, found string \"51\"",
            "4:13: `nopreempt`: expected a boolean, found string \"yes\"",
            "5:15: `virtual_ips`: expected an array, found string \"192.0.2.1\"",
            "7:25: `bind` entry: expected a string or a table, found integer `80`",
            "9:10: `limits`: expected a [proxy.NAME.limits] table, found integer `5`",
        ]
    );
}

#[test]
fn a_section_that_is_not_a_table() {
    assert_eq!(
        errors("vrrp = 5\n"),
        vec![
            "1:1: nothing to do: no [vrrp.*], [proxy.*], [l4.*] or [anycast.*] section",
            "1:8: `vrrp`: expected a table, found integer `5`",
        ]
    );
    let e = errors("[vrrp]\nv = \"eth0\"\n");
    assert_eq!(
        e,
        vec![
            "1:1: nothing to do: no [vrrp.*], [proxy.*], [l4.*] or [anycast.*] section",
            "2:5: [vrrp.v]: expected a [vrrp.NAME] table, found string \"eth0\"",
        ]
    );
}

// === ranges and required keys ===

#[test]
fn required_vrrp_keys_point_at_the_section() {
    assert_eq!(
        errors("[vrrp.VI_1]\npriority = 50\n"),
        vec![
            "1:7: [vrrp.VI_1] needs `interface`",
            "1:7: [vrrp.VI_1] needs `vrid`",
            "1:7: [vrrp.VI_1] needs `virtual_ips` (or, for an instance that holds no address, a notify hook)",
        ]
    );
    assert_eq!(
        errors("[proxy.web]\nretries = 1\n"),
        vec![
            "1:8: [proxy.web] needs `bind`",
            "1:8: [proxy.web] needs `servers`"
        ]
    );
}

#[test]
fn out_of_range_values() {
    let v = |line: &str| error(&format!("{MIN_VRRP}{line}\n"));
    assert_eq!(
        v("priority = 0"),
        "5:12: `priority` must be 1..=255, got 0 (0 is sent only by a master that is leaving)"
    );
    assert_eq!(
        v("priority = 256"),
        "5:12: `priority` must be 1..=255, got 256"
    );
    assert_eq!(v("version = 4"), "5:11: `version` must be 2 or 3, got 4");
    assert_eq!(
        v("garp_repeat = 101"),
        "5:15: `garp_repeat` must be 0..=100, got 101"
    );
    assert_eq!(
        v("preempt_delay = \"1001s\""),
        "5:17: `preempt_delay` must be at most 1000s, got 1001s"
    );
    assert_eq!(
        v("garp_refresh = \"0s\""),
        "5:16: `garp_refresh` must be more than 0s"
    );

    let p = |line: &str| error(&format!("{MIN_PROXY}{line}\n"));
    assert_eq!(
        error("[proxy.p]\nbind = []\nservers = [{ name = \"a\", address = \"192.0.2.2:80\" }]\n"),
        "2:8: `bind` is empty: give at least one \"ip:port\""
    );
    assert_eq!(p("retries = 11"), "4:11: `retries` must be 0..=10, got 11");
    assert_eq!(p("workers = 0"), "4:11: `workers` must be 1..=64, got 0");
    assert_eq!(p("workers = 65"), "4:11: `workers` must be 1..=64, got 65");
    assert_eq!(
        p("maxconn = -1"),
        "4:11: `maxconn` must be 0..=4294967295, got -1"
    );
    assert_eq!(
        p("limits = { max_head_bytes = 1023 }"),
        "4:29: `max_head_bytes` must be 1024..=1048576, got 1023"
    );
    assert_eq!(
        p("limits = { max_headers = 0 }"),
        "4:26: `max_headers` must be 1..=1000, got 0"
    );
    assert_eq!(p("io = \"io_uring\""), "4:6: `io` must be one of \"auto\", \"uring\", \"epoll\", got \"io_uring\"; did you mean `uring`?");
    assert_eq!(
        p("forwardfor_except = [\"10.0.0.0/33\"]"),
        "4:22: `forwardfor_except`: \"10.0.0.0/33\" is not a network (address/prefix)"
    );
    assert_eq!(
        error("[proxy.p]\nbind = [\"192.0.2.1:0\"]\nservers = [{ name = \"a\", address = \"192.0.2.2:80\" }]\n"),
        "2:9: `bind` 192.0.2.1:0: port 0 is not allowed"
    );
}

#[test]
fn bad_vrrp_values() {
    let base = "[vrrp.v]\ninterface = \"eth0\"\nvrid = 1\n";
    let v = |line: &str| error(&format!("{base}{line}\n"));
    assert_eq!(
        v("virtual_ips = []"),
        "4:15: `virtual_ips` is empty: give at least one address (or, for an instance that holds no address, a notify hook)"
    );
    assert_eq!(
        v("virtual_ips = [\"192.0.2.300\"]"),
        "4:16: `virtual_ips`: \"192.0.2.300\" is not an address or address/prefix"
    );
    assert_eq!(
        v("virtual_ips = [\"192.0.2.1\", \"192.0.2.1/24\"]"),
        "4:29: duplicate virtual_ips address 192.0.2.1 (first at 4:16)"
    );
    assert_eq!(
        error("[vrrp.v]\ninterface = \"a-very-long-name0\"\nvrid = 1\nvirtual_ips = [\"192.0.2.1\"]\n"),
        "2:13: `interface` \"a-very-long-name0\" is not a network interface name (1 to 15 characters, no '/' or spaces)"
    );
}

// === durations ===

#[test]
fn durations_need_units() {
    let v = |line: &str| error(&format!("{MIN_VRRP}{line}\n"));
    assert_eq!(
        v("garp_interval = 2"),
        "5:17: `garp_interval`: a duration needs a unit: write \"2s\" (units: ms, s, m, h)"
    );
    assert_eq!(
        v("garp_interval = \"2 s\""),
        "5:17: `garp_interval`: invalid duration \"2 s\": write a number and a unit (ms, s, m, h), e.g. \"1.5s\""
    );
    assert_eq!(
        v("garp_interval = true"),
        "5:17: `garp_interval`: expected a duration string such as \"2s\", found boolean `true`"
    );
}

#[test]
fn advert_interval_depends_on_version() {
    let v = |lines: &str| parse_str("t.toml", &format!("{MIN_VRRP}{lines}\n"));
    let centis = |lines: &str| v(lines).unwrap().vrrp[0].advert_interval.centis();
    assert_eq!(centis("advert_interval = \"10ms\""), 1);
    assert_eq!(centis("advert_interval = \"40.95s\""), 4095);
    assert_eq!(centis("version = 2\nadvert_interval = \"3s\""), 300);
    assert_eq!(
        error(&format!("{MIN_VRRP}version = 2\nadvert_interval = \"100ms\"\n")),
        "6:19: `advert_interval` 100ms is not possible with version 2: VRRPv2 (RFC 3768) advertises whole seconds, 1s..255s; use version = 3 for sub-second intervals"
    );
    assert_eq!(
        error(&format!(
            "{MIN_VRRP}version = 2\nadvert_interval = \"256s\"\n"
        ))
        .split(" is not")
        .next(),
        Some("6:19: `advert_interval` 256s")
    );
    for bad in ["5ms", "15ms", "41s", "0s"] {
        let e = error(&format!("{MIN_VRRP}advert_interval = \"{bad}\"\n"));
        assert!(
            e.starts_with(
                "5:19: `advert_interval` must be 10ms..40.95s in steps of 10ms for version 3"
            ),
            "{bad}: {e}"
        );
    }
}

// === rules across keys ===

#[test]
fn auth_pass_is_v2_only() {
    assert_eq!(
        error(&format!("{MIN_VRRP}auth_pass = \"secret\"\n")),
        "5:13: `auth_pass` is VRRP version 2 only: RFC 5798 (version 3) removed authentication; set version = 2 or remove it"
    );
}

#[test]
fn ipv6_needs_v3_and_one_family() {
    let base = "[vrrp.v]\ninterface = \"eth0\"\nvrid = 1\n";
    assert_eq!(
        error(&format!("{base}version = 2\nvirtual_ips = [\"2001:db8::1/64\"]\n")),
        "5:16: `virtual_ips` 2001:db8::1 is IPv6 but VRRP version 2 (RFC 3768) is IPv4 only: use version = 3"
    );
    assert_eq!(
        error(&format!("{base}virtual_ips = [\"192.0.2.1\", \"2001:db8::1\"]\n")),
        "4:29: `virtual_ips` 2001:db8::1 mixes address families: a VRRPv3 instance carries one family (RFC 5798); put IPv4 and IPv6 addresses in separate [vrrp.*] instances"
    );
    assert_eq!(
        error(&format!(
            "{base}virtual_ips = [\"2001:db8::1\"]\nunicast_peers = [\"192.0.2.2\"]\n"
        )),
        "5:18: `unicast_peers` 192.0.2.2 is not IPv6 like the instance's virtual_ips"
    );
    assert_eq!(
        error(&format!("{base}virtual_ips = [\"2001:db8::1\"]\nv3_checksum_as_v2 = true\n")),
        "5:21: `v3_checksum_as_v2` only applies to IPv4 (an IPv6 checksum always covers the pseudo-header)"
    );
    assert_eq!(
        error(&format!(
            "{base}version = 2\nvirtual_ips = [\"192.0.2.1\"]\nv3_checksum_as_v2 = true\n"
        )),
        "6:21: `v3_checksum_as_v2` only applies to version 3 instances"
    );
}

#[test]
fn unicast_src_needs_peers() {
    assert_eq!(
        error(&format!("{MIN_VRRP}unicast_src = \"192.0.2.1\"\n")),
        "5:15: `unicast_src` needs `unicast_peers` (it is the source of unicast adverts)"
    );
}

#[test]
fn duplicate_vrid_on_one_interface_and_family() {
    let e = error(
        r#"[vrrp.a]
interface = "eth0"
vrid = 9
virtual_ips = ["192.0.2.1"]
[vrrp.b]
interface = "eth0"
vrid = 9
virtual_ips = ["192.0.2.2"]
"#,
    );
    assert_eq!(
        e,
        "7:8: vrid 9 on eth0 (IPv4) is already used by [vrrp.a] at 3:8: each virtual router on a link needs its own vrid"
    );
}

#[test]
fn track_rules() {
    let t = |entry: &str| errors(&format!("{MIN_PROXY}{MIN_VRRP}track = [{entry}]\n"));
    assert_eq!(
        t("{ proxy = \"q\", weight = -50 }"),
        vec!["8:20: track names proxy \"q\" but there is no [proxy.q] section"]
    );
    assert_eq!(
        t("{ proxy = \"web\", weight = -50 }"),
        vec!["8:20: track names proxy \"web\" but there is no [proxy.web] section"]
    );
    assert_eq!(
        t("{ proxy = \"p\", interface = \"eth1\", weight = -50 }"),
        vec!["8:10: track entry needs exactly one of `interface`, `proxy`, `script` or `l4`"]
    );
    assert_eq!(
        t("{ weight = -50 }"),
        vec!["8:10: track entry needs exactly one of `interface`, `proxy`, `script` or `l4`"]
    );
    assert_eq!(
        t("{ interface = \"eth1\", weight = 0 }"),
        vec!["8:41: track `weight` 0 would never change the priority: use -254..=-1 (or 1..=254)"]
    );
    assert_eq!(
        t("{ interface = \"eth1\", weight = -255 }"),
        vec!["8:41: `weight` must be -254..=254, got -255"]
    );
    assert_eq!(
        t("\"eth1\""),
        vec!["8:10: `track` entry: expected a table such as { proxy = \"web\", weight = -50 }, found string \"eth1\""]
    );
}

#[test]
fn server_rules() {
    let s = |servers: &str| {
        errors(&format!(
            "[proxy.p]\nbind = [\"192.0.2.1:80\"]\nservers = [{servers}]\n"
        ))
    };
    assert_eq!(
        s("{ name = \"a\", address = \"192.0.2.2:80\" }, { name = \"a\", address = \"192.0.2.3:80\" }"),
        vec!["3:63: duplicate server name a (first at 3:21)"]
    );
    assert_eq!(
        s("{ name = \"a\", address = \"192.0.2.2:80\", weight = 0 }"),
        vec!["3:61: server `weight` must be 1..=256, got 0 (to take a server out, remove it)"]
    );
    assert_eq!(
        s("{ name = \"a\", address = \"192.0.2.2:80\", weight = 257 }"),
        vec!["3:61: `weight` must be 1..=256, got 257"]
    );
    assert_eq!(
        s("{ name = \"a\", address = \"web1:80\" }"),
        vec!["3:36: `address`: \"web1:80\" is not an \"ip:port\" address (IPv6 as \"[::]:80\")"]
    );
    assert_eq!(
        s("{ address = \"192.0.2.2:80\" }"),
        vec!["3:12: a server entry needs `name`"]
    );
    assert_eq!(
        s(""),
        vec!["3:11: `servers` is empty: give at least one { name, address }"]
    );
}

#[test]
fn one_address_bound_by_two_services() {
    let e = error(
        r#"[proxy.a]
bind = ["192.0.2.1:80"]
servers = [{ name = "x", address = "192.0.2.2:80" }]
[proxy.b]
bind = ["192.0.2.1:80"]
servers = [{ name = "x", address = "192.0.2.2:80" }]
"#,
    );
    assert_eq!(e, "5:9: 192.0.2.1:80 is already bound by [proxy.a] at 2:9");
}

#[test]
fn health_rules() {
    let h = |lines: &str| errors(&format!("{MIN_PROXY}[proxy.p.health]\n{lines}\n"));
    assert_eq!(
        h("timeout = \"3s\""),
        vec!["5:11: health `timeout` 3s must not be longer than `interval` 2s"]
    );
    assert_eq!(
        h("interval = \"500ms\""),
        vec!["5:12: health `timeout` 1s (the default timeout) must not be longer than `interval` 500ms"]
    );
    assert_eq!(
        h("type = \"tcp\"\npath = \"/x\""),
        vec!["6:8: `path` only applies to type = \"http\" checks"]
    );
    assert_eq!(
        h("path = \"health\""),
        vec!["5:8: `path` \"health\" must start with '/' and have no spaces or control characters"]
    );
    assert_eq!(
        h("expect_status = \"399-200\""),
        vec!["5:17: `expect_status` \"399-200\" is not a range such as \"200-399\""]
    );
    assert_eq!(
        h("expect_status = 99"),
        vec!["5:17: `expect_status` must be 100..=599, got 99"]
    );
    assert_eq!(
        h("expect_status = [200, \"x\"]"),
        vec!["5:17: `expect_status`: expected an integer, found string \"x\""]
    );
    assert_eq!(
        h("expect_body_digest = \"md5:abc\""),
        vec!["5:22: `expect_body_digest`: md5 takes 32 hex digits, got \"abc\""]
    );
    assert_eq!(
        h("expect_body_digest = \"crc32:00\""),
        vec!["5:22: `expect_body_digest` \"crc32:00\" must be \"md5:HEX\" or \"sha256:HEX\""]
    );
    assert_eq!(
        h("observe = [\"5XX\", \"conect\"]"),
        vec![
            "5:12: `observe` entries are \"connect\" or \"5xx\", got \"5XX\"; did you mean `5xx`?",
            "5:19: `observe` entries are \"connect\" or \"5xx\", got \"conect\"; did you mean `connect`?",
        ]
    );
    assert_eq!(h("rise = 0"), vec!["5:8: `rise` must be 1..=100, got 0"]);
    assert_eq!(
        h("initial = \"UP\""),
        vec!["5:11: `initial` must be one of \"up\", \"down\", got \"UP\"; did you mean `up`?"]
    );
    assert_eq!(
        h("method = \"get\""),
        vec!["5:10: `method` \"get\" is not an HTTP method such as \"GET\" or \"HEAD\""]
    );
}

#[test]
fn global_rules() {
    assert_eq!(
        error(&format!("[global]\nlog_level = \"info,=[\"\n{MIN_PROXY}"))
            .split(" is not")
            .next(),
        Some("2:13: log_level \"info,=[\"")
    );
    assert_eq!(
        error(&format!("[global]\ncontrol_socket = \"\"\n{MIN_PROXY}")),
        "2:18: `control_socket` must be a non-empty path"
    );
}

// === robustness and documentation ===

/// Bad input never panics: truncations of the example and positions
/// overwritten with troublesome characters all give a result (bounded:
/// a sample of positions, so this stays fast in debug builds).
#[test]
fn mangled_files_never_panic() {
    let text = include_str!("../../../docs/examples/halo.toml");
    assert!(parse_str("t.toml", &text[..0]).is_err());
    assert!(parse_str("t.toml", text).is_ok());
    let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    for &i in cuts.iter().step_by(3) {
        let _ = parse_str("t.toml", &text[..i]);
    }
    for &i in cuts.iter().step_by(11) {
        let rest: String = text[i..].chars().skip(1).collect();
        for c in ["\"", "]", "=", "\u{e9}", "\n", "0"] {
            let _ = parse_str("t.toml", &format!("{}{c}{rest}", &text[..i]));
        }
    }
}

/// Every key the parser reads is documented in docs/config.md.
#[test]
fn every_key_is_documented() {
    use super::raw::*;
    let doc = include_str!("../../../docs/config.md");
    let all = [
        keys_of::<RawConfig>(),
        keys_of::<RawGlobal>(),
        keys_of::<RawVrrp>(),
        keys_of::<RawTrack>(),
        keys_of::<RawTrackScript>(),
        keys_of::<RawSyncGroup>(),
        keys_of::<RawProxy>(),
        keys_of::<RawServer>(),
        keys_of::<RawTimeouts>(),
        keys_of::<RawLimits>(),
        keys_of::<RawHealth>(),
        keys_of::<super::admin::RawAdmin>(),
        keys_of::<super::l4::RawL4>(),
        keys_of::<super::l4::RawL4Server>(),
        keys_of::<super::tls::RawBind>(),
        keys_of::<super::tls::RawTls>(),
        keys_of::<super::tls::RawCert>(),
        keys_of::<super::upstream_tls::RawUpstreamTls>(),
        keys_of::<super::anycast::RawAnycast>(),
    ];
    for keys in all {
        assert!(!keys.is_empty());
        for key in keys {
            assert!(
                doc.contains(&format!("| `{key}` |"))
                    || doc.contains(&format!("[{key}"))
                    || doc.contains(&format!(".{key}]")),
                "`{key}` is not in docs/config.md"
            );
        }
    }
}

#[test]
fn an_instance_with_a_hook_may_hold_no_address() {
    // Seed 000: the election decides, notify_master moves a provider's IP.
    for vips in ["", "virtual_ips = []\n"] {
        for version in ["2", "3"] {
            let c = ok(&format!(
                "[vrrp.VI_1]\ninterface = \"eth0\"\nvrid = 42\nversion = {version}\n{vips}\
                 unicast_src = \"192.0.2.11\"\nunicast_peers = [\"192.0.2.12\"]\n\
                 notify_master = [\"/etc/keepalived/master.sh\"]\n"
            ));
            assert!(c.vrrp[0].virtual_ips.is_empty());
            assert_eq!(
                c.vrrp[0].hooks.master.as_ref().unwrap()[0],
                "/etc/keepalived/master.sh"
            );
        }
    }
    // IPv6 peers make a v3 instance without addresses IPv6.
    let c = ok("[vrrp.v6]\ninterface = \"eth0\"\nvrid = 1\nunicast_peers = [\"2001:db8::2\"]\nnotify = [\"/bin/logger\"]\n");
    assert_eq!(c.vrrp[0].unicast_peers[0], ip("2001:db8::2"));
}

#[test]
fn sync_groups_name_existing_instances_once() {
    let two = "[vrrp.OUT]\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = [\"192.0.2.100/24\"]\n\
               [vrrp.IN]\ninterface = \"eth1\"\nvrid = 52\nvirtual_ips = [\"198.51.100.1/24\"]\n";
    let c = ok(&format!(
        "{two}[vrrp_sync_group.G]\ninstances = [\"OUT\", \"IN\"]\nnotify_master = [\"/usr/local/bin/gw\", \"up\"]\n"
    ));
    assert_eq!(c.sync_groups[0].name, "G");
    assert_eq!(c.sync_groups[0].instances, ["OUT", "IN"]);
    assert_eq!(
        c.sync_groups[0].notify_master.as_deref(),
        Some(&["/usr/local/bin/gw".to_string(), "up".to_string()][..])
    );
    assert_eq!(
        errors(&format!(
            "{two}[vrrp_sync_group.G]\ninstances = [\"OUT\", \"NOPE\", \"OUT\"]\n[vrrp_sync_group.H]\ninstances = [\"OUT\"]\nnotifyy = 1\n"
        )),
        vec![
            "10:21: `instances`: there is no [vrrp.NOPE]",
            "10:29: `instances`: OUT is listed twice",
            "12:14: `instances`: OUT is already in [vrrp_sync_group.G]; an instance follows one group",
            "13:1: unknown key `notifyy` in [vrrp_sync_group.H]; did you mean `notify`?",
        ]
    );
}

#[test]
fn tcp_mode_and_send_proxy() {
    let base = "[proxy.db]\nbind = [\"127.0.0.1:5432\"]\n";
    let c = ok(&format!(
        "{base}mode = \"tcp\"\nsend_proxy = \"v2\"\nservers = [\
         {{ name = \"a\", address = \"192.0.2.1:5432\" }},\
         {{ name = \"b\", address = \"192.0.2.2:5432\", send_proxy = \"v1\" }},\
         {{ name = \"c\", address = \"192.0.2.3:5432\", send_proxy = \"none\" }}]\n\
         [proxy.db.timeouts]\nclient = \"1h\"\n[proxy.db.health]\ntype = \"tcp\"\n"
    ));
    let p = &c.proxy[0];
    assert_eq!(p.mode, ProxyMode::Tcp);
    let sp: Vec<_> = p.servers.iter().map(|s| s.send_proxy).collect();
    assert_eq!(sp, [Some(ProxyProtocol::V2), Some(ProxyProtocol::V1), None]);
    let s = summary(&c);
    assert!(s.contains("proxy db (tcp): bind 127.0.0.1:5432"), "{s}");
    assert!(s.contains("b 192.0.2.2:5432 weight 1 send_proxy v1"), "{s}");
    // The default is HTTP, without a PROXY header.
    let c = ok(&format!(
        "{base}servers = [{{ name = \"a\", address = \"192.0.2.1:80\" }}]\n"
    ));
    assert_eq!(c.proxy[0].mode, ProxyMode::Http);
    assert_eq!(c.proxy[0].servers[0].send_proxy, None);
}

#[test]
fn tcp_mode_refuses_http_only_keys_and_http_mode_send_proxy() {
    let base = "[proxy.db]\nbind = [\"127.0.0.1:5432\"]\nservers = [{ name = \"a\", address = \"192.0.2.1:5432\" }]\n";
    let e = errors(&format!(
        "{base}mode = \"tcp\"\nforwardfor = false\n[proxy.db.timeouts]\nkeep_alive = \"5s\"\n"
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("5:") && e[0].contains("`forwardfor` only applies to mode = \"http\""),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("7:") && e[1].contains("`timeouts.keep_alive`"),
        "{e:?}"
    );
    let e = error(&format!("{base}send_proxy = \"v1\"\n"));
    assert!(
        e.starts_with("4:") && e.contains("only applies to mode = \"tcp\""),
        "{e}"
    );
    let e = error(&format!("{base}mode = \"tcp\"\nsend_proxy = \"v3\"\n"));
    assert!(
        e.starts_with("5:") && e.contains("\"v1\", \"v2\", \"none\""),
        "{e}"
    );
    let e = error(&format!("{base}mode = \"udp\"\n"));
    assert!(
        e.starts_with("4:") && e.contains("\"http\", \"tcp\""),
        "{e}"
    );
}
