//! `.dockerignore` / `.containerignore` patterns with Docker's semantics: paths relative to the
//! context root, `*`, `?`, `[...]` within one component, `**` across components, `!` re-includes,
//! the last matching pattern wins, and a pattern matching a directory excludes what is below it.

/// A parsed ignore file.
#[derive(Clone, Debug, Default)]
pub struct IgnoreRules {
    rules: Vec<(bool, Vec<String>)>,
}

fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

impl IgnoreRules {
    /// Parse the text of an ignore file.
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (neg, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let comps = clean(pat);
            if comps.is_empty() {
                continue;
            }
            rules.push((neg, comps));
        }
        Self { rules }
    }

    /// Whether any rules exist.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (relative to the context root) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let comps = clean(path);
        if comps.is_empty() {
            return false;
        }
        let mut excluded = false;
        for (neg, pat) in &self.rules {
            // A pattern matches the path or any of its parents.
            let hit = (1..=comps.len()).any(|n| match_components(pat, &comps[..n]));
            if hit {
                excluded = !neg;
            }
        }
        excluded
    }

    /// Whether a directory might contain re-included paths (so it must be walked even when excluded).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(neg, _)| *neg)
    }

    /// Whether a `!` rule may re-include something below the directory `dir` (so an excluded
    /// directory must still be walked).
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let comps = clean(dir);
        self.rules
            .iter()
            .any(|(neg, pat)| *neg && prefix_match(pat, &comps))
    }
}

/// Whether some path starting with `dir` (and longer than it) can match `pat`.
fn prefix_match(pat: &[String], dir: &[String]) -> bool {
    match (pat.split_first(), dir.split_first()) {
        (Some((p, _)), _) if p == "**" => true,
        (Some(_), None) => true,
        (None, _) => false,
        (Some((p, prest)), Some((d, drest))) => {
            glob(p.as_bytes(), d.as_bytes()) && prefix_match(prest, drest)
        }
    }
}

/// Match path components against pattern components (`**` spans any number of components).
pub fn match_components(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|i| match_components(rest, &path[i..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((c, prest)) => glob(p.as_bytes(), c.as_bytes()) && match_components(rest, prest),
            None => false,
        },
    }
}

/// Shell-style match of one component: `*`, `?`, `[a-z]`, `[!x]`, `\` escapes.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(c) = s.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'!') | Some(b'^'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (p[i] != b']' || first) {
                first = false;
                let lo = p[i];
                if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                    if lo <= *c && *c <= p[i + 2] {
                        matched = true;
                    }
                    i += 3;
                } else {
                    if lo == *c {
                        matched = true;
                    }
                    i += 1;
                }
            }
            if i >= p.len() {
                return false;
            }
            matched != negate && glob(&p[i + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && glob(&p[2..], &s[1..]),
        Some(c) => !s.is_empty() && s[0] == *c && glob(&p[1..], &s[1..]),
    }
}

/// Whether a path has glob characters.
pub fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        let r = IgnoreRules::parse(
            "# comment\n*.tmp\nlogs\n!logs/keep.log\nbuild/**/*.o\nsecret.env\n",
        );
        assert!(r.excluded("notes.tmp"));
        assert!(!r.excluded("dir/notes.tmp"), "* does not cross directories");
        assert!(r.excluded("logs/debug.log"));
        assert!(!r.excluded("logs/keep.log"));
        assert!(r.excluded("build/artifact.o"));
        assert!(r.excluded("build/x/y/artifact.o"));
        assert!(r.excluded("secret.env"));
        assert!(!r.excluded("app/bin/run.sh"));
    }

    #[test]
    fn reinclusion_below_excluded_dirs() {
        let r = IgnoreRules::parse("docs\n!docs/public\nvendor/*\n!vendor/keep\n!**/KEEP\n");
        assert!(r.excluded("docs") && r.may_reinclude_below("docs"));
        assert!(r.excluded("vendor/drop"));
        assert!(r.may_reinclude_below("vendor"));
        let no_globstar = IgnoreRules::parse("vendor/*\n!vendor/keep\n");
        assert!(
            !no_globstar.may_reinclude_below("vendor/drop"),
            "vendor/keep is not below vendor/drop"
        );
        assert!(
            !no_globstar.may_reinclude_below("vendor/keep"),
            "only vendor/keep itself is re-included"
        );
        assert!(!no_globstar.excluded("vendor/keep/k.txt"));
        assert!(
            r.may_reinclude_below("any/where"),
            "**/KEEP can be below anything"
        );
    }

    #[test]
    fn globs() {
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[!a-c]x", b"bx"));
        assert!(glob(b"*.html", b"index.html"));
    }
}
