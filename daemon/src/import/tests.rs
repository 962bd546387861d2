//! Mapping tests: small configs with the exact halo keys they must give, and
//! every seed fixture in tests/import/fixtures imported and then validated by
//! halo's own config loader (what `halo check` runs).

use super::*;

fn opts() -> Options {
    Options::default()
}

fn run(k: Option<&str>, h: Option<&str>, o: &Options) -> Result<Imported, ImportError> {
    import(
        k.map(|text| Source {
            path: "keepalived.conf",
            text,
        }),
        h.map(|text| Source {
            path: "haproxy.cfg",
            text,
        }),
        o,
    )
}

/// The TOML without comments and blank lines, for exact comparisons.
fn keys(toml: &str) -> String {
    toml.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim_start().starts_with('#') && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn valid(toml: &str) -> crate::config::Config {
    match crate::config::parse_str("imported.toml", toml) {
        Ok(c) => c,
        Err(e) => panic!("halo check refuses the import:\n{e}\n---\n{toml}"),
    }
}

fn dropped(i: &Imported) -> Vec<String> {
    i.dropped.iter().map(|d| d.to_string()).collect()
}

#[test]
fn keepalived_instance_maps_key_by_key() {
    let k = "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority 90\n  advert_int 1\n  nopreempt\n  preempt_delay 5\n  authentication {\n    auth_type PASS\n    auth_pass secret12\n  }\n  virtual_ipaddress {\n    192.0.2.100/24 dev eth0 label eth0:1\n    192.0.2.101\n  }\n  unicast_src_ip 192.0.2.11\n  unicast_peer {\n    192.0.2.12\n  }\n  track_interface {\n    eth1 weight -20\n    eth2\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    assert_eq!(
        keys(&i.toml),
        "[vrrp.VI_1]\ninterface = \"eth0\"\nvrid = 51\nversion = 2\npriority = 90\nadvert_interval = \"1s\"\n\
         virtual_ips = [\n  \"192.0.2.100/24\",\n  \"192.0.2.101\",\n]\nnopreempt = true\npreempt_delay = \"5s\"\n\
         unicast_src = \"192.0.2.11\"\nunicast_peers = [\n  \"192.0.2.12\",\n]\nauth_pass = \"secret12\"\n\
         track = [\n  { interface = \"eth1\", weight = -20 },\n  { interface = \"eth2\", weight = -254 },\n]"
    );
    assert!(i
        .toml
        .contains("# from keepalived.conf:4 virtual_router_id 51\nvrid = 51"));
    assert!(i.toml.contains("keepalived's default vrrp_version is 2"));
    assert!(
        i.toml
            .contains("# from keepalived.conf:11 auth_pass secret12\n# from keepalived.conf:10 auth_type PASS\nauth_pass"),
        "{}",
        i.toml
    );
    assert_eq!(
        dropped(&i),
        [
            "keepalived.conf:2: directive 'state' not carried over: not needed: halo starts every instance as backup and the priorities decide who is master (RFC 5798 6.4.1)",
            "keepalived.conf:14: directive 'virtual_ipaddress 192.0.2.100/24 label' not carried over: halo adds addresses without a label",
        ]
    );
    let c = valid(&i.toml);
    assert_eq!(c.vrrp[0].version, crate::config::VrrpVersion::V2);
    assert_eq!(c.vrrp[0].unicast_peers.len(), 1);
}

#[test]
fn global_vrrp_version_3_and_ipv6() {
    let k = "global_defs {\n vrrp_version 3\n router_id LB1\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 1\n advert_int 0.5\n virtual_ipaddress {\n 192.0.2.1\n }\n authentication {\n auth_pass x\n }\n}\n\
             vrrp_instance B {\n interface eth0\n virtual_router_id 2\n virtual_ipaddress {\n 2001:db8::1/64\n }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.vrrp.len(), 2);
    assert!(c
        .vrrp
        .iter()
        .all(|v| v.version == crate::config::VrrpVersion::V3));
    assert_eq!(c.vrrp[0].advert_interval.centis(), 50);
    assert!(c.vrrp[0].auth_pass.is_none());
    let d = dropped(&i).join("\n");
    assert!(
        d.contains("keepalived.conf:3: directive 'router_id'"),
        "{d}"
    );
    assert!(d.contains("keepalived.conf:13: directive 'auth_pass' not carried over: keepalived ignores authentication with VRRP version 3"), "{d}");
}

#[test]
fn master_without_priority_is_the_owner_and_v2_rounds_the_interval() {
    let k = "vrrp_instance A {\n state MASTER\n interface eth0\n virtual_router_id 1\n advert_int 1.5\n nopreempt\n virtual_ipaddress {\n 192.0.2.1\n }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.vrrp[0].priority.get(), 255);
    assert_eq!(c.vrrp[0].advert_interval.centis(), 200);
    assert!(
        c.vrrp[0].preempt,
        "keepalived ignores nopreempt with state MASTER"
    );
    let d = dropped(&i).join("\n");
    assert!(d.contains(":5: directive 'advert_int'"), "{d}");
    assert!(d.contains(":6: directive 'nopreempt'"), "{d}");
}

const HAPROXY_CHECK: &str = "vrrp_script chk_haproxy {\n  script \"/usr/bin/pkill -0 haproxy\"\n  interval 2\n  weight 2\n}\n\
    vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 42\n  priority 101\n  virtual_ipaddress {\n    192.0.2.100/24\n  }\n  track_script {\n    chk_haproxy\n  }\n  notify_master /etc/keepalived/master.sh\n}\n";

const HAPROXY_CFG: &str = "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend web\n  bind *:80\n  default_backend pool\nbackend pool\n  server web1 192.0.2.21:80 check\n  server web2 192.0.2.22:80 check weight 2\n";

