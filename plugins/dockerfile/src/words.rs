//! Word processing for Dockerfile arguments: quotes, escapes and `$var` substitution.
//!
//! Follows the Dockerfile reference: `$v`, `${v}`, `${v:-d}`, `${v-d}`, `${v:+a}`, `${v+a}`,
//! `${v:?msg}`, `${v?msg}`, `${v#pat}`, `${v##pat}`, `${v%pat}`, `${v%%pat}`; single quotes are
//! literal, double quotes allow substitution, the escape character (`\` or `` ` ``) makes the next
//! character literal.

use std::fmt;

/// A substitution that cannot be performed (unterminated quote, bad `${...}`, `${v?}` on unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpandError(pub String);

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExpandError {}

/// Word processor for one escape character.
#[derive(Clone, Copy, Debug)]
pub struct Lexer {
    escape: char,
}

#[derive(Clone, Copy)]
struct Mode {
    /// Keep quote characters in the output.
    raw_quotes: bool,
    /// Keep escape characters in the output.
    raw_escapes: bool,
    /// Perform `$` substitution (otherwise `$` is an ordinary character).
    expand: bool,
    /// Heredoc body: quotes are ordinary, the escape character only escapes `$` and itself.
    heredoc: bool,
}

impl Lexer {
    /// A lexer using `escape` (`\` or `` ` ``) as the escape character.
    pub fn new(escape: char) -> Self {
        Lexer { escape }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Process `s` as one word: quotes removed, escapes applied, variables substituted from `env`.
    pub fn word<F: Fn(&str) -> Option<String>>(
        &self,
        s: &str,
        env: &F,
    ) -> Result<String, ExpandError> {
        let mode = Mode {
            raw_quotes: false,
            raw_escapes: false,
            expand: true,
            heredoc: false,
        };
        Ok(self.run(s, env, mode)?.0)
    }

    /// Process `s` and split it into words on unquoted whitespace (including whitespace produced
    /// by unquoted substitutions).
    pub fn words<F: Fn(&str) -> Option<String>>(
        &self,
        s: &str,
        env: &F,
    ) -> Result<Vec<String>, ExpandError> {
        let mode = Mode {
            raw_quotes: false,
            raw_escapes: false,
            expand: true,
            heredoc: false,
        };
        Ok(self.run(s, env, mode)?.1)
    }

    /// Substitute variables in a heredoc body: quotes stay, `\$` gives `$`, other text is kept.
    pub fn heredoc_body<F: Fn(&str) -> Option<String>>(
        &self,
        s: &str,
        env: &F,
    ) -> Result<String, ExpandError> {
        let mode = Mode {
            raw_quotes: true,
            raw_escapes: false,
            expand: true,
            heredoc: true,
        };
        Ok(self.run(s, env, mode)?.0)
    }

    /// Split `s` into words as a shell would, keeping quotes and escapes and not substituting.
    /// An unterminated quote extends to the end of the input.
    pub fn raw_words(&self, s: &str) -> Vec<String> {
        let mode = Mode {
            raw_quotes: true,
            raw_escapes: true,
            expand: false,
            heredoc: false,
        };
        let none = |_: &str| None;
        let mut sc = Scanner {
            chars: s.chars().collect(),
            pos: 0,
            escape: self.escape,
            env: &none,
            mode,
            lenient: true,
        };
        sc.process(None).map(|(_, w, _)| w).unwrap_or_default()
    }

    /// Unquote a heredoc delimiter word: its name, and whether it was quoted or escaped (which
    /// disables substitution in the body).
    pub fn unquote_delimiter(&self, s: &str) -> Option<(String, bool)> {
        let none = |_: &str| None;
        let mode = Mode {
            raw_quotes: false,
            raw_escapes: false,
            expand: false,
            heredoc: false,
        };
        let mut sc = Scanner {
            chars: s.chars().collect(),
            pos: 0,
            escape: self.escape,
            env: &none,
            mode,
            lenient: false,
        };
        let (word, words, _) = sc.process(None).ok()?;
        if words.len() != 1 {
            return None;
        }
        let quoted = s.contains(['\'', '"']) || s.contains(self.escape);
        Some((word, quoted))
    }

    fn run<F: Fn(&str) -> Option<String>>(
        &self,
        s: &str,
        env: &F,
        mode: Mode,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut sc = Scanner {
            chars: s.chars().collect(),
            pos: 0,
            escape: self.escape,
            env,
            mode,
            lenient: false,
        };
        let (word, words, _) = sc.process(None)?;
        Ok((word, words))
    }
}

/// Accumulates characters into a single string and into whitespace-separated words.
#[derive(Default)]
struct Acc {
    all: String,
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Acc {
    /// A character that never splits a word (quoted or escaped).
    fn raw(&mut self, c: char) {
        self.all.push(c);
        self.word.push(c);
        self.in_word = true;
    }

    /// An unquoted character: whitespace ends the current word.
    fn plain(&mut self, c: char) {
        self.all.push(c);
        if c.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.word.push(c);
            self.in_word = true;
        }
    }

