//! keepalived's line preprocessing, done before any keyword is read:
//! `$NAME=value` definitions and their `$NAME` / `${NAME}` uses, and
//! `@ID` / `@^ID` lines that only one host (keepalived's `-i ID`, halo's
//! `--keepalived-id ID`) reads.
//!
//! Followed as keepalived 2.2 does it (lib/parser.c `read_line`): a line is
//! stripped of its comment, then an `@ID` prefix is checked and removed, then
//! a line starting `$NAME=` defines NAME (to the end of the line, continued
//! on the next lines while it ends in `\`), and any other line has the
//! definitions made so far substituted into it, again and again while that
//! gives a new `$` or `@`. `$NAME` is only replaced before a space, tab, `,`,
//! `)` or the line's end; `${NAME}` anywhere. A reference to nothing is left
//! as it is by keepalived, which then runs or binds the literal text; here
//! such a line is reported instead, so no `$NAME` reaches halo.toml.
//!
//! Built-in names: `${_PWD}` (the directory of the config file, when the
//! caller knows it), `${_INSTANCE}` (the config id), `${_HASH}` and
//! `${_BANG}` (`#` and `!`). `~SEQ` loops are reported, not unrolled.
//!
//! Pure: text in, lines out, with what was dropped and the definitions made
//! (which the output cites, so every source line is accounted for).

use std::collections::BTreeMap;

/// Substitutions on one line stop after this many rounds (a definition that
/// names itself would otherwise never end; keepalived loops forever).
const MAX_ROUNDS: usize = 16;

/// What the config file cannot say by itself.
#[derive(Debug, Clone, Default)]
pub struct Env<'a> {
    /// keepalived's config id (`-i`): which `@ID` lines apply.
    pub id: Option<&'a str>,
    /// The directory the file is in: `${_PWD}`.
    pub dir: Option<&'a str>,
}

/// A line for the tokenizer: its number in the file and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub n: usize,
    pub text: String,
    /// The comment is already removed (and a `#` or `!` in the text is
    /// literal, e.g. from `${_HASH}`).
    pub decommented: bool,
}

/// A source line left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pre {
    pub lines: Vec<Line>,
    pub skipped: Vec<Skipped>,
    /// Lines that define (or continue a definition): (line, text).
    pub definitions: Vec<(usize, String)>,
}

/// keepalived's `decomment`: the text before the first `!` or `#` outside
/// double quotes, trimmed; and whether it ends in a continuation `\`.
fn decomment(line: &str) -> String {
    let mut quote = false;
    let mut end = line.len();
    for (i, c) in line.char_indices() {
        match c {
            '"' => quote = !quote,
            '!' | '#' if !quote => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    line[..end].trim().to_string()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `$NAME=value` (spaces allowed before `=`): (NAME, value).
fn definition(t: &str) -> Option<(&str, &str)> {
    let rest = t.strip_prefix('$')?;
    if !rest.starts_with(is_name_start) {
        return None;
    }
    let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
    let (name, after) = rest.split_at(len);
    let value = after.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    Some((name, value.trim_start_matches([' ', '\t'])))
}

/// A `$` that starts a reference keepalived would try to expand.
fn has_reference(t: &str) -> bool {
    t.match_indices('$').any(|(i, _)| {
        let rest = &t[i + 1..];
        rest.starts_with(is_name_start)
            || rest
                .strip_prefix('{')
                .is_some_and(|r| r.starts_with(is_name_start))
    })
}

/// Braces outside double quotes: opened minus closed.
fn brace_balance(t: &str) -> i64 {
    let mut quote = false;
    let mut n = 0;
    for c in t.chars() {
        match c {
            '"' => quote = !quote,
            '{' if !quote => n += 1,
            '}' if !quote => n -= 1,
            _ => {}
        }
    }
    n
}

struct State<'a> {
    env: &'a Env<'a>,
    defs: BTreeMap<String, String>,
}

impl State<'_> {
    fn value(&self, name: &str) -> Option<String> {
        if let Some(v) = self.defs.get(name) {
            return Some(v.clone());
        }
        match name {
            "_PWD" => self.env.dir.map(str::to_string),
            "_INSTANCE" => self.env.id.map(str::to_string),
            "_HASH" => Some("#".into()),
            "_BANG" => Some("!".into()),
            _ => None,
        }
    }

    /// One round of substitution; `None` when nothing was replaced.
    fn substitute(&self, t: &str) -> Option<String> {
        let mut out = String::with_capacity(t.len());
        let mut changed = false;
        let mut rest = t;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            // ${NAME}
            if let Some(inner) = after.strip_prefix('{') {
                let len = inner
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(inner.len());
                if len > 0 && inner.starts_with(is_name_start) && inner[len..].starts_with('}') {
                    if let Some(v) = self.value(&inner[..len]) {
                        out.push_str(&v);
                        changed = true;
                        rest = &inner[len + 1..];
                        continue;
                    }
                }
            } else if after.starts_with(is_name_start) {
                // $NAME, ended by a space, tab, ',', ')' or the line's end.
                let len = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let ends = after[len..].chars().next();
                if matches!(ends, None | Some(' ' | '\t' | ',' | ')')) {
                    if let Some(v) = self.value(&after[..len]) {
                        out.push_str(&v);
                        changed = true;
                        rest = &after[len..];
                        continue;
                    }
                }
            }
            out.push('$');
            rest = after;
        }
        out.push_str(rest);
        changed.then_some(out)
    }
}

