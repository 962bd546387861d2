//! keepalived.conf statements -> `[vrrp.NAME]` tables.
//!
//! Mapped: `vrrp_instance` (interface, virtual_router_id, priority,
//! advert_int, virtual_ipaddress, nopreempt, preempt_delay, unicast_src_ip,
//! unicast_peer, authentication PASS, version, garp timings), the global
//! `vrrp_version`, `track_interface`, `track_script` (a script that only
//! checks that haproxy runs becomes a track of halo's own proxy services when
//! they are imported too; any other becomes a `[track_script.NAME]`), the
//! `notify*` hooks and `script_user`, and `vrrp_sync_group` (its carried
//! members and notify hooks). keepalived's default VRRP version is 2, so an instance imports
//! as `version = 2` unless the file says 3. Positive track weights, which
//! keepalived adds while the check passes, become the same election: the
//! priority is raised by the weight and the track lowers it by as much when
//! down. `virtual_server` becomes `[l4.NAME]` (see keepalived_lvs.rs).
//! Everything else is reported, once, where it is written.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::emit::{Entry, Item, Src, Table, Value};
use super::keepalived_syntax::Stmt;
use super::units::keepalived_secs;
use super::words::{render_all, Word};
use super::{Dropped, Options, Origin};

pub struct Mapped {
    pub tables: Vec<Table>,
    pub dropped: Vec<Dropped>,
}

/// keepalived's weight 0 (the default) puts the instance in FAULT when the
/// tracked thing fails; halo's closest is the largest priority drop.
const FAULT_WEIGHT: i64 = -254;
const FAULT_NOTE: &str = "keepalived's default weight 0 puts the instance in FAULT (no adverts, VIPs removed) when it fails; halo lowers the priority by 254 instead, so any healthy peer takes over";
/// keepalived's `vrrp_script` defaults: `interval 1`, `rise 1`, `fall 1`.
const SCRIPT_INTERVAL: Duration = Duration::from_secs(1);
/// halo's longest track_script interval and timeout.
const MAX_SCRIPT_TIME: Duration = Duration::from_secs(3600);
/// Addresses one advertisement carries (its count field is one byte).
const MAX_VIPS: usize = 255;

/// A keepalived script line as halo's argv, or why halo cannot run it:
/// halo runs a program (an absolute path or a bare name looked up in its
/// PATH) with no shell, as keepalived does with a plain script line.
fn runnable(command: &str) -> Result<String, String> {
    let Some(program) = command.split_whitespace().next() else {
        return Err("empty".into());
    };
    if program.starts_with('/')
        || !program.contains('/')
            && !program.starts_with(['<', '>', '|', '(', '\u{201c}', '"', '\''])
    {
        return Ok(command.to_string());
    }
    let hint = if program.starts_with(['<', '>', '|', '(']) {
        "shell syntax, not a program: halo runs programs without a shell; write a script, or command = [\"/bin/bash\", \"-c\", \"...\"] in halo.toml"
    } else {
        "not an absolute path (halo runs a program by absolute path, or a bare name from its PATH)"
    };
    Err(format!("\"{program}\" is {hint}"))
}

/// A track to write: keepalived's weight (positive = added while up).
struct TrackOut {
    key: &'static str,
    target: String,
    weight: i64,
    from: Vec<Src>,
}

struct Script {
    src: Src,
    command: Option<String>,
    weight: i64,
    reverse: bool,
    carried: bool,
    used: bool,
    /// Carried as a `[track_script.NAME]` (not as a proxy track).
    as_script: bool,
    interval: Option<(Src, Duration)>,
    timeout: Option<(Src, Duration)>,
    rise: Option<(Src, i64)>,
    fall: Option<(Src, i64)>,
    user: Option<(Src, String)>,
    /// The `script` and `weight` lines, cited by the keys they become.
    script_src: Option<Src>,
    weight_src: Option<Src>,
}

fn render_tree(stmts: &mut [Stmt], values: &BTreeMap<String, String>) {
    for s in stmts {
        render_all(&mut s.words, values);
        if let Some(b) = &mut s.block {
            render_tree(b, values);
        }
    }
}

fn placeholder_reason(w: &Word) -> Option<String> {
    w.placeholder().map(|p| {
        let name = p.trim_start_matches('{').trim_end_matches('}').trim();
        format!("'{p}' is a template placeholder: render the template, or pass --set {name}=VALUE")
    })
}

