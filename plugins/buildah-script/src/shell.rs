//! The part of the POSIX shell language a build script may use: commands one per line (or
//! separated by `;` or `&&`), backslash-newline continuations, `#` comments, single and double
//! quotes, backslash escapes, parameter expansion (`$v`, `${v}`, `${v:-w}`, `${v-w}`, `${v:+w}`,
//! `${v+w}`) and `$(…)` command substitution. Anything else (pipes, redirections, control flow,
//! backquotes, arithmetic) is refused with the line and column where it starts.
//!
//! Lexing gives [`Command`]s of unexpanded [`Word`]s; [`expand`] turns a command's words into
//! fields as the shell would (unquoted expansions are split on whitespace), asking a callback for
//! the output of each command substitution.

use std::collections::HashMap;

/// A 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

/// A problem at a place in the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Where.
    pub pos: Pos,
    /// What, in one sentence.
    pub message: String,
}

impl Error {
    /// An error at `pos`.
    pub fn at(pos: Pos, message: impl Into<String>) -> Self {
        Error {
            pos,
            message: message.into(),
        }
    }
}

/// How `${name<op>word}` treats an unset or empty `name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamOp {
    /// `:-`: `word` when unset or empty.
    DefaultIfEmpty,
    /// `-`: `word` when unset.
    DefaultIfUnset,
    /// `:+`: `word` when set and not empty, else nothing.
    AltIfNonEmpty,
    /// `+`: `word` when set, else nothing.
    AltIfSet,
}

/// A piece of a word.
#[derive(Clone, Debug)]
pub enum Part {
    /// Literal text, quotes removed. `quoted` text is never split into fields.
    Lit { text: String, quoted: bool },
    /// A parameter expansion.
    Param {
        name: String,
        op: Option<(ParamOp, Vec<Part>)>,
        quoted: bool,
        pos: Pos,
    },
    /// A command substitution `$(…)`.
    Subst {
        words: Vec<Word>,
        quoted: bool,
        pos: Pos,
    },
}

/// A word as written: its parts and where it starts.
#[derive(Clone, Debug)]
pub struct Word {
    /// The pieces, in order.
    pub parts: Vec<Part>,
    /// Where the word starts.
    pub pos: Pos,
}

impl Word {
    /// The word's literal text when it holds no expansion.
    pub fn literal(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit { text, .. } => s.push_str(text),
                _ => return None,
            }
        }
        Some(s)
    }

    /// `NAME` when the word starts with an unquoted `NAME=` (an assignment).
    pub fn assignment_name(&self) -> Option<String> {
        let Some(Part::Lit {
            text,
            quoted: false,
        }) = self.parts.first()
        else {
            return None;
        };
        let (name, _) = text.split_once('=')?;
        is_name(name).then(|| name.to_string())
    }
}

/// A simple command: its words and the source text of its line(s).
#[derive(Clone, Debug)]
pub struct Command {
    /// The words, unexpanded.
    pub words: Vec<Word>,
    /// Where the command starts.
    pub pos: Pos,
    /// The command's source text, continuations joined, trimmed.
    pub text: String,
}

/// A valid shell variable name.
pub fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && cs.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: u32,
    column: u32,
}

