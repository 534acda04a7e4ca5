//! Diagnostics: positions in the Dockerfile and the errors and warnings the frontend reports.

use std::fmt;

/// A position in the Dockerfile: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl Location {
    /// A location at `line`:`column`.
    pub fn new(line: u32, column: u32) -> Self {
        Location { line, column }
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The build cannot proceed.
    Error,
    /// Suspicious but accepted.
    Warning,
}

/// One message about the Dockerfile, with where it applies when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where, when the message is about a place in the file.
    pub location: Option<Location>,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn error(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            location: Some(location),
        }
    }

    /// A warning at `location`.
    pub fn warning(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            location: Some(location),
        }
    }

    /// An error that is not about one place in the file (for example a missing `--target`).
    pub fn global(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            location: None,
        }
    }

    /// `file:line:column: error: message`, the way the CLI shows it.
    pub fn render(&self, file: &str) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.location {
            Some(l) => format!("{file}:{}:{}: {sev}: {}", l.line, l.column, self.message),
            None => format!("{file}: {sev}: {}", self.message),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(l) => write!(f, "{}:{}: {}", l.line, l.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// The closest candidate to `word` (case-insensitive edit distance), when it is close enough to
/// be a plausible typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&w, &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (w.chars().count().max(c.len()) / 3).max(1);
    if d <= limit {
        return Some(c);
    }
    // An abbreviation of exactly one candidate ("--plat" for "--platform").
    let mut prefixed = candidates
        .iter()
        .filter(|c| w.len() >= 3 && c.to_ascii_lowercase().starts_with(&w));
    match (prefixed.next(), prefixed.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// Edit distance with adjacent transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let list = ["RUN", "COPY", "ENTRYPOINT", "WORKDIR", "HEALTHCHECK"];
        assert_eq!(closest("RUNN", &list), Some("RUN"));
        assert_eq!(closest("cpoy", &list), Some("COPY"));
        assert_eq!(closest("ENTRYPIONT", &list), Some("ENTRYPOINT"));
        assert_eq!(closest("WORKDIT", &list), Some("WORKDIR"));
        assert_eq!(closest("XYZZY", &list), None);
        assert_eq!(closest("plat", &["platform", "from"]), Some("platform"));
        assert_eq!(closest("ke", &["keep-git-dir"]), None);
    }

    #[test]
    fn render_names_file_line_column() {
        let d = Diagnostic::error(Location::new(3, 7), "bad");
        assert_eq!(d.render("Dockerfile"), "Dockerfile:3:7: error: bad");
        assert_eq!(Diagnostic::global("x").render("F"), "F: error: x");
    }
}
