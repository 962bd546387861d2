//! keepalived.conf syntax: a tokenizer and a parser into a tree of
//! statements, knowing nothing of what the keywords mean.
//!
//! keepalived's format is line based: a statement is a keyword and its
//! arguments up to the end of the line, optionally followed by a `{ ... }`
//! block (the `{` may also open the next line). `!` and `#` start a comment
//! that runs to the end of the line, outside double quotes. A `{{ name }}`
//! template placeholder stays inside its word (see `words.rs`) instead of
//! being read as two braces. `include` is not followed here: the mapping
//! reports it.

use super::keepalived_pre::Line;
use super::words::{Closers, Word};

/// Deeper nesting than this is refused (keepalived itself nests 4 levels).
const MAX_DEPTH: usize = 32;

/// A keyword with its arguments and, if it has one, its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// Never empty: `words[0]` is the keyword.
    pub words: Vec<Word>,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub fn line(&self) -> usize {
        self.words[0].line
    }
    pub fn keyword(&self) -> &str {
        &self.words[0].text
    }
    pub fn args(&self) -> &[Word] {
        &self.words[1..]
    }
    /// The block's statements; none when the statement has no block.
    pub fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// A syntax error at a line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Word),
    Open(usize),
    Close(usize),
    Eol,
}

struct Lexed {
    toks: Vec<Tok>,
    /// Lines whose comment holds a brace: the sign of a config whose line
    /// breaks were lost, which turns everything after a `#` into comment.
    braces_in_comments: Vec<usize>,
}

fn lex(lines: &[Line]) -> Result<Lexed, SyntaxError> {
    let mut toks = Vec::new();
    let mut braces_in_comments = Vec::new();
    for l in lines {
        let (n, line) = (l.n, l.text.as_str());
        let mut word = String::new();
        let flush = |word: &mut String, toks: &mut Vec<Tok>| {
            if !word.is_empty() {
                toks.push(Tok::Word(Word::new(std::mem::take(word), n)));
            }
        };
        let mut closers = Closers::new(line);
        let mut at = 0;
        while let Some(c) = line[at..].chars().next() {
            match c {
                c if c.is_whitespace() => {
                    flush(&mut word, &mut toks);
                    at += c.len_utf8();
                }
                '"' => {
                    let Some(len) = line[at + 1..].find('"') else {
                        return Err(SyntaxError {
                            line: n,
                            message: "unterminated quoted string (no closing '\"' on this line)"
                                .into(),
                        });
                    };
                    word.push_str(&line[at + 1..at + 1 + len]);
                    at += len + 2;
                }
                '!' | '#' if !l.decommented => {
                    if line[at..].contains(['{', '}']) {
                        braces_in_comments.push(n);
                    }
                    break;
                }
                '{' if line[at..].starts_with("{{") && closers.end(at).is_some() => {
                    let end = closers.end(at).unwrap_or(line.len());
                    word.push_str(&line[at..end]);
                    at = end;
                }
                '{' => {
                    flush(&mut word, &mut toks);
                    toks.push(Tok::Open(n));
                    at += 1;
                }
                '}' => {
                    flush(&mut word, &mut toks);
                    toks.push(Tok::Close(n));
                    at += 1;
                }
                c => {
                    word.push(c);
                    at += c.len_utf8();
                }
            }
        }
        flush(&mut word, &mut toks);
        toks.push(Tok::Eol);
    }
    Ok(Lexed {
        toks,
        braces_in_comments,
    })
}

/// Parse a whole file into its top-level statements (no `$` or `@`
/// preprocessing: see [`parse_lines`]).
#[cfg(test)]
pub fn parse(text: &str) -> Result<Vec<Stmt>, SyntaxError> {
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .map(|(i, t)| Line {
            n: i + 1,
            text: t.to_string(),
            decommented: false,
        })
        .collect();
    parse_lines(&lines)
}

