//! haproxy.cfg sections -> `[proxy.NAME]` tables.
//!
//! A `frontend` with a `default_backend`, or a `listen` section, becomes one
//! service named after the frontend/listen (`mode tcp`: a `mode = "tcp"`
//! relay, with `send-proxy[-v2]` carried and the HTTP-only lines reported). Settings resolve as HAProxy
//! resolves them: the `defaults` section before a proxy, overridden by the
//! proxy's own lines; client-side keys (bind, maxconn, client timeouts,
//! logging) from the frontend, server-side keys from the backend. Where
//! halo's default differs from HAProxy's (X-Forwarded-For, dontlognull, the
//! health-check timeout) the HAProxy behaviour is written out explicitly.
//! Every line not used is reported once, where it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use super::emit::{Entry, Item, Rhs, Src, Table, Value};
use super::haproxy_syntax::{File, Line, Section};
use super::units::{ceil_ms, haproxy_time};
use super::words::{render_all, Word};
use super::{Dropped, Options, Origin};

pub struct Mapped {
    pub tables: Vec<Table>,
    /// Names of the services written, in order.
    pub services: Vec<String>,
    pub dropped: Vec<Dropped>,
}

const ACCESS_LOG: &str = "halo writes its own access log line per request (target halo::access, with HAProxy-like timers) to journald";
const NO_EQUIVALENT: &str = "no halo equivalent";

/// `server` parameters that take a value (so the value is not read as a
/// parameter of its own).
const SERVER_ARGS: &[&str] = &[
    "addr",
    "agent-addr",
    "agent-inter",
    "agent-port",
    "agent-send",
    "alpn",
    "ca-file",
    "check-alpn",
    "check-proto",
    "check-sni",
    "ciphers",
    "ciphersuites",
    "cookie",
    "crl-file",
    "crt",
    "curves",
    "downinter",
    "error-limit",
    "fall",
    "fastinter",
    "guid",
    "hash-key",
    "id",
    "init-addr",
    "init-state",
    "inter",
    "log-proto",
    "max-reuse",
    "maxconn",
    "maxqueue",
    "minconn",
    "namespace",
    "npn",
    "observe",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "pool-conn-name",
    "pool-low-conn",
    "pool-max-conn",
    "pool-purge-delay",
    "port",
    "proto",
    "redir",
    "resolve-net",
    "resolve-opts",
    "resolve-prefer",
    "resolvers",
    "rise",
    "shard",
    "sigalgs",
    "slowstart",
    "sni",
    "source",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-ut",
    "track",
    "usesrc",
    "verify",
    "verifyhost",
    "weight",
    "ws",
];

// === settings of one section ===

