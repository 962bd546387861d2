//! Writes halo.toml text: tables and keys in the order the mapping built
//! them, each preceded by comments naming the source line it came from.
//!
//! TOML is written as text rather than serialized so that the key order is
//! fixed and every key can carry its `# from keepalived.conf:12 ...`
//! comment. Only the few value shapes halo's schema uses are supported.

use std::fmt::Write;
use std::time::Duration;

use super::units::halo_duration;
use super::words::one_line;

/// A source line a key came from: `keepalived.conf:12 virtual_router_id 51`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Src {
    pub file: String,
    pub line: usize,
    pub text: String,
}

impl std::fmt::Display for Src {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Line 0: not from a file (a command-line option).
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.text),
            n => write!(f, "{}:{n} {}", self.file, self.text),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Dur(Duration),
    /// An inline table, keys in this order.
    Inline(Vec<(&'static str, Value)>),
    /// An inline array.
    Array(Vec<Value>),
}

/// One element of an array, with its own source comments.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: Value,
    pub from: Vec<Src>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    One(Value),
    Many(Vec<Item>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: &'static str,
    pub rhs: Rhs,
    pub from: Vec<Src>,
    /// Extra comment lines, e.g. why a value differs from the source.
    pub notes: Vec<String>,
}

impl Entry {
    pub fn one(key: &'static str, value: Value, from: Vec<Src>) -> Entry {
        Entry {
            key,
            rhs: Rhs::One(value),
            from,
            notes: Vec::new(),
        }
    }
    pub fn many(key: &'static str, items: Vec<Item>) -> Entry {
        Entry {
            key,
            rhs: Rhs::Many(items),
            from: Vec::new(),
            notes: Vec::new(),
        }
    }
    pub fn note(mut self, note: impl Into<String>) -> Entry {
        self.notes.push(note.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Dotted path segments, e.g. ["proxy", "web", "health"].
    pub path: Vec<String>,
    pub from: Vec<Src>,
    pub notes: Vec<String>,
    pub entries: Vec<Entry>,
}

impl Table {
    pub fn new(path: &[&str], from: Vec<Src>) -> Table {
        Table {
            path: path.iter().map(|s| s.to_string()).collect(),
            from,
            notes: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key or table-path segment: bare when TOML allows it.
pub fn key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        s.to_string()
    } else {
        quote(s)
    }
}

fn value(v: &Value) -> String {
    match v {
        Value::Str(s) => quote(s),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Dur(d) => quote(&halo_duration(*d)),
        Value::Inline(kv) => {
            let parts: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        Value::Array(vs) => {
            let parts: Vec<String> = vs.iter().map(value).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

fn comments(out: &mut String, indent: &str, from: &[Src], notes: &[String]) {
    for s in from {
        let _ = writeln!(out, "{indent}# from {}", one_line(&s.to_string()));
    }
    for n in notes {
        let _ = writeln!(out, "{indent}# {}", one_line(n));
    }
}

/// Where an output line came from: table, entry and array item indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub table: usize,
    pub entry: Option<usize>,
    pub item: Option<usize>,
}

/// The whole document: `header` comment lines, then each table.
pub fn document(header: &[String], tables: &[Table], footer: &[String]) -> String {
    document_map(header, tables, footer).0
}

/// [`document`], and for every line (0-based) what it belongs to, so that a
/// `halo check` error at a line can be traced to the key that caused it.
pub fn document_map(
    header: &[String],
    tables: &[Table],
    footer: &[String],
) -> (String, Vec<Option<Loc>>) {
    let mut out = String::new();
    let mut locs: Vec<Option<Loc>> = Vec::new();
    // Every line written since the last call belongs to `loc`.
    let mut seen = 0;
    let mut mark = |out: &String, locs: &mut Vec<Option<Loc>>, loc: Option<Loc>| {
        let n = locs.len() + out[seen..].matches('\n').count();
        seen = out.len();
        locs.resize(n, loc);
    };
    for h in header {
        let _ = writeln!(out, "# {}", one_line(h));
    }
    mark(&out, &mut locs, None);
    for (ti, t) in tables.iter().enumerate() {
        let at = |entry, item| {
            Some(Loc {
                table: ti,
                entry,
                item,
            })
        };
        out.push('\n');
        comments(&mut out, "", &t.from, &t.notes);
        let path: Vec<String> = t.path.iter().map(|p| key(p)).collect();
        let _ = writeln!(out, "[{}]", path.join("."));
        mark(&out, &mut locs, at(None, None));
        for (ei, e) in t.entries.iter().enumerate() {
            comments(&mut out, "", &e.from, &e.notes);
            match &e.rhs {
                Rhs::One(v) => {
                    let _ = writeln!(out, "{} = {}", key(e.key), value(v));
                }
                Rhs::Many(items) if items.iter().all(|i| i.from.is_empty()) => {
                    let vs: Vec<String> = items.iter().map(|i| value(&i.value)).collect();
                    let _ = writeln!(out, "{} = [{}]", key(e.key), vs.join(", "));
                }
                Rhs::Many(items) => {
                    let _ = writeln!(out, "{} = [", key(e.key));
                    mark(&out, &mut locs, at(Some(ei), None));
                    for (ii, i) in items.iter().enumerate() {
                        comments(&mut out, "  ", &i.from, &[]);
                        let _ = writeln!(out, "  {},", value(&i.value));
                        mark(&out, &mut locs, at(Some(ei), Some(ii)));
                    }
                    out.push_str("]\n");
                }
            }
            mark(&out, &mut locs, at(Some(ei), None));
        }
    }
    if !footer.is_empty() {
        out.push('\n');
        for f in footer {
            let _ = writeln!(out, "# {}", one_line(f));
        }
    }
    mark(&out, &mut locs, None);
    (out, locs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(line: usize, text: &str) -> Vec<Src> {
        vec![Src {
            file: "keepalived.conf".into(),
            line,
            text: text.into(),
        }]
    }

    #[test]
    fn writes_comments_above_keys_and_items() {
        let mut t = Table::new(&["vrrp", "VI_1"], src(3, "vrrp_instance VI_1 {"));
        t.entries.push(Entry::one(
            "vrid",
            Value::Int(51),
            src(5, "virtual_router_id 51"),
        ));
        t.entries.push(Entry::many(
            "virtual_ips",
            vec![Item {
                value: Value::Str("10.0.0.1/24".into()),
                from: src(7, "10.0.0.1/24"),
            }],
        ));
        t.entries.push(
            Entry::one(
                "advert_interval",
                Value::Dur(Duration::from_secs(1)),
                vec![],
            )
            .note("default"),
        );
        let text = document(&["head".into()], &[t], &["foot".into()]);
        let want = "# head\n\n# from keepalived.conf:3 vrrp_instance VI_1 {\n[vrrp.VI_1]\n\
                    # from keepalived.conf:5 virtual_router_id 51\nvrid = 51\nvirtual_ips = [\n\
                    \x20 # from keepalived.conf:7 10.0.0.1/24\n  \"10.0.0.1/24\",\n]\n\
                    # default\nadvert_interval = \"1s\"\n\n# foot\n";
        assert_eq!(text, want);
    }

    #[test]
    fn quotes_what_toml_needs_quoted() {
        assert_eq!(quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
        assert_eq!(key("web_1-a"), "web_1-a");
        assert_eq!(key("web.1"), "\"web.1\"");
        assert_eq!(key(""), "\"\"");
        let inline = Value::Inline(vec![
            ("name", Value::Str("w".into())),
            ("weight", Value::Int(2)),
        ]);
        assert_eq!(value(&inline), r#"{ name = "w", weight = 2 }"#);
    }
}
