//! `[proxy.NAME]` sections -> [`ProxyService`]s: HAProxy's frontend +
//! backend in one table, with `timeouts`, `limits` and `health` subtables.
//! Checked per service and across services (no address bound twice).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::diag::Diag;
use super::raw::{Field, Opt, RawExpect, RawHealth, RawLimits, RawProxy, RawServer, RawTimeouts};
use super::validate::{
    boolean, choice, in_range, int, list, no_duplicates, parse_as, positive, required,
    required_list, take, Span,
};
use super::{
    duration, Balance, CheckKind, DigestAlg, ExpectStatus, ForwardFor, HealthCheck, IoDriver,
    Limits, ProxyMode, ProxyProtocol, ProxyService, Server, Timeouts,
};

const MAX_WORKERS: i64 = 64;

/// All services in file order, then the cross-service bind check.
pub fn services(d: &mut Diag, raw: Vec<(Spanned<String>, RawProxy)>) -> Vec<ProxyService> {
    let mut out = Vec::new();
    let mut bound: BTreeMap<SocketAddr, (String, Span)> = BTreeMap::new();
    for (name, r) in raw {
        let Some((svc, bind_spans)) = service(d, &name, r) else {
            continue;
        };
        for (at, addr) in bind_spans {
            match bound.get(&addr) {
                Some((other, first)) if *other != svc.name => {
                    let msg = format!(
                        "{addr} is already bound by [proxy.{other}] at {}",
                        d.place(first)
                    );
                    d.error(&at, msg);
                }
                _ => {
                    bound.insert(addr, (svc.name.clone(), at));
                }
            }
        }
        out.push(svc);
    }
    out
}