/// What one section says, each value with the line that said it.
#[derive(Debug, Clone, Default)]
struct Settings {
    mode: Option<(Src, String)>,
    balance: Option<(Src, &'static str)>,
    /// HAProxy timeout name ("connect", "http-request", ...) -> value.
    timeouts: Vec<(&'static str, Src, Duration)>,
    retries: Option<(Src, i64)>,
    redispatch: Option<Src>,
    maxconn: Option<(Src, i64)>,
    /// `option forwardfor [except NET]`.
    forwardfor: Option<(Src, Option<String>)>,
    dontlognull: Option<Src>,
    /// (method, path, host) from `option httpchk` or `http-check send`.
    httpchk: Option<(Src, HttpChk)>,
    expect: Option<(Src, Expect)>,
    default_server: Vec<(Src, Vec<Word>)>,
    binds: Vec<(Src, Vec<Word>)>,
    servers: Vec<(Src, Vec<Word>)>,
    default_backend: Option<(Src, String)>,
    /// `redirect scheme https` / `http-request redirect scheme https`
    /// (unconditional or `if !{ ssl_fc }`): halo's `redirect_https` binds.
    redirect_https: Option<Src>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct HttpChk {
    method: String,
    path: String,
    host: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Codes(Vec<i64>),
    Range(u16, u16),
}

impl Settings {
    /// `self` with `over` on top (HAProxy: a proxy's lines override its
    /// defaults section).
    fn overlay(&self, over: &Settings) -> Settings {
        let mut timeouts = self.timeouts.clone();
        for t in &over.timeouts {
            timeouts.retain(|(name, _, _)| *name != t.0);
            timeouts.push(t.clone());
        }
        let or = |a: &Option<(Src, String)>, b: &Option<(Src, String)>| b.clone().or(a.clone());
        Settings {
            mode: or(&self.mode, &over.mode),
            balance: over.balance.clone().or(self.balance.clone()),
            timeouts,
            retries: over.retries.clone().or(self.retries.clone()),
            redispatch: over.redispatch.clone().or(self.redispatch.clone()),
            maxconn: over.maxconn.clone().or(self.maxconn.clone()),
            forwardfor: over.forwardfor.clone().or(self.forwardfor.clone()),
            dontlognull: over.dontlognull.clone().or(self.dontlognull.clone()),
            httpchk: over.httpchk.clone().or(self.httpchk.clone()),
            expect: over.expect.clone().or(self.expect.clone()),
            default_server: self
                .default_server
                .iter()
                .chain(&over.default_server)
                .cloned()
                .collect(),
            binds: over.binds.clone(),
            servers: over.servers.clone(),
            default_backend: or(&self.default_backend, &over.default_backend),
            redirect_https: over.redirect_https.clone(),
        }
    }

    fn timeout(&self, name: &str) -> Option<(Src, Duration)> {
        self.timeouts
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, s, d)| (s.clone(), *d))
    }
}

/// Read one proxy-ish section's lines; report what is not used.
fn settings(o: &Origin, s: &Section, drops: &mut Vec<Dropped>) -> Settings {
    let kind = s.kind();
    let mut st = Settings::default();
    for l in &s.body {
        let src = o.src(&l.words);
        let n = l.line();
        let mut drop = |directive: String, reason: &str| drops.push(o.drop(n, &directive, reason));
        let kw = l.keyword();
        match kw {
            "mode" => match l.arg(0) {
                Some(m) => st.mode = Some((src, m.to_string())),
                None => drop("mode".into(), "`mode` needs a value"),
            },
            "balance" => match l.arg(0) {
                Some("roundrobin") | Some("static-rr") => st.balance = Some((src, "roundrobin")),
                Some("leastconn") => st.balance = Some((src, "leastconn")),
                Some("source") => st.balance = Some((src, "source")),
                Some(other) => drop(
                    format!("balance {other}"),
                    "halo balances by roundrobin, leastconn or source; HAProxy's default roundrobin is used",
                ),
                None => drop("balance".into(), "`balance` needs an algorithm"),
            },
            "timeout" | "contimeout" | "clitimeout" | "srvtimeout" => {
                let (name, value) = match kw {
                    "contimeout" => (Some("connect"), l.arg(0)),
                    "clitimeout" => (Some("client"), l.arg(0)),
                    "srvtimeout" => (Some("server"), l.arg(0)),
                    _ => (l.arg(0), l.arg(1)),
                };
                let known = [
                    "connect",
                    "client",
                    "server",
                    "http-request",
                    "http-keep-alive",
                    "queue",
                    "check",
                ];
                let directive = format!("timeout {}", name.unwrap_or(""));
                let Some(name) = name.and_then(|n| known.iter().find(|k| **k == n)) else {
                    drop(directive, "halo has connect, client, server, http-request, http-keep-alive, queue and check timeouts only");
                    continue;
                };
                match value.map(haproxy_time) {
                    Some(Ok(d)) if d.is_zero() => drop(
                        directive,
                        "0 means no timeout in HAProxy; halo always has one, so its default applies",
                    ),
                    Some(Ok(d)) => st.timeouts.push((name, src, ceil_ms(d))),
                    Some(Err(e)) => drop(directive, &e),
                    None => drop(directive, "no value"),
                }
            }
            "retries" => match l.arg(0).and_then(|v| v.parse::<i64>().ok()) {
                Some(r) if r >= 0 => st.retries = Some((src, r)),
                _ => drop("retries".into(), "not a number of retries"),
            },
            "maxconn" if kind == "backend" => drop(
                "maxconn".into(),
                "a backend has no maxconn in HAProxy (it is `fullconn`); halo limits servers with a server's maxconn",
            ),
            "maxconn" => match l.arg(0).and_then(|v| v.parse::<i64>().ok()) {
                Some(m) if (0..=i64::from(u32::MAX)).contains(&m) => st.maxconn = Some((src, m)),
                _ => drop("maxconn".into(), "not a connection count"),
            },
            "option" => option(l, src, &mut st, &mut drop),
            "no" if l.arg(0) == Some("option") => {
                let what = l.arg(1).unwrap_or("");
                let reason = match what {
                    "redispatch" => "halo always retries a failed connect on another server",
                    "forwardfor" => "nothing to turn off: forwardfor is off unless `option forwardfor`",
                    _ => NO_EQUIVALENT,
                };
                drop(format!("no option {what}"), reason);
            }
            "http-check" => http_check(l, src, &mut st, &mut drop),
            "default-server" => st.default_server.push((src, l.words[1..].to_vec())),
            "server" if kind == "frontend" => drop("server".into(), "a frontend has no servers"),
            "server" => st.servers.push((src, l.words.clone())),
            "bind" if kind == "backend" || kind == "defaults" => {
                drop("bind".into(), "only a frontend or listen section binds")
            }
            "bind" => st.binds.push((src, l.words.clone())),
            "default_backend" => match l.arg(0) {
                Some(b) => st.default_backend = Some((src, b.to_string())),
                None => drop("default_backend".into(), "no backend named"),
            },
            "use_backend" => drop(
                "use_backend".into(),
                "halo sends a service's requests to one pool of servers: content switching is not supported, only the default_backend is carried over",
            ),
            "log" => drop("log".into(), ACCESS_LOG),
            "stats" => drop(
                format!("stats {}", l.arg(0).unwrap_or("")),
                "halo has its own status page and metrics (the [admin] listener) and `halo status`",
            ),
            "redirect" | "http-request" if https_redirect(l) => {
                if kind == "backend" || kind == "defaults" {
                    drop(
                        kw.into(),
                        "halo redirects to HTTPS on a frontend's plain binds only",
                    );
                } else {
                    st.redirect_https = Some(src);
                }
            }
            "acl" | "http-request" | "http-response" | "tcp-request" | "tcp-response"
            | "redirect" | "use-server" | "http-after-response" => drop(
                kw.into(),
                "halo has no ACLs or request rules: it forwards every request to the service's servers",
            ),
            "cookie" | "stick" | "stick-table" | "hash-type" => drop(
                kw.into(),
                "halo has no session persistence; `balance source` keeps a client on one server",
            ),
            "errorfile" | "errorloc" | "errorloc302" | "errorloc303" | "http-error" => drop(
                kw.into(),
                "halo serves its own small error pages (400, 502, 503, 504)",
            ),
            "compression" => drop(kw.into(), "halo does not compress; nginx can"),
            "capture" | "unique-id-format" | "unique-id-header" | "log-format" => {
                drop(kw.into(), ACCESS_LOG)
            }
            _ => drop(kw.into(), NO_EQUIVALENT),
        }
    }
    st
}

/// `redirect scheme https [code N] [if !{ ssl_fc } | unless { ssl_fc }]`,
/// or the same after `http-request`: what a `redirect_https` bind does (on
/// a plain bind `ssl_fc` is always false). Other conditions are not.
fn https_redirect(l: &Line) -> bool {
    let words: Vec<&str> = l.words.iter().map(|w| w.text.as_str()).collect();
    let rest = match words.as_slice() {
        ["redirect", "scheme", "https", rest @ ..] => rest,
        ["http-request", "redirect", "scheme", "https", rest @ ..] => rest,
        _ => return false,
    };
    let rest = match rest {
        ["code", c, rest @ ..] if ["301", "302", "303", "307", "308"].contains(c) => rest,
        rest => rest,
    };
    matches!(
        rest.concat().as_str(),
        "" | "if!{ssl_fc}" | "unless{ssl_fc}"
    )
}

fn option(l: &Line, src: Src, st: &mut Settings, drop: &mut impl FnMut(String, &str)) {
    let what = l.arg(0).unwrap_or("");
    let directive = format!("option {what}");
    match what {
        "redispatch" => st.redispatch = Some(src),
        "dontlognull" => st.dontlognull = Some(src),
        "forwardfor" => {
            let mut except = None;
            let mut rest = l.words[2..].iter();
            while let Some(w) = rest.next() {
                match (w.text.as_str(), rest.next()) {
                    ("except", Some(net)) => except = Some(net.text.clone()),
                    ("header", Some(h)) => drop(
                        format!("option forwardfor header {}", h.text),
                        "halo always names the header X-Forwarded-For (and adds Forwarded)",
                    ),
                    ("if-none", next) => {
                        drop(
                            "option forwardfor if-none".into(),
                            "halo appends the client to any X-Forwarded-For already present",
                        );
                        if let Some(n) = next {
                            drop(format!("option forwardfor {}", n.text), "not understood");
                        }
                    }
                    (other, _) => drop(format!("option forwardfor {other}"), "not understood"),
                }
            }
            st.forwardfor = Some((src, except));
        }
        "httpchk" => {
            let args: Vec<&str> = l.words[2..].iter().map(|w| w.text.as_str()).collect();
            let (method, path, version) = match args.as_slice() {
                [] => ("OPTIONS", "/", None),
                [uri] => ("OPTIONS", *uri, None),
                [m, uri] => (*m, *uri, None),
                [m, uri, v, ..] => (*m, *uri, Some(*v)),
            };
            let mut chk = HttpChk {
                method: method.to_string(),
                path: path.to_string(),
                host: None,
            };
            if let Some(v) = version {
                // The old idiom: "HTTP/1.1\r\nHost:\ www" smuggles headers
                // into the version field.
                for header in v.split("\r\n").skip(1) {
                    match header.split_once(':') {
                        Some((name, value)) if name.trim().eq_ignore_ascii_case("host") => {
                            chk.host = Some(value.trim().to_string())
                        }
                        _ if header.is_empty() => {}
                        _ => drop(
                            format!("option httpchk header {header}"),
                            "halo's check sends only a Host header",
                        ),
                    }
                }
            }
            st.httpchk = Some((src, chk));
        }
        "httplog"
        | "tcplog"
        | "httpslog"
        | "log-health-checks"
        | "log-separate-errors"
        | "logasap"
        | "dontlog-normal" => drop(directive, ACCESS_LOG),
        "http-server-close"
        | "httpclose"
        | "http-keep-alive"
        | "forceclose"
        | "http-pretend-keepalive"
        | "http-no-delay" => drop(
            directive,
            "halo keeps connections alive on both sides (pooled server connections)",
        ),
        "abortonclose"
        | "http-buffer-request"
        | "http-use-htx"
        | "contstats"
        | "splice-auto"
        | "tcp-smart-accept"
        | "tcp-smart-connect"
        | "socket-stats" => drop(directive, NO_EQUIVALENT),
        "tcp-check" | "ssl-hello-chk" | "mysql-check" | "pgsql-check" | "redis-check"
        | "smtpchk" | "ldap-check" | "spop-check" => drop(
            directive,
            "halo checks servers over HTTP or a plain TCP connect only",
        ),
        _ => drop(directive, NO_EQUIVALENT),
    }
}

fn http_check(l: &Line, src: Src, st: &mut Settings, drop: &mut impl FnMut(String, &str)) {
    let sub = l.arg(0).unwrap_or("");
    match sub {
        "expect" => {
            let args: Vec<&str> = l.words[2..].iter().map(|w| w.text.as_str()).collect();
            match args.as_slice() {
                ["status", codes] => match expect_codes(codes) {
                    Some(e) => st.expect = Some((src, e)),
                    None => drop(
                        format!("http-check expect status {codes}"),
                        "halo expects one status, a list of statuses or one range (200-399); the default 2xx/3xx applies",
                    ),
                },
                _ => drop(
                    format!("http-check expect {}", args.join(" ")),
                    "halo's check matches the status code (and optionally a body digest) only; the default 2xx/3xx applies",
                ),
            }
        }
        "send" => {
            let mut chk = st.httpchk.clone().map(|(_, c)| c).unwrap_or(HttpChk {
                method: "GET".into(),
                path: "/".into(),
                host: None,
            });
            let mut rest = l.words[2..].iter();
            while let Some(w) = rest.next() {
                let Some(v) = rest.next() else {
                    drop(format!("http-check send {}", w.text), "no value");
                    break;
                };
                match w.text.as_str() {
                    "meth" => chk.method = v.text.clone(),
                    "uri" => chk.path = v.text.clone(),
                    "ver" => {}
                    "hdr" => {
                        let value = rest.next().map(|x| x.text.clone()).unwrap_or_default();
                        if v.text.eq_ignore_ascii_case("host") {
                            chk.host = Some(value);
                        } else {
                            drop(
                                format!("http-check send hdr {}", v.text),
                                "halo's check sends only a Host header",
                            );
                        }
                    }
                    other => drop(format!("http-check send {other}"), NO_EQUIVALENT),
                }
            }
            st.httpchk = Some((src, chk));
        }
        other => drop(format!("http-check {other}"), NO_EQUIVALENT),
    }
}

/// "200", "200,301", "200-399" (HAProxy 2.2+ lists and ranges).
fn expect_codes(text: &str) -> Option<Expect> {
    let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    if let Some((lo, hi)) = text.split_once('-') {
        let (lo, hi) = (code(lo)?, code(hi)?);
        return (lo <= hi).then_some(Expect::Range(lo, hi));
    }
    let codes: Option<Vec<i64>> = text.split(',').map(|c| code(c).map(i64::from)).collect();
    codes.filter(|c| !c.is_empty()).map(Expect::Codes)
}

// === the file ===

pub fn map(o: &Origin, file: &File, opts: &Options) -> Mapped {
    let mut drops = Vec::new();
    let mut file = file.clone();
    for line in file.stray.iter_mut().chain(
        file.sections
            .iter_mut()
            .flat_map(|s| std::iter::once(&mut s.head).chain(s.body.iter_mut())),
    ) {
        render_all(&mut line.words, &opts.set);
    }
    for l in &file.stray {
        drops.push(o.drop(l.line(), l.keyword(), "outside any section"));
    }

    // Each section's settings, read once so each unused line is reported once.
    let mut read: Vec<Option<Settings>> = Vec::new();
    let mut defaults_of: Vec<Option<usize>> = Vec::new();
    let mut last_defaults = None;
    for (i, s) in file.sections.iter().enumerate() {
        defaults_of.push(last_defaults);
        match s.kind() {
            "global" => {
                for l in &s.body {
                    let directive = match (l.keyword(), l.arg(0)) {
                        ("stats", Some(sub)) => format!("stats {sub}"),
                        (kw, _) => kw.to_string(),
                    };
                    drops.push(o.drop(l.line(), &directive, global_reason(l.keyword())));
                }
                read.push(None);
            }
            "defaults" => {
                last_defaults = Some(i);
                read.push(Some(settings(o, s, &mut drops)));
            }
            "frontend" | "backend" => read.push(Some(settings(o, s, &mut drops))),
            "listen" if is_stats_page(s) => {
                drops.push(o.drop(
                    s.head.line(),
                    &format!("listen {}", s.name().unwrap_or("")),
                    "a stats page: halo has its own status page and metrics (the [admin] listener) and `halo status`",
                ));
                read.push(None);
            }
            "listen" => read.push(Some(settings(o, s, &mut drops))),
            other => {
                drops.push(o.drop(
                    s.head.line(),
                    &format!("{other} {}", s.name().unwrap_or("")),
                    format!("halo has no `{other}` sections"),
                ));
                read.push(None);
            }
        }
    }
    let with_defaults = |i: usize| -> Settings {
        let own = read[i].clone().unwrap_or_default();
        match defaults_of[i].and_then(|d| read[d].as_ref()) {
            Some(d) => d.overlay(&own),
            None => own,
        }
    };

    let mut tables = Vec::new();
    let mut services = Vec::new();
    let mut used_backends = BTreeSet::new();
    let mut bound = Bound::new();
    for (i, s) in file.sections.iter().enumerate() {
        if read[i].is_none() {
            continue;
        }
        let name = s.name().unwrap_or("").to_string();
        let head = o.src(&s.head.words);
        let (fe, be, be_head) = match s.kind() {
            "listen" => (with_defaults(i), with_defaults(i), head.clone()),
            "frontend" => {
                let fe = with_defaults(i);
                let Some((_, be_name)) = fe.default_backend.clone() else {
                    drops.push(o.drop(
                        s.head.line(),
                        &format!("frontend {name}"),
                        "no default_backend: halo needs one pool of servers per service",
                    ));
                    continue;
                };
                let found = file
                    .sections
                    .iter()
                    .position(|b| b.kind() == "backend" && b.name() == Some(be_name.as_str()));
                let Some(b) = found else {
                    drops.push(o.drop(
                        s.head.line(),
                        &format!("frontend {name}"),
                        format!("its default_backend {be_name} is not defined"),
                    ));
                    continue;
                };
                used_backends.insert(b);
                (fe, with_defaults(b), o.src(&file.sections[b].head.words))
            }
            _ => continue,
        };
        if name.is_empty() {
            drops.push(o.drop(s.head.line(), s.kind(), "a proxy section needs a name"));
            continue;
        }
        if let Some(ts) = service(
            o, &name, head, be_head, &fe, &be, opts, &mut bound, &mut drops,
        ) {
            services.push(name);
            tables.extend(ts);
        }
    }
    for (i, s) in file.sections.iter().enumerate() {
        if s.kind() == "backend" && !used_backends.contains(&i) {
            drops.push(o.drop(
                s.head.line(),
                &format!("backend {}", s.name().unwrap_or("")),
                "no carried-over frontend uses it as its default_backend",
            ));
        }
    }
    Mapped {
        tables,
        services,
        dropped: drops,
    }
}

fn global_reason(kw: &str) -> &'static str {
    match kw {
        "log" => "halo logs to journald; set the level with [global] log_level",
        "maxconn" => "a process-wide limit: halo limits connections per service (maxconn)",
        "daemon" | "master-worker" | "pidfile" => {
            "halo runs in the foreground under systemd (Type=notify); [global] pid_file if you need one"
        }
        "user" | "group" | "uid" | "gid" | "chroot" => {
            "halo.service runs as user halo with systemd sandboxing instead"
        }
        "stats" => "halo has its own control socket ([global] control_socket) and `halo status`",
        "nbthread" | "nbproc" | "cpu-map" => "halo runs one worker per core ([proxy.NAME] workers)",
        "ca-base" | "crt-base" | "ssl-default-bind-ciphers" | "ssl-default-bind-options"
        | "ssl-default-bind-ciphersuites" | "ssl-default-server-ciphers"
        | "ssl-default-server-options" | "tune.ssl.default-dh-param" => {
            "halo's TLS settings are fixed (TLS 1.2 and 1.3, modern AEAD suites); `crt` files are written as given, relative ones relative to halo.toml's directory"
        }
        _ => "a process setting with no halo equivalent",
    }
}

