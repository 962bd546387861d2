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
    fn one_line_hides_control_characters() {
        assert_eq!(one_line("HTTP/1.1\r\nHost: x"), "HTTP/1.1??Host: x");
    }
}