fn service(
    d: &mut Diag,
    name: &Spanned<String>,
    mut r: RawProxy,
) -> Option<(ProxyService, Vec<(Span, SocketAddr)>)> {
    let here = format!("[proxy.{}]", name.get_ref());
    let table = name.span();

    let mode = choice(
        d,
        "mode",
        r.mode.take(),
        &[("http", ProxyMode::Http), ("tcp", ProxyMode::Tcp)],
        ProxyMode::Http,
    );
    if mode == ProxyMode::Tcp {
        http_only_keys(d, &r);
    }
    let send_proxy = proxy_protocol(d, mode, r.send_proxy, None);
    let bind = super::tls::binds(d, r.bind, &table, &here, mode, &mut |d, at, text| {
        socket_addr(d, "bind", at, text)
    });
    no_duplicates(
        d,
        "bind address",
        bind.iter().map(|b| (b.at.clone(), b.address)),
    );
    let hsts = super::tls::hsts(d, r.hsts, &bind, mode);
    let balance = choice(
        d,
        "balance",
        r.balance,
        &[
            ("roundrobin", Balance::RoundRobin),
            ("leastconn", Balance::LeastConn),
            ("source", Balance::Source),
        ],
        Balance::RoundRobin,
    );
    let servers = servers(d, r.servers, &table, &here, mode, send_proxy);
    let retries = int(d, "retries", r.retries, 0..=10, 3) as u32;
    let maxconn = int(d, "maxconn", r.maxconn, 0..=u32::MAX.into(), 2000) as u32;
    let queue_len = int(d, "queue", r.queue, 0..=u32::MAX.into(), 1024) as u32;
    let forwardfor = ForwardFor {
        enabled: boolean(d, "forwardfor", r.forwardfor, true),
        except: networks(d, "forwardfor_except", r.forwardfor_except),
    };
    let io = choice(
        d,
        "io",
        r.io,
        &[
            ("auto", IoDriver::Auto),
            ("uring", IoDriver::Uring),
            ("epoll", IoDriver::Epoll),
        ],
        IoDriver::Auto,
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = int(d, "workers", r.workers, 1..=MAX_WORKERS, 0);
    let workers = if workers == 0 {
        cores.min(MAX_WORKERS as usize)
    } else {
        workers as usize
    };
    let dontlognull = boolean(d, "dontlognull", r.dontlognull, true);
    let raw_timeouts = take(d, "timeouts", r.timeouts).map(|(_, t)| t);
    let timeouts = timeouts(d, raw_timeouts);
    let raw_limits = take(d, "limits", r.limits).map(|(_, t)| t);
    let limits = limits(d, raw_limits);
    let health = take(d, "health", r.health).map(|(_, h)| health(d, h));

    let svc = ProxyService {
        name: name.get_ref().clone(),
        mode,
        bind: bind.iter().map(|b| b.address).collect(),
        bind_opts: bind.iter().map(|b| b.opts.clone()).collect(),
        hsts,
        balance,
        servers,
        health,
        timeouts,
        limits,
        retries,
        maxconn,
        queue_len,
        forwardfor,
        io,
        workers,
        dontlognull,
    };
    let spans = bind.into_iter().map(|b| (b.at, b.address)).collect();
    (!svc.bind.is_empty() && !svc.servers.is_empty()).then_some((svc, spans))
}

/// One "ip:port"; port 0 is refused (it would bind a random port).
fn socket_addr(d: &mut Diag, key: &str, at: &Span, text: &str) -> Option<SocketAddr> {
    let what = "an \"ip:port\" address (IPv6 as \"[::]:80\")";
    let a: SocketAddr = parse_as(d, key, at, text, what)?;
    if a.port() == 0 {
        d.error(at, format!("`{key}` {a}: port 0 is not allowed"));
        return None;
    }
    Some(a)
}

/// In `mode = "tcp"` the HTTP-only keys would silently do nothing: say so.
fn http_only_keys(d: &mut Diag, r: &RawProxy) {
    let why = "only applies to mode = \"http\" (a TCP service does not read HTTP)";
    let spans = [
        ("forwardfor", r.forwardfor.as_ref().map(|f| f.span.clone())),
        (
            "forwardfor_except",
            r.forwardfor_except.as_ref().map(|f| f.span.clone()),
        ),
        ("limits", r.limits.as_ref().map(|f| f.span.clone())),
    ];
    for (key, at) in spans {
        if let Some(at) = at {
            d.error(&at, format!("`{key}` {why}"));
        }
    }
    if let Some(t) = r.timeouts.as_ref().and_then(|t| t.value.as_ref().ok()) {
        for (key, at) in [
            (
                "http_request",
                t.http_request.as_ref().map(|f| f.span.clone()),
            ),
            ("keep_alive", t.keep_alive.as_ref().map(|f| f.span.clone())),
        ] {
            if let Some(at) = at {
                d.error(&at, format!("`timeouts.{key}` {why}"));
            }
        }
    }
}

/// `send_proxy = "v1" | "v2"`; a server's value overrides its service's
/// (`inherited`). HTTP services carry the client in X-Forwarded-For.
fn proxy_protocol(
    d: &mut Diag,
    mode: ProxyMode,
    f: Opt<String>,
    inherited: Option<ProxyProtocol>,
) -> Option<ProxyProtocol> {
    if mode == ProxyMode::Http {
        if let Some(f) = &f {
            d.error(
                &f.span,
                "`send_proxy` only applies to mode = \"tcp\" (HTTP services pass the client in X-Forwarded-For)",
            );
            return None;
        }
    }
    choice(
        d,
        "send_proxy",
        f,
        &[
            ("v1", Some(ProxyProtocol::V1)),
            ("v2", Some(ProxyProtocol::V2)),
            ("none", None),
        ],
        inherited,
    )
}

fn servers(
    d: &mut Diag,
    f: Opt<Vec<Field<RawServer>>>,
    table: &Span,
    here: &str,
    mode: ProxyMode,
    send_proxy: Option<ProxyProtocol>,
) -> Vec<Server> {
    let Some((at, items)) = required_list(d, "servers", f, table, here) else {
        return Vec::new();
    };
    if items.is_empty() {
        d.error(
            &at,
            "`servers` is empty: give at least one { name, address }",
        );
    }
    let mut names = Vec::new();
    let mut out = Vec::new();
    for (at, s) in items {
        let name = required(d, "name", s.name, &at, "a server entry").and_then(|(nat, n)| {
            if n.is_empty() || n.contains(|c: char| c.is_whitespace() || c.is_control()) {
                d.error(
                    &nat,
                    format!("server `name` \"{n}\" must be non-empty, without spaces"),
                );
                return None;
            }
            names.push((nat, n.clone()));
            Some(n)
        });
        let address = required(d, "address", s.address, &at, "a server entry")
            .and_then(|(aat, text)| socket_addr(d, "address", &aat, &text));
        let weight = match take(d, "weight", s.weight) {
            Some((wat, 0)) => {
                d.error(
                    &wat,
                    "server `weight` must be 1..=256, got 0 (to take a server out, remove it)",
                );
                1
            }
            Some((wat, w)) if in_range(d, "weight", &wat, w, 1..=256) => w as u32,
            _ => 1,
        };
        let maxconn = int(d, "maxconn", s.maxconn, 0..=u32::MAX.into(), 0) as u32;
        let send_proxy = proxy_protocol(d, mode, s.send_proxy, send_proxy);
        let tls = take(d, "tls", s.tls)
            .and_then(|(tat, raw)| super::upstream_tls::upstream_tls(d, &tat, raw));
        if let (Some(name), Some(address)) = (name, address) {
            out.push(Server {
                name,
                address,
                weight,
                maxconn,
                send_proxy,
                tls,
            });
        }
    }
    no_duplicates(d, "server name", names);
    out
}

/// CIDR list; a bare address means that one host.
fn networks(d: &mut Diag, key: &str, f: Opt<Vec<Field<String>>>) -> Vec<IpNet> {
    let Some((_, items)) = list(d, key, f) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|(at, text)| {
            let net = text
                .parse::<IpNet>()
                .ok()
                .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from));
            if net.is_none() {
                d.error(
                    &at,
                    format!("`{key}`: \"{text}\" is not a network (address/prefix)"),
                );
            }
            net
        })
        .collect()
}