/// `listen stats` with `stats enable`/`stats uri` and no servers.
fn is_stats_page(s: &Section) -> bool {
    s.body.iter().any(|l| l.keyword() == "stats") && !s.body.iter().any(|l| l.keyword() == "server")
}

// === one service ===

/// Addresses bound by the services so far: "ip:port" -> (section, line).
type Bound = BTreeMap<String, (String, usize)>;

#[allow(clippy::too_many_arguments)]
fn service(
    o: &Origin,
    name: &str,
    head: Src,
    be_head: Src,
    fe: &Settings,
    be: &Settings,
    opts: &Options,
    bound: &mut Bound,
    drops: &mut Vec<Dropped>,
) -> Option<Vec<Table>> {
    let line = head.line;
    let here = || {
        format!(
            "{} {name}",
            head.text.split(' ').next().unwrap_or("frontend")
        )
    };
    let mut table = Table::new(&["proxy", name], vec![head.clone()]);
    if be_head != head {
        table.from.push(be_head);
    }
    let tcp = matches!(&fe.mode, Some((_, m)) if m == "tcp");
    match &fe.mode {
        Some((_, m)) if m == "http" || m == "tcp" => {}
        Some((src, m)) => {
            drops.push(o.drop(
                src.line,
                &here(),
                format!("mode {m}: halo proxies HTTP/1.1 or TCP only"),
            ));
            return None;
        }
        None => drops.push(o.drop(
            line,
            "mode",
            "not set, and HAProxy's default is tcp: this service is imported as HTTP (write `mode tcp` to import it as a TCP relay)",
        )),
    }
    if let Some((src, _)) = &fe.mode {
        table.from.push(src.clone());
    }
    if tcp {
        let from = fe.mode.iter().map(|(s, _)| s.clone()).collect();
        table
            .entries
            .push(Entry::one("mode", Value::Str("tcp".into()), from));
    }

    // bind
    let mut binds = Vec::new();
    for (src, words) in &fe.binds {
        for (item, port) in bind(o, src, words, opts, fe.redirect_https.as_ref(), tcp, drops) {
            let Some(addr) = bind_address(&item.value) else {
                continue;
            };
            let addr = &addr.to_string();
            // HAProxy lets two sections listen on one address (the kernel
            // splits the connections between them); halo binds it once.
            let first = bound.get(addr).cloned().or_else(|| {
                binds
                    .iter()
                    .find(|(i, _): &&(Item, u16)| bind_address(&i.value) == Some(addr))
                    .map(|(i, _)| (here(), i.from.first().map_or(0, |s| s.line)))
            });
            match first {
                Some((who, at)) => drops.push(o.drop(
                    src.line,
                    &format!("bind {addr}"),
                    format!("{addr} is already bound by {who} (line {at}): halo binds an address once, for one service"),
                )),
                None => binds.push((item, port)),
            }
        }
    }
    if binds.is_empty() {
        drops.push(o.drop(line, &here(), "no bind address halo can use"));
        return None;
    }
    let ports: BTreeSet<u16> = binds.iter().map(|(_, p)| *p).collect();
    let bind_port = (ports.len() == 1).then(|| *ports.iter().next().expect("one port"));

    // servers
    let mut servers = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (src, words) in &be.servers {
        if let Some(s) = server(o, src, words, &be.default_server, bind_port, opts, drops) {
            if let Some(first) = names.get(&s.name) {
                drops.push(o.drop(
                    src.line,
                    &format!("server {}", s.name),
                    format!("a second server named {} in this backend (the first is at line {first}): HAProxy refuses the file; the first is imported", s.name),
                ));
                continue;
            }
            names.insert(s.name.clone(), src.line);
            servers.push(s);
        }
    }
    if servers.is_empty() {
        drops.push(o.drop(line, &here(), "no server halo can use"));
        return None;
    }

    if let Some(src) = &fe.redirect_https {
        let plain = binds
            .iter()
            .any(|(i, _)| matches!(&i.value, Value::Inline(kv) if kv.iter().any(|(k, _)| *k == "redirect_https")));
        if !plain {
            drops.push(o.drop(
                src.line,
                "redirect scheme https",
                "this frontend has no plain bind to redirect from: put its address in the HTTPS service's bind as { address = \"...\", redirect_https = true }",
            ));
        }
    }
    for (item, _) in &binds {
        if let Some(addr) = bind_address(&item.value) {
            bound.insert(
                addr.to_string(),
                (here(), item.from.first().map_or(0, |s| s.line)),
            );
        }
    }
    table.entries.push(Entry::many(
        "bind",
        binds.into_iter().map(|(item, _)| item).collect(),
    ));
    table.entries.push(match &be.balance {
        Some((src, b)) => Entry::one("balance", Value::Str(b.to_string()), vec![src.clone()]),
        None => Entry::one("balance", Value::Str("roundrobin".into()), vec![])
            .note("HAProxy's default balance"),
    });
    table.entries.push(Entry::many(
        "servers",
        servers
            .iter()
            .map(|s| {
                let mut kv = vec![
                    ("name", Value::Str(s.name.clone())),
                    ("address", Value::Str(s.address.clone())),
                ];
                if let Some((_, w)) = &s.p.weight {
                    kv.push(("weight", Value::Int(*w)));
                }
                if let Some((_, m)) = &s.p.maxconn {
                    kv.push(("maxconn", Value::Int(*m)));
                }
                if let Some(src) = &s.p.ssl {
                    kv.push(("tls", s.p.tls_table()));
                    let verified = !matches!(s.p.verify, Some((_, false)));
                    if verified && s.p.sni.is_none() {
                        drops.push(o.drop(
                            src.line,
                            &format!("server {} ssl without sni", s.name),
                            "halo also checks that the certificate names the server's IP address (HAProxy checks only the chain here): give `sni = \"NAME\"` a name of the certificate if it has no IP address",
                        ));
                    }
                    if verified && s.p.ca_file.is_none() {
                        drops.push(o.drop(
                            src.line,
                            &format!("server {} ssl without ca-file", s.name),
                            "verified against the system's CAs (/etc/ssl/certs/ca-certificates.crt)",
                        ));
                    }
                }
                match &s.p.send_proxy {
                    Some((_, v)) if tcp => kv.push(("send_proxy", Value::Str(v.to_string()))),
                    Some((src, v)) => drops.push(o.drop(
                        src.line,
                        &format!("server {} send-proxy{}", s.name, if *v == "v2" { "-v2" } else { "" }),
                        "an HTTP service sends X-Forwarded-For and Forwarded, not the PROXY protocol (halo sends it in mode tcp)",
                    )),
                    None => {}
                }
                Item {
                    value: Value::Inline(kv),
                    from: s.from.clone(),
                }
            })
            .collect(),
    ));
    match (&be.retries, &be.redispatch) {
        (Some((src, r)), redispatch) => {
            let mut e = Entry::one("retries", Value::Int((*r).min(10)), vec![src.clone()]);
            if *r > 10 {
                drops.push(o.drop(src.line, "retries", format!("{r} is more than halo's 10: set to 10")));
            }
            if let Some(rd) = redispatch {
                e.from.push(rd.clone());
                e = e.note("halo always retries a failed connect on another server, as option redispatch does");
            }
            table.entries.push(e);
        }
        (None, Some(rd)) => table.entries.push(
            Entry::one("retries", Value::Int(3), vec![rd.clone()])
                .note("HAProxy's default retries; halo always retries a failed connect on another server, as option redispatch does"),
        ),
        (None, None) => {}
    }
    if let Some((src, m)) = &fe.maxconn {
        table
            .entries
            .push(Entry::one("maxconn", Value::Int(*m), vec![src.clone()]));
    }
    if tcp {
        // HTTP-only settings: HAProxy ignores them in mode tcp, and halo
        // would refuse them.
        if let Some((src, _)) = be.forwardfor.as_ref().or(fe.forwardfor.as_ref()) {
            drops.push(o.drop(
                src.line,
                "option forwardfor",
                "mode tcp: no HTTP headers to add",
            ));
        }
        table.entries.push(dontlognull(fe));
        let mut out = vec![table];
        out.extend(timeouts(o, name, fe, be, tcp, drops));
        out.extend(health(o, name, be, &servers, drops));
        return Some(out);
    }
    // option forwardfor may be on either side; the backend's wins.
    match be.forwardfor.as_ref().or(fe.forwardfor.as_ref()) {
        Some((src, except)) => {
            table.entries.push(Entry::one(
                "forwardfor",
                Value::Bool(true),
                vec![src.clone()],
            ));
            if let Some(net) = except {
                if net.parse::<ipnet::IpNet>().is_ok() || net.parse::<IpAddr>().is_ok() {
                    table.entries.push(Entry::many(
                        "forwardfor_except",
                        vec![Item {
                            value: Value::Str(net.clone()),
                            from: vec![],
                        }],
                    ));
                } else {
                    drops.push(o.drop(
                        src.line,
                        &format!("option forwardfor except {net}"),
                        "not a network (address/prefix)",
                    ));
                }
            }
        }
        None => table
            .entries
            .push(Entry::one("forwardfor", Value::Bool(false), vec![]).note(
            "HAProxy adds no X-Forwarded-For without `option forwardfor`; halo would by default",
        )),
    }
    table.entries.push(dontlognull(fe));

    let mut out = vec![table];
    if let Some(t) = timeouts(o, name, fe, be, false, drops) {
        out.push(t);
    }
    if let Some(t) = health(o, name, be, &servers, drops) {
        out.push(t);
    }
    Some(out)
}