/// Parse preprocessed lines (`keepalived_pre`) into top-level statements.
pub fn parse_lines(lines: &[Line]) -> Result<Vec<Stmt>, SyntaxError> {
    let lexed = lex(lines)?;
    // Open blocks: the statement that opened each, and the children so far.
    let mut stack: Vec<(Option<Vec<Word>>, Vec<Stmt>)> = vec![(None, Vec::new())];
    let mut words: Vec<Word> = Vec::new();
    for tok in lexed.toks {
        match tok {
            Tok::Word(w) => words.push(w),
            Tok::Eol => {
                if !words.is_empty() {
                    let top = &mut stack.last_mut().expect("root frame").1;
                    top.push(Stmt {
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
            }
            Tok::Open(n) => {
                let header = if words.is_empty() {
                    // `{` on the line after its keyword.
                    let top = &mut stack.last_mut().expect("root frame").1;
                    match top.last() {
                        Some(prev) if prev.block.is_none() => {
                            top.pop().map(|s| s.words).unwrap_or_default()
                        }
                        _ => {
                            return Err(SyntaxError {
                                line: n,
                                message: "'{' with no keyword before it".into(),
                            })
                        }
                    }
                } else {
                    std::mem::take(&mut words)
                };
                if stack.len() > MAX_DEPTH {
                    return Err(SyntaxError {
                        line: n,
                        message: format!("blocks nested deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push((Some(header), Vec::new()));
            }
            Tok::Close(n) => {
                if !words.is_empty() {
                    let top = &mut stack.last_mut().expect("root frame").1;
                    top.push(Stmt {
                        words: std::mem::take(&mut words),
                        block: None,
                    });
                }
                if stack.len() == 1 {
                    return Err(SyntaxError {
                        line: n,
                        message: "'}' closes no block".into(),
                    });
                }
                let (header, children) = stack.pop().expect("checked above");
                let stmt = Stmt {
                    words: header.expect("only the root frame has no header"),
                    block: Some(children),
                };
                stack.last_mut().expect("root frame").1.push(stmt);
            }
        }
    }
    if stack.len() > 1 {
        let (header, _) = stack.pop().expect("checked above");
        let header = header.expect("only the root frame has no header");
        let line = header[0].line;
        let mut message = format!("'{{' of '{}' is never closed", header[0].text);
        if let Some(hidden) = lexed.braces_in_comments.iter().find(|l| **l >= line) {
            message.push_str(&format!(
                "; the comment on line {hidden} contains braces: were this file's line breaks lost? \
                 A '#' or '!' comments out the rest of its line"
            ));
        }
        return Err(SyntaxError { line, message });
    }
    Ok(stack.pop().expect("root frame").1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(s: &[Stmt]) -> Vec<&str> {
        s.iter().map(Stmt::keyword).collect()
    }

    #[test]
    fn nested_blocks_comments_and_quotes() {
        let text = "! Configuration File for keepalived\n\
                    vrrp_script chk {\n  script \"killall -0 haproxy\"  # why\n  weight 2\n}\n\
                    vrrp_instance VI_1 {\n  virtual_ipaddress {\n    10.0.0.1/24 dev eth0\n  }\n}\n";
        let top = parse(text).unwrap();
        assert_eq!(kw(&top), ["vrrp_script", "vrrp_instance"]);
        let script = &top[0].children()[0];
        assert_eq!(script.keyword(), "script");
        assert_eq!(script.args()[0].text, "killall -0 haproxy");
        assert_eq!(script.line(), 3);
        let vip = &top[1].children()[0].children()[0];
        assert_eq!(vip.keyword(), "10.0.0.1/24");
        assert_eq!(vip.args().len(), 2);
        assert_eq!(vip.line(), 8);
    }

    #[test]
    fn braces_on_the_same_line_and_on_the_next() {
        let top = parse("a { b { c } d }\ne\n{\n f\n}\n").unwrap();
        assert_eq!(kw(&top), ["a", "e"]);
        assert_eq!(kw(top[0].children()), ["b", "d"]);
        assert_eq!(kw(top[0].children()[0].children()), ["c"]);
        assert_eq!(kw(top[1].children()), ["f"]);
    }

    #[test]
    fn template_placeholders_stay_one_word() {
        let top =
            parse("unicast_src_ip {{ lb1_ip_address }}\nunicast_peer {\n{{ lb2 }}\n}\n").unwrap();
        assert_eq!(top[0].args()[0].text, "{{ lb1_ip_address }}");
        assert!(top[0].block.is_none());
        assert_eq!(top[1].children()[0].keyword(), "{{ lb2 }}");
    }

    #[test]
    fn errors_name_their_line() {
        let e = parse("a {\n b \"open\n}\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated"));
        let e = parse("a {\n}\n}\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (3, "'}' closes no block"));
        let e = parse("x\n\n{\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("'x' is never closed"), "{}", e.message);
        let e = parse("{ a }\n").unwrap_err();
        assert_eq!(e.line, 1);
        let deep = "a {\n".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn a_config_joined_into_one_line_gets_a_hint() {
        let e = parse("global_defs { lvs_id LB1 #Unique name } vrrp_instance X { }").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("line breaks lost"), "{}", e.message);
    }

    #[test]
    fn odd_bytes_never_panic() {
        for text in ["\"", "{{", "}}", "{{ }", "é{ü}", "#{", "a {{ b", "\u{0}{"] {
            let _ = parse(text);
        }
    }
}