    fn raw_str(&mut self, s: &str) {
        for c in s.chars() {
            self.raw(c);
        }
        // An empty quoted string is still a word.
        self.in_word = true;
    }

    fn plain_str(&mut self, s: &str) {
        for c in s.chars() {
            self.plain(c);
        }
    }

    fn finish(mut self) -> (String, Vec<String>) {
        if self.in_word {
            self.words.push(self.word);
        }
        (self.all, self.words)
    }
}

struct Scanner<'e, F> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'e F,
    mode: Mode,
    lenient: bool,
}

impl<F: Fn(&str) -> Option<String>> Scanner<'_, F> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Process until `stop` (consumed) or the end. Returns the text, the words, and whether the
    /// stop character was found.
    fn process(&mut self, stop: Option<char>) -> Result<(String, Vec<String>, bool), ExpandError> {
        let mut acc = Acc::default();
        let mut found = false;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                found = true;
                break;
            }
            if self.mode.heredoc {
                self.heredoc_char(c, &mut acc)?;
                continue;
            }
            match c {
                '\'' => {
                    let s = self.single_quote()?;
                    acc.raw_str(&s);
                }
                '"' => {
                    let s = self.double_quote()?;
                    acc.raw_str(&s);
                }
                '$' if self.mode.expand => {
                    let v = self.dollar()?;
                    acc.plain_str(&v);
                }
                c if c == self.escape => {
                    self.pos += 1;
                    if self.mode.raw_escapes {
                        acc.raw(c);
                    }
                    match self.next() {
                        Some(n) => acc.raw(n),
                        None => break,
                    }
                }
                c => {
                    self.pos += 1;
                    acc.plain(c);
                }
            }
        }
        let (all, words) = acc.finish();
        Ok((all, words, found))
    }

    fn heredoc_char(&mut self, c: char, acc: &mut Acc) -> Result<(), ExpandError> {
        if c == '$' && self.mode.expand {
            let v = self.dollar()?;
            for ch in v.chars() {
                acc.raw(ch);
            }
        } else if c == self.escape
            && matches!(self.peek_at(1), Some(n) if n == '$' || n == self.escape)
        {
            self.pos += 1;
            let n = self.next().unwrap_or(c);
            acc.raw(n);
        } else {
            self.pos += 1;
            acc.raw(c);
        }
        Ok(())
    }

    fn single_quote(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        let mut out = String::new();
        if self.mode.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None if self.lenient => return Ok(out),
                None => {
                    return Err(ExpandError(
                        "unexpected end of text while looking for matching single quote (')".into(),
                    ));
                }
                Some('\'') => break,
                Some(c) => out.push(c),
            }
        }
        if self.mode.raw_quotes {
            out.push('\'');
        }
        Ok(out)
    }

    fn double_quote(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        let mut out = String::new();
        if self.mode.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None if self.lenient => return Ok(out),
                None => {
                    return Err(ExpandError(
                        "unexpected end of text while looking for matching double quote (\")"
                            .into(),
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    break;
                }
                Some('$') if self.mode.expand => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => {
                    self.pos += 1;
                    match self.peek() {
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            if self.mode.raw_escapes {
                                out.push(c);
                            }
                            out.push(n);
                            self.pos += 1;
                        }
                        _ => out.push(c),
                    }
                }
                Some(c) => {
                    self.pos += 1;
                    out.push(c);
                }
            }
        }
        if self.mode.raw_quotes {
            out.push('"');
        }
        Ok(out)
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            while let Some(c) = self.peek().filter(|c| c.is_ascii_digit()) {
                name.push(c);
                self.pos += 1;
            }
            return name;
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Substitute at a `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        match self.peek() {
            Some('{') => {}
            Some(c) if c.is_alphanumeric() || c == '_' => {
                let name = self.name();
                return Ok(self.lookup(&name).unwrap_or_default());
            }
            _ => return Ok("$".into()),
        }
        self.pos += 1;
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError(
                "bad substitution: ${...} needs a variable name".into(),
            ));
        }
        let value = self.lookup(&name);
        let missing = || ExpandError(format!("missing '}}' after ${{{name}"));
        match self.next() {
            None => Err(missing()),
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => {
                let modifier = self.next().ok_or_else(missing)?;
                if !matches!(modifier, '-' | '+' | '?') {
                    return Err(ExpandError(format!(
                        "unsupported modifier ({modifier}) in substitution ${{{name}:{modifier}...}}"
                    )));
                }
                let word = self
                    .word_until_brace()
                    .map_err(|e| if e.0.is_empty() { missing() } else { e })?;
                let v = value.unwrap_or_default();
                match modifier {
                    '-' => Ok(if v.is_empty() { word } else { v }),
                    '+' => Ok(if v.is_empty() { String::new() } else { word }),
                    _ => {
                        if v.is_empty() {
                            let msg = if word.is_empty() {
                                "must be set and non-empty".to_string()
                            } else {
                                word
                            };
                            Err(ExpandError(format!("{name}: {msg}")))
                        } else {
                            Ok(v)
                        }
                    }
                }
            }
            Some(m @ ('-' | '+' | '?')) => {
                let word = self
                    .word_until_brace()
                    .map_err(|e| if e.0.is_empty() { missing() } else { e })?;
                match (m, value) {
                    ('-', None) => Ok(word),
                    ('-', Some(v)) => Ok(v),
                    ('+', None) => Ok(String::new()),
                    ('+', Some(_)) => Ok(word),
                    (_, None) => {
                        let msg = if word.is_empty() {
                            "must be set".to_string()
                        } else {
                            word
                        };
                        Err(ExpandError(format!("{name}: {msg}")))
                    }
                    (_, Some(v)) => Ok(v),
                }
            }
            Some(m @ ('#' | '%')) => {
                let longest = self.peek() == Some(m);
                if longest {
                    self.pos += 1;
                }
                let pattern = self
                    .word_until_brace()
                    .map_err(|e| if e.0.is_empty() { missing() } else { e })?;
                let v = value.unwrap_or_default();
                Ok(trim_pattern(&v, &pattern, m == '#', longest))
            }
            Some(c) => Err(ExpandError(format!(
                "unsupported modifier ({c}) in substitution ${{{name}{c}...}}"
            ))),
        }
    }

    /// The word of `${v:-word}` up to the closing brace. An empty error message means the brace
    /// is missing.
    fn word_until_brace(&mut self) -> Result<String, ExpandError> {
        let saved = self.mode;
        // Inside `${...}` quotes are processed even in heredoc bodies.
        self.mode.heredoc = false;
        self.mode.raw_quotes = false;
        let r = self.process(Some('}'));
        self.mode = saved;
        let (word, _, found) = r?;
        if !found {
            return Err(ExpandError(String::new()));
        }
        Ok(word)
    }
}

/// `${v#p}` (prefix) / `${v%p}` (suffix) removal with shell glob patterns.
fn trim_pattern(value: &str, pattern: &str, prefix: bool, longest: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let n = v.len();
    if prefix {
        let range: Box<dyn Iterator<Item = usize>> = if longest {
            Box::new((0..=n).rev())
        } else {
            Box::new(0..=n)
        };
        for i in range {
            if glob_match(&p, &v[..i]) {
                return v[i..].iter().collect();
            }
        }
    } else {
        let range: Box<dyn Iterator<Item = usize>> = if longest {
            Box::new(0..=n)
        } else {
            Box::new((0..=n).rev())
        };
        for i in range {
            if glob_match(&p, &v[i..]) {
                return v[..i].iter().collect();
            }
        }
    }
    value.to_string()
}

/// Shell glob match of a whole string: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`, `\x`.
pub fn glob_match(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| glob_match(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && glob_match(&p[1..], &t[1..]),
        Some('[') => {
            let Some(c) = t.first() else { return false };
            match class_match(&p[1..], *c) {
                Some((ok, used)) => ok && glob_match(&p[1 + used..], &t[1..]),
                None => *c == '[' && glob_match(&p[1..], &t[1..]),
            }
        }
        Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && glob_match(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && glob_match(&p[1..], &t[1..]),
    }
}

/// Match `c` against a bracket expression starting after `[`; returns the result and the number of
/// pattern characters used (including the closing `]`), or None when there is no closing `]`.
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        let ch = p[i];
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if ch <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("hello".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("a  b".into()),
            "PATH" => Some("/usr/bin:/bin".into()),
            "FILE" => Some("archive.tar.gz".into()),
            "DIR" => Some("/opt/app/src".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        Lexer::new('\\').word(s, &env).unwrap()
    }

    fn err(s: &str) -> String {
        Lexer::new('\\').word(s, &env).unwrap_err().0
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(w("$A"), "hello");
        assert_eq!(w("${A}"), "hello");
        assert_eq!(w("x${A}y"), "xhelloy");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("$UNSET-x"), "-x");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$ a"), "$ a");
        assert_eq!(w("$/x"), "$/x");
        assert_eq!(w("$1x"), "x");
        assert_eq!(w("${PATH}:/sbin"), "/usr/bin:/bin:/sbin");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${UNSET:-def}"), "def");
        assert_eq!(w("${EMPTY:-def}"), "def");
        assert_eq!(w("${EMPTY-def}"), "");
        assert_eq!(w("${UNSET-def}"), "def");
        assert_eq!(w("${A:-def}"), "hello");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${EMPTY:+alt}"), "");
        assert_eq!(w("${EMPTY+alt}"), "alt");
        assert_eq!(w("${UNSET+alt}"), "");
        assert_eq!(w("${UNSET:-${A}}"), "hello");
        assert_eq!(w("${UNSET:-\"a b\"}"), "a b");
        assert_eq!(w("${UNSET:-}x"), "x");
        assert_eq!(w("${A?}"), "hello");
        assert_eq!(err("${UNSET?}"), "UNSET: must be set");
        assert_eq!(err("${EMPTY:?need it}"), "EMPTY: need it");
    }

    #[test]
    fn patterns() {
        assert_eq!(w("${FILE%.*}"), "archive.tar");
        assert_eq!(w("${FILE%%.*}"), "archive");
        assert_eq!(w("${FILE#*.}"), "tar.gz");
        assert_eq!(w("${FILE##*.}"), "gz");
        assert_eq!(w("${DIR##*/}"), "src");
        assert_eq!(w("${DIR%/*}"), "/opt/app");
        assert_eq!(w("${FILE#nomatch}"), "archive.tar.gz");
        assert_eq!(w("${FILE%.[gt]z}"), "archive.tar");
        assert_eq!(w("${FILE#?}"), "rchive.tar.gz");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A\""), "hello");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("it's\\ ok'"), "its\\ ok");
        assert_eq!(w("\\\\"), "\\");
        assert_eq!(w("trailing\\"), "trailing");
        assert!(err("'open").contains("single quote"));
        assert!(err("\"open").contains("double quote"));
        assert!(err("${A").contains("missing '}'"));
        assert!(err("${A:-x").contains("missing '}'"));
        assert!(err("${}").contains("bad substitution"));
        assert!(err("${A/x/y}").contains("unsupported modifier"));
        assert!(err("${A:=x}").contains("unsupported modifier"));
    }

    #[test]
    fn backtick_escape() {
        let l = Lexer::new('`');
        assert_eq!(l.word("C:\\path\\$A", &env).unwrap(), "C:\\path\\hello");
        assert_eq!(l.word("`$A", &env).unwrap(), "$A");
        assert_eq!(l.word("\"x`\"y\"", &env).unwrap(), "x\"y");
    }

    #[test]
    fn word_splitting() {
        let l = Lexer::new('\\');
        assert_eq!(l.words("a b  c", &env).unwrap(), ["a", "b", "c"]);
        assert_eq!(l.words("$SP x", &env).unwrap(), ["a", "b", "x"]);
        assert_eq!(l.words("\"$SP\" x", &env).unwrap(), ["a  b", "x"]);
        assert_eq!(l.words("'' x", &env).unwrap(), ["", "x"]);
        assert_eq!(l.words("a\\ b", &env).unwrap(), ["a b"]);
        assert_eq!(l.words("$UNSET", &env).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn raw_words_keep_quotes() {
        let l = Lexer::new('\\');
        assert_eq!(
            l.raw_words("cat <<\"EOF\" > x"),
            ["cat", "<<\"EOF\"", ">", "x"]
        );
        assert_eq!(l.raw_words("echo 'a b' $X"), ["echo", "'a b'", "$X"]);
        assert_eq!(l.raw_words("a\\ b 'open"), ["a\\ b", "'open"]);
    }

    #[test]
    fn heredoc_bodies() {
        let l = Lexer::new('\\');
        assert_eq!(
            l.heredoc_body("say \"$A\" '${A}'\n", &env).unwrap(),
            "say \"hello\" 'hello'\n"
        );
        assert_eq!(
            l.heredoc_body("cost \\$5 \\n\n", &env).unwrap(),
            "cost $5 \\n\n"
        );
        assert_eq!(l.heredoc_body("${UNSET:-\"d\"}", &env).unwrap(), "d");
    }

    #[test]
    fn delimiters() {
        let l = Lexer::new('\\');
        assert_eq!(l.unquote_delimiter("EOF"), Some(("EOF".into(), false)));
        assert_eq!(l.unquote_delimiter("\"EOF\""), Some(("EOF".into(), true)));
        assert_eq!(l.unquote_delimiter("'E O F'"), Some(("E O F".into(), true)));
        assert_eq!(l.unquote_delimiter("\\EOF"), Some(("EOF".into(), true)));
        assert_eq!(l.unquote_delimiter(""), None);
    }

    #[test]
    fn globs() {
        let g = |p: &str, t: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &t.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("*.txt", "a.txt"));
        assert!(!g("*.txt", "a.txt.gz"));
        assert!(g("[!a]x", "bx"));
        assert!(!g("[!a]x", "ax"));
        assert!(g("[]]", "]"));
        assert!(g("\\*", "*"));
        assert!(!g("\\*", "a"));
    }
}