/// `dontlognull`, written out either way: the defaults differ.
fn dontlognull(fe: &Settings) -> Entry {
    match &fe.dontlognull {
        Some(src) => Entry::one("dontlognull", Value::Bool(true), vec![src.clone()]),
        None => Entry::one("dontlognull", Value::Bool(false), vec![]).note(
            "HAProxy logs empty connections unless `option dontlognull`; halo would not by default",
        ),
    }
}

/// The "ip:port" of a bind item: the string, or a table's `address`.
fn bind_address(v: &Value) -> Option<&str> {
    match v {
        Value::Str(a) => Some(a),
        Value::Inline(kv) => kv.iter().find_map(|(k, v)| match (k, v) {
            (&"address", Value::Str(a)) => Some(a.as_str()),
            _ => None,
        }),
        _ => None,
    }
}

/// `bind ADDR[,ADDR...] [options]` -> ("ip:port" items, port). With `ssl
/// crt FILE...` each is a `tls` bind table (`h2 = true` with `alpn` h2 in
/// an HTTP frontend); with the frontend's HTTPS redirect (`redirect`) a
/// plain one is a `redirect_https` table.
fn bind(
    o: &Origin,
    src: &Src,
    words: &[Word],
    opts: &Options,
    redirect: Option<&Src>,
    tcp: bool,
    drops: &mut Vec<Dropped>,
) -> Vec<(Item, u16)> {
    let options: Vec<&str> = words.iter().skip(2).map(|w| w.text.as_str()).collect();
    let ssl = options.contains(&"ssl");
    let mut crts = Vec::new();
    let mut h2 = false;
    let mut other = Vec::new();
    let mut it = options.iter();
    while let Some(&w) = it.next() {
        match w {
            "ssl" => {}
            "crt" => match it.next() {
                Some(f) => crts.push(Value::Str(f.to_string())),
                None => other.push("crt".to_string()),
            },
            // ALPN: halo offers http/1.1, and h2 first with `h2 = true`;
            // a list with anything else (or h2 in mode tcp) is reported.
            "alpn" if ssl && !tcp => {
                let v = it.next().copied().unwrap_or("");
                let protos: Vec<&str> = v.split(',').collect();
                h2 = protos.contains(&"h2");
                if protos.iter().any(|p| !["h2", "http/1.1"].contains(p)) {
                    other.push(format!("alpn {v}"));
                }
            }
            "alpn" | "crt-list" | "ciphers" | "ciphersuites" | "curves" | "ssl-min-ver"
            | "ssl-max-ver" | "name" | "ca-file" | "verify" => {
                let v = it.next().copied().unwrap_or("");
                other.push(format!("{w} {v}"));
            }
            w => other.push(w.to_string()),
        }
    }
    if ssl && crts.is_empty() {
        drops.push(o.drop(
            src.line,
            &format!("bind {}", words.get(1).map_or("", |w| w.text.as_str())),
            "`ssl` without `crt FILE`: halo needs the certificate files (crt-list is not read)",
        ));
        return Vec::new();
    }
    if !other.is_empty() {
        let why = if ssl {
            "halo's TLS settings are fixed (TLS 1.2 and 1.3, modern AEAD suites, ALPN h2 and http/1.1 in mode http, none in mode tcp), and it binds with SO_REUSEPORT and IP_FREEBIND"
        } else {
            "halo binds with SO_REUSEPORT and IP_FREEBIND and has no per-bind options"
        };
        drops.push(o.drop(src.line, &format!("bind options {}", other.join(" ")), why));
    }
    let Some(list) = words.get(1) else {
        drops.push(o.drop(src.line, "bind", "no address"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for addr in list.text.split(',') {
        match listen_addr(addr, opts) {
            Ok((text, port)) => {
                let mut from = vec![src.clone()];
                let value = if ssl {
                    Value::Inline(vec![
                        ("address", Value::Str(text)),
                        ("tls", {
                            let mut t = vec![("certificates", Value::Array(crts.clone()))];
                            if h2 {
                                t.push(("h2", Value::Bool(true)));
                            }
                            Value::Inline(t)
                        }),
                    ])
                } else if let Some(r) = redirect {
                    from.push(r.clone());
                    Value::Inline(vec![
                        ("address", Value::Str(text)),
                        ("redirect_https", Value::Bool(true)),
                    ])
                } else {
                    Value::Str(text)
                };
                out.push((Item { value, from }, port))
            }
            Err(why) => drops.push(o.drop(src.line, &format!("bind {addr}"), why)),
        }
    }
    out
}

/// An HAProxy address with a port: `*:80`, `:80`, `1.2.3.4:80`, `:::80`,
/// `[::]:80`, `ipv6@:80`; a host name only through `--resolve`.
fn host_port(text: &str, opts: &Options, any: bool) -> Result<(IpAddr, Option<u16>), String> {
    let (v6_hint, rest) = match text.split_once('@') {
        Some(("ipv4", r)) => (Some(false), r),
        Some(("ipv6", r)) => (Some(true), r),
        Some((family, _)) => return Err(format!("`{family}@` addresses are not IP sockets")),
        None => (None, text),
    };
    if rest.starts_with('/') {
        return Err("a UNIX socket: halo uses TCP".into());
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, p) = inner.split_once(']').ok_or("unclosed '['")?;
        (h, p.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "port \"{p}\": halo needs one fixed port (no ranges or +/- offsets)"
                ))
            }
        },
    };
    let ip = match host {
        "" | "*" if any => {
            if v6_hint == Some(true) {
                IpAddr::from([0u16; 8])
            } else {
                IpAddr::from([0u8; 4])
            }
        }
        h => match h.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => match opts.resolve.get(h) {
                Some(ip) => *ip,
                None if h.contains("{{") => {
                    return Err(format!(
                        "\"{h}\" is a template placeholder: render the template, or pass --set NAME=VALUE"
                    ))
                }
                None => {
                    return Err(format!(
                        "\"{h}\" is a host name and halo connects to addresses (it does no DNS): pass --resolve {h}=ADDRESS"
                    ))
                }
            },
        },
    };
    Ok((ip, port))
}

