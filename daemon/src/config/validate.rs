//! Raw structs -> typed [`Config`]: ranges, defaults and the checks that
//! span several keys or sections. Every problem goes into the [`Diag`]; a
//! bad value is replaced by its default so checking can go on, and the
//! result is only used when no error was found.
//!
//! The per-section rules live in `vrrp.rs` and `proxy.rs`; this module
//! holds the top level, `[global]`, and the small typed getters they share.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::diag::{did_you_mean, Diag};
use super::raw::{Field, Named, Opt, RawConfig, RawDuration, RawGlobal};
use super::{duration, proxy, scripts, vrrp, Config, Global};

pub type Span = Range<usize>;

/// Where the file is empty (no key to point at).
const START: Span = 0..0;

pub fn config(d: &mut Diag, raw: RawConfig) -> Config {
    let global = match take(d, "global", raw.global) {
        Some((_, g)) => global(d, g),
        None => Global {
            log_level: None,
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            pid_file: None,
        },
    };
    let admin = super::admin::admin(d, raw.admin);
    let vrrp_raw = named(d, "vrrp", raw.vrrp);
    let proxy_raw = named(d, "proxy", raw.proxy);
    let scripts_raw = named(d, "track_script", raw.track_script);
    let l4_raw = named(d, "l4", raw.l4);
    let anycast_raw = named(d, "anycast", raw.anycast);
    if vrrp_raw.is_empty() && proxy_raw.is_empty() && l4_raw.is_empty() && anycast_raw.is_empty() {
        d.error(
            &START,
            "nothing to do: no [vrrp.*], [proxy.*], [l4.*] or [anycast.*] section",
        );
    }

    // Tracks may name a proxy service whose own table has errors: it still
    // exists, so look names up in the raw list.
    let proxy_names: Vec<String> = proxy_raw.iter().map(|(n, _)| n.get_ref().clone()).collect();
    let (track_scripts, script_names) = scripts::track_scripts(d, scripts_raw);
    let l4_names: Vec<String> = l4_raw.iter().map(|(n, _)| n.get_ref().clone()).collect();
    let vrrp = vrrp::instances(d, vrrp_raw, &proxy_names, &script_names, &l4_names);
    let proxy = proxy::services(d, proxy_raw);
    let l4 = super::l4::services(d, l4_raw);
    let groups_raw = named(d, "vrrp_sync_group", raw.vrrp_sync_group);
    let sync_groups = super::sync_group::groups(d, groups_raw, &vrrp);
    let anycast = super::anycast::sections(
        d,
        anycast_raw,
        &proxy_names,
        &script_names,
        &l4_names,
        &vrrp,
    );
    Config {
        global,
        vrrp,
        proxy,
        admin,
        track_scripts,
        l4,
        sync_groups,
        anycast,
        warnings: Vec::new(),
    }
}

pub const DEFAULT_CONTROL_SOCKET: &str = "/run/halo/halo.sock";

fn global(d: &mut Diag, raw: RawGlobal) -> Global {
    let log_level = take(d, "log_level", raw.log_level).and_then(|(at, v)| {
        match crate::run::logging::parse_filter(&v) {
            Ok(_) => Some(v),
            Err(e) => {
                d.error(&at, format!("log_level \"{v}\" is not a valid filter: {e}"));
                None
            }
        }
    });
    let control_socket = path(d, "control_socket", raw.control_socket)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
    let pid_file = path(d, "pid_file", raw.pid_file);
    Global {
        log_level,
        control_socket,
        pid_file,
    }
}

fn path(d: &mut Diag, key: &str, f: Opt<String>) -> Option<PathBuf> {
    let (at, v) = take(d, key, f)?;
    if v.is_empty() || v.contains('\0') {
        d.error(&at, format!("`{key}` must be a non-empty path"));
        return None;
    }
    Some(PathBuf::from(v))
}

/// `[vrrp.*]` / `[proxy.*]` entries in file order, type errors reported.
fn named<T>(d: &mut Diag, key: &str, f: Opt<Named<T>>) -> Vec<(Spanned<String>, T)> {
    let Some((_, map)) = take(d, key, f) else {
        return Vec::new();
    };
    let mut entries: Vec<(Spanned<String>, T)> = map
        .into_iter()
        .filter_map(|(name, table)| match table.value {
            Ok(t) => Some((name, t)),
            Err(e) => {
                d.error(&table.span, format!("[{key}.{}]: {e}", name.get_ref()));
                None
            }
        })
        .collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    entries
}

// === typed getters shared by the sections ===

/// A present key's value, or `None` after reporting its type error.
pub fn take<T>(d: &mut Diag, key: &str, f: Opt<T>) -> Option<(Span, T)> {
    let f = f?;
    match f.value {
        Ok(v) => Some((f.span, v)),
        Err(e) => {
            d.error(&f.span, format!("`{key}`: {e}"));
            None
        }
    }
}