fn timeouts(d: &mut Diag, t: Option<RawTimeouts>) -> Timeouts {
    let s = Duration::from_secs;
    let Some(t) = t else {
        return Timeouts {
            connect: s(5),
            client: s(30),
            server: s(30),
            http_request: s(10),
            keep_alive: s(10),
            queue: s(5),
        };
    };
    Timeouts {
        connect: positive(d, "connect", t.connect, s(5)).1,
        client: positive(d, "client", t.client, s(30)).1,
        server: positive(d, "server", t.server, s(30)).1,
        http_request: positive(d, "http_request", t.http_request, s(10)).1,
        keep_alive: positive(d, "keep_alive", t.keep_alive, s(10)).1,
        queue: positive(d, "queue", t.queue, s(5)).1,
    }
}

fn limits(d: &mut Diag, t: Option<RawLimits>) -> Limits {
    let (bytes, headers) = t.map_or((None, None), |t| (t.max_head_bytes, t.max_headers));
    Limits {
        max_head_bytes: int(d, "max_head_bytes", bytes, 1024..=1_048_576, 16384) as usize,
        max_headers: int(d, "max_headers", headers, 1..=1000, 100) as usize,
    }
}

pub(super) fn health(d: &mut Diag, h: RawHealth) -> HealthCheck {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Http,
        Tcp,
    }
    let kind = choice(
        d,
        "type",
        h.kind,
        &[("http", Kind::Http), ("tcp", Kind::Tcp)],
        Kind::Http,
    );
    let kind = match kind {
        Kind::Http => http_check(
            d,
            h.method,
            h.path,
            h.host,
            h.expect_status,
            h.expect_body_digest,
        ),
        Kind::Tcp => {
            // HTTP-only keys would silently do nothing: say so.
            let http_only = [
                ("method", h.method.map(|f| f.span)),
                ("path", h.path.map(|f| f.span)),
                ("host", h.host.map(|f| f.span)),
                ("expect_status", h.expect_status.map(|f| f.span)),
                ("expect_body_digest", h.expect_body_digest.map(|f| f.span)),
            ];
            for (key, at) in http_only {
                if let Some(at) = at {
                    d.error(
                        &at,
                        format!("`{key}` only applies to type = \"http\" checks"),
                    );
                }
            }
            CheckKind::Tcp
        }
    };

    let (interval_at, interval) = positive(d, "interval", h.interval, Duration::from_secs(2));
    let (_, fast_interval) = positive(d, "fast_interval", h.fast_interval, interval);
    let (timeout_at, timeout) = positive(d, "timeout", h.timeout, Duration::from_secs(1));
    if timeout > interval {
        // Point at whichever of the two was written (the timeout if both).
        let (at, default) = match (&timeout_at, &interval_at) {
            (Some(at), _) => (at.clone(), ""),
            (None, Some(at)) => (at.clone(), " (the default timeout)"),
            (None, None) => (0..0, ""),
        };
        d.error(
            &at,
            format!(
                "health `timeout` {}{default} must not be longer than `interval` {}",
                duration::format(timeout),
                duration::format(interval)
            ),
        );
    }
    let rise = int(d, "rise", h.rise, 1..=100, 2) as u32;
    let fall = int(d, "fall", h.fall, 1..=100, 3) as u32;
    let initial_up = choice(
        d,
        "initial",
        h.initial,
        &[("up", true), ("down", false)],
        true,
    );
    let (observe_connect_errors, observe_5xx) = match list(d, "observe", h.observe) {
        None => (true, false),
        Some((_, items)) => {
            let mut seen = (false, false);
            for (at, word) in items {
                match word.as_str() {
                    "connect" => seen.0 = true,
                    "5xx" => seen.1 = true,
                    _ => d.error(
                        &at,
                        format!(
                            "`observe` entries are \"connect\" or \"5xx\", got \"{word}\"{}",
                            super::diag::did_you_mean(&word, &["connect", "5xx"])
                        ),
                    ),
                }
            }
            seen
        }
    };
    let tls = super::upstream_tls::health_tls(d, h.tls);
    HealthCheck {
        tls,
        kind,
        interval,
        fast_interval,
        timeout,
        rise,
        fall,
        initial_up,
        observe_connect_errors,
        observe_5xx,
    }
}