fn listen_addr(text: &str, opts: &Options) -> Result<(String, u16), String> {
    let (ip, port) = host_port(text, opts, true)?;
    let port = port.ok_or("no port")?;
    Ok((std::net::SocketAddr::new(ip, port).to_string(), port))
}

// === servers ===

#[derive(Debug, Clone, Default, PartialEq)]
struct Params {
    check: Option<Src>,
    inter: Option<(Src, Duration)>,
    fastinter: Option<(Src, Duration)>,
    rise: Option<(Src, i64)>,
    fall: Option<(Src, i64)>,
    weight: Option<(Src, i64)>,
    maxconn: Option<(Src, i64)>,
    /// `send-proxy` ("v1") or `send-proxy-v2` ("v2"); carried in mode tcp.
    send_proxy: Option<(Src, &'static str)>,
    /// `ssl`: TLS to the server.
    ssl: Option<Src>,
    /// `verify required` (true) / `verify none` (false).
    verify: Option<(Src, bool)>,
    ca_file: Option<(Src, String)>,
    /// `sni str(NAME)`.
    sni: Option<(Src, String)>,
    /// `check-ssl` (true) / `no-check-ssl` (false).
    check_ssl: Option<(Src, bool)>,
}

impl Params {
    /// The halo `tls` table of these TLS settings: `verify` (the CA file,
    /// "none", or left out for the system's CAs) and `sni`.
    fn tls_table(&self) -> Value {
        let mut kv = Vec::new();
        match (&self.verify, &self.ca_file) {
            (Some((_, false)), _) => kv.push(("verify", Value::Str("none".into()))),
            (_, Some((_, f))) if f != "@system-ca" => kv.push(("verify", Value::Str(f.clone()))),
            _ => {}
        }
        if let Some((_, n)) = &self.sni {
            kv.push(("sni", Value::Str(n.clone())));
        }
        Value::Inline(kv)
    }
}

impl Params {
    /// The values halo's health table takes, for comparing servers.
    fn check_values(&self) -> (Option<Duration>, Option<Duration>, Option<i64>, Option<i64>) {
        let v = |x: &Option<(Src, i64)>| x.as_ref().map(|(_, n)| *n);
        let d = |x: &Option<(Src, Duration)>| x.as_ref().map(|(_, n)| *n);
        (
            d(&self.inter),
            d(&self.fastinter),
            v(&self.rise),
            v(&self.fall),
        )
    }
}

struct Server {
    name: String,
    address: String,
    p: Params,
    from: Vec<Src>,
}

/// Apply `server`/`default-server` parameters; report the ones halo lacks.
/// Returns false when the server must not be carried (backup, disabled).
fn params(
    o: &Origin,
    src: &Src,
    name: &str,
    words: &[Word],
    p: &mut Params,
    drops: &mut Vec<Dropped>,
) -> bool {
    let mut keep = true;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let param = w.text.as_str();
        let directive = format!("server {name} {param}");
        let mut drop = |reason: String| drops.push(o.drop(src.line, &directive, reason));
        if SERVER_ARGS.contains(&param) {
            let Some(v) = it.next() else {
                drop("no value".into());
                break;
            };
            let v = v.text.as_str();
            let time = |v: &str| {
                haproxy_time(v).map(ceil_ms).and_then(|d| {
                    if d.is_zero() {
                        Err("must be more than 0".to_string())
                    } else {
                        Ok(d)
                    }
                })
            };
            let count = |v: &str, lo: i64, hi: i64| match v.parse::<i64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(format!("\"{v}\" must be {lo}..={hi} in halo")),
            };
            let s = src.clone();
            match param {
                "inter" => match time(v) {
                    Ok(d) => p.inter = Some((s, d)),
                    Err(e) => drop(e),
                },
                "fastinter" => match time(v) {
                    Ok(d) => p.fastinter = Some((s, d)),
                    Err(e) => drop(e),
                },
                "rise" => match count(v, 1, 100) {
                    Ok(n) => p.rise = Some((s, n)),
                    Err(e) => drop(e),
                },
                "fall" => match count(v, 1, 100) {
                    Ok(n) => p.fall = Some((s, n)),
                    Err(e) => drop(e),
                },
                "weight" => match v.parse::<i64>() {
                    Ok(0) => {
                        drop("weight 0 sends it no traffic in HAProxy; halo has no such server, so it is left out".into());
                        keep = false;
                    }
                    Ok(n) if (1..=256).contains(&n) => p.weight = Some((s, n)),
                    _ => drop(format!("\"{v}\" must be 1..=256")),
                },
                "maxconn" => match count(v, 0, i64::from(u32::MAX)) {
                    Ok(n) => p.maxconn = Some((s, n)),
                    Err(e) => drop(e),
                },
                "verify" => match v {
                    "required" => p.verify = Some((s, true)),
                    "none" => p.verify = Some((s, false)),
                    _ => drop(format!("\"{v}\" is not `none` or `required`")),
                },
                "ca-file" => p.ca_file = Some((s, v.to_string())),
                "sni" => match v.strip_prefix("str(").and_then(|n| n.strip_suffix(')')) {
                    Some(n) => p.sni = Some((s, n.to_string())),
                    None => drop("halo sends one fixed name: `sni str(NAME)`".into()),
                },
                "verifyhost" => {
                    if p.sni.as_ref().is_none_or(|(_, n)| n != v) {
                        drop("halo checks the certificate for the `sni` name (else the server's address): give `sni str(NAME)`".into());
                    }
                }
                "downinter" => drop("halo checks a down server every `interval`".into()),
                "port" | "addr" => drop("halo checks a server at its own address and port".into()),
                "cookie" => drop("halo has no cookie persistence".into()),
                "slowstart" => drop("halo has no slow start".into()),
                "resolvers" | "init-addr" | "resolve-prefer" | "resolve-net" | "resolve-opts" => {
                    drop("halo does no DNS: servers are addresses".into())
                }
                _ => drop(NO_EQUIVALENT.into()),
            }
        } else {
            match param {
                "check" => p.check = Some(src.clone()),
                "no-check" => p.check = None,
                "enabled" => {}
                "backup" => {
                    drop("halo has no backup servers: every server of a service takes traffic, so this one is left out".into());
                    keep = false;
                }
                "disabled" => {
                    drop("a disabled server is left out (halo server disable/enable works at run time)".into());
                    keep = false;
                }
                "ssl" => p.ssl = Some(src.clone()),
                "no-ssl" => p.ssl = None,
                "check-ssl" => p.check_ssl = Some((src.clone(), true)),
                "no-check-ssl" => p.check_ssl = Some((src.clone(), false)),
                "no-verifyhost" => {
                    drop("halo always checks the name (`sni`, else the server's address)".into())
                }
                // Carried by `service` in mode tcp, reported there otherwise.
                "send-proxy" => p.send_proxy = Some((src.clone(), "v1")),
                "send-proxy-v2" => p.send_proxy = Some((src.clone(), "v2")),
                _ => drop(NO_EQUIVALENT.into()),
            }
        }
    }
    keep
}