#[test]
fn a_haproxy_process_check_becomes_a_proxy_track_with_the_same_election() {
    let i = run(Some(HAPROXY_CHECK), Some(HAPROXY_CFG), &opts()).unwrap();
    let c = valid(&i.toml);
    let v = &c.vrrp[0];
    // keepalived: 101 + 2 while haproxy runs; halo: 103 - 2 while it is down.
    assert_eq!(v.priority.get(), 103);
    assert_eq!(
        v.track,
        [crate::config::Track {
            what: crate::config::TrackTarget::Proxy("web".into()),
            weight: -2
        }]
    );
    assert!(i.toml.contains("# from keepalived.conf:14 chk_haproxy\n  # from keepalived.conf:1 vrrp_script chk_haproxy\n  \
         # from keepalived.conf:2 script /usr/bin/pkill -0 haproxy\n  # from keepalived.conf:4 weight 2\n  { proxy = \"web\", weight = -2 },"), "{}", i.toml);
    assert!(
        c.track_scripts.is_empty(),
        "the proxy track replaces the script"
    );
    assert_eq!(
        v.hooks.master.as_deref(),
        Some(&["/etc/keepalived/master.sh".to_string()][..])
    );
    let d = dropped(&i).join("\n");
    assert!(!d.contains("notify_master"), "{d}");
    assert!(!d.contains("vrrp_script"), "{d}");
}

#[test]
fn without_haproxy_the_process_check_becomes_a_track_script() {
    let i = run(Some(HAPROXY_CHECK), None, &opts()).unwrap();
    let c = valid(&i.toml);
    // The same election: 101 + 2 while the script succeeds.
    assert_eq!(c.vrrp[0].priority.get(), 103);
    assert_eq!(
        c.vrrp[0].track,
        [crate::config::Track {
            what: crate::config::TrackTarget::Script("chk_haproxy".into()),
            weight: -2
        }]
    );
    let s = &c.track_scripts[0];
    assert_eq!(s.name, "chk_haproxy");
    assert_eq!(s.command, ["/usr/bin/pkill", "-0", "haproxy"]);
    assert_eq!(s.interval, std::time::Duration::from_secs(2));
    assert_eq!(
        (s.rise, s.fall, s.weight),
        (1, 1, -2),
        "keepalived's rise/fall"
    );
    assert_eq!(s.user, "halo", "never root unless the file says so");
    let d = dropped(&i).join("\n");
    assert!(!d.contains("chk_haproxy"), "{d}");
}

#[test]
fn notify_hooks_and_script_user_are_carried() {
    let k = "global_defs {\n  script_user node\n  enable_script_security\n}\n\
        vrrp_script chk {\n  script \"/etc/keepalived/check.sh --quick\"\n  interval 3\n  timeout 1\n  rise 2\n  fall 3\n  weight -2\n  init_fail\n}\n\
        vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  virtual_ipaddress {\n    192.0.2.100/24\n  }\n  track_script {\n    chk\n  }\n\
        notify_master \"/etc/keepalived/notify.sh master\"\n  notify_backup \"/etc/keepalived/notify.sh backup\"\n  notify_fault \"/etc/keepalived/notify.sh fault\"\n\
        notify_stop /etc/keepalived/stop.sh\n  notify /etc/keepalived/all.sh\n  notify_deleted /x.sh\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    let v = &c.vrrp[0];
    let argv = |a: &[&str]| Some(a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        v.hooks.master,
        argv(&["/etc/keepalived/notify.sh", "master"])
    );
    assert_eq!(
        v.hooks.backup,
        argv(&["/etc/keepalived/notify.sh", "backup"])
    );
    assert_eq!(v.hooks.fault, argv(&["/etc/keepalived/notify.sh", "fault"]));
    assert_eq!(v.hooks.stop, argv(&["/etc/keepalived/stop.sh"]));
    assert_eq!(v.hooks.notify, argv(&["/etc/keepalived/all.sh"]));
    assert_eq!(v.hooks.user, "node");
    assert_eq!(v.priority.get(), 100);
    let s = &c.track_scripts[0];
    assert_eq!(s.command, ["/etc/keepalived/check.sh", "--quick"]);
    assert_eq!(
        (s.interval, s.timeout),
        (
            std::time::Duration::from_secs(3),
            std::time::Duration::from_secs(1)
        )
    );
    assert_eq!((s.rise, s.fall, s.weight), (2, 3, -2));
    assert_eq!(s.user, "node");
    let d = dropped(&i).join("\n");
    assert!(
        d.contains("directive 'enable_script_security' not carried over"),
        "{d}"
    );
    assert!(d.contains("directive 'init_fail' not carried over"), "{d}");
    assert!(
        d.contains("directive 'notify_deleted' not carried over"),
        "{d}"
    );
    assert!(!d.contains("directive 'script_user'"), "{d}");
    assert!(!d.contains("directive 'notify_master'"), "{d}");
}

#[test]
fn other_scripts_are_reported_and_weight_zero_means_fault() {
    assert!(from_keepalived::checks_haproxy_process(
        "killall -0 haproxy"
    ));
    assert!(from_keepalived::checks_haproxy_process(
        "/bin/pidof haproxy"
    ));
    assert!(!from_keepalived::checks_haproxy_process(
        "/etc/keepalived/check_haproxy.sh"
    ));
    assert!(!from_keepalived::checks_haproxy_process("pkill -9 haproxy"));
    let k = HAPROXY_CHECK.replace("  weight 2\n", "");
    let i = run(Some(&k), Some(HAPROXY_CFG), &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.vrrp[0].priority.get(), 101);
    assert_eq!(c.vrrp[0].track[0].weight, -254);
    assert!(i.toml.contains("puts the instance in FAULT"));
}

