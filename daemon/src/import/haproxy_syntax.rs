//! haproxy.cfg syntax: a line tokenizer and a split into sections
//! (`global`, `defaults`, `frontend`, `backend`, `listen`, ...), knowing
//! nothing of what the keywords mean.
//!
//! As HAProxy does: words are split on blanks; `#` outside quotes starts a
//! comment; `\` escapes the next character (`\ `, `\#`, `\\`, `\"`, `\'`)
//! and `\r`, `\n`, `\t`, `\xHH` write control bytes; double quotes group a
//! word and allow escapes, single quotes group a word literally. Environment
//! variables (`"${VAR}"`) are not expanded. A `{{ name }}` template
//! placeholder stays one word.

use super::keepalived_syntax::SyntaxError;
use super::words::{Closers, Word};

/// Keywords that open a section.
const SECTIONS: [&str; 17] = [
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "cache",
    "program",
    "http-errors",
    "ring",
    "log-forward",
    "fcgi-app",
    "crt-store",
    "traces",
];

/// One non-empty line's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Never empty.
    pub words: Vec<Word>,
}

impl Line {
    pub fn line(&self) -> usize {
        self.words[0].line
    }
    pub fn keyword(&self) -> &str {
        &self.words[0].text
    }
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i + 1).map(|w| w.text.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section line itself, e.g. `frontend http_in`.
    pub head: Line,
    pub body: Vec<Line>,
}

impl Section {
    pub fn kind(&self) -> &str {
        self.head.keyword()
    }
    pub fn name(&self) -> Option<&str> {
        self.head.arg(0)
    }
}

/// The file's sections, and the lines that come before the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub stray: Vec<Line>,
    pub sections: Vec<Section>,
}

/// Split one line into words (the comment removed).
fn words(line: &str, n: usize) -> Result<Vec<Word>, SyntaxError> {
    let err = |message: &str| SyntaxError {
        line: n,
        message: message.to_string(),
    };
    let mut out = Vec::new();
    let mut word = String::new();
    // A word may be empty only when it was quoted: `""`.
    let mut started = false;
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    let mut closers = Closers::new(line);
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(Word::new(std::mem::take(&mut word), n));
                    started = false;
                }
            }
            (None, '{') if line[at..].starts_with("{{") && closers.end(at).is_some() => {
                let end = closers.end(at).unwrap_or(line.len());
                word.push_str(&line[at..end]);
                started = true;
                while chars.peek().is_some_and(|(i, _)| *i < end) {
                    chars.next();
                }
            }
            (_, '\\') => {
                let Some((_, e)) = chars.next() else {
                    return Err(err("a '\\' ends the line: nothing to escape"));
                };
                match e {
                    'r' => word.push('\r'),
                    'n' => word.push('\n'),
                    't' => word.push('\t'),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let byte = u8::from_str_radix(&hex, 16)
                            .map_err(|_| err("'\\x' must be followed by two hex digits"))?;
                        word.push(char::from(byte));
                    }
                    e => word.push(e),
                }
                started = true;
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(err(&format!(
            "unterminated quoted string (no closing {q} on this line)"
        )));
    }
    if started {
        out.push(Word::new(word, n));
    }
    Ok(out)
}

/// Parse a whole file. Every line's syntax is checked; the first error wins.
pub fn parse(text: &str) -> Result<File, SyntaxError> {
    let mut file = File {
        stray: Vec::new(),
        sections: Vec::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let ws = words(raw, i + 1)?;
        if ws.is_empty() {
            continue;
        }
        let line = Line { words: ws };
        if SECTIONS.contains(&line.keyword()) {
            file.sections.push(Section {
                head: line,
                body: Vec::new(),
            });
        } else if let Some(s) = file.sections.last_mut() {
            s.body.push(line);
        } else {
            file.stray.push(line);
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        words(line, 1)
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn comments_quotes_and_escapes() {
        assert_eq!(texts("  bind *:80   # the front"), ["bind", "*:80"]);
        assert_eq!(
            texts(r"stats realm HAProxy\ Statistics"),
            ["stats", "realm", "HAProxy Statistics"]
        );
        assert_eq!(
            texts(r#"a "b c" 'd \e' "f\"g""#),
            ["a", "b c", r"d \e", "f\"g"]
        );
        assert_eq!(
            texts(r"option httpchk GET / HTTP/1.1\r\nHost:\ x"),
            ["option", "httpchk", "GET", "/", "HTTP/1.1\r\nHost: x"]
        );
        assert_eq!(texts(r"a \# b"), ["a", "#", "b"]);
        assert_eq!(texts(r#"x """#), ["x", ""]);
        assert_eq!(texts(r"s \x41"), ["s", "A"]);
        assert_eq!(
            texts("server w {{ web1 }}:80 check"),
            ["server", "w", "{{ web1 }}:80", "check"]
        );
    }

    #[test]
    fn errors_name_their_line() {
        let e = parse("global\n  log \"x\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated"));
        assert_eq!(parse("a\nb \\").unwrap_err().line, 2);
        assert_eq!(parse("a \\xZZ").unwrap_err().line, 1);
        for text in ["\\x", "\\x4", "'", "{{", "é \\é", "#\u{0}"] {
            let _ = parse(text);
        }
    }

    #[test]
    fn sections_collect_their_lines() {
        let f = parse("# top\nmaxconn 1\nglobal\n  daemon\n\ndefaults\n mode http\nfrontend fe\n bind :80\n default_backend be\nbackend be\n").unwrap();
        assert_eq!(f.stray.len(), 1);
        let kinds: Vec<&str> = f.sections.iter().map(Section::kind).collect();
        assert_eq!(kinds, ["global", "defaults", "frontend", "backend"]);
        assert_eq!(f.sections[2].name(), Some("fe"));
        assert_eq!(f.sections[2].body.len(), 2);
        assert_eq!(f.sections[2].body[1].line(), 10);
        assert_eq!(f.sections[1].name(), None);
    }
}