fn server(
    o: &Origin,
    src: &Src,
    words: &[Word],
    defaults: &[(Src, Vec<Word>)],
    bind_port: Option<u16>,
    opts: &Options,
    drops: &mut Vec<Dropped>,
) -> Option<Server> {
    let (Some(name), Some(addr)) = (words.get(1), words.get(2)) else {
        drops.push(o.drop(src.line, "server", "needs a name and an address"));
        return None;
    };
    let name = name.text.clone();
    let mut p = Params::default();
    let mut keep = true;
    let mut from = vec![src.clone()];
    for (dsrc, dwords) in defaults {
        keep &= params(o, dsrc, &name, dwords, &mut p, drops);
        from.push(dsrc.clone());
    }
    let mut own = Params::default();
    keep &= params(o, src, &name, &words[3..], &mut own, drops);
    // A server's own parameters win over default-server.
    macro_rules! over {
        ($($f:ident),*) => { $( if own.$f.is_some() { p.$f = own.$f.clone(); } )* };
    }
    over!(
        check, inter, fastinter, rise, fall, weight, maxconn, send_proxy, ssl, verify, ca_file,
        sni, check_ssl
    );
    if words[3..].iter().any(|w| w.text == "no-check") {
        p.check = None;
    }
    if words[3..].iter().any(|w| w.text == "no-ssl") {
        p.ssl = None;
    }
    if !keep {
        return None;
    }
    // Keep only the default-server lines that matter to this server.
    from.retain(|s| {
        s == src
            || [&p.inter, &p.fastinter]
                .iter()
                .any(|x| x.as_ref().is_some_and(|(xs, _)| xs == s))
            || [&p.rise, &p.fall, &p.weight, &p.maxconn]
                .iter()
                .any(|x| x.as_ref().is_some_and(|(xs, _)| xs == s))
            || p.ssl.as_ref() == Some(s)
            || p.ca_file.as_ref().is_some_and(|(xs, _)| xs == s)
            || p.verify.as_ref().is_some_and(|(xs, _)| xs == s)
    });
    let address = match host_port(&addr.text, opts, false) {
        Ok((ip, Some(port))) => std::net::SocketAddr::new(ip, port).to_string(),
        Ok((ip, None)) => match bind_port {
            Some(port) => {
                drops.push(o.drop(
                    src.line,
                    &format!("server {name} {}", addr.text),
                    format!("no port: HAProxy connects to the port the client used; halo needs one, so the service's bind port {port} is used"),
                ));
                std::net::SocketAddr::new(ip, port).to_string()
            }
            None => {
                drops.push(o.drop(
                    src.line,
                    &format!("server {name}"),
                    "no port, and the service binds several ports: halo needs one server port",
                ));
                return None;
            }
        },
        Err(why) => {
            drops.push(o.drop(src.line, &format!("server {name}"), why));
            return None;
        }
    };
    Some(Server {
        name,
        address,
        p,
        from,
    })
}