#[test]
fn placeholders_need_values_and_vipless_instances_need_a_vip() {
    let k = "vrrp_instance VI_1 {\n  interface vlan.99\n  virtual_router_id 42\n  unicast_src_ip {{ lb1_ip_address }}\n  unicast_peer {\n    {{ lb2_ip_address }}\n  }\n}\n";
    let e = run(Some(k), None, &opts()).unwrap_err();
    let ImportError::NothingCarried(d) = &e else {
        panic!("{e:?}")
    };
    let text = e.to_string();
    assert!(text.contains("keepalived.conf:4: directive 'unicast_src_ip' not carried over: '{{ lb1_ip_address }}' is a template placeholder: render the template, or pass --set lb1_ip_address=VALUE"), "{text}");
    assert!(
        text.contains("keepalived.conf:1: directive 'vrrp_instance VI_1' not carried over:"),
        "{text}"
    );
    assert!(text.contains("--vip VI_1=ADDRESS/PREFIX"), "{text}");
    assert!(d.len() >= 3);

    let mut o = opts();
    o.set.insert("lb1_ip_address".into(), "192.0.2.11".into());
    o.set.insert("lb2_ip_address".into(), "192.0.2.12".into());
    o.vips.push(("VI_1".into(), "203.0.113.10/32".into()));
    let i = run(Some(k), None, &o).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.vrrp[0].unicast_src, Some("192.0.2.11".parse().unwrap()));
    assert!(i
        .toml
        .contains("# from command line: --vip VI_1=203.0.113.10/32"));
}

#[test]
fn haproxy_frontend_and_backend_map_key_by_key() {
    let h = "global\n  daemon\ndefaults\n  mode http\n  option dontlognull\n  option forwardfor except 127.0.0.0/8\n  option redispatch\n  retries 3\n  timeout connect 5000\n  timeout client 1m\n  timeout server 30s\n  timeout check 10s\n  maxconn 3000\n\
             frontend fe\n  bind *:80,:::80\n  default_backend be\n  use_backend other if { path_beg /x }\n\
             backend be\n  balance leastconn\n  option httpchk GET /health HTTP/1.1\\r\\nHost:\\ www.example\n  http-check expect status 200-299\n  default-server inter 3s fall 2\n  server a 192.0.2.21:8080 check weight 3 maxconn 50\n  server b 192.0.2.22 check\n  server c 192.0.2.23:80 backup\n\
             backend unused\n  server z 192.0.2.99:80\n";
    let i = run(None, Some(h), &opts()).unwrap();
    assert_eq!(
        keys(&i.toml),
        "[proxy.fe]\nbind = [\n  \"0.0.0.0:80\",\n  \"[::]:80\",\n]\nbalance = \"leastconn\"\nservers = [\n  \
         { name = \"a\", address = \"192.0.2.21:8080\", weight = 3, maxconn = 50 },\n  { name = \"b\", address = \"192.0.2.22:80\" },\n]\n\
         retries = 3\nmaxconn = 3000\nforwardfor = true\nforwardfor_except = [\"127.0.0.0/8\"]\ndontlognull = true\n\
         [proxy.fe.timeouts]\nconnect = \"5s\"\nclient = \"1m\"\nserver = \"30s\"\nhttp_request = \"1m\"\nkeep_alive = \"1m\"\nqueue = \"5s\"\n\
         [proxy.fe.health]\ntype = \"http\"\nmethod = \"GET\"\npath = \"/health\"\nhost = \"www.example\"\nexpect_status = \"200-299\"\n\
         interval = \"3s\"\ntimeout = \"3s\"\nrise = 2\nfall = 2"
    );
    let d = dropped(&i).join("\n");
    for want in [
        "haproxy.cfg:2: directive 'daemon'",
        "haproxy.cfg:17: directive 'use_backend'",
        "haproxy.cfg:25: directive 'server c backup'",
        "haproxy.cfg:26: directive 'backend unused'",
        "haproxy.cfg:24: directive 'server b 192.0.2.22' not carried over: no port",
    ] {
        assert!(d.contains(want), "{want} not in\n{d}");
    }
    // Only the server lines that were not carried are reported.
    assert!(!d.contains("directive 'server a"), "{d}");
    let c = valid(&i.toml);
    assert_eq!(c.proxy[0].servers.len(), 2);
}

#[test]
fn listen_sections_stats_pages_tcp_mode_and_hostnames() {
    let h = "listen stats\n  bind *:8404\n  stats enable\n  stats uri /\nlisten app\n  mode http\n  bind 192.0.2.1:80\n  server s1 web1:80\nlisten db\n  mode tcp\n  bind :3306\n  server m 192.0.2.5:3306\n";
    // Before mode tcp was carried nothing was, and this was an error.
    let text = dropped(&run(None, Some(h), &opts()).unwrap()).join("\n");
    assert!(
        text.contains("haproxy.cfg:1: directive 'listen stats' not carried over: a stats page"),
        "{text}"
    );
    assert!(
        text.contains(
            "haproxy.cfg:8: directive 'server s1' not carried over: \"web1\" is a host name"
        ),
        "{text}"
    );
    // `listen db` (mode tcp) is carried: see `mode_tcp_is_carried`.
    assert!(!text.contains("'listen db'"), "{text}");
    let mut o = opts();
    o.resolve
        .insert("web1".into(), "192.0.2.21".parse().unwrap());
    let i = run(None, Some(h), &o).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.proxy.len(), 2);
    assert_eq!(c.proxy[0].name, "app");
    assert_eq!(
        c.proxy[0].servers[0].address,
        "192.0.2.21:80".parse().unwrap()
    );
    assert!(
        !c.proxy[0].forwardfor.enabled,
        "HAProxy adds no XFF by default"
    );
    assert!(!c.proxy[0].dontlognull);
    assert!(c.proxy[0].health.is_none(), "no `check`, no health checks");
}