fn id_reason(env: &Env, want: &str, negated: bool) -> String {
    let rule = if negated {
        format!("keepalived reads this line on every host except the one with config id {want}")
    } else {
        format!("keepalived reads this line only on the host with config id {want} (-i {want})")
    };
    match env.id {
        Some(id) => format!("{rule}; this import is for --keepalived-id {id}"),
        None => format!("{rule}; pass --keepalived-id ID to import the lines of one host"),
    }
}

/// Preprocess a whole file.
pub fn preprocess(text: &str, env: &Env) -> Pre {
    let mut pre = Pre::default();
    let mut st = State {
        env,
        defs: BTreeMap::new(),
    };
    // A multi-line definition being read: its name.
    let mut continuing: Option<String> = None;
    // Lines of a block whose header was left out for another host.
    let mut skip_depth: i64 = 0;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if skip_depth > 0 {
            skip_depth += brace_balance(&decomment(raw));
            continue;
        }
        if let Some(name) = continuing.take() {
            let t = decomment(raw);
            pre.definitions.push((n, raw.trim().to_string()));
            let (part, more) = match t.strip_suffix('\\') {
                Some(p) => (p.trim_end().to_string(), true),
                None => (t, false),
            };
            let v = st.defs.entry(name.clone()).or_default();
            if !part.is_empty() {
                if !v.is_empty() {
                    v.push('\n');
                }
                v.push_str(&part);
            }
            if more && !raw.trim().is_empty() {
                continuing = Some(name);
            }
            continue;
        }
        let quick = !raw.contains('$') && !raw.trim_start().starts_with(['@', '~']);
        if quick {
            pre.lines.push(Line {
                n,
                text: raw.to_string(),
                decommented: false,
            });
            continue;
        }
        let t = decomment(raw);
        line(
            &mut st,
            &mut pre,
            n,
            raw,
            t,
            0,
            &mut continuing,
            &mut skip_depth,
        );
    }
    pre
}