// === timeouts and health ===

/// `[proxy.NAME.timeouts]`; in mode tcp without the HTTP ones (reported
/// if set: HAProxy ignores them there).
fn timeouts(
    o: &Origin,
    name: &str,
    fe: &Settings,
    be: &Settings,
    tcp: bool,
    drops: &mut Vec<Dropped>,
) -> Option<Table> {
    let mut t = Table::new(&["proxy", name, "timeouts"], vec![]);
    let entry = |key: &'static str, v: Option<(Src, Duration)>| {
        v.map(|(src, d)| Entry::one(key, Value::Dur(d), vec![src]))
    };
    let connect = be.timeout("connect");
    let client = fe.timeout("client");
    let http_request = fe.timeout("http-request");
    t.entries.extend(entry("connect", connect.clone()));
    t.entries.extend(entry("client", client.clone()));
    t.entries.extend(entry("server", be.timeout("server")));
    if tcp {
        for (key, v) in [
            ("http-request", &http_request),
            ("http-keep-alive", &fe.timeout("http-keep-alive")),
        ] {
            if let Some((src, _)) = v {
                drops.push(o.drop(
                    src.line,
                    &format!("timeout {key}"),
                    "mode tcp: there are no HTTP requests",
                ));
            }
        }
    }
    match (&http_request, &client) {
        _ if tcp => {}
        (Some(_), _) => t.entries.extend(entry("http_request", http_request.clone())),
        (None, Some(_)) => t.entries.extend(entry("http_request", client.clone()).map(|e| {
            e.note("HAProxy waits `timeout client` for a request head when `timeout http-request` is not set")
        })),
        _ => {}
    }
    match (fe.timeout("http-keep-alive"), http_request.or(client)) {
        _ if tcp => {}
        (Some(k), _) => t.entries.extend(entry("keep_alive", Some(k))),
        (None, Some(fallback)) => t.entries.extend(entry("keep_alive", Some(fallback)).map(|e| {
            e.note("HAProxy uses `timeout http-request` (or `timeout client`) between requests when `timeout http-keep-alive` is not set")
        })),
        _ => {}
    }
    match (be.timeout("queue"), connect) {
        (Some(q), _) => t.entries.extend(entry("queue", Some(q))),
        (None, Some(c)) => t.entries.extend(entry("queue", Some(c)).map(|e| {
            e.note("HAProxy uses `timeout connect` for the queue when `timeout queue` is not set")
        })),
        _ => {}
    }
    (!t.entries.is_empty()).then_some(t)
}