/// A key that must be present: reports its absence at `table` (the place
/// the section is named).
pub fn required<T>(
    d: &mut Diag,
    key: &str,
    f: Opt<T>,
    table: &Span,
    here: &str,
) -> Option<(Span, T)> {
    if f.is_none() {
        d.error(table, format!("{here} needs `{key}`"));
    }
    take(d, key, f)
}

/// An integer in `range`, `default` when absent (or bad, after reporting).
pub fn int(d: &mut Diag, key: &str, f: Opt<i64>, range: RangeInclusive<i64>, default: i64) -> i64 {
    int_at(d, key, f, range).map_or(default, |(_, v)| v)
}

/// A present integer in `range`, with its span.
pub fn int_at(
    d: &mut Diag,
    key: &str,
    f: Opt<i64>,
    range: RangeInclusive<i64>,
) -> Option<(Span, i64)> {
    take(d, key, f).filter(|(at, v)| in_range(d, key, at, *v, range))
}

/// Whether `v` is in `range`; reports it when not.
pub fn in_range(d: &mut Diag, key: &str, at: &Span, v: i64, range: RangeInclusive<i64>) -> bool {
    let ok = range.contains(&v);
    if !ok {
        d.error(
            at,
            format!(
                "`{key}` must be {}..={}, got {v}",
                range.start(),
                range.end()
            ),
        );
    }
    ok
}

pub fn boolean(d: &mut Diag, key: &str, f: Opt<bool>, default: bool) -> bool {
    take(d, key, f).map_or(default, |(_, v)| v)
}

/// A duration, `default` when absent or bad; the span when present.
pub fn dur(
    d: &mut Diag,
    key: &str,
    f: Opt<RawDuration>,
    default: Duration,
) -> (Option<Span>, Duration) {
    match take(d, key, f) {
        Some((at, RawDuration(v))) => (Some(at), v),
        None => (None, default),
    }
}

/// A duration that must be more than zero.
pub fn positive(
    d: &mut Diag,
    key: &str,
    f: Opt<RawDuration>,
    default: Duration,
) -> (Option<Span>, Duration) {
    let (at, v) = dur(d, key, f, default);
    if let (Some(at), true) = (&at, v.is_zero()) {
        d.error(at, format!("`{key}` must be more than 0s"));
        return (None, default);
    }
    (at, v)
}

/// At most `max`; reports with both durations written out.
pub fn at_most(d: &mut Diag, key: &str, at: &Option<Span>, v: Duration, max: Duration) {
    if let (Some(at), true) = (at, v > max) {
        d.error(
            at,
            format!(
                "`{key}` must be at most {}, got {}",
                duration::format(max),
                duration::format(v)
            ),
        );
    }
}

/// One of a few words, with a suggestion for near misses.
pub fn choice<T: Copy>(
    d: &mut Diag,
    key: &str,
    f: Opt<String>,
    options: &[(&str, T)],
    default: T,
) -> T {
    let Some((at, v)) = take(d, key, f) else {
        return default;
    };
    if let Some((_, t)) = options.iter().find(|(name, _)| *name == v) {
        return *t;
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    d.error(
        &at,
        format!(
            "`{key}` must be one of {list}, got \"{v}\"{}",
            did_you_mean(&v, &names)
        ),
    );
    default
}

/// The well-typed elements of a list, each with its span.
pub fn list<T>(d: &mut Diag, key: &str, f: Opt<Vec<Field<T>>>) -> Option<(Span, Vec<(Span, T)>)> {
    let (at, items) = take(d, key, f)?;
    let good = items
        .into_iter()
        .filter_map(|item| match item.value {
            Ok(v) => Some((item.span, v)),
            Err(e) => {
                d.error(&item.span, format!("`{key}` entry: {e}"));
                None
            }
        })
        .collect();
    Some((at, good))
}

/// A list key that must be present.
pub fn required_list<T>(
    d: &mut Diag,
    key: &str,
    f: Opt<Vec<Field<T>>>,
    table: &Span,
    here: &str,
) -> Option<(Span, Vec<(Span, T)>)> {
    if f.is_none() {
        d.error(table, format!("{here} needs `{key}`"));
    }
    list(d, key, f)
}

/// Parse text with `FromStr`, reporting `what` it should have been.
pub fn parse_as<T: FromStr>(
    d: &mut Diag,
    key: &str,
    at: &Span,
    text: &str,
    what: &str,
) -> Option<T> {
    match text.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            d.error(at, format!("`{key}`: \"{text}\" is not {what}"));
            None
        }
    }
}

/// Report the second and later occurrences of the same value; `what` names
/// it ("server name").
pub fn no_duplicates<K: Ord + Display>(
    d: &mut Diag,
    what: &str,
    items: impl IntoIterator<Item = (Span, K)>,
) {
    let mut seen: BTreeMap<K, Span> = BTreeMap::new();
    for (at, k) in items {
        if let Some(first) = seen.get(&k) {
            let msg = format!("duplicate {what} {k} (first at {})", d.place(first));
            d.error(&at, msg);
        } else {
            seen.insert(k, at);
        }
    }
}