#[test]
fn syntax_errors_name_file_and_line_in_both_files() {
    let e = run(Some("a {\n"), Some("global\n  log \"x\n"), &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "keepalived.conf:1: '{' of 'a' is never closed\nhaproxy.cfg:2: unterminated quoted string (no closing \" on this line)"
    );
    assert!(matches!(
        run(None, None, &opts()),
        Err(ImportError::NothingCarried(_))
    ));
}

// === the seed fixtures ===

/// (fixture names, --set, --resolve, --vip): what each seed needs.
struct Case {
    keepalived: Option<&'static str>,
    haproxy: Option<&'static str>,
    set: &'static [(&'static str, &'static str)],
    resolve: &'static [(&'static str, &'static str)],
    vip: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        keepalived: Some("000-pangrazzi-lb1.keepalived.conf"),
        haproxy: None,
        set: &[
            ("lb1_ip_address", "192.0.2.11"),
            ("lb2_ip_address", "192.0.2.12"),
        ],
        resolve: &[],
        vip: &[("VI_1", "203.0.113.10/32")],
    },
    Case {
        keepalived: Some("000-pangrazzi-lb2.keepalived.conf"),
        haproxy: None,
        set: &[
            ("lb1_ip_address", "192.0.2.11"),
            ("lb2_ip_address", "192.0.2.12"),
        ],
        resolve: &[],
        vip: &[("VI_1", "203.0.113.10/32")],
    },
    Case {
        keepalived: Some("001-essay-active.keepalived.conf"),
        haproxy: Some("001-essay.haproxy.cfg"),
        set: &[],
        resolve: &[
            ("server1", "192.0.2.21"),
            ("server2", "192.0.2.22"),
            ("server3", "192.0.2.23"),
        ],
        vip: &[],
    },
    Case {
        keepalived: Some("001-essay-passive.keepalived.conf"),
        haproxy: Some("001-essay.haproxy.cfg"),
        set: &[],
        resolve: &[
            ("server1", "192.0.2.21"),
            ("server2", "192.0.2.22"),
            ("server3", "192.0.2.23"),
        ],
        vip: &[],
    },
    Case {
        keepalived: Some("002-techjockey-lb01-relined.keepalived.conf"),
        haproxy: None,
        set: &[],
        resolve: &[],
        vip: &[],
    },
    Case {
        keepalived: Some("003-ai-master.keepalived.conf"),
        haproxy: Some("003-ai.haproxy.cfg"),
        set: &[],
        resolve: &[],
        vip: &[],
    },
    Case {
        keepalived: Some("003-ai-backup.keepalived.conf"),
        haproxy: Some("003-ai.haproxy.cfg"),
        set: &[],
        resolve: &[],
        vip: &[],
    },
    Case {
        keepalived: Some("004-benyacoub-master.keepalived.conf"),
        haproxy: None,
        set: &[],
        resolve: &[],
        vip: &[],
    },
    Case {
        keepalived: Some("004-benyacoub-backup.keepalived.conf"),
        haproxy: None,
        set: &[],
        resolve: &[],
        vip: &[],
    },
];

fn fixture(name: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/import/fixtures/");
    std::fs::read_to_string(format!("{dir}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_seed_fixture_imports_and_passes_halo_check() {
    for case in CASES {
        let mut o = opts();
        o.set = case
            .set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        o.resolve = case
            .resolve
            .iter()
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect();
        o.vips = case
            .vip
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let k = case.keepalived.map(fixture);
        let h = case.haproxy.map(fixture);
        let i = import(
            case.keepalived
                .zip(k.as_deref())
                .map(|(path, text)| Source { path, text }),
            case.haproxy
                .zip(h.as_deref())
                .map(|(path, text)| Source { path, text }),
            &o,
        )
        .unwrap_or_else(|e| panic!("{:?}: {e}", case.keepalived));
        let c = valid(&i.toml);
        assert_eq!(
            c.vrrp.len(),
            usize::from(case.keepalived.is_some()),
            "{:?}",
            case.keepalived
        );
        assert_eq!(
            c.proxy.len(),
            usize::from(case.haproxy.is_some()),
            "{:?}",
            case.haproxy
        );
        assert!(
            c.vrrp
                .iter()
                .all(|v| v.version == crate::config::VrrpVersion::V2),
            "keepalived's default is v2"
        );
    }
}

#[test]
fn the_verbatim_one_line_seed_is_refused_with_a_hint() {
    let text = fixture("002-techjockey-lb01.keepalived.conf");
    let e = run(Some(&text), None, &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "keepalived.conf:3: '{' of 'global_defs' is never closed; the comment on line 3 contains braces: were this file's line breaks lost? A '#' or '!' comments out the rest of its line"
    );
}

#[test]
fn keepalived_definitions_and_conditional_lines_are_followed() {
    let k = "$IF=eth0\n$VIP=192.0.2.100\nvrrp_instance VI_1 {\n  interface $IF\n  virtual_router_id 51\n@lb1  priority 150\n@lb2  priority 100\n  virtual_ipaddress {\n    ${VIP}/24\n  }\n  notify_master \"$UNDEFINED/master.sh\"\n}\n";
    let o = Options {
        keepalived_id: Some("lb1".into()),
        ..Options::default()
    };
    let i = run(Some(k), None, &o).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.vrrp[0].interface, "eth0");
    assert_eq!(c.vrrp[0].priority.get(), 150);
    assert_eq!(c.vrrp[0].virtual_ips[0].to_string(), "192.0.2.100/24");
    assert!(
        !i.toml
            .lines()
            .any(|l| !l.starts_with('#') && l.contains('$')),
        "{}",
        i.toml
    );
    assert!(
        i.toml.contains("#   from keepalived.conf:1 $IF=eth0"),
        "{}",
        i.toml
    );
    let d = dropped(&i).join("\n");
    assert!(d.contains("keepalived.conf:7: directive '@lb2  priority 100' not carried over: keepalived reads this line only on the host with config id lb2"), "{d}");
    assert!(d.contains("keepalived.conf:11: directive 'notify_master \"$UNDEFINED/master.sh\"' not carried over: '$UNDEFINED/master.sh' is not a definition"), "{d}");
    // Without an id, neither priority line is taken: keepalived's default.
    let i = run(Some(k), None, &opts()).unwrap();
    assert_eq!(valid(&i.toml).vrrp[0].priority.get(), 100);
    assert!(dropped(&i).join("\n").contains("pass --keepalived-id ID"));
}

#[test]
fn keepalived_repeats_are_reported_with_both_lines() {
    let k = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    192.0.2.1/24\n    192.0.2.1/24 label eth0:1\n    2001:db8::1/64\n  }\n  unicast_peer {\n    192.0.2.12\n    192.0.2.12\n  }\n  notify_master /usr/local/bin/a\n  notify_master /usr/local/bin/b\n}\n\
             vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 52\n  virtual_ipaddress {\n    192.0.2.2\n  }\n}\n\
             vrrp_instance VI_2 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    192.0.2.3\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.vrrp.len(), 1);
    assert_eq!(c.vrrp[0].virtual_ips.len(), 1);
    assert_eq!(c.vrrp[0].unicast_peers.len(), 1);
    let d = dropped(&i).join("\n");
    for want in [
        "keepalived.conf:6: directive 'virtual_ipaddress 192.0.2.1/24' not carried over: listed again (first at line 5)",
        "keepalived.conf:7: directive 'virtual_ipaddress 2001:db8::1/64' not carried over: an instance carries one address family, that of its first virtual IP (line 5)",
        "keepalived.conf:11: directive 'unicast_peer 192.0.2.12' not carried over: listed again (first at line 10)",
        "keepalived.conf:14: directive 'notify_master' not carried over: repeated: keepalived keeps the first notify_master (line 13)",
        "keepalived.conf:16: directive 'vrrp_instance VI_1' not carried over: a second instance named VI_1 (the first is at line 1)",
        "keepalived.conf:23: directive 'vrrp_instance VI_2' not carried over: virtual_router_id 51 on eth0 (IPv4) is already used by vrrp_instance VI_1 at line 1",
    ] {
        assert!(d.contains(want), "missing {want}\n{d}");
    }
}