#[allow(clippy::too_many_arguments)]
fn line(
    st: &mut State,
    pre: &mut Pre,
    n: usize,
    raw: &str,
    mut t: String,
    depth: usize,
    continuing: &mut Option<String>,
    skip_depth: &mut i64,
) {
    for _ in 0..MAX_ROUNDS {
        if let Some(rest) = t.strip_prefix('@') {
            let (negated, rest) = match rest.strip_prefix('^') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let Some(sp) = rest.find([' ', '\t']) else {
                // Nothing after the id: keepalived ignores the line.
                pre.skipped.push(Skipped {
                    line: n,
                    text: raw.trim().to_string(),
                    reason: "a conditional line with nothing after its id".into(),
                });
                return;
            };
            let want = &rest[..sp];
            let matches = st.env.id == Some(want);
            if matches == negated || st.env.id.is_none() {
                pre.skipped.push(Skipped {
                    line: n,
                    text: raw.trim().to_string(),
                    reason: id_reason(st.env, want, negated),
                });
                // A block opened on a line left out is left out whole.
                *skip_depth = brace_balance(&t).max(0);
                return;
            }
            t = rest[sp..].trim_start().to_string();
            continue;
        }
        if let Some((name, value)) = definition(&t) {
            pre.definitions.push((n, raw.trim().to_string()));
            let (value, more) = match value.strip_suffix('\\') {
                Some(v) => (v.trim_end().to_string(), true),
                None => (value.to_string(), false),
            };
            st.defs.insert(name.to_string(), value);
            if more {
                *continuing = Some(name.to_string());
            }
            return;
        }
        if t.starts_with("~SEQ") {
            pre.skipped.push(Skipped {
                line: n,
                text: raw.trim().to_string(),
                reason:
                    "keepalived's ~SEQ loops are not unrolled by halo import: write the lines out"
                        .into(),
            });
            return;
        }
        match st.substitute(&t) {
            Some(next) => {
                let again = next.contains('$') || next.starts_with('@');
                t = next;
                // A multi-line definition gives several lines, each read
                // on its own (with the line number of the use).
                if t.contains('\n') {
                    if depth >= MAX_ROUNDS {
                        break;
                    }
                    let parts: Vec<String> = t.split('\n').map(|s| s.trim().to_string()).collect();
                    for p in parts.into_iter().filter(|p| !p.is_empty()) {
                        line(st, pre, n, raw, p, depth + 1, continuing, skip_depth);
                    }
                    return;
                }
                if !again {
                    break;
                }
            }
            None => break,
        }
    }
    if has_reference(&t) && brace_balance(&t) == 0 && !t.starts_with(['{', '}']) {
        let name: String = t[t.find('$').unwrap_or(0)..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        pre.skipped.push(Skipped {
            line: n,
            text: raw.trim().to_string(),
            reason: format!(
                "'{name}' is not a definition made before this line (keepalived expands $NAME only before a space, ',', ')' or the line's end, ${{NAME}} anywhere; built-ins _PWD and _INSTANCE need the file's directory and --keepalived-id): keepalived would use the text literally"
            ),
        });
        return;
    }
    pre.lines.push(Line {
        n,
        text: t,
        decommented: true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(p: &Pre) -> Vec<(usize, &str)> {
        p.lines.iter().map(|l| (l.n, l.text.as_str())).collect()
    }

    #[test]
    fn definitions_are_substituted_where_keepalived_does() {
        let text = "$IF=eth0\n$VIP = 192.0.2.1 # the address\ninterface $IF\n  ip ${VIP}/24 dev $IF\nx $IF.3\n";
        let p = preprocess(text, &Env::default());
        assert_eq!(
            texts(&p),
            [(3, "interface eth0"), (4, "ip 192.0.2.1/24 dev eth0")]
        );
        assert_eq!(
            p.definitions.iter().map(|d| d.0).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].line, 5);
        assert!(p.skipped[0].reason.contains("'$IF.3'"), "{:?}", p.skipped);
    }

    #[test]
    fn later_definitions_nested_and_multiline() {
        let text = "$INST=${NAME}\n$NAME=VI_1\nvrrp_instance $INST {\n$VIPS=\\\n  192.0.2.1 \\\n  192.0.2.2\nvirtual_ipaddress {\n$VIPS\n}\n}\n";
        let p = preprocess(text, &Env::default());
        assert_eq!(
            texts(&p),
            [
                (3, "vrrp_instance VI_1 {"),
                (7, "virtual_ipaddress {"),
                (8, "192.0.2.1"),
                (8, "192.0.2.2"),
                (9, "}"),
                (10, "}"),
            ]
        );
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    }

    #[test]
    fn conditional_lines_follow_the_id() {
        let text = "@high priority 170\n@low priority 85\n@^high weight 3\n@low vrrp_instance X {\n a {\n }\n}\nlast\n";
        let p = preprocess(
            text,
            &Env {
                id: Some("high"),
                dir: None,
            },
        );
        assert_eq!(texts(&p), [(1, "priority 170"), (8, "last")]);
        let skipped: Vec<usize> = p.skipped.iter().map(|s| s.line).collect();
        assert_eq!(skipped, [2, 3, 4]);
        assert!(p.skipped[0].reason.contains("--keepalived-id high"));
        let p = preprocess(text, &Env::default());
        assert_eq!(texts(&p), [(8, "last")]);
        assert!(p.skipped[0].reason.contains("pass --keepalived-id"));
    }

    #[test]
    fn built_ins_and_undefined_names() {
        let env = Env {
            id: Some("lb1"),
            dir: Some("/etc/keepalived"),
        };
        let text = "script \"${_PWD}/chk.sh ${_INSTANCE}\"\nnotify $SCRIPT_DIR/x.sh\nscript \"test $(pidof x)\"\n$A=$A\nv $A\n";
        let p = preprocess(text, &env);
        assert_eq!(
            texts(&p),
            [
                (1, "script \"/etc/keepalived/chk.sh lb1\""),
                (3, "script \"test $(pidof x)\"")
            ]
        );
        let skipped: Vec<usize> = p.skipped.iter().map(|s| s.line).collect();
        assert_eq!(skipped, [2, 5]);
        // Without the directory, ${_PWD} is not known: reported.
        let p = preprocess("script ${_PWD}/x\n", &Env::default());
        assert!(p.lines.is_empty());
        assert_eq!(p.skipped.len(), 1);
    }

    #[test]
    fn a_hash_from_a_definition_is_not_a_comment() {
        let p = preprocess("$T=${_HASH}\nx a${T}b # c\n", &Env::default());
        assert_eq!(p.lines[0].text, "x a#b");
        assert!(p.lines[0].decommented);
    }
}