impl Lexer {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.i + 1).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Skip blanks and backslash-newline continuations.
    fn skip_blanks(&mut self) {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(' ' | '\t' | '\r'), _) => {
                    self.bump();
                }
                (Some('\\'), Some('\n')) => {
                    self.bump();
                    self.bump();
                }
                _ => break,
            }
        }
    }

    /// Commands until the end of input, or until an unquoted `)` when `nested`.
    fn commands(&mut self, nested: bool) -> Result<Vec<Command>, Error> {
        let mut out = Vec::new();
        loop {
            self.skip_blanks();
            let start = self.i;
            let pos = self.pos();
            let mut words = Vec::new();
            loop {
                self.skip_blanks();
                let p = self.pos();
                match self.peek() {
                    None => break,
                    Some('\n') => {
                        if nested {
                            self.bump();
                            continue;
                        }
                        break;
                    }
                    Some('#') => {
                        while !matches!(self.peek(), None | Some('\n')) {
                            self.bump();
                        }
                    }
                    Some(';') => break,
                    Some('&') if self.peek2() == Some('&') => break,
                    Some(')') if nested => break,
                    Some(c @ ('|' | '&' | '<' | '>' | '(' | ')' | '`')) => {
                        return Err(Error::at(p, unsupported(c)));
                    }
                    Some(_) => words.push(self.word(p)?),
                }
            }
            let text: String = self.chars[start..self.i].iter().collect();
            let text = text.replace("\\\n", " ");
            if !words.is_empty() {
                out.push(Command {
                    words,
                    pos,
                    text: text.trim().to_string(),
                });
            }
            match self.peek() {
                None => {
                    if nested {
                        return Err(Error::at(self.pos(), "`$(` is not closed by `)`"));
                    }
                    return Ok(out);
                }
                Some(')') => return Ok(out),
                Some('&') => {
                    self.bump();
                    self.bump();
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }

    /// One word, starting at the current character.
    fn word(&mut self, pos: Pos) -> Result<Word, Error> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, parts: &mut Vec<Part>| {
            if !lit.is_empty() {
                parts.push(Part::Lit {
                    text: std::mem::take(lit),
                    quoted: false,
                });
            }
        };
        loop {
            let p = self.pos();
            match self.peek() {
                None | Some(' ' | '\t' | '\r' | '\n' | ';') => break,
                Some('&' | '|' | '<' | '>' | '(' | ')') => break,
                Some('`') => return Err(Error::at(p, unsupported('`'))),
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(c) => lit.push(c),
                        None => lit.push('\\'),
                    }
                }
                Some('\'') => {
                    flush(&mut lit, &mut parts);
                    self.bump();
                    let mut text = String::new();
                    loop {
                        match self.bump() {
                            Some('\'') => break,
                            Some(c) => text.push(c),
                            None => return Err(Error::at(p, "a single quote is not closed")),
                        }
                    }
                    parts.push(Part::Lit { text, quoted: true });
                }
                Some('"') => {
                    flush(&mut lit, &mut parts);
                    self.bump();
                    self.double_quoted(p, &mut parts)?;
                }
                Some('$') => match self.dollar(p, false)? {
                    Some(part) => {
                        flush(&mut lit, &mut parts);
                        parts.push(part);
                    }
                    None => lit.push('$'),
                },
                Some(c) => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush(&mut lit, &mut parts);
        Ok(Word { parts, pos })
    }

    /// The inside of `"…"` (the opening quote consumed), as parts.
    fn double_quoted(&mut self, open: Pos, parts: &mut Vec<Part>) -> Result<(), Error> {
        let mut text = String::new();
        // An empty "" still makes a (quoted, empty) field.
        let mut pushed_any = false;
        loop {
            let p = self.pos();
            match self.peek() {
                None => return Err(Error::at(open, "a double quote is not closed")),
                Some('"') => {
                    self.bump();
                    break;
                }
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(c @ ('$' | '`' | '"' | '\\')) => text.push(c),
                        Some(c) => {
                            text.push('\\');
                            text.push(c);
                        }
                        None => return Err(Error::at(open, "a double quote is not closed")),
                    }
                }
                Some('`') => return Err(Error::at(p, unsupported('`'))),
                Some('$') => match self.dollar(p, true)? {
                    Some(part) => {
                        if !text.is_empty() {
                            parts.push(Part::Lit {
                                text: std::mem::take(&mut text),
                                quoted: true,
                            });
                        }
                        parts.push(part);
                        pushed_any = true;
                    }
                    None => text.push('$'),
                },
                Some(c) => {
                    self.bump();
                    text.push(c);
                }
            }
        }
        if !text.is_empty() || !pushed_any {
            parts.push(Part::Lit { text, quoted: true });
        }
        Ok(())
    }

    /// An expansion at `$` (not yet consumed). None = a literal `$`.
    fn dollar(&mut self, p: Pos, quoted: bool) -> Result<Option<Part>, Error> {
        match self.peek2() {
            Some('(') => {
                self.bump();
                self.bump();
                if self.peek() == Some('(') {
                    return Err(Error::at(
                        p,
                        "arithmetic expansion `$((…))` is not supported in a build script",
                    ));
                }
                let mut cmds = self.commands(true)?;
                if self.peek() != Some(')') {
                    return Err(Error::at(p, "`$(` is not closed by `)`"));
                }
                self.bump();
                if cmds.len() != 1 {
                    return Err(Error::at(p, "`$(…)` must hold exactly one command"));
                }
                let words = cmds.remove(0).words;
                Ok(Some(Part::Subst {
                    words,
                    quoted,
                    pos: p,
                }))
            }
            Some('{') => {
                self.bump();
                self.bump();
                let mut name = String::new();
                while let Some(c) = self.peek() {
                    if c == '_' || c.is_ascii_alphanumeric() {
                        name.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                if !is_name(&name) {
                    return Err(Error::at(
                        p,
                        "`${` must name a variable (positional and special parameters are not supported)",
                    ));
                }
                let op = match (self.peek(), self.peek2()) {
                    (Some('}'), _) => {
                        self.bump();
                        return Ok(Some(Part::Param {
                            name,
                            op: None,
                            quoted,
                            pos: p,
                        }));
                    }
                    (Some(':'), Some('-')) => Some(ParamOp::DefaultIfEmpty),
                    (Some(':'), Some('+')) => Some(ParamOp::AltIfNonEmpty),
                    (Some('-'), _) => Some(ParamOp::DefaultIfUnset),
                    (Some('+'), _) => Some(ParamOp::AltIfSet),
                    _ => None,
                };
                let Some(op) = op else {
                    return Err(Error::at(
                        p,
                        format!("`${{{name}…}}`: only `:-`, `-`, `:+` and `+` are supported"),
                    ));
                };
                self.bump();
                if matches!(op, ParamOp::DefaultIfEmpty | ParamOp::AltIfNonEmpty) {
                    self.bump();
                }
                let word = self.param_word(p, quoted)?;
                Ok(Some(Part::Param {
                    name,
                    op: Some((op, word)),
                    quoted,
                    pos: p,
                }))
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                self.bump();
                let mut name = String::new();
                while let Some(c) = self.peek() {
                    if c == '_' || c.is_ascii_alphanumeric() {
                        name.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                Ok(Some(Part::Param {
                    name,
                    op: None,
                    quoted,
                    pos: p,
                }))
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => Err(Error::at(
                p,
                format!(
                    "`${c}`: positional and special parameters are not supported in a build script"
                ),
            )),
            _ => {
                self.bump();
                Ok(None)
            }
        }
    }

    /// The word of `${name<op>word}` up to the closing `}` (consumed).
    fn param_word(&mut self, open: Pos, quoted: bool) -> Result<Vec<Part>, Error> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        loop {
            let p = self.pos();
            match self.peek() {
                None => return Err(Error::at(open, "`${` is not closed by `}`")),
                Some('}') => {
                    self.bump();
                    break;
                }
                Some('\\') => {
                    self.bump();
                    if let Some(c) = self.bump() {
                        if c != '\n' {
                            lit.push(c);
                        }
                    }
                }
                Some('\'') if !quoted => {
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('\'') => break,
                            Some(c) => lit.push(c),
                            None => return Err(Error::at(p, "a single quote is not closed")),
                        }
                    }
                }
                Some('"') => {
                    self.bump();
                    if !lit.is_empty() {
                        parts.push(Part::Lit {
                            text: std::mem::take(&mut lit),
                            quoted,
                        });
                    }
                    self.double_quoted(p, &mut parts)?;
                }
                Some('$') => match self.dollar(p, quoted)? {
                    Some(part) => {
                        if !lit.is_empty() {
                            parts.push(Part::Lit {
                                text: std::mem::take(&mut lit),
                                quoted,
                            });
                        }
                        parts.push(part);
                    }
                    None => lit.push('$'),
                },
                Some(c) => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit { text: lit, quoted });
        }
        Ok(parts)
    }
}

fn unsupported(c: char) -> String {
    let what = match c {
        '|' => "pipes and `||`",
        '&' => "background jobs",
        '<' | '>' => "redirections",
        '(' | ')' => "subshells",
        '`' => "backquote substitution (use `$(…)`)",
        _ => "this shell syntax",
    };
    format!("{what} are not supported in a build script: one buildah verb per command")
}

/// Split a script into commands.
pub fn parse(source: &str) -> Result<Vec<Command>, Error> {
    let mut lx = Lexer {
        chars: source.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
    };
    lx.commands(false)
}

/// One expanded field and where its word starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The text.
    pub text: String,
    /// Where the word it came from starts.
    pub pos: Pos,
}