fn http_check(
    d: &mut Diag,
    method: Opt<String>,
    path: Opt<String>,
    host: Opt<String>,
    expect: Opt<RawExpect>,
    digest: Opt<String>,
) -> CheckKind {
    let method = take(d, "method", method).map_or("GET".to_string(), |(at, m)| {
        // An RFC 9110 token; upper case by convention and by every server.
        if m.is_empty()
            || !m
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        {
            d.error(
                &at,
                format!("`method` \"{m}\" is not an HTTP method such as \"GET\" or \"HEAD\""),
            );
        }
        m
    });
    let path = take(d, "path", path).map_or("/".to_string(), |(at, p)| {
        if !p.starts_with('/') || !p.bytes().all(|b| b.is_ascii_graphic()) {
            d.error(
                &at,
                format!(
                    "`path` \"{p}\" must start with '/' and have no spaces or control characters"
                ),
            );
        }
        p
    });
    let host = take(d, "host", host).map(|(at, h)| {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic()) {
            d.error(&at, format!("`host` \"{h}\" is not a Host header value"));
        }
        h
    });
    let expect_status = match take(d, "expect_status", expect) {
        None => ExpectStatus::Range(200, 399),
        Some((at, e)) => expect_status(d, &at, e),
    };
    let expect_body_digest = take(d, "expect_body_digest", digest).and_then(|(at, text)| {
        let (alg, hex, len) = match text.split_once(':') {
            Some(("md5", hex)) => (DigestAlg::Md5, hex, 32),
            Some(("sha256", hex)) => (DigestAlg::Sha256, hex, 64),
            _ => {
                d.error(
                    &at,
                    format!(
                        "`expect_body_digest` \"{text}\" must be \"md5:HEX\" or \"sha256:HEX\""
                    ),
                );
                return None;
            }
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            d.error(
                &at,
                format!(
                    "`expect_body_digest`: {} takes {len} hex digits, got \"{hex}\"",
                    &text[..text.len() - hex.len() - 1]
                ),
            );
            return None;
        }
        Some((alg, hex.to_ascii_lowercase()))
    });
    CheckKind::Http {
        method,
        path,
        host,
        expect_status,
        expect_body_digest,
    }
}

fn expect_status(d: &mut Diag, at: &Span, e: RawExpect) -> ExpectStatus {
    let code = |d: &mut Diag, v: i64| -> u16 {
        if in_range(d, "expect_status", at, v, 100..=599) {
            v as u16
        } else {
            200
        }
    };
    match e {
        RawExpect::Code(c) => ExpectStatus::Codes(vec![code(d, c)]),
        RawExpect::Codes(cs) => {
            if cs.is_empty() {
                d.error(at, "`expect_status` list is empty");
            }
            ExpectStatus::Codes(cs.into_iter().map(|c| code(d, c)).collect())
        }
        RawExpect::Range(text) => {
            let bounds = text.split_once('-').and_then(|(lo, hi)| {
                Some((
                    lo.trim().parse::<i64>().ok()?,
                    hi.trim().parse::<i64>().ok()?,
                ))
            });
            match bounds {
                Some((lo, hi)) if lo <= hi => ExpectStatus::Range(code(d, lo), code(d, hi)),
                _ => {
                    d.error(
                        at,
                        format!("`expect_status` \"{text}\" is not a range such as \"200-399\""),
                    );
                    ExpectStatus::Range(200, 399)
                }
            }
        }
    }
}
