//! Collecting located problems: byte spans -> `FILE:LINE:COL`, and the
//! "did you mean" suggestions for near-miss keys and values.

use std::ops::Range;

use super::ConfigError;

/// Errors and warnings found so far in one file.
pub struct Diag<'a> {
    file: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    text: &'a str,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl<'a> Diag<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Diag {
            file,
            line_starts,
            text,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The config file's name, as given (certificate paths are relative
    /// to its directory).
    pub fn file(&self) -> &str {
        self.file
    }

    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let e = self.locate(span.start, message.into());
        self.errors.push(e);
    }

    pub fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let e = self.locate(span.start, format!("warning: {}", message.into()));
        self.warnings.push(e);
    }

    /// "3:8", for messages that point at another place in the file.
    pub fn place(&self, span: &Range<usize>) -> String {
        let (line, col) = self.line_col(span.start);
        format!("{line}:{col}")
    }

    fn locate(&self, offset: usize, message: String) -> ConfigError {
        let (line, col) = self.line_col(offset);
        ConfigError {
            file: self.file.to_string(),
            line,
            col,
            message,
        }
    }

    /// 1-based line and column; the column counts characters, not bytes.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Errors first sorted by place, or the warnings when there are none.
    pub fn finish(mut self) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
        let by_place = |a: &ConfigError, b: &ConfigError| (a.line, a.col).cmp(&(b.line, b.col));
        self.errors.sort_by(by_place);
        self.warnings.sort_by(by_place);
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(self.errors)
        }
    }
}

/// "; did you mean `priority`?" when `got` is a small typo of one of `known`.
pub fn did_you_mean(got: &str, known: &[&str]) -> String {
    let folded = fold(got);
    let best = known
        .iter()
        .map(|k| (edit_distance(&folded, &fold(k)), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        // Within 2 edits, and not so short that everything is "close".
        Some((d, k)) if d <= 2 && d * 3 <= folded.chars().count().max(k.len()) => {
            format!("; did you mean `{k}`?")
        }
        _ => String::new(),
    }
}

/// Case and separators are the commonest slips ("round-robin", "LeastConn").
fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Edit distance counting a swap of neighbours as one edit ("optimal
/// string alignment"), since "intreface" is one slip, not two.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // dist[i][j]: distance between a[..i] and b[..j].
    let mut dist = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in dist.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in dist[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (dist[i - 1][j - 1] + cost)
                .min(dist[i - 1][j] + 1)
                .min(dist[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(dist[i - 2][j - 2] + 1);
            }
            dist[i][j] = d;
        }
    }
    dist[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_chars() {
        let d = Diag::new("f", "ab\n\u{e9}x = 1\n");
        assert_eq!(d.line_col(0), (1, 1));
        assert_eq!(d.line_col(1), (1, 2));
        assert_eq!(d.line_col(3), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(d.line_col(5), (2, 2));
    }

    #[test]
    fn suggestions() {
        let keys = ["priority", "interface", "vrid"];
        assert_eq!(did_you_mean("priorty", &keys), "; did you mean `priority`?");
        assert_eq!(
            did_you_mean("intreface", &keys),
            "; did you mean `interface`?"
        );
        assert_eq!(did_you_mean("colour", &keys), "");
        assert_eq!(
            did_you_mean("round-robin", &["roundrobin", "leastconn", "source"]),
            "; did you mean `roundrobin`?"
        );
        assert_eq!(did_you_mean("wbe", &["web"]), "; did you mean `web`?");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