/// The variables in scope and the handler of command substitutions.
pub struct Env<'a> {
    /// Shell variables.
    pub vars: HashMap<String, String>,
    /// Runs the (expanded) words of a `$(…)` and returns its output.
    pub subst: &'a mut dyn FnMut(&[Field], Pos) -> Result<String, Error>,
}

impl Env<'_> {
    fn param(
        &mut self,
        name: &str,
        op: &Option<(ParamOp, Vec<Part>)>,
        pos: Pos,
    ) -> Result<String, Error> {
        let value = self.vars.get(name).cloned();
        let Some((op, word)) = op else {
            // As `set -u`: a misspelt variable is an error, not an empty word.
            return value.ok_or_else(|| {
                Error::at(pos, format!("variable {name} is not set (set it in the script or with --build-arg {name}=…)"))
            });
        };
        let use_word = match op {
            ParamOp::DefaultIfEmpty => value.as_deref().is_none_or(str::is_empty),
            ParamOp::DefaultIfUnset => value.is_none(),
            ParamOp::AltIfNonEmpty => value.as_deref().is_some_and(|v| !v.is_empty()),
            ParamOp::AltIfSet => value.is_some(),
        };
        match op {
            ParamOp::DefaultIfEmpty | ParamOp::DefaultIfUnset => {
                if use_word {
                    self.joined(word)
                } else {
                    Ok(value.unwrap_or_default())
                }
            }
            ParamOp::AltIfNonEmpty | ParamOp::AltIfSet => {
                if use_word {
                    self.joined(word)
                } else {
                    Ok(String::new())
                }
            }
        }
    }

    /// Parts expanded without field splitting.
    fn joined(&mut self, parts: &[Part]) -> Result<String, Error> {
        let mut s = String::new();
        for p in parts {
            s.push_str(&self.part_value(p)?);
        }
        Ok(s)
    }

    fn part_value(&mut self, p: &Part) -> Result<String, Error> {
        match p {
            Part::Lit { text, .. } => Ok(text.clone()),
            Part::Param { name, op, pos, .. } => self.param(name, op, *pos),
            Part::Subst { words, pos, .. } => {
                let mut fields = Vec::new();
                for w in words {
                    fields.extend(self.word(w)?);
                }
                let out = (self.subst)(&fields, *pos)?;
                Ok(out.trim_end_matches('\n').to_string())
            }
        }
    }

    /// A word's fields: unquoted expansions split on whitespace; a word that expands to
    /// nothing unquoted makes no field.
    pub fn word(&mut self, w: &Word) -> Result<Vec<Field>, Error> {
        let mut out = Vec::new();
        let mut cur: Option<String> = None;
        let push = |cur: &mut Option<String>, out: &mut Vec<Field>| {
            if let Some(t) = cur.take() {
                out.push(Field {
                    text: t,
                    pos: w.pos,
                });
            }
        };
        for p in &w.parts {
            let quoted = match p {
                Part::Lit { .. } => true,
                Part::Param { quoted, .. } | Part::Subst { quoted, .. } => *quoted,
            };
            let value = self.part_value(p)?;
            if quoted {
                cur.get_or_insert_with(String::new).push_str(&value);
                continue;
            }
            let starts_blank = value.starts_with(char::is_whitespace);
            let ends_blank = value.ends_with(char::is_whitespace);
            let pieces: Vec<&str> = value.split_whitespace().collect();
            if starts_blank {
                push(&mut cur, &mut out);
            }
            for (k, piece) in pieces.iter().enumerate() {
                if k > 0 {
                    push(&mut cur, &mut out);
                }
                cur.get_or_insert_with(String::new).push_str(piece);
            }
            if ends_blank && !pieces.is_empty() {
                push(&mut cur, &mut out);
            }
        }
        push(&mut cur, &mut out);
        Ok(out)
    }

    /// A word expanded as one string, without field splitting (assignment values).
    pub fn word_joined(&mut self, w: &Word) -> Result<String, Error> {
        self.joined(&w.parts)
    }
}
