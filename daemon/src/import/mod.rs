//! `halo import`: keepalived.conf and haproxy.cfg in, halo.toml text out,
//! plus one report line for every directive that could not be carried over.
//!
//! Pure: the caller reads the files and prints the result. Each syntax has
//! its own tokenizer/parser (`keepalived_syntax`, `haproxy_syntax`) that
//! knows no keyword meanings; `from_keepalived` and `from_haproxy` map the
//! parsed trees onto halo's keys, and `emit` writes them as TOML text with a
//! comment naming the source line of every key. The output is meant to be
//! checked with `halo check`; this module does not validate it again.
//!
//! What the files cannot say comes from [`Options`]: values for Ansible-style
//! `{{ placeholders }}`, addresses for server host names (halo connects to
//! addresses and does no DNS), and virtual IPs for instances that have none.

mod cli;
mod emit;
mod from_haproxy;
mod from_keepalived;
mod haproxy_syntax;
mod keepalived_lvs;
mod keepalived_pre;
mod keepalived_syntax;
mod units;
mod words;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

pub use cli::{run as cli, ImportArgs};
use emit::Src;
use words::{joined, one_line, Word};

/// One input file: the path as the user named it, and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

/// What the configs cannot say by themselves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Values for `{{ name }}` template placeholders (`--set name=value`).
    pub set: BTreeMap<String, String>,
    /// Addresses for host names in `server`/`bind` lines (`--resolve`).
    pub resolve: BTreeMap<String, IpAddr>,
    /// Extra virtual IPs per instance (`--vip VI_1=192.0.2.100/24`).
    pub vips: Vec<(String, String)>,
    /// keepalived's config id (`-i ID`): which `@ID` lines apply.
    pub keepalived_id: Option<String>,
    /// The directory keepalived.conf is in: keepalived's `${_PWD}`.
    pub keepalived_dir: Option<String>,
}

/// A directive that is not in the output, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub file: String,
    pub line: usize,
    pub directive: String,
    pub reason: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: directive '{}' not carried over: {}",
            self.file, self.line, self.directive, self.reason
        )
    }
}

/// A file that could not be read as keepalived or HAProxy syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// The input is not keepalived or HAProxy syntax.
    Syntax(Vec<SyntaxError>),
    /// Parsed, but not one instance or service could be carried over.
    NothingCarried(Vec<Dropped>),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Syntax(errs) => {
                let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                f.write_str(&lines.join("\n"))
            }
            ImportError::NothingCarried(dropped) => {
                for d in dropped {
                    writeln!(f, "{d}")?;
                }
                f.write_str("nothing could be carried over: no [vrrp.*] instance or [proxy.*] service to write")
            }
        }
    }
}

impl std::error::Error for ImportError {}

/// The halo.toml text and what was left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub toml: String,
    pub dropped: Vec<Dropped>,
}

/// A file's names: the path for report lines, the base name for comments.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    path: String,
    short: String,
}

impl Origin {
    fn new(path: &str) -> Origin {
        let short = path
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(path);
        Origin {
            path: path.to_string(),
            short: short.to_string(),
        }
    }

    fn src(&self, words: &[Word]) -> Src {
        Src {
            file: self.short.clone(),
            line: words.first().map_or(0, |w| w.line),
            text: joined(words),
        }
    }

    fn drop(&self, line: usize, directive: &str, reason: impl Into<String>) -> Dropped {
        Dropped {
            file: self.path.clone(),
            line,
            directive: one_line(directive),
            reason: reason.into(),
        }
    }
}

/// Convert. At least one source should be given; with none, nothing is
/// carried over.
pub fn import(
    keepalived: Option<Source<'_>>,
    haproxy: Option<Source<'_>>,
    opts: &Options,
) -> Result<Imported, ImportError> {
    let mut errors = Vec::new();
    let env = keepalived_pre::Env {
        id: opts.keepalived_id.as_deref(),
        dir: opts.keepalived_dir.as_deref(),
    };
    let pre = keepalived.map(|s| keepalived_pre::preprocess(s.text, &env));
    let k_tree = keepalived.and_then(|s| {
        match keepalived_syntax::parse_lines(&pre.as_ref().expect("preprocessed above").lines) {
            Ok(t) => Some((Origin::new(s.path), t)),
            Err(e) => {
                errors.push(SyntaxError {
                    file: s.path.to_string(),
                    line: e.line,
                    message: e.message,
                });
                None
            }
        }
    });
    let h_file = haproxy.and_then(|s| match haproxy_syntax::parse(s.text) {
        Ok(f) => Some((Origin::new(s.path), f)),
        Err(e) => {
            errors.push(SyntaxError {
                file: s.path.to_string(),
                line: e.line,
                message: e.message,
            });
            None
        }
    });
    if !errors.is_empty() {
        return Err(ImportError::Syntax(errors));
    }

    // Proxies first: a keepalived check of the haproxy process becomes a
    // track of the imported services, so their names must be known.
    let mut dropped = Vec::new();
    let mut proxy_tables = Vec::new();
    let mut services = Vec::new();
    if let Some((origin, file)) = &h_file {
        let m = from_haproxy::map(origin, file, opts);
        proxy_tables = m.tables;
        services = m.services;
        dropped.extend(m.dropped);
    }
    let mut vrrp_tables = Vec::new();
    let mut definitions = Vec::new();
    if let (Some((origin, tree)), Some(pre)) = (&k_tree, &pre) {
        let m = from_keepalived::map(origin, tree, &services, opts);
        vrrp_tables = m.tables;
        let mut k_dropped = m.dropped;
        k_dropped.extend(
            pre.skipped
                .iter()
                .map(|s| origin.drop(s.line, &s.text, s.reason.clone())),
        );
        k_dropped.sort_by_key(|d| d.line);
        dropped.extend(k_dropped);
        definitions = pre
            .definitions
            .iter()
            .map(|(n, text)| format!("  from {}:{n} {text}", origin.short))
            .collect();
    }
    let origins: Vec<Origin> = [keepalived, haproxy]
        .into_iter()
        .flatten()
        .map(|s| Origin::new(s.path))
        .collect();
    let tables: Vec<emit::Table> = vrrp_tables.into_iter().chain(proxy_tables).collect();
    let tables = settle(tables, &origins, &mut dropped);
    // The same line reported twice (a backend two frontends use) once.
    let mut once = std::collections::BTreeSet::new();
    dropped.retain(|d| once.insert(d.to_string()));
    if tables.is_empty() {
        return Err(ImportError::NothingCarried(dropped));
    }

    let mut header = vec!["halo.toml written by `halo import` from:".to_string()];
    for (kind, s) in [("keepalived", keepalived), ("HAProxy", haproxy)] {
        if let Some(s) = s {
            header.push(format!("  {kind}: {}", s.path));
        }
    }
    header.push("Each key names the line it came from. Review it, then run `halo check`.".into());
    if !definitions.is_empty() {
        header.push("keepalived definitions, substituted where they are used:".into());
        header.extend(definitions);
        if let Some(dir) = &opts.keepalived_dir {
            header.push(format!(
                "  ${{_PWD}} is {dir}, the directory of the imported file"
            ));
        }
    }
    let mut footer = Vec::new();
    if !dropped.is_empty() {
        footer.push(format!(
            "Not carried over ({}; also printed on stderr):",
            dropped.len()
        ));
        for d in &dropped {
            footer.push(format!(
                "  {}:{} {}: {}",
                d.file, d.line, d.directive, d.reason
            ));
        }
    }
    Ok(Imported {
        toml: emit::document(&header, &tables, &footer),
        dropped,
    })
}