fn health(
    o: &Origin,
    name: &str,
    be: &Settings,
    servers: &[Server],
    drops: &mut Vec<Dropped>,
) -> Option<Table> {
    let checked: Vec<&Server> = servers.iter().filter(|s| s.p.check.is_some()).collect();
    let Some(first) = checked.first() else {
        if let Some((src, _)) = &be.httpchk {
            drops.push(o.drop(
                src.line,
                "option httpchk",
                "no server has `check`, so HAProxy runs no checks either",
            ));
        }
        return None;
    };
    for s in servers.iter().filter(|s| s.p.check.is_none()) {
        drops.push(o.drop(
            s.from[0].line,
            &format!("server {}", s.name),
            "has no `check`, but halo checks every server of a service alike: this one is checked too",
        ));
    }
    for s in &checked[1..] {
        if s.p.check_values() != first.p.check_values() {
            drops.push(o.drop(
                s.from[0].line,
                &format!("server {} check settings", s.name),
                format!(
                    "differ from server {}'s; halo checks every server of a service alike and uses {}'s",
                    first.name, first.name
                ),
            ));
        }
    }
    let p = &first.p;
    let mut t = Table::new(&["proxy", name, "health"], vec![]);
    let check_src = p.check.clone().into_iter().collect::<Vec<_>>();
    match &be.httpchk {
        Some((src, chk)) => {
            let method_ok = !chk.method.is_empty()
                && chk
                    .method
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            let path_ok =
                chk.path.starts_with('/') && chk.path.bytes().all(|b| b.is_ascii_graphic());
            t.entries.push(Entry::one(
                "type",
                Value::Str("http".into()),
                vec![src.clone()],
            ));
            if method_ok {
                t.entries
                    .push(Entry::one("method", Value::Str(chk.method.clone()), vec![]));
            } else {
                drops.push(o.drop(
                    src.line,
                    &format!("option httpchk {}", chk.method),
                    "not an HTTP method halo sends; GET is used",
                ));
            }
            if path_ok {
                t.entries
                    .push(Entry::one("path", Value::Str(chk.path.clone()), vec![]));
            } else {
                drops.push(o.drop(
                    src.line,
                    &format!("option httpchk {}", chk.path),
                    "halo checks a path starting with '/'; \"/\" is used",
                ));
            }
            if let Some(h) = chk
                .host
                .as_ref()
                .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            {
                t.entries
                    .push(Entry::one("host", Value::Str(h.clone()), vec![]));
            }
            t.entries.push(match &be.expect {
                Some((src, Expect::Codes(c))) if c.len() == 1 => {
                    Entry::one("expect_status", Value::Int(c[0]), vec![src.clone()])
                }
                Some((src, Expect::Codes(c))) => Entry {
                    key: "expect_status",
                    rhs: Rhs::Many(
                        c.iter()
                            .map(|n| Item {
                                value: Value::Int(*n),
                                from: vec![],
                            })
                            .collect(),
                    ),
                    from: vec![src.clone()],
                    notes: vec![],
                },
                Some((src, Expect::Range(lo, hi))) => Entry::one(
                    "expect_status",
                    Value::Str(format!("{lo}-{hi}")),
                    vec![src.clone()],
                ),
                None => Entry::one("expect_status", Value::Str("200-399".into()), vec![])
                    .note("HAProxy's default: any 2xx or 3xx status passes"),
            });
        }
        None => {
            t.entries.push(
                Entry::one("type", Value::Str("tcp".into()), check_src.clone())
                    .note("`check` without `option httpchk` is a TCP connect check in HAProxy"),
            );
            if let Some((src, _)) = &be.expect {
                drops.push(o.drop(
                    src.line,
                    "http-check expect",
                    "no `option httpchk`: the check is TCP",
                ));
            }
        }
    }
    let inter = p.inter.as_ref().map_or(Duration::from_secs(2), |(_, d)| *d);
    t.entries.push(match &p.inter {
        Some((src, d)) => Entry::one("interval", Value::Dur(*d), vec![src.clone()]),
        None => Entry::one("interval", Value::Dur(inter), vec![]).note("HAProxy's default inter"),
    });
    if let Some((src, d)) = &p.fastinter {
        t.entries.push(Entry::one(
            "fast_interval",
            Value::Dur(*d),
            vec![src.clone()],
        ));
    }
    // HAProxy: without `timeout check` a check may take the whole `inter`;
    // with it, min(connect, inter) to connect plus `timeout check` to read.
    let (timeout, from, mut note) = match be.timeout("check") {
        Some((src, check)) => {
            let connect = be.timeout("connect").map_or(inter, |(_, c)| c.min(inter));
            (
                connect + check,
                vec![src],
                String::from("HAProxy allows min(timeout connect, inter) + timeout check"),
            )
        }
        None => (
            inter,
            vec![],
            String::from(
                "HAProxy allows a check the whole `inter` when `timeout check` is not set",
            ),
        ),
    };
    if timeout > inter {
        note.push_str("; halo's check timeout cannot exceed its interval, so it is the interval");
    }
    t.entries
        .push(Entry::one("timeout", Value::Dur(timeout.min(inter)), from).note(note));
    t.entries.push(match &p.rise {
        Some((src, n)) => Entry::one("rise", Value::Int(*n), vec![src.clone()]),
        None => Entry::one("rise", Value::Int(2), vec![]).note("HAProxy's default rise"),
    });
    t.entries.push(match &p.fall {
        Some((src, n)) => Entry::one("fall", Value::Int(*n), vec![src.clone()]),
        None => Entry::one("fall", Value::Int(3), vec![]).note("HAProxy's default fall"),
    });
    // Checks of an `ssl` server go over TLS by default in both; `check-ssl`
    // on a plain server and `no-check-ssl` on a TLS one say otherwise.
    let forced = checked
        .iter()
        .find(|s| s.p.ssl.is_none() && matches!(s.p.check_ssl, Some((_, true))));
    let plain = checked
        .iter()
        .find(|s| s.p.ssl.is_some() && matches!(s.p.check_ssl, Some((_, false))));
    if let Some(s) = forced {
        let src = s.p.check_ssl.iter().map(|(src, _)| src.clone()).collect();
        t.entries.push(
            Entry::one("tls", s.p.tls_table(), src)
                .note("check-ssl: checks over TLS, with the server's verify, ca-file and sni"),
        );
    } else if let Some(s) = plain {
        let src = s.p.check_ssl.iter().map(|(src, _)| src.clone()).collect();
        t.entries.push(Entry::one("tls", Value::Bool(false), src));
    }
    Some(t)
}