pub fn map(o: &Origin, tree: &[Stmt], services: &[String], opts: &Options) -> Mapped {
    let mut tree = tree.to_vec();
    render_tree(&mut tree, &opts.set);
    let mut drops = Vec::new();
    let mut g = Globals::default();
    let mut scripts: BTreeMap<String, Script> = BTreeMap::new();

    // Definitions first: keepalived reads the whole file before it starts.
    for s in &tree {
        match s.keyword() {
            "global_defs" => globals(o, s, &mut g, &mut drops),
            "vrrp_script" => {
                let Some(name) = s.args().first() else {
                    drops.push(o.drop(s.line(), "vrrp_script", "no name"));
                    continue;
                };
                let mut sc = Script {
                    src: o.src(&s.words),
                    command: None,
                    weight: 0,
                    reverse: false,
                    carried: false,
                    used: false,
                    as_script: false,
                    interval: None,
                    timeout: None,
                    rise: None,
                    fall: None,
                    user: None,
                    script_src: None,
                    weight_src: None,
                };
                for c in s.children() {
                    let src = o.src(&c.words);
                    let arg = c.args().first().map(|w| w.text.as_str());
                    match (c.keyword(), arg) {
                        ("script", _) => match runnable(&joined_args(c)) {
                            Ok(cmd) => {
                                sc.command = Some(cmd);
                                sc.script_src = Some(src);
                            }
                            Err(why) => drops.push(o.drop(c.line(), "script", why)),
                        },
                        ("interval", Some(t)) => match keepalived_secs(t) {
                            Ok(d) if d > MAX_SCRIPT_TIME => {
                                drops.push(o.drop(
                                    c.line(),
                                    "interval",
                                    "halo runs a check at least every hour: carried as 1h",
                                ));
                                sc.interval = Some((src, MAX_SCRIPT_TIME));
                            }
                            Ok(d) if !d.is_zero() => sc.interval = Some((src, d)),
                            _ => drops.push(o.drop(
                                c.line(),
                                "interval",
                                "not a number of seconds above 0",
                            )),
                        },
                        ("timeout", Some(t)) => match keepalived_secs(t) {
                            Ok(d) if d > MAX_SCRIPT_TIME => {
                                drops.push(o.drop(
                                    c.line(),
                                    "timeout",
                                    "halo kills a check after at most an hour: carried as 1h",
                                ));
                                sc.timeout = Some((src, MAX_SCRIPT_TIME));
                            }
                            Ok(d) if !d.is_zero() => sc.timeout = Some((src, d)),
                            _ => drops.push(o.drop(
                                c.line(),
                                "timeout",
                                "not a number of seconds above 0",
                            )),
                        },
                        ("rise", Some(n)) => match n.parse::<i64>() {
                            Ok(n) if (1..=100).contains(&n) => sc.rise = Some((src, n)),
                            _ => drops.push(o.drop(c.line(), "rise", "halo takes 1..=100")),
                        },
                        ("fall", Some(n)) => match n.parse::<i64>() {
                            Ok(n) if (1..=100).contains(&n) => sc.fall = Some((src, n)),
                            _ => drops.push(o.drop(c.line(), "fall", "halo takes 1..=100")),
                        },
                        ("user", Some(u)) => {
                            sc.user = Some((src, u.to_string()));
                            if c.args().len() > 1 {
                                drops.push(o.drop(
                                    c.line(),
                                    "user GROUP",
                                    "halo runs scripts with the user's own groups",
                                ));
                            }
                        }
                        ("weight", _) => {
                            sc.weight_src = Some(src);
                            sc.weight = c
                                .args()
                                .first()
                                .and_then(|w| w.text.parse().ok())
                                .unwrap_or(0);
                            sc.reverse = c.args().get(1).is_some_and(|w| w.text == "reverse");
                        }
                        ("init_fail", _) => drops.push(o.drop(
                            c.line(),
                            "init_fail",
                            "halo's first run decides the state at once, success or failure",
                        )),
                        (kw, _) => {
                            drops.push(o.drop(c.line(), kw, "not a vrrp_script setting halo knows"))
                        }
                    }
                }
                scripts.insert(name.text.clone(), sc);
            }
            _ => {}
        }
    }

    let mut tables = Vec::new();
    let mut seen = Seen::default();
    let mut lvs = 0;
    let mut lvs_names = Vec::new();
    for s in &tree {
        match s.keyword() {
            "global_defs" | "vrrp_script" | "vrrp_sync_group" => {}
            "vrrp_instance" => {
                let name = s.args().first().map(|w| w.text.clone()).unwrap_or_default();
                if let Some(first) = seen.names.get(&name) {
                    drops.push(o.drop(
                        s.line(),
                        &format!("vrrp_instance {name}"),
                        format!("a second instance named {name} (the first is at line {first}): keepalived refuses the file; the first is imported"),
                    ));
                    continue;
                }
                seen.names.insert(name, s.line());
                if let Some(t) = instance(
                    o,
                    s,
                    &g,
                    &mut scripts,
                    services,
                    opts,
                    &mut seen,
                    &mut drops,
                ) {
                    tables.push(t);
                }
            }
            "virtual_server" => {
                lvs += 1;
                tables.extend(super::keepalived_lvs::service(
                    o,
                    s,
                    &tree,
                    lvs,
                    &mut lvs_names,
                    &mut drops,
                ));
            }
            kw => drops.push(o.drop(s.line(), kw, top_level_reason(kw))),
        }
    }
    // Sync groups last: they name the instances that were carried.
    let carried: Vec<String> = tables
        .iter()
        .filter(|t| t.path.first().is_some_and(|p| p == "vrrp"))
        .filter_map(|t| t.path.get(1).cloned())
        .collect();
    let mut grouped: BTreeMap<String, usize> = BTreeMap::new();
    for s in tree.iter().filter(|s| s.keyword() == "vrrp_sync_group") {
        if let Some(t) = sync_group(o, s, &carried, &mut grouped, &g, &mut drops) {
            tables.push(t);
        }
    }
    let script_tables: Vec<Table> = scripts
        .iter()
        .filter(|(_, sc)| sc.carried && sc.as_script)
        .map(|(name, sc)| script_table(name, sc, &g))
        .collect();
    tables.splice(0..0, script_tables);
    for (name, sc) in &scripts {
        if !sc.carried {
            let reason = if sc.used {
                "see the track_script lines that use it"
            } else {
                "no vrrp_instance tracks it"
            };
            drops.push(o.drop(sc.src.line, &format!("vrrp_script {name}"), reason));
        }
    }
    drops.sort_by_key(|d| d.line);
    Mapped {
        tables,
        dropped: drops,
    }
}

fn joined_args(s: &Stmt) -> String {
    let a: Vec<&str> = s.args().iter().map(|w| w.text.as_str()).collect();
    a.join(" ")
}

fn top_level_reason(kw: &str) -> &'static str {
    match kw {
        "virtual_server_group" => {
            "halo's [l4] takes one address and port per service: write one virtual_server per address"
        }
        "include" => "include is not followed: import the included file on its own and merge the output",
        "static_ipaddress" | "static_routes" | "static_rules" => {
            "halo manages only virtual IPs; configure static addresses and routes in the OS"
        }
        "vrrp_track_process" | "vrrp_track_file" | "track_file" | "track_process" | "track_bfd" => {
            "halo tracks interfaces and its own proxy services only"
        }
        _ => "not a keepalived keyword halo knows",
    }
}