/// The last word on what is written: the output is checked as `halo check`
/// does, and whatever it refuses (a value past one of halo's limits that the
/// mapping did not foresee, a key that then refers to nothing) is taken out
/// and reported, the array item, key or table the error's line is in, until
/// the check passes. So an import never writes a file `halo check` rejects.
fn settle(
    mut tables: Vec<emit::Table>,
    origins: &[Origin],
    dropped: &mut Vec<Dropped>,
) -> Vec<emit::Table> {
    // Each round removes at least one thing, or gives up on everything.
    let max_rounds = 4 + tables.iter().map(|t| 1 + t.entries.len()).sum::<usize>();
    for _ in 0..max_rounds {
        if tables.is_empty() {
            break;
        }
        let (text, locs) = emit::document_map(&[], &tables, &[]);
        let Err(errors) = crate::config::parse_str("halo.toml", &text) else {
            return tables;
        };
        let mut cuts: Vec<(emit::Loc, String)> = Vec::new();
        for e in errors.0 {
            match e
                .line
                .checked_sub(1)
                .and_then(|i| locs.get(i).copied().flatten())
            {
                Some(loc) => cuts.push((loc, e.message)),
                None => {
                    // Not traceable to a key: nothing written can be trusted.
                    for t in &tables {
                        dropped.push(refused(origins, &t.from, &t.from, &e.message));
                    }
                    return Vec::new();
                }
            }
        }
        // Deepest and last first, so earlier indexes stay valid.
        cuts.sort_by(|a, b| {
            (b.0.table, b.0.entry, b.0.item).cmp(&(a.0.table, a.0.entry, a.0.item))
        });
        cuts.dedup_by(|a, b| a.0 == b.0);
        let mut gone_tables = std::collections::BTreeSet::new();
        for (loc, message) in cuts {
            if gone_tables.contains(&loc.table) {
                continue;
            }
            let t = &mut tables[loc.table];
            match (loc.entry, loc.item) {
                (Some(ei), Some(ii)) => {
                    if let emit::Rhs::Many(items) = &mut t.entries[ei].rhs {
                        if ii < items.len() {
                            let item = items.remove(ii);
                            dropped.push(refused(origins, &item.from, &t.from, &message));
                        }
                    }
                }
                (Some(ei), None) if ei < t.entries.len() => {
                    let e = t.entries.remove(ei);
                    dropped.push(refused(origins, &e.from, &t.from, &message));
                }
                _ => {
                    gone_tables.insert(loc.table);
                    dropped.push(refused(origins, &t.from, &t.from, &message));
                }
            }
        }
        for ti in gone_tables.into_iter().rev() {
            tables.remove(ti);
        }
    }
    for t in &tables {
        dropped.push(refused(
            origins,
            &t.from,
            &t.from,
            "halo check still refuses it",
        ));
    }
    Vec::new()
}

/// The report line for a part `halo check` refused: its first source line
/// (or its table's when the key was not from a line).
fn refused(origins: &[Origin], from: &[emit::Src], table: &[emit::Src], message: &str) -> Dropped {
    let src = from.first().or(table.first());
    let (file, line, text) = match src {
        Some(s) => {
            let path = origins
                .iter()
                .find(|o| o.short == s.file)
                .map_or(s.file.clone(), |o| o.path.clone());
            (path, s.line, s.text.clone())
        }
        None => ("halo.toml".to_string(), 0, String::new()),
    };
    Dropped {
        file,
        line,
        directive: words::one_line(&text),
        reason: format!("halo check refuses what it becomes: {message}"),
    }
}

#[cfg(test)]
mod tests;