#[test]
fn keepalived_scripts_halo_cannot_run_are_reported_and_limits_applied() {
    let k = "vrrp_script tcp {\n  script \"</dev/tcp/127.0.0.1/80\"\n}\nvrrp_script quoted {\n  script \u{201c}/usr/bin/x\u{201d}\n}\nvrrp_script slow {\n  script /usr/bin/true\n  interval 4294\n}\n\
             vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    192.0.2.1\n  }\n  track_script {\n    tcp\n    quoted\n    slow\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.track_scripts.len(), 1);
    assert_eq!(
        c.track_scripts[0].interval,
        std::time::Duration::from_secs(3600)
    );
    let d = dropped(&i).join("\n");
    for want in [
        "keepalived.conf:2: directive 'script' not carried over: \"</dev/tcp/127.0.0.1/80\" is shell syntax",
        "keepalived.conf:5: directive 'script' not carried over: \"\u{201c}/usr/bin/x\u{201d}\" is not an absolute path",
        "keepalived.conf:9: directive 'interval' not carried over: halo runs a check at least every hour",
        "keepalived.conf:18: directive 'track_script tcp' not carried over: the vrrp_script has no `script` halo can run",
    ] {
        assert!(d.contains(want), "missing {want}\n{d}");
    }
}

#[test]
fn haproxy_repeats_are_reported_with_both_lines() {
    let h = "frontend a\n  mode http\n  bind :8080\n  default_backend be\nfrontend b\n  mode http\n  bind :8080\n  bind :8081\n  default_backend be\nbackend be\n  mode http\n  server s1 192.0.2.1:80\n  server s1 192.0.2.2:80\n";
    let i = run(None, Some(h), &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.proxy.len(), 2);
    assert_eq!(c.proxy[0].servers.len(), 1);
    let d = dropped(&i).join("\n");
    for want in [
        "haproxy.cfg:7: directive 'bind 0.0.0.0:8080' not carried over: 0.0.0.0:8080 is already bound by frontend a (line 3)",
        "haproxy.cfg:13: directive 'server s1' not carried over: a second server named s1 in this backend (the first is at line 12)",
    ] {
        assert!(d.contains(want), "missing {want}\n{d}");
    }
}

#[test]
fn what_halo_check_refuses_is_taken_out_and_reported() {
    // An interface name longer than Linux allows: keepalived's parser takes
    // it, halo's check does not; the mapping has no rule for it.
    let k = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    192.0.2.1\n  }\n  track_interface {\n    eth1\n    averyveryverylongifname0\n  }\n}\n\
             vrrp_instance VI_2 {\n  interface averyveryverylongifname0\n  virtual_router_id 52\n  virtual_ipaddress {\n    192.0.2.2\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.vrrp.len(), 1);
    assert_eq!(c.vrrp[0].track.len(), 1);
    let d = dropped(&i).join("\n");
    for want in [
        "keepalived.conf:9: directive 'averyveryverylongifname0' not carried over: halo check refuses what it becomes: ",
        "keepalived.conf:13: directive 'interface averyveryverylongifname0' not carried over: halo check refuses what it becomes: ",
        "keepalived.conf:12: directive 'vrrp_instance VI_2' not carried over: halo check refuses what it becomes: [vrrp.VI_2] needs `interface`",
    ] {
        assert!(d.contains(want), "missing {want}\n{d}");
    }
}