// === vrrp_sync_group ===

/// `vrrp_sync_group NAME { group { I1 I2 } notify_* }` ->
/// `[vrrp_sync_group.NAME]` with the members that were carried.
fn sync_group(
    o: &Origin,
    s: &Stmt,
    carried: &[String],
    grouped: &mut BTreeMap<String, usize>,
    g: &Globals,
    drops: &mut Vec<Dropped>,
) -> Option<Table> {
    let Some(name) = s.args().first().map(|w| w.text.clone()) else {
        drops.push(o.drop(s.line(), "vrrp_sync_group", "no name"));
        return None;
    };
    let mut members: Vec<Item> = Vec::new();
    let mut hooks: Vec<(&'static str, Src, Vec<String>)> = Vec::new();
    for c in s.children() {
        let kw = c.keyword();
        match kw {
            "group" => {
                for m in c.children() {
                    let inst = m.keyword().to_string();
                    let why = if !carried.contains(&inst) {
                        Some("no vrrp_instance of that name was carried over".to_string())
                    } else if let Some(first) = grouped.get(&inst) {
                        Some(format!("already in the sync group at line {first}: an instance follows one group"))
                    } else if members.iter().any(|i| i.value == Value::Str(inst.clone())) {
                        Some("listed twice".to_string())
                    } else {
                        None
                    };
                    match why {
                        Some(why) => drops.push(o.drop(m.line(), &format!("group {inst}"), why)),
                        None => {
                            grouped.insert(inst.clone(), s.line());
                            members.push(Item {
                                value: Value::Str(inst),
                                from: vec![o.src(&m.words)],
                            });
                        }
                    }
                }
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify"
                if !c.args().is_empty() =>
            {
                let key = match kw {
                    "notify_master" => "notify_master",
                    "notify_backup" => "notify_backup",
                    "notify_fault" => "notify_fault",
                    _ => "notify",
                };
                if let Some((_, first, _)) = hooks.iter().find(|(k, _, _)| *k == key) {
                    let first = first.line;
                    drops.push(o.drop(
                        c.line(),
                        kw,
                        format!("repeated: keepalived keeps the first {kw} (line {first})"),
                    ));
                    continue;
                }
                match runnable(&joined_args(c)) {
                    Ok(cmd) => hooks.push((key, o.src(&c.words), argv(&cmd))),
                    Err(why) => drops.push(o.drop(c.line(), kw, why)),
                }
            }
            "smtp_alert" => drops.push(o.drop(c.line(), kw, "halo sends no email")),
            _ => drops.push(o.drop(
                c.line(),
                kw,
                "not a sync group setting halo has (instances and the notify hooks)",
            )),
        }
    }
    if members.is_empty() {
        drops.push(o.drop(
            s.line(),
            &format!("vrrp_sync_group {name}"),
            "none of its instances was carried over",
        ));
        return None;
    }
    let mut t = Table::new(&["vrrp_sync_group", &name], vec![o.src(&s.words)]);
    t.entries.push(Entry::many("instances", members));
    let any_hook = !hooks.is_empty();
    for (key, src, argv) in hooks {
        t.entries.push(argv_entry(key, argv, src));
    }
    if let (true, Some((src, u))) = (any_hook, &g.script_user) {
        t.entries.push(Entry::one(
            "script_user",
            Value::Str(u.clone()),
            vec![src.clone()],
        ));
    }
    Some(t)
}

// === global_defs ===

#[derive(Default)]
struct Globals {
    version: Option<(Src, i64)>,
    script_user: Option<(Src, String)>,
    garp_repeat: Option<(Src, i64)>,
    garp_interval: Option<(Src, Duration)>,
    garp_refresh: Option<(Src, Duration)>,
}

fn globals(o: &Origin, s: &Stmt, g: &mut Globals, drops: &mut Vec<Dropped>) {
    for c in s.children() {
        let src = o.src(&c.words);
        let arg = c.args().first().map(|w| w.text.as_str());
        let mut drop = |reason: &str| drops.push(o.drop(c.line(), c.keyword(), reason));
        match (c.keyword(), arg) {
            ("vrrp_version", Some(v @ ("2" | "3"))) => {
                g.version = Some((src, v.parse().unwrap_or(2)))
            }
            ("vrrp_version", _) => drop("must be 2 or 3"),
            ("vrrp_garp_master_repeat", Some(n)) => match n.parse::<i64>() {
                Ok(n) if (0..=100).contains(&n) => g.garp_repeat = Some((src, n)),
                _ => drop("halo sends 0..=100 gratuitous ARPs"),
            },
            ("vrrp_garp_interval", Some(t)) => match keepalived_secs(t) {
                Ok(d) => g.garp_interval = Some((src, d)),
                Err(e) => drop(&e),
            },
            ("vrrp_garp_master_refresh", Some(t)) => match keepalived_secs(t) {
                Ok(d) if !d.is_zero() => g.garp_refresh = Some((src, d)),
                Ok(_) => {}
                Err(e) => drop(&e),
            },
            ("router_id", _) => drop("only names this node in keepalived's logs and emails; halo logs the host name"),
            ("script_user", Some(u)) => {
                g.script_user = Some((src, u.to_string()));
                if c.args().len() > 1 {
                    drop("halo runs scripts with the user's own groups");
                }
            }
            ("enable_script_security", _) => {
                drop("halo always runs scripts with a clean environment, as script_user (never root unless it says \"root\")")
            }
            ("lvs_id" | "lvs_sync_daemon", _) => drop("halo syncs no LVS connection table: every balancer programs the same [l4] table, so a takeover needs no sync"),
            (kw, _) if kw.starts_with("notification_email") || kw.starts_with("smtp_") => {
                drop("halo sends no email; follow state changes in the journal or the metrics")
            }
            _ => drop("a keepalived process setting with no halo equivalent"),
        }
    }
}

// === vrrp_instance ===

/// What earlier instances took: names and (interface, vrid, IPv6?).
#[derive(Default)]
struct Seen {
    names: BTreeMap<String, usize>,
    links: BTreeMap<(String, i64, bool), (String, usize)>,
}

/// A parsed address list entry, or why it was left out.
fn address(w: &Word) -> Result<IpAddr, String> {
    if let Some(r) = placeholder_reason(w) {
        return Err(r);
    }
    w.text
        .parse()
        .map_err(|_| format!("\"{}\" is not an IP address", w.text))
}

#[allow(clippy::too_many_arguments)]
fn instance(
    o: &Origin,
    s: &Stmt,
    g: &Globals,
    scripts: &mut BTreeMap<String, Script>,
    services: &[String],
    opts: &Options,
    seen: &mut Seen,
    drops: &mut Vec<Dropped>,
) -> Option<Table> {
    let Some(name) = s.args().first().map(|w| w.text.clone()) else {
        drops.push(o.drop(s.line(), "vrrp_instance", "no name"));
        return None;
    };
    let mut fatal: Vec<String> = Vec::new();
    let mut interface = None;
    let mut vrid = None;
    let mut version = g.version.clone();
    let mut priority = None;
    let mut state: Option<(Src, String)> = None;
    let mut advert = None;
    let mut vips: Vec<Item> = Vec::new();
    let mut nopreempt = None;
    let mut preempt_delay = None;
    let mut unicast_src = None;
    let mut peers: Vec<Item> = Vec::new();
    let mut peers_src: Option<Src> = None;
    let mut auth: Option<(Src, String)> = None;
    // The auth_type line, cited with auth_pass (or reported with it).
    let mut auth_type: Option<Src> = None;
    let mut garp_repeat = g.garp_repeat.clone();
    let mut garp_interval = g.garp_interval.clone();
    let mut garp_refresh = g.garp_refresh.clone();
    let mut tracks: Vec<TrackOut> = Vec::new();
    let mut hooks: Vec<(&'static str, Src, Vec<String>)> = Vec::new();
    // Directives that take one value: a repeat overrides (keepalived reads
    // them in order), and the line overridden is reported.
    const ONE_VALUE: &[&str] = &[
        "interface",
        "virtual_router_id",
        "priority",
        "advert_int",
        "version",
        "state",
        "preempt_delay",
        "unicast_src_ip",
        "garp_master_repeat",
        "garp_interval",
        "garp_master_refresh",
    ];
    let mut set_at: BTreeMap<String, usize> = BTreeMap::new();

    for c in s.children() {
        let src = o.src(&c.words);
        let kw = c.keyword().to_string();
        let arg = c.args().first();
        if ONE_VALUE.contains(&kw.as_str()) {
            if let Some(before) = set_at.insert(kw.clone(), c.line()) {
                drops.push(o.drop(
                    before,
                    &kw,
                    format!("set again at line {}: keepalived uses the last", c.line()),
                ));
            }
        }
        let mut drop =
            |directive: &str, reason: String| drops.push(o.drop(c.line(), directive, reason));
        if let Some(r) = c.words.iter().find_map(placeholder_reason) {
            match kw.as_str() {
                "interface" | "unicast_src_ip" | "virtual_router_id" => {
                    fatal.push(format!("its {kw} is a template placeholder"))
                }
                _ => {}
            }
            if c.block.is_none() {
                drop(&kw, r);
                continue;
            }
        }
        match (kw.as_str(), arg) {
            ("interface", Some(i)) => interface = Some((src, i.text.clone())),
            ("virtual_router_id", Some(v)) => match v.text.parse::<i64>() {
                Ok(n) if (1..=255).contains(&n) => vrid = Some((src, n)),
                _ => {
                    drop(&kw, format!("\"{}\" is not a router id 1..=255", v.text));
                    fatal.push("no valid virtual_router_id".into());
                }
            },
            ("version", Some(v)) if v.text == "2" || v.text == "3" => {
                version = Some((src, v.text.parse().unwrap_or(2)))
            }
            ("priority", Some(p)) => match p.text.parse::<i64>() {
                Ok(n) if (1..=255).contains(&n) => priority = Some((src, n)),
                _ => drop(&kw, format!("\"{}\" is not a priority 1..=255; keepalived's default 100 applies", p.text)),
            },
            ("state", Some(st)) => {
                state = Some((src, st.text.clone()));
                drop(&kw, "not needed: halo starts every instance as backup and the priorities decide who is master (RFC 5798 6.4.1)".into());
            }
            ("advert_int", Some(t)) => match keepalived_secs(&t.text) {
                Ok(d) => advert = Some((src, d)),
                Err(e) => drop(&kw, e),
            },
            ("virtual_ipaddress", _) => {
                for e in c.children() {
                    vip(o, e, interface.as_ref().map(|(_, i)| i.as_str()), &mut vips, drops);
                }
            }
            ("nopreempt", _) => nopreempt = Some(src),
            ("preempt", _) => {}
            ("preempt_delay", Some(t)) => match keepalived_secs(&t.text) {
                Ok(d) if d <= Duration::from_secs(1000) => preempt_delay = Some((src, d)),
                Ok(_) => drop(&kw, "keepalived and halo allow at most 1000 seconds".into()),
                Err(e) => drop(&kw, e),
            },
            ("unicast_src_ip", Some(a)) => match address(a) {
                Ok(ip) => unicast_src = Some((src, ip.to_string())),
                Err(e) => drop(&kw, e),
            },
            ("unicast_peer", _) => {
                peers_src = Some(src);
                for p in c.children() {
                    match address(&p.words[0]) {
                        Ok(ip) => {
                            let first = peers.iter().find(|i| i.value == Value::Str(ip.to_string())).and_then(|i| i.from.first()).map(|s| s.line);
                            match first {
                                Some(first) => drops.push(o.drop(p.line(), &format!("unicast_peer {}", p.keyword()), format!("listed again (first at line {first})"))),
                                None => peers.push(Item {
                                    value: Value::Str(ip.to_string()),
                                    from: vec![o.src(&p.words)],
                                }),
                            }
                        }
                        Err(e) => {
                            if p.words[0].placeholder().is_some() {
                                fatal.push("a unicast_peer is a template placeholder".into());
                            }
                            drops.push(o.drop(p.line(), &format!("unicast_peer {}", p.keyword()), e));
                        }
                    }
                    for extra in p.args() {
                        if extra.text.parse::<i64>().is_err() {
                            drops.push(o.drop(p.line(), &format!("unicast_peer {} {}", p.keyword(), extra.text), "halo checks no TTL on unicast adverts"));
                        }
                    }
                }
            }
            ("authentication", _) => {
                let mut kind = None;
                let mut pass = None;
                for a in c.children() {
                    match (a.keyword(), a.args().first()) {
                        ("auth_type", Some(t)) => {
                            kind = Some(t.text.clone());
                            auth_type = Some(o.src(&a.words));
                        }
                        ("auth_pass", Some(p)) => pass = Some((o.src(&a.words), p.text.clone())),
                        _ => drops.push(o.drop(a.line(), a.keyword(), "not an authentication setting")),
                    }
                }
                let why = match (kind.as_deref(), pass) {
                    (Some("PASS") | None, Some(p)) => {
                        auth = Some(p);
                        None
                    }
                    (Some("AH"), _) => Some("IPsec AH: halo supports only the simple password (auth_type PASS) of VRRP version 2".to_string()),
                    (_, None) => Some("no auth_pass".to_string()),
                    (Some(t), _) => Some(format!("auth_type {t} is not PASS or AH")),
                };
                if let Some(why) = why {
                    drops.push(o.drop(c.line(), "authentication", why));
                }
            }
            ("track_interface", _) => {
                for t in c.children() {
                    tracks.push(TrackOut {
                        key: "interface",
                        target: t.keyword().to_string(),
                        weight: track_weight(t),
                        from: vec![o.src(&t.words)],
                    });
                }
            }
            ("track_script", _) => {
                for t in c.children() {
                    track_script(o, t, scripts, services, &mut tracks, drops);
                }
            }
            ("garp_master_repeat", Some(n)) => match n.text.parse::<i64>() {
                Ok(n) if (0..=100).contains(&n) => garp_repeat = Some((src, n)),
                _ => drop(&kw, "halo sends 0..=100 gratuitous ARPs".into()),
            },
            ("garp_interval", Some(t)) => match keepalived_secs(&t.text) {
                Ok(d) => garp_interval = Some((src, d)),
                Err(e) => drop(&kw, e),
            },
            ("garp_master_refresh", Some(t)) => match keepalived_secs(&t.text) {
                Ok(d) if d.is_zero() => garp_refresh = None,
                Ok(d) => garp_refresh = Some((src, d)),
                Err(e) => drop(&kw, e),
            },
            ("garp_master_delay" | "garp_master_refresh_repeat", _) => drop(&kw, "halo sends one burst of gratuitous ARPs on becoming master (and repeats it every garp_refresh)".into()),
            ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify", Some(_)) => {
                let key = match kw.as_str() {
                    "notify_master" => "notify_master",
                    "notify_backup" => "notify_backup",
                    "notify_fault" => "notify_fault",
                    "notify_stop" => "notify_stop",
                    _ => "notify",
                };
                if let Some((_, first, _)) = hooks.iter().find(|(k, _, _)| *k == key) {
                    let first = first.line;
                    drop(&kw, format!("repeated: keepalived keeps the first {kw} (line {first})"));
                } else {
                    match runnable(&joined_args(c)) {
                        Ok(cmd) => hooks.push((key, src, argv(&cmd))),
                        Err(why) => drop(&kw, why),
                    }
                }
            }
            (k, _) if k.starts_with("notify") => drop(&kw, "halo runs hooks for MASTER, BACKUP, FAULT and STOP only (notify_master, notify_backup, notify_fault, notify_stop, notify)".into()),
            ("smtp_alert", _) => drop(&kw, "halo sends no email".into()),
            ("mcast_src_ip", _) => drop(&kw, "halo sends multicast adverts from the interface's primary address".into()),
            ("virtual_ipaddress_excluded", _) => drop(&kw, "halo puts every virtual IP in its adverts; list these in virtual_ips or leave them to the OS".into()),
            ("virtual_routes" | "virtual_rules", _) => drop(&kw, "halo manages only virtual IPs".into()),
            ("use_vmac" | "vmac_xmit_base", _) => drop(&kw, "halo keeps the interface's own MAC address and sends gratuitous ARPs on failover".into()),
            ("dont_track_primary", _) => drop(&kw, "halo does not track the instance's own interface unless told to (track = [{ interface = ... }])".into()),
            ("lvs_sync_daemon_interface", _) => drop(&kw, "halo syncs no LVS connection table: every balancer programs the same [l4] table".into()),
            _ => drop(&kw, "no halo equivalent".into()),
        }
    }

    // What keepalived would run with.
    let any_v6 = vips
        .iter()
        .any(|i| matches!(&i.value, Value::Str(a) if a.contains(':')));
    let (version_n, version_from, version_note) = match (&version, any_v6) {
        (_, true) => (3, vec![], "keepalived uses VRRP version 3 for IPv6"),
        (Some((src, v)), false) => (*v, vec![src.clone()], ""),
        (None, false) => (2, vec![], "keepalived's default vrrp_version is 2"),
    };
    let state_master = state.as_ref().is_some_and(|(_, s)| s == "MASTER");
    if let (Some(src), true) = (&nopreempt, state_master) {
        drops.push(o.drop(
            src.line,
            "nopreempt",
            "keepalived ignores nopreempt when state is MASTER",
        ));
        nopreempt = None;
    }
    if unicast_src.is_some() && peers.is_empty() {
        if let Some((src, _)) = unicast_src.take() {
            drops.push(o.drop(
                src.line,
                "unicast_src_ip",
                "no unicast_peer: the adverts are multicast",
            ));
        }
    }
    for (inst, addr) in opts.vips.iter().filter(|(i, _)| *i == name) {
        let ok = addr.parse::<IpNet>().is_ok() || addr.parse::<IpAddr>().is_ok();
        if ok {
            vips.push(Item {
                value: Value::Str(addr.clone()),
                from: vec![Src {
                    file: "command line".into(),
                    line: 0,
                    text: format!("--vip {inst}={addr}"),
                }],
            });
        } else {
            drops.push(Dropped {
                file: "command line".into(),
                line: 0,
                directive: format!("--vip {inst}={addr}"),
                reason: "not an address or address/prefix".into(),
            });
        }
    }
    if interface.is_none() {
        fatal.push("no interface".into());
    }
    if vrid.is_none() && !fatal.iter().any(|f| f.contains("virtual_router_id")) {
        fatal.push("no virtual_router_id".into());
    }
    if vips.is_empty() && hooks.is_empty() {
        fatal.push(format!(
            "no virtual_ipaddress and no notify hook: keepalived runs such an instance for its election and scripts only, halo needs a virtual IP (pass --vip {name}=ADDRESS/PREFIX) or a hook that acts on the election"
        ));
    }
    if !fatal.is_empty() {
        fatal.dedup();
        drops.push(o.drop(s.line(), &format!("vrrp_instance {name}"), fatal.join("; ")));
        return None;
    }

    // One virtual router per vrid, link and family (halo's adverts and
    // their MAC address would collide); keepalived tells unicast ones apart.
    let v6 = vips
        .iter()
        .any(|i| matches!(&i.value, Value::Str(a) if a.contains(':')));
    if let (Some((_, iface)), Some((_, v))) = (&interface, &vrid) {
        let link = (iface.clone(), *v, v6);
        if let Some((other, line)) = seen.links.get(&link) {
            drops.push(o.drop(
                s.line(),
                &format!("vrrp_instance {name}"),
                format!("virtual_router_id {v} on {iface} ({}) is already used by vrrp_instance {other} at line {line}: halo runs one virtual router per vrid, interface and address family", if v6 { "IPv6" } else { "IPv4" }),
            ));
            return None;
        }
        seen.links.insert(link, (name.clone(), s.line()));
    }

    // Mark the scripts this instance carries (only now that it is carried).
    for tr in &tracks {
        for f in &tr.from {
            for sc in scripts.values_mut() {
                if sc.src == *f {
                    sc.carried = true;
                }
            }
        }
    }

    let mut t = Table::new(&["vrrp", &name], vec![o.src(&s.words)]);
    let (isrc, iface) = interface.expect("checked above");
    t.entries
        .push(Entry::one("interface", Value::Str(iface), vec![isrc]));
    let (vsrc, v) = vrid.expect("checked above");
    t.entries
        .push(Entry::one("vrid", Value::Int(v), vec![vsrc]));
    let mut e = Entry::one("version", Value::Int(version_n), version_from);
    if !version_note.is_empty() {
        e = e.note(version_note);
    }
    t.entries.push(e);

    // Priority: keepalived's base, raised by the positive weights.
    let (mut prio, mut prio_from, mut prio_notes) = match (&priority, &state) {
        (Some((src, p)), _) => (*p, vec![src.clone()], vec![]),
        (None, Some((src, st))) if st == "MASTER" => (
            255,
            vec![src.clone()],
            vec![
                "keepalived gives a MASTER without a priority 255 (the address owner's)"
                    .to_string(),
            ],
        ),
        (None, _) => (
            100,
            vec![],
            vec!["keepalived's default priority".to_string()],
        ),
    };
    let raise: i64 = tracks.iter().map(|tr| tr.weight.max(0)).sum();
    if raise > 0 && prio < 255 {
        let raised = (prio + raise).min(254);
        prio_notes.push(format!(
            "{prio} + {raise}: keepalived adds a positive track weight while the check passes; halo's track subtracts it while the check fails, which gives the same election"
        ));
        if prio + raise > 254 {
            prio_notes.push(
                "capped at 254, the highest priority of a router that does not own the address"
                    .into(),
            );
        }
        prio = raised;
        for tr in tracks.iter().filter(|tr| tr.weight > 0) {
            prio_from.extend(tr.from.iter().take(1).cloned());
        }
    }
    let mut e = Entry::one("priority", Value::Int(prio), prio_from);
    e.notes = prio_notes;
    t.entries.push(e);

    if let Some((src, d)) = advert {
        let (d, note) = advert_interval(d, version_n);
        let mut e = Entry::one("advert_interval", Value::Dur(d), vec![src.clone()]);
        if let Some(n) = note {
            drops.push(o.drop(src.line, "advert_int", n.clone()));
            e = e.note(n);
        }
        t.entries.push(e);
    }
    if vips.is_empty() {
        // Seed 000: the election decides, notify_master moves the address.
        t.entries.push(Entry::many("virtual_ips", vips).note(
            "no virtual_ipaddress: this instance holds no address; it elects and runs its notify hooks, as in keepalived",
        ));
    } else {
        t.entries.push(Entry::many("virtual_ips", vips));
    }
    if let Some(src) = nopreempt {
        t.entries
            .push(Entry::one("nopreempt", Value::Bool(true), vec![src]));
    }
    if let Some((src, d)) = preempt_delay {
        t.entries
            .push(Entry::one("preempt_delay", Value::Dur(d), vec![src]));
    }
    if let Some((src, a)) = unicast_src {
        t.entries
            .push(Entry::one("unicast_src", Value::Str(a), vec![src]));
    }
    if !peers.is_empty() {
        let mut e = Entry::many("unicast_peers", peers);
        e.from.extend(peers_src);
        t.entries.push(e);
    }
    if let Some((src, pass)) = auth {
        let why = if version_n == 3 {
            Some("keepalived ignores authentication with VRRP version 3 (RFC 5798 removed it)")
        } else if pass.is_empty() {
            Some("empty")
        } else {
            None
        };
        if let Some(why) = why {
            drops.push(o.drop(src.line, "auth_pass", why));
            if let Some(t) = &auth_type {
                drops.push(o.drop(t.line, "auth_type", why));
            }
        } else {
            let long = pass.len() > 8;
            let mut from = vec![src];
            from.extend(auth_type);
            let mut e = Entry::one("auth_pass", Value::Str(pass), from);
            if long {
                e = e.note("keepalived sends only the first 8 bytes of the password; so does halo");
            }
            t.entries.push(e);
        }
    }
    if let Some((src, n)) = garp_repeat {
        t.entries
            .push(Entry::one("garp_repeat", Value::Int(n), vec![src]));
    }
    if let Some((src, d)) = garp_interval {
        t.entries.push(Entry::one(
            "garp_interval",
            Value::Dur(super::units::ceil_ms(d)),
            vec![src],
        ));
    }
    if let Some((src, d)) = garp_refresh {
        t.entries.push(Entry::one(
            "garp_refresh",
            Value::Dur(super::units::ceil_ms(d)),
            vec![src],
        ));
    }
    if !tracks.is_empty() {
        let mut notes = Vec::new();
        let items = tracks
            .into_iter()
            .map(|tr| {
                let weight = match tr.weight {
                    0 => {
                        if !notes.iter().any(|n: &String| n == FAULT_NOTE) {
                            notes.push(FAULT_NOTE.to_string());
                        }
                        FAULT_WEIGHT
                    }
                    w if w > 0 => -w,
                    w => w,
                };
                Item {
                    value: Value::Inline(vec![
                        (tr.key, Value::Str(tr.target)),
                        ("weight", Value::Int(weight)),
                    ]),
                    from: tr.from,
                }
            })
            .collect();
        let mut e = Entry::many("track", items);
        e.notes = notes;
        t.entries.push(e);
    }
    if !hooks.is_empty() {
        for (key, src, argv) in hooks {
            t.entries.push(argv_entry(key, argv, src));
        }
        if let Some((src, u)) = &g.script_user {
            t.entries.push(Entry::one(
                "script_user",
                Value::Str(u.clone()),
                vec![src.clone()],
            ));
        }
    }
    Some(t)
}

/// keepalived splits a script line on spaces and runs it without a shell;
/// halo's argv list is the same thing written out.
fn argv(command: &str) -> Vec<String> {
    command.split_whitespace().map(str::to_string).collect()
}

fn argv_entry(key: &'static str, argv: Vec<String>, src: Src) -> Entry {
    let items = argv
        .into_iter()
        .map(|a| Item {
            value: Value::Str(a),
            from: Vec::new(),
        })
        .collect();
    let mut e = Entry::many(key, items);
    e.from = vec![src];
    e
}

/// `vrrp_script NAME` -> `[track_script.NAME]`, with keepalived's defaults
/// written out where halo's differ.
fn script_table(name: &str, sc: &Script, g: &Globals) -> Table {
    let mut t = Table::new(&["track_script", name], vec![sc.src.clone()]);
    t.entries.push(argv_entry(
        "command",
        argv(sc.command.as_deref().unwrap_or_default()),
        sc.script_src.clone().unwrap_or_else(|| sc.src.clone()),
    ));
    let (interval, from, note) = match &sc.interval {
        Some((src, d)) => (*d, vec![src.clone()], None),
        None => (
            SCRIPT_INTERVAL,
            vec![],
            Some("keepalived's default interval"),
        ),
    };
    let mut e = Entry::one(
        "interval",
        Value::Dur(super::units::ceil_ms(interval)),
        from,
    );
    e.notes.extend(note.map(String::from));
    t.entries.push(e);
    t.entries.push(match &sc.timeout {
        Some((src, d)) => Entry::one(
            "timeout",
            Value::Dur(super::units::ceil_ms(*d)),
            vec![src.clone()],
        ),
        None => Entry::one(
            "timeout",
            Value::Dur(super::units::ceil_ms(interval)),
            vec![],
        )
        .note("no timeout given: halo kills the script after one interval"),
    });
    for (key, v) in [("rise", &sc.rise), ("fall", &sc.fall)] {
        t.entries.push(match v {
            Some((src, n)) => Entry::one(key, Value::Int(*n), vec![src.clone()]),
            None => {
                Entry::one(key, Value::Int(1), vec![]).note(format!("keepalived's default {key}"))
            }
        });
    }
    let weight = match sc.weight {
        0 => FAULT_WEIGHT,
        w if w > 0 => -w,
        w => w,
    };
    let from = sc.weight_src.clone().unwrap_or_else(|| sc.src.clone());
    let mut e = Entry::one("weight", Value::Int(weight), vec![from]);
    if sc.weight == 0 {
        e = e.note(FAULT_NOTE);
    } else if sc.weight > 0 {
        e = e.note("keepalived adds a positive weight while the script succeeds; halo raises the instance's priority by it and subtracts it while the script fails");
    }
    t.entries.push(e);
    if let Some((src, u)) = sc.user.as_ref().or(g.script_user.as_ref()) {
        t.entries
            .push(Entry::one("user", Value::Str(u.clone()), vec![src.clone()]));
    }
    t
}

/// v2 advertises whole seconds (1..=255), v3 centiseconds (10ms..40.95s).
fn advert_interval(d: Duration, version: i64) -> (Duration, Option<String>) {
    let ms = d.as_millis();
    if version == 2 {
        let secs = ((ms + 500) / 1000).clamp(1, 255);
        let r = Duration::from_secs(secs as u64);
        let note = (r != d).then(|| {
            format!(
                "VRRP version 2 advertises whole seconds (1..=255): {} s is carried as {secs} s",
                ms as f64 / 1000.0
            )
        });
        (r, note)
    } else {
        let centis = ((ms + 5) / 10).clamp(1, 4095);
        let r = Duration::from_millis(centis as u64 * 10);
        let note = (r != d)
            .then(|| "VRRP version 3 advertises 10 ms steps, 10ms..40.95s: rounded".to_string());
        (r, note)
    }
}

/// `NAME [weight N [reverse]]` in a track_* block: keepalived's weight.
fn track_weight(t: &Stmt) -> i64 {
    let a = t.args();
    match a.iter().position(|w| w.text == "weight") {
        Some(i) => a.get(i + 1).and_then(|w| w.text.parse().ok()).unwrap_or(0),
        None => 0,
    }
}

/// Whether a vrrp_script only checks that an haproxy process exists.
pub fn checks_haproxy_process(command: &str) -> bool {
    let argv: Vec<&str> = command.split_whitespace().collect();
    let Some((prog, args)) = argv.split_first() else {
        return false;
    };
    let prog = prog.rsplit('/').next().unwrap_or(prog);
    matches!(
        (prog, args),
        ("pkill" | "killall", ["-0", "haproxy"])
            | ("pidof", ["haproxy"])
            | ("pgrep", ["haproxy"] | ["-x", "haproxy"])
    )
}

fn track_script(
    o: &Origin,
    t: &Stmt,
    scripts: &mut BTreeMap<String, Script>,
    services: &[String],
    tracks: &mut Vec<TrackOut>,
    drops: &mut Vec<Dropped>,
) {
    let name = t.keyword();
    let directive = format!("track_script {name}");
    let Some(sc) = scripts.get_mut(name) else {
        drops.push(o.drop(t.line(), &directive, "no vrrp_script of that name"));
        return;
    };
    sc.used = true;
    let command = sc.command.clone().unwrap_or_default();
    let reverse = sc.reverse || t.args().iter().any(|w| w.text == "reverse");
    if reverse {
        drops.push(o.drop(
            t.line(),
            &directive,
            format!("runs `{command}` with `reverse`: halo has no reversed tracks; invert the script's exit status instead"),
        ));
        return;
    }
    if command.is_empty() {
        drops.push(o.drop(
            t.line(),
            &directive,
            "the vrrp_script has no `script` halo can run",
        ));
        return;
    }
    let weight = if t.args().iter().any(|w| w.text == "weight") {
        track_weight(t)
    } else {
        sc.weight
    };
    if !checks_haproxy_process(&command) || services.is_empty() {
        // Carried as halo's own [track_script.NAME].
        sc.as_script = true;
        tracks.push(TrackOut {
            key: "script",
            target: name.to_string(),
            weight,
            from: vec![o.src(&t.words), sc.src.clone()],
        });
        return;
    }
    // The script's own lines are cited too: they are carried by this.
    let mut from = vec![o.src(&t.words), sc.src.clone()];
    from.extend(sc.script_src.clone());
    from.extend(sc.weight_src.clone());
    for svc in services {
        tracks.push(TrackOut {
            key: "proxy",
            target: svc.clone(),
            weight,
            from: from.clone(),
        });
    }
}

fn vip(
    o: &Origin,
    e: &Stmt,
    interface: Option<&str>,
    vips: &mut Vec<Item>,
    drops: &mut Vec<Dropped>,
) {
    let addr = &e.words[0];
    if let Some(r) = placeholder_reason(addr) {
        drops.push(o.drop(e.line(), &format!("virtual_ipaddress {}", addr.text), r));
        return;
    }
    let ok = addr.text.parse::<IpNet>().is_ok() || addr.text.parse::<IpAddr>().is_ok();
    if !ok {
        drops.push(o.drop(
            e.line(),
            &format!("virtual_ipaddress {}", addr.text),
            "not an address or address/prefix (halo takes no address ranges)",
        ));
        return;
    }
    let ip_of = |t: &str| {
        t.parse::<IpNet>()
            .map(|n| n.addr())
            .or_else(|_| t.parse::<IpAddr>())
            .ok()
    };
    let ip = ip_of(&addr.text);
    for item in vips.iter() {
        let (Value::Str(t), Some(line)) = (&item.value, item.from.first().map(|s| s.line)) else {
            continue;
        };
        let why = if ip_of(t) == ip {
            format!("listed again (first at line {line})")
        } else if ip.is_some_and(|ip| ip.is_ipv6()) != t.contains(':') {
            format!("an instance carries one address family, that of its first virtual IP (line {line}); keepalived leaves this one out too: put it in an instance of its own")
        } else {
            continue;
        };
        drops.push(o.drop(e.line(), &format!("virtual_ipaddress {}", addr.text), why));
        return;
    }
    if vips.len() >= MAX_VIPS {
        drops.push(o.drop(
            e.line(),
            &format!("virtual_ipaddress {}", addr.text),
            format!("an advertisement carries at most {MAX_VIPS} addresses: the first {MAX_VIPS} are carried"),
        ));
        return;
    }
    vips.push(Item {
        value: Value::Str(addr.text.clone()),
        from: vec![o.src(&e.words)],
    });
    let mut rest = e.args().iter();
    while let Some(w) = rest.next() {
        let directive = format!("virtual_ipaddress {} {}", addr.text, w.text);
        let reason = match w.text.as_str() {
            "dev" => {
                let dev = rest.next().map(|d| d.text.clone()).unwrap_or_default();
                if Some(dev.as_str()) == interface {
                    continue;
                }
                format!("halo adds virtual IPs on the instance's interface, not on {dev}")
            }
            "label" => {
                rest.next();
                "halo adds addresses without a label".to_string()
            }
            "brd" | "scope" | "preferred_lft" | "track_group" => {
                rest.next();
                "halo adds addresses with the kernel's defaults".to_string()
            }
            _ => "halo adds addresses with the kernel's defaults".to_string(),
        };
        drops.push(o.drop(e.line(), &directive, reason));
    }
}
