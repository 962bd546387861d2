//! Words as both tokenizers produce them, and Jinja-style template
//! placeholders (`{{ name }}`) inside them.
//!
//! Configs in write-ups are often Ansible templates. A placeholder is kept as
//! part of its word by the tokenizers; [`render`] fills it from `--set`
//! values and [`Word::placeholder`] finds one that is still unfilled, so the
//! mapping can refuse to invent an address. Nothing here knows keepalived or
//! HAProxy syntax.

use std::collections::BTreeMap;

/// One token of a directive, with the line it came from (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub line: usize,
}

impl Word {
    pub fn new(text: impl Into<String>, line: usize) -> Word {
        Word {
            text: text.into(),
            line,
        }
    }

    /// The first placeholder still in this word, as written (`{{ ip }}`).
    pub fn placeholder(&self) -> Option<&str> {
        find_placeholder(&self.text).map(|(start, end, _)| &self.text[start..end])
    }
}

/// Where a placeholder starts in `line` at byte `at` (which must hold "{{"),
/// the byte just past its "}}"; `None` when the line has no closing "}}".
pub fn placeholder_end(line: &str, at: usize) -> Option<usize> {
    line[at + 2..].find("}}").map(|i| at + 2 + i + 2)
}

/// Finds the end of placeholders in one line, left to right, in linear time
/// overall: the next `}}` is looked up once and reused for every `{{` before
/// it. (Searching from each `{{` anew made a line of 200,000 braces take
/// seconds: every search ran to the end of the line.)
pub struct Closers<'a> {
    line: &'a str,
    /// The next `}}` at or after `from`, as last searched.
    from: usize,
    next: Option<usize>,
    /// Bytes searched so far: the test of the linear bound counts work
    /// instead of timing it.
    scanned: usize,
}

impl<'a> Closers<'a> {
    pub fn new(line: &'a str) -> Closers<'a> {
        Closers {
            line,
            from: usize::MAX,
            next: None,
            scanned: 0,
        }
    }

    /// What [`placeholder_end`] says for `at`; `at` must not decrease
    /// between calls.
    pub fn end(&mut self, at: usize) -> Option<usize> {
        let start = at + 2;
        let stale =
            self.from == usize::MAX || start < self.from || self.next.is_some_and(|n| n < start);
        if stale {
            self.from = start;
            let rest = self.line.get(start..).unwrap_or_default();
            self.next = rest.find("}}").map(|i| start + i);
            self.scanned += self.next.map_or(rest.len(), |n| n + 2 - start);
        }
        self.next.map(|i| i + 2)
    }
}

/// (start, end, trimmed name) of the first `{{ name }}` in `text`.
fn find_placeholder(text: &str) -> Option<(usize, usize, &str)> {
    let start = text.find("{{")?;
    let end = placeholder_end(text, start)?;
    Some((start, end, text[start + 2..end - 2].trim()))
}

/// Replace every `{{ name }}` whose name has a value; others stay as they are.
pub fn render(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, end, name)) = find_placeholder(rest) {
        out.push_str(&rest[..start]);
        match values.get(name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[start..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Render every word in place.
pub fn render_all(words: &mut [Word], values: &BTreeMap<String, String>) {
    if values.is_empty() {
        return;
    }
    for w in words {
        if w.text.contains("{{") {
            w.text = render(&w.text, values);
        }
    }
}

/// The words joined with single spaces, control characters shown as `?`:
/// safe to put in a one-line comment or message.
pub fn joined(words: &[Word]) -> String {
    let s: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    one_line(&s.join(" "))
}

pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        [("lb1_ip".to_string(), "192.0.2.11".to_string())].into()
    }

    #[test]
    fn renders_known_placeholders_and_keeps_unknown_ones() {
        assert_eq!(render("{{ lb1_ip }}", &values()), "192.0.2.11");
        assert_eq!(render("{{lb1_ip}}/24", &values()), "192.0.2.11/24");
        assert_eq!(render("{{ other }}", &values()), "{{ other }}");
        assert_eq!(render("a {{ x", &values()), "a {{ x");
        let w = Word::new("{{ other }}:80", 3);
        assert_eq!(w.placeholder(), Some("{{ other }}"));
        assert_eq!(Word::new("10.0.0.1", 1).placeholder(), None);
    }

    #[test]
    fn closers_agree_with_placeholder_end() {
        for line in [
            "{{ a }} {{ b }}",
            "{{{{ x }}",
            "{{ }",
            "a {{ b }} {{",
            "}}{{}}",
        ] {
            let mut c = Closers::new(line);
            for at in (0..line.len()).filter(|&i| line[i..].starts_with("{{")) {
                assert_eq!(c.end(at), placeholder_end(line, at), "{line:?} at {at}");
            }
        }
    }

    #[test]
    fn closers_search_each_byte_about_once() {
        for line in [
            "{".repeat(200_000),
            "{{ a }} ".repeat(20_000) + &"{".repeat(100_000),
        ] {
            let mut c = Closers::new(&line);
            for at in (0..line.len()).filter(|&i| line[i..].starts_with("{{")) {
                c.end(at);
            }
            assert!(c.scanned <= 2 * line.len(), "{} bytes searched", c.scanned);
        }
    }

    #[test]
    fn one_line_hides_control_characters() {
        assert_eq!(one_line("HTTP/1.1\r\nHost: x"), "HTTP/1.1??Host: x");
    }
}