#[test]
fn an_instance_without_addresses_is_carried_when_a_hook_acts_on_it() {
    // Seed 000 as written, placeholders filled, no --vip.
    let k = fixture("000-pangrazzi-lb1.keepalived.conf");
    let mut o = opts();
    o.set.insert("lb1_ip_address".into(), "192.0.2.11".into());
    o.set.insert("lb2_ip_address".into(), "192.0.2.12".into());
    let i = run(Some(&k), None, &o).unwrap();
    let c = valid(&i.toml);
    assert!(c.vrrp[0].virtual_ips.is_empty());
    assert_eq!(
        c.vrrp[0].hooks.master,
        Some(vec!["/etc/keepalived/master.sh".to_string()])
    );
    assert!(
        i.toml.contains("this instance holds no address"),
        "{}",
        i.toml
    );
}

#[test]
fn keepalived_sync_groups_are_carried_with_their_hooks() {
    let k = "global_defs {\n  script_user root\n}\nvrrp_sync_group VG1 {\n  group {\n    OUT\n    IN\n    GONE\n  }\n  notify_master \"/usr/local/bin/gw up\"\n  smtp_alert\n}\n\
             vrrp_instance OUT {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    192.0.2.100/24\n  }\n}\n\
             vrrp_instance IN {\n  interface eth1\n  virtual_router_id 52\n  virtual_ipaddress {\n    198.51.100.1/24\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    let g = &c.sync_groups[0];
    assert_eq!(
        (g.name.as_str(), g.instances.as_slice()),
        ("VG1", &["OUT".to_string(), "IN".to_string()][..])
    );
    assert_eq!(
        g.notify_master,
        Some(vec!["/usr/local/bin/gw".to_string(), "up".to_string()])
    );
    assert_eq!(g.script_user, "root");
    let d = dropped(&i).join("\n");
    for want in [
        "keepalived.conf:8: directive 'group GONE' not carried over: no vrrp_instance of that name was carried over",
        "keepalived.conf:11: directive 'smtp_alert' not carried over: halo sends no email",
    ] {
        assert!(d.contains(want), "missing {want}\n{d}");
    }
    // Seed 002 (relined): its one-member group is carried.
    let c = valid(
        &run(
            Some(&fixture("002-techjockey-lb01-relined.keepalived.conf")),
            None,
            &opts(),
        )
        .unwrap()
        .toml,
    );
    assert_eq!(c.sync_groups[0].instances, ["FloatIP01"]);
}

#[test]
fn a_repeated_single_value_is_reported_at_the_line_it_overrides() {
    let k = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  priority 150\n  virtual_ipaddress {\n    192.0.2.1\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    assert_eq!(valid(&i.toml).vrrp[0].priority.get(), 150);
    let d = dropped(&i).join("\n");
    assert!(
        d.contains("keepalived.conf:4: directive 'priority' not carried over: set again at line 5: keepalived uses the last"),
        "{d}"
    );
}

#[test]
fn mode_tcp_is_carried() {
    use crate::config::{ProxyMode, ProxyProtocol};
    let h = "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n  timeout http-request 5s\n\
frontend pg\n  bind 192.0.2.10:5432\n  option forwardfor\n  option dontlognull\n  default_backend pgs\n\
backend pgs\n  balance leastconn\n  option tcp-check\n  default-server send-proxy-v2 check inter 2s\n\
  server db1 192.0.2.31:5432 maxconn 100\n  server db2 192.0.2.32:5432 send-proxy\n\
listen web\n  mode http\n  bind 192.0.2.10:80\n  server w1 192.0.2.21:80 send-proxy\n";
    let i = run(None, Some(h), &opts()).unwrap();
    let c = valid(&i.toml);
    assert_eq!(c.proxy.len(), 2, "{}", i.toml);
    let pg = &c.proxy[0];
    assert_eq!(pg.name, "pg");
    assert_eq!(pg.mode, ProxyMode::Tcp);
    assert_eq!(pg.servers.len(), 2);
    assert_eq!(pg.servers[0].send_proxy, Some(ProxyProtocol::V2));
    assert_eq!(pg.servers[0].maxconn, 100);
    assert_eq!(pg.servers[1].send_proxy, Some(ProxyProtocol::V1));
    assert_eq!(pg.timeouts.client, std::time::Duration::from_secs(3600));
    assert_eq!(pg.timeouts.connect, std::time::Duration::from_secs(2));
    assert!(pg.health.is_some());
    assert!(pg.dontlognull);
    assert!(!d_has(&i, "option dontlognull"));
    assert_eq!(c.proxy[1].mode, ProxyMode::Http);
    let d = dropped(&i).join("\n");
    for want in [
        "haproxy.cfg:6: directive 'timeout http-request' not carried over: mode tcp",
        "haproxy.cfg:9: directive 'option forwardfor' not carried over: mode tcp",
        "haproxy.cfg:21: directive 'server w1 send-proxy' not carried over: an HTTP service",
    ] {
        assert!(d.contains(want), "{want} not in\n{d}\n{}", i.toml);
    }
}

fn d_has(i: &Imported, directive: &str) -> bool {
    i.dropped.iter().any(|d| d.to_string().contains(directive))
}

fn l4_of(c: &crate::config::Config) -> &crate::config::L4Service {
    assert_eq!(c.l4.len(), 1, "one [l4] service");
    &c.l4[0]
}

#[test]
fn keepalived_virtual_server_dr_http_get_becomes_l4() {
    let k = include_str!("../../../tests/import/fixtures/004-benyacoub-master.keepalived.conf");
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    let s = l4_of(&c);
    assert_eq!(s.address.to_string(), "10.10.0.3");
    assert_eq!(s.port, 80);
    assert_eq!(
        s.forward,
        crate::config::L4Forward::Dr {
            interface: "eth0".into()
        }
    );
    assert_eq!(s.scheduler, crate::config::L4Scheduler::RoundRobin);
    assert_eq!(s.persistence, Some(std::time::Duration::from_secs(50)));
    let servers: Vec<(String, u32)> = s
        .servers
        .iter()
        .map(|r| (r.address.to_string(), r.weight))
        .collect();
    assert_eq!(
        servers,
        [
            ("10.10.0.1:80".to_string(), 100),
            ("10.10.0.2:80".to_string(), 100)
        ]
    );
    assert!(i.toml.contains("interface = \"eth0\""), "{}", i.toml);
    assert!(i.toml.contains("interval = \"30s\""));
    assert!(i
        .toml
        .contains("expect_body_digest = \"md5:d41d8cd98f00b204e9800998ecf8427e\""));
    assert!(i.toml.contains("fall = 4"));
    // keepalived retries a failed check after delay_before_retry (2 s here),
    // not after delay_loop (30 s): a dead server is out after about
    // 30 + 3 x 2 s, not 4 x 30 s. halo's fast_interval is that pause.
    let h = s.health.as_ref().unwrap();
    assert_eq!(
        (h.fall, h.fast_interval),
        (4, std::time::Duration::from_secs(2))
    );
    let d = dropped(&i).join("\n");
    assert!(!d.contains("delay_before_retry"), "{d}");
}

#[test]
fn keepalived_checker_defaults_are_carried_retry_1_and_its_delay() {
    // Without retry / delay_before_retry keepalived retries once, after 1 s
    // (TCP_CHECK) or 3 s (HTTP_GET) (check_api.c, check_http.c): halo's own
    // defaults (fall 3, at `interval`) would take three delay_loops.
    for (checker, delay) in [("TCP_CHECK", 1), ("HTTP_GET { url { path / } }", 3)] {
        let k = format!(
            "virtual_server 192.0.2.100 80 {{\n  delay_loop 10\n  lb_kind NAT\n  real_server 192.0.2.21 80 {{\n    {checker}\n  }}\n}}\n"
        );
        let i = run(Some(&k), None, &opts()).unwrap();
        let c = valid(&i.toml);
        let h = l4_of(&c).health.clone().unwrap();
        assert_eq!(
            (h.interval, h.fall, h.fast_interval),
            (
                std::time::Duration::from_secs(10),
                2,
                std::time::Duration::from_secs(delay)
            ),
            "{checker}: {}",
            i.toml
        );
    }
}

#[test]
fn keepalived_virtual_server_nat_tcp_check_sorry_and_reports() {
    let k = "virtual_server 192.0.2.100 443 {\n  delay_loop 5\n  lb_algo wlc\n  lb_kind NAT\n  protocol TCP\n  sorry_server 192.0.2.30 8443\n  real_server 192.0.2.21 8443 {\n    weight 3\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }\n  real_server 192.0.2.22 8443 {\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }\n}\n\
             virtual_server 192.0.2.101 80 {\n  lb_kind TUN\n  real_server 192.0.2.21 80 {\n  }\n}\n\
             virtual_server 192.0.2.102 80 {\n  lb_kind DR\n  real_server 192.0.2.21 80 {\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    let s = l4_of(&c);
    assert_eq!(s.port, 443);
    assert_eq!(s.forward, crate::config::L4Forward::Nat { snat: false });
    assert_eq!(s.scheduler, crate::config::L4Scheduler::WeightedRoundRobin);
    assert_eq!(
        s.sorry.map(|a| a.to_string()).as_deref(),
        Some("192.0.2.30:8443")
    );
    assert_eq!(s.servers[0].weight, 3);
    assert_eq!(s.servers[1].address.to_string(), "192.0.2.22:8443");
    assert!(
        keys(&i.toml).contains("type = \"tcp\"\ninterval = \"5s\"\ntimeout = \"2s\"\nfall = 2\nfast_interval = \"1s\"\nrise = 1"),
        "{}",
        i.toml
    );
    let d = dropped(&i).join("\n");
    assert!(
        d.contains("keepalived.conf:3: directive 'lb_algo wlc'"),
        "{d}"
    );
    assert!(d.contains("keepalived.conf:19: directive 'virtual_server 192.0.2.101 80' not carried over: lb_kind TUN"), "{d}");
    assert!(d.contains("keepalived.conf:24: directive 'virtual_server 192.0.2.102 80' not carried over: lb_kind DR needs `interface`"), "{d}");
}

#[test]
fn keepalived_virtual_server_002_dr_takes_the_vip_instance_interface() {
    let k =
        include_str!("../../../tests/import/fixtures/002-techjockey-lb01-relined.keepalived.conf");
    let i = run(Some(k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    let s = l4_of(&c);
    assert_eq!(
        s.forward,
        crate::config::L4Forward::Dr {
            interface: "eth0".into()
        }
    );
    assert_eq!(s.persistence, Some(std::time::Duration::from_secs(9600)));
    assert_eq!(s.servers.len(), 2);
    assert!(s.servers.iter().all(|r| r.weight == 10));
    // connect_port equal to the server's port is what halo checks anyway.
    let d = dropped(&i).join("\n");
    assert!(!d.contains("connect_port"), "{d}");
    assert!(!d.contains("virtual_server"), "{d}");
}

#[test]
fn keepalived_virtual_server_tcp_and_udp_on_one_port_are_two_services() {
    let vs = |proto: &str| {
        format!("virtual_server 192.0.2.53 53 {{\n  lb_kind NAT\n  protocol {proto}\n  real_server 192.0.2.21 53 {{\n  }}\n}}\n")
    };
    let k = format!("{}{}{}", vs("UDP"), vs("TCP"), vs("TCP"));
    let i = run(Some(&k), None, &opts()).unwrap();
    let c = valid(&i.toml);
    let protos: Vec<&str> = c.l4.iter().map(|s| s.protocol.as_str()).collect();
    assert_eq!(protos, ["udp", "tcp"], "{}", i.toml);
    let d = dropped(&i).join("\n");
    assert!(
        d.contains("keepalived.conf:13: directive 'virtual_server 192.0.2.53 53' not carried over: the same address"),
        "{d}"
    );
}

/// `crt` files must exist for `halo check`: the tls module's test certificate.
use crate::tls::TEST_PEM;

#[test]
fn haproxy_ssl_crt_binds_and_https_redirects_are_carried() {
    let dir = std::env::temp_dir().join(format!("halo-import-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("site.pem");
    std::fs::write(&pem, TEST_PEM).unwrap();
    let pem = pem.display().to_string();
    let h = format!(
        "frontend fe\n  mode http\n  bind :80\n  bind :443 ssl crt {pem} alpn h2,http/1.1\n  http-request redirect scheme https code 301 if !{{ ssl_fc }}\n  default_backend be\n\
         backend be\n  mode http\n  server a 192.0.2.21:8080\n\
         frontend fe2\n  mode http\n  bind 192.0.2.9:443 ssl crt /nonexistent/missing.pem\n  redirect scheme https if {{ hdr(host) -i x }}\n  default_backend be\n"
    );
    let i = run(None, Some(&h), &opts()).unwrap();
    let k = keys(&i.toml);
    assert!(
        k.contains(&format!("bind = [\n  {{ address = \"0.0.0.0:80\", redirect_https = true }},\n  {{ address = \"0.0.0.0:443\", tls = {{ certificates = [\"{pem}\"], h2 = true }} }},\n]")),
        "{k}"
    );
    let d = dropped(&i).join("\n");
    // alpn h2,http/1.1 is carried (h2 = true), nothing of that line dropped.
    assert!(!d.contains("haproxy.cfg:4:"), "{d}");
    for want in [
        // Another condition than !{ ssl_fc } is a rule halo does not have.
        "haproxy.cfg:13: directive 'redirect'",
        // halo check refuses a certificate it cannot read: that bind goes.
        "cannot read /nonexistent/missing.pem",
    ] {
        assert!(d.contains(want), "{want} not in\n{d}");
    }
    let c = valid(&i.toml);
    assert!(c.proxy[0].bind_opts[0].redirect_https);
    let tls = c.proxy[0].bind_opts[1].tls.as_ref().unwrap();
    assert_eq!(
        tls.config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn haproxy_server_ssl_verify_ca_file_sni_and_check_ssl_are_carried() {
    let dir = std::env::temp_dir().join(format!("halo-import-upstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, TEST_PEM).unwrap();
    let ca = ca.display().to_string();
    let h = format!(
        "frontend fe\n  mode http\n  bind :80\n  default_backend be\n\
         backend be\n  mode http\n  option httpchk GET /health\n\
         \x20 server a 192.0.2.21:443 check ssl verify required ca-file {ca} sni str(a.example) verifyhost a.example\n\
         \x20 server b 192.0.2.22:443 check ssl verify none\n\
         \x20 server c 192.0.2.23:443 check ssl ca-file {ca} sni req.hdr(host)\n\
         frontend fe2\n  mode http\n  bind :81\n  default_backend be2\n\
         backend be2\n  mode http\n  default-server check-ssl verify none\n  server d 192.0.2.24:80 check\n"
    );
    let i = run(None, Some(&h), &opts()).unwrap();
    let k = keys(&i.toml);
    for want in [
        format!("{{ name = \"a\", address = \"192.0.2.21:443\", tls = {{ verify = \"{ca}\", sni = \"a.example\" }} }},"),
        "{ name = \"b\", address = \"192.0.2.22:443\", tls = { verify = \"none\" } },".to_string(),
        format!("{{ name = \"c\", address = \"192.0.2.23:443\", tls = {{ verify = \"{ca}\" }} }},"),
        // check-ssl on a plain server: its checks go over TLS.
        "tls = { verify = \"none\" }".to_string(),
    ] {
        assert!(k.contains(&want), "{want} not in\n{k}");
    }
    let d = dropped(&i).join("\n");
    for want in [
        "directive 'server c sni' not carried over: halo sends one fixed name",
        "directive 'server c ssl without sni' not carried over: halo also checks that the certificate names the server's IP address",
    ] {
        assert!(d.contains(want), "{want} not in\n{d}");
    }
    assert!(!d.contains("server a ssl without"), "{d}");
    assert!(!d.contains("verifyhost"), "{d}");
    let c = valid(&i.toml);
    let be = &c.proxy[0];
    assert!(be.servers.iter().all(|s| s.tls.is_some()));
    assert_eq!(
        be.health.as_ref().unwrap().tls,
        crate::config::HealthTls::Inherit
    );
    let be2 = &c.proxy[1];
    assert!(be2.servers[0].tls.is_none());
    assert!(matches!(
        be2.health.as_ref().unwrap().tls,
        crate::config::HealthTls::Own(_)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keepalived_ssl_get_is_an_http_check_over_unverified_tls() {
    let k = "virtual_server 192.0.2.100 443 {\n  delay_loop 5\n  lb_kind NAT\n  real_server 192.0.2.21 443 {\n    SSL_GET {\n      url {\n        path /health\n        status_code 200\n      }\n      connect_timeout 2\n    }\n  }\n}\n";
    let i = run(Some(k), None, &opts()).unwrap();
    assert!(
        keys(&i.toml).contains(
            "type = \"http\"\ninterval = \"5s\"\ntls = { verify = \"none\" }\npath = \"/health\""
        ),
        "{}",
        i.toml
    );
    let c = valid(&i.toml);
    let h = l4_of(&c).health.clone().unwrap();
    match &h.tls {
        crate::config::HealthTls::Own(t) => {
            assert_eq!(t.verify, crate::tls::client::Verify::None)
        }
        other => panic!("{other:?}"),
    }
    assert!(
        c.warnings
            .iter()
            .any(|w| w.to_string().contains("`verify = \"none\"`")),
        "{:?}",
        c.warnings
    );
    let d = dropped(&i).join("\n");
    assert!(!d.contains("SSL_GET"), "{d}");
}
