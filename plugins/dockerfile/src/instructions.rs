//! Typed Dockerfile instructions: flags, argument forms (JSON exec or shell), heredoc sources and
//! the per-instruction syntax checks. Arguments stay unexpanded here; the plan builder substitutes
//! variables with the scope in effect at each instruction.

use crate::diag::{Diagnostic, closest};
use crate::parser::{INSTRUCTIONS, Node, heredoc_marker};
use crate::words::Lexer;

/// A raw (unexpanded) argument and the byte offset where it starts in `Node::original`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The text as written (for flags: with quotes already removed).
    pub text: String,
    /// Byte offset in the node's logical line.
    pub offset: usize,
}

/// A command in exec (JSON) or shell form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLine {
    /// Run with the stage's shell.
    Shell(String),
    /// Run as is.
    Exec(Vec<String>),
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct From {
    /// `--platform`, unexpanded.
    pub platform: Option<Word>,
    /// The base, unexpanded.
    pub image: Word,
    /// The stage name, lower case.
    pub name: Option<String>,
}

/// One name of an `ARG` instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument name.
    pub name: String,
    /// The default value, unexpanded.
    pub default: Option<Word>,
}

/// `RUN [--mount=...] [--network=...] command`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Each `--mount` value, unexpanded.
    pub mounts: Vec<Word>,
    /// `--network`.
    pub network: Option<Word>,
    /// The command (heredoc scripts already folded in).
    pub command: CommandLine,
}

/// A COPY/ADD source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A path, glob or URL, unexpanded.
    Path(Word),
    /// The n-th heredoc of the node.
    Heredoc(usize),
}

/// `COPY`/`ADD` with their flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// ADD rather than COPY.
    pub is_add: bool,
    /// `--from`.
    pub from: Option<Word>,
    /// `--chown`.
    pub chown: Option<Word>,
    /// `--chmod`.
    pub chmod: Option<Word>,
    /// `--checksum` (ADD).
    pub checksum: Option<Word>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY).
    pub parents: bool,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: bool,
    /// `--exclude`, each unexpanded.
    pub excludes: Vec<Word>,
    /// Sources in order.
    pub sources: Vec<Source>,
    /// The destination, unexpanded.
    pub dest: Word,
}

/// A `name=value` pair of ENV or LABEL, both parts unexpanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The name.
    pub key: Word,
    /// The value.
    pub value: Word,
}

/// HEALTHCHECK settings (durations in nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `["CMD", ...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// `--interval`.
    pub interval: Option<u64>,
    /// `--timeout`.
    pub timeout: Option<u64>,
    /// `--start-period`.
    pub start_period: Option<u64>,
    /// `--start-interval`.
    pub start_interval: Option<u64>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// One instruction with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// FROM.
    From(From),
    /// ARG.
    Arg(Vec<ArgDecl>),
    /// RUN.
    Run(Run),
    /// CMD.
    Cmd(CommandLine),
    /// ENTRYPOINT.
    Entrypoint(CommandLine),
    /// COPY or ADD.
    Copy(Copy),
    /// ENV.
    Env(Vec<KeyValue>),
    /// LABEL.
    Label(Vec<KeyValue>),
    /// EXPOSE.
    Expose(Vec<Word>),
    /// VOLUME.
    Volume(Vec<Word>),
    /// USER.
    User(Word),
    /// WORKDIR.
    Workdir(Word),
    /// SHELL.
    Shell(Vec<String>),
    /// STOPSIGNAL.
    StopSignal(Word),
    /// HEALTHCHECK; None = NONE.
    Healthcheck(Option<Health>),
    /// ONBUILD: the trigger as written.
    Onbuild(String),
    /// MAINTAINER.
    Maintainer(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    List,
}

struct RawFlag {
    name: String,
    value: Option<String>,
    offset: usize,
}

#[derive(Default)]
struct Flags {
    strs: Vec<(&'static str, Word)>,
    bools: Vec<(&'static str, bool)>,
    lists: Vec<(&'static str, Vec<Word>)>,
}

impl Flags {
    fn str(&self, name: &str) -> Option<Word> {
        self.strs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| w.clone())
    }
    fn bool(&self, name: &str) -> bool {
        self.bools.iter().any(|(n, v)| *n == name && *v)
    }
    fn list(&self, name: &str) -> Vec<Word> {
        self.lists
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
    fn is_empty(&self) -> bool {
        self.strs.is_empty() && self.bools.is_empty() && self.lists.is_empty()
    }
}

/// Leading `--name[=value]` words of `s` (quotes removed, `\` escapes applied). Returns the flags
/// and the offset (relative to `s`) where the other arguments start.
fn extract_flags(s: &str) -> (Vec<RawFlag>, usize) {
    let b: Vec<(usize, char)> = s.char_indices().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].1.is_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return (flags, s.len());
        }
        if !(b[i].1 == '-' && i + 1 < b.len() && b[i + 1].1 == '-') {
            return (flags, b[i].0);
        }
        let start = b[i].0;
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while i < b.len() {
            let c = b[i].1;
            match quote {
                None if c.is_whitespace() => break,
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == '\\' && quote != Some('\'') => {
                    if i + 1 < b.len() {
                        i += 1;
                        word.push(b[i].1);
                    }
                }
                _ => word.push(c),
            }
            i += 1;
        }
        if word == "--" {
            let rest = if i < b.len() { b[i].0 } else { s.len() };
            return (flags, rest);
        }
        let body = &word[2..];
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        flags.push(RawFlag {
            name,
            value,
            offset: start,
        });
    }
}

fn check_flags(
    node: &Node,
    base: usize,
    raw: Vec<RawFlag>,
    spec: &[(&'static str, Kind)],
) -> Result<Flags, Diagnostic> {
    let mut out = Flags::default();
    let kw = &node.keyword;
    for f in raw {
        let loc = node.location_at(base + f.offset);
        let Some(&(name, kind)) = spec.iter().find(|(n, _)| *n == f.name) else {
            let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
            let hint = if names.is_empty() {
                format!("{kw} takes no flags")
            } else if let Some(c) = closest(&f.name, &names) {
                format!("did you mean --{c}?")
            } else {
                format!(
                    "{kw} accepts {}",
                    names
                        .iter()
                        .map(|n| format!("--{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(Diagnostic::error(
                loc,
                format!("unknown flag --{} for {kw} ({hint})", f.name),
            ));
        };
        let value_offset = base + f.offset + 3 + name.len();
        match kind {
            Kind::Bool => {
                let v = match f.value.as_deref() {
                    None => true,
                    Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
                    Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
                    Some(v) => {
                        return Err(Diagnostic::error(
                            loc,
                            format!("--{name} expects true or false, not {v:?}"),
                        ));
                    }
                };
                out.bools.retain(|(n, _)| *n != name);
                out.bools.push((name, v));
            }
            Kind::Str => {
                let Some(v) = f.value else {
                    return Err(Diagnostic::error(
                        loc,
                        format!("--{name} needs a value: --{name}=..."),
                    ));
                };
                if out.strs.iter().any(|(n, _)| *n == name) {
                    return Err(Diagnostic::error(
                        loc,
                        format!("--{name} is given more than once"),
                    ));
                }
                out.strs.push((
                    name,
                    Word {
                        text: v,
                        offset: value_offset,
                    },
                ));
            }
            Kind::List => {
                let Some(v) = f.value else {
                    return Err(Diagnostic::error(
                        loc,
                        format!("--{name} needs a value: --{name}=..."),
                    ));
                };
                let w = Word {
                    text: v,
                    offset: value_offset,
                };
                match out.lists.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, l)) => l.push(w),
                    None => out.lists.push((name, vec![w])),
                }
            }
        }
    }
    Ok(out)
}

/// How an argument parses as a JSON array.
enum Json {
    /// An array of strings: the exec form.
    Strings(Vec<String>),
    /// A JSON array with non-string items: an error.
    Mixed,
    /// Not a JSON array: the shell form.
    Invalid,
}

fn parse_json(s: &str) -> Json {
    let t = s.trim();
    if !t.starts_with('[') {
        return Json::Invalid;
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                match i {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::Mixed,
                }
            }
            Json::Strings(out)
        }
        _ => Json::Invalid,
    }
}

/// Whitespace-separated fields of `s`, offsets shifted by `base`.
fn fields(s: &str, base: usize) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(st)) => {
                out.push(Word {
                    text: s[st..i].to_string(),
                    offset: base + st,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push(Word {
            text: s[st..].to_string(),
            offset: base + st,
        });
    }
    out
}

/// Words separated by unquoted whitespace, quotes and escapes kept (ENV, LABEL, ARG).
fn quoted_words(s: &str, base: usize, escape: char) -> Vec<Word> {
    let b: Vec<(usize, char)> = s.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].1.is_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = b[i].0;
        let mut quote: Option<char> = None;
        while i < b.len() {
            let c = b[i].1;
            match quote {
                None if c.is_whitespace() => break,
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == escape && quote != Some('\'') => i += 1,
                _ => {}
            }
            i += 1;
        }
        let end = if i < b.len() { b[i].0 } else { s.len() };
        out.push(Word {
            text: s[start..end].to_string(),
            offset: base + start,
        });
    }
    out
}

/// Quote `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A Go-style duration ("30s", "1m30s", "1.5h", "250ms") in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let fl = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_part = &r[..fl];
            rest = &r[fl..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut v = int.checked_mul(unit)?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(18)];
            let f: i128 = digits.parse().ok()?;
            v += f * unit / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(v)?;
    }
    Some(if neg { -total } else { total })
}

/// Check a `--chmod` value: octal (`644`, `0755`) or symbolic (`u+x,go-w`).
pub fn valid_chmod(v: &str) -> bool {
    if !v.is_empty() && v.len() <= 5 && v.chars().all(|c| ('0'..='7').contains(&c)) {
        return u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777);
    }
    !v.is_empty()
        && v.split(',').all(|clause| {
            let who_len = clause
                .find(|c: char| !"ugoa".contains(c))
                .unwrap_or(clause.len());
            let ops = &clause[who_len..];
            ops.starts_with(['+', '-', '=']) && ops.chars().all(|c| "+-=rwxXstugo".contains(c))
        })
}

fn require(node: &Node, ok: bool, what: &str) -> Result<(), Diagnostic> {
    if ok {
        Ok(())
    } else {
        Err(Diagnostic::error(
            node.location,
            format!("{} {what}", node.keyword),
        ))
    }
}

fn no_flags(node: &Node) -> Result<usize, Diagnostic> {
    let (raw, rest) = extract_flags(node.args());
    check_flags(node, node.args_offset, raw, &[])?;
    Ok(node.args_offset + rest)
}

/// Parse one node into an instruction. `warnings` collects non-fatal findings.
pub fn parse_instruction(
    node: &Node,
    lexer: &Lexer,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Instruction, Diagnostic> {
    let kw = node.keyword.as_str();
    match kw {
        "FROM" => parse_from(node),
        "ARG" => parse_arg(node, lexer),
        "RUN" => parse_run(node, lexer),
        "CMD" | "ENTRYPOINT" => {
            let start = no_flags(node)?;
            let text = &node.original[start..];
            let cmd = match parse_json(text) {
                Json::Strings(v) => CommandLine::Exec(v),
                Json::Mixed => return Err(json_not_strings(node, start)),
                Json::Invalid => {
                    require(node, !text.trim().is_empty(), "requires a command")?;
                    CommandLine::Shell(text.trim().to_string())
                }
            };
            Ok(if kw == "CMD" {
                Instruction::Cmd(cmd)
            } else {
                Instruction::Entrypoint(cmd)
            })
        }
        "COPY" | "ADD" => parse_copy(node, lexer),
        "ENV" | "LABEL" => {
            let start = no_flags(node)?;
            let pairs = parse_pairs(node, start, lexer, warnings)?;
            Ok(if kw == "ENV" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            })
        }
        "EXPOSE" => {
            let start = no_flags(node)?;
            let ports = fields(&node.original[start..], start);
            require(node, !ports.is_empty(), "requires at least one port")?;
            Ok(Instruction::Expose(ports))
        }
        "VOLUME" => {
            let start = no_flags(node)?;
            let text = &node.original[start..];
            let vols = match parse_json(text) {
                Json::Strings(v) => v
                    .into_iter()
                    .map(|t| Word {
                        text: t,
                        offset: start,
                    })
                    .collect(),
                Json::Mixed => return Err(json_not_strings(node, start)),
                Json::Invalid => fields(text, start),
            };
            require(node, !vols.is_empty(), "requires at least one path")?;
            Ok(Instruction::Volume(vols))
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
            let start = no_flags(node)?;
            let text = node.original[start..].trim();
            require(node, !text.is_empty(), "requires exactly one argument")?;
            let w = Word {
                text: text.to_string(),
                offset: start,
            };
            Ok(match kw {
                "USER" => Instruction::User(w),
                "WORKDIR" => Instruction::Workdir(w),
                "STOPSIGNAL" => Instruction::StopSignal(w),
                _ => Instruction::Maintainer(w.text),
            })
        }
        "SHELL" => {
            let start = no_flags(node)?;
            match parse_json(&node.original[start..]) {
                Json::Strings(v) if !v.is_empty() => Ok(Instruction::Shell(v)),
                Json::Strings(_) => Err(Diagnostic::error(
                    node.location_at(start),
                    "SHELL needs at least the shell executable",
                )),
                Json::Mixed => Err(json_not_strings(node, start)),
                Json::Invalid => Err(Diagnostic::error(
                    node.location_at(start),
                    "SHELL requires a JSON array of strings, for example SHELL [\"/bin/bash\", \"-c\"]",
                )),
            }
        }
        "HEALTHCHECK" => parse_healthcheck(node),
        "ONBUILD" => parse_onbuild(node, lexer, warnings),
        _ => {
            let raw_kw = &node.original[..node
                .original
                .find(char::is_whitespace)
                .unwrap_or(node.original.len())];
            let hint = closest(kw, &INSTRUCTIONS)
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            Err(Diagnostic::error(
                node.location,
                format!("unknown instruction: {raw_kw}{hint}"),
            ))
        }
    }
}

fn json_not_strings(node: &Node, at: usize) -> Diagnostic {
    Diagnostic::error(
        node.location_at(at),
        format!(
            "{}: a JSON array argument must contain only strings",
            node.keyword
        ),
    )
}

fn parse_from(node: &Node) -> Result<Instruction, Diagnostic> {
    let (raw, rest) = extract_flags(node.args());
    let flags = check_flags(node, node.args_offset, raw, &[("platform", Kind::Str)])?;
    let start = node.args_offset + rest;
    let args = fields(&node.original[start..], start);
    let name = match args.len() {
        1 => None,
        3 if args[1].text.eq_ignore_ascii_case("as") => {
            let n = args[2].text.to_ascii_lowercase();
            let mut chars = n.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !ok {
                return Err(Diagnostic::error(
                    node.location_at(args[2].offset),
                    format!(
                        "invalid stage name {:?}: it must start with a letter and contain only letters, digits, '-', '_' and '.'",
                        args[2].text
                    ),
                ));
            }
            Some(n)
        }
        _ => {
            return Err(Diagnostic::error(
                node.location,
                "FROM takes an image and optionally AS and a stage name: FROM [--platform=P] IMAGE [AS NAME]",
            ));
        }
    };
    Ok(Instruction::From(From {
        platform: flags.str("platform"),
        image: args[0].clone(),
        name,
    }))
}

fn parse_arg(node: &Node, lexer: &Lexer) -> Result<Instruction, Diagnostic> {
    let start = no_flags(node)?;
    let words = quoted_words(&node.original[start..], start, lexer.escape());
    if words.is_empty() {
        return Err(Diagnostic::error(
            node.location,
            "ARG requires a name: ARG NAME[=default]",
        ));
    }
    let mut out = Vec::new();
    for w in words {
        let (name, default) = match w.text.split_once('=') {
            Some((n, d)) => (
                n.to_string(),
                Some(Word {
                    text: d.to_string(),
                    offset: w.offset + n.len() + 1,
                }),
            ),
            None => (w.text.clone(), None),
        };
        if name.is_empty() {
            return Err(Diagnostic::error(
                node.location_at(w.offset),
                format!("ARG {:?} has no name: ARG NAME[=default]", w.text),
            ));
        }
        if name.contains(['"', '\'', '$']) || name.contains(lexer.escape()) {
            return Err(Diagnostic::error(
                node.location_at(w.offset),
                format!("invalid ARG name {name:?}"),
            ));
        }
        out.push(ArgDecl { name, default });
    }
    Ok(Instruction::Arg(out))
}

fn parse_pairs(
    node: &Node,
    start: usize,
    lexer: &Lexer,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Vec<KeyValue>, Diagnostic> {
    let kw = &node.keyword;
    let text = &node.original[start..];
    let words = quoted_words(text, start, lexer.escape());
    if words.is_empty() {
        return Err(Diagnostic::error(
            node.location,
            format!("{kw} requires at least one name=value pair"),
        ));
    }
    if !words[0].text.contains('=') {
        // Legacy form: `ENV name value with spaces`.
        let key = words[0].clone();
        let after = &node.original[key.offset + key.text.len()..];
        let value_text = after.trim_start();
        if value_text.is_empty() {
            return Err(Diagnostic::error(
                node.location_at(key.offset),
                format!("{kw} {} has no value: use {kw} name=value", key.text),
            ));
        }
        let value_offset = node.original.len() - value_text.len();
        warnings.push(Diagnostic::warning(
            node.location,
            format!("legacy \"{kw} name value\" form; prefer \"{kw} name=value\""),
        ));
        return Ok(vec![KeyValue {
            key,
            value: Word {
                text: value_text.to_string(),
                offset: value_offset,
            },
        }]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.text.split_once('=') else {
            return Err(Diagnostic::error(
                node.location_at(w.offset),
                format!("{kw} expects name=value pairs, but {:?} has no '='", w.text),
            ));
        };
        if k.is_empty() {
            return Err(Diagnostic::error(
                node.location_at(w.offset),
                format!("{kw} names can not be blank"),
            ));
        }
        out.push(KeyValue {
            key: Word {
                text: k.to_string(),
                offset: w.offset,
            },
            value: Word {
                text: v.to_string(),
                offset: w.offset + k.len() + 1,
            },
        });
    }
    Ok(out)
}

fn parse_run(node: &Node, lexer: &Lexer) -> Result<Instruction, Diagnostic> {
    let (raw, rest) = extract_flags(node.args());
    let spec = [
        ("mount", Kind::List),
        ("network", Kind::Str),
        ("security", Kind::Str),
    ];
    let flags = check_flags(node, node.args_offset, raw, &spec)?;
    if let Some(sec) = flags.str("security") {
        match sec.text.as_str() {
            "sandbox" => {}
            "insecure" => {
                return Err(Diagnostic::error(
                    node.location_at(sec.offset),
                    "RUN --security=insecure is not supported",
                ));
            }
            v => {
                return Err(Diagnostic::error(
                    node.location_at(sec.offset),
                    format!("--security expects sandbox or insecure, not {v:?}"),
                ));
            }
        }
    }
    let start = node.args_offset + rest;
    let text = node.original[start..].trim();
    let command = match parse_json(text) {
        Json::Strings(v) => {
            if !node.heredocs.is_empty() {
                return Err(Diagnostic::error(
                    node.location,
                    "heredocs need the shell form of RUN",
                ));
            }
            CommandLine::Exec(v)
        }
        Json::Mixed => return Err(json_not_strings(node, start)),
        Json::Invalid => {
            require(node, !text.is_empty(), "requires a command")?;
            shell_with_heredocs(text, &node.heredocs, lexer)
        }
    };
    Ok(Instruction::Run(Run {
        mounts: flags.list("mount"),
        network: flags.str("network"),
        command,
    }))
}

/// Fold heredocs into a shell-form RUN command.
///
/// `RUN <<EOF` alone runs the body as the script; a body starting with `#!` is run by its
/// interpreter (reading the script from standard input). Otherwise the heredocs are appended to
/// the command line and the shell handles them.
fn shell_with_heredocs(
    text: &str,
    heredocs: &[crate::parser::Heredoc],
    lexer: &Lexer,
) -> CommandLine {
    if heredocs.is_empty() {
        return CommandLine::Shell(text.to_string());
    }
    if heredocs.len() == 1 && heredoc_marker(text, lexer).is_some() {
        let h = &heredocs[0];
        let body = h.body();
        if let Some(shebang) = body.strip_prefix("#!") {
            let first = shebang.lines().next().unwrap_or("").trim();
            let (interp, arg) = match first.split_once([' ', '\t']) {
                Some((i, a)) if !a.trim().is_empty() => (i, Some(a.trim())),
                Some((i, _)) => (i, None),
                None => (first, None),
            };
            let delim = if h
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                h.name.as_str()
            } else {
                "KILN_SCRIPT_END"
            };
            let mut cmd = shell_quote(interp);
            if let Some(a) = arg {
                cmd.push(' ');
                cmd.push_str(&shell_quote(a));
            }
            return CommandLine::Shell(format!("{cmd} /dev/stdin <<'{delim}'\n{body}{delim}"));
        }
        return CommandLine::Shell(body);
    }
    let mut full = text.to_string();
    for h in heredocs {
        full.push('\n');
        full.push_str(&h.content);
        full.push_str(&h.name);
    }
    CommandLine::Shell(full)
}

fn parse_copy(node: &Node, lexer: &Lexer) -> Result<Instruction, Diagnostic> {
    let is_add = node.keyword == "ADD";
    let (raw, rest) = extract_flags(node.args());
    let spec: &[(&'static str, Kind)] = if is_add {
        &[
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("checksum", Kind::Str),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("exclude", Kind::List),
        ]
    } else {
        &[
            ("from", Kind::Str),
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::List),
        ]
    };
    let flags = check_flags(node, node.args_offset, raw, spec)?;
    let start = node.args_offset + rest;
    let text = &node.original[start..];
    let (mut args, json) = match parse_json(text) {
        Json::Strings(v) => (
            v.into_iter()
                .map(|t| Word {
                    text: t,
                    offset: start,
                })
                .collect::<Vec<_>>(),
            true,
        ),
        Json::Mixed => return Err(json_not_strings(node, start)),
        Json::Invalid => (fields(text, start), false),
    };
    let dest = match args.pop() {
        Some(d) if !args.is_empty() => d,
        _ => {
            return Err(Diagnostic::error(
                node.location,
                format!(
                    "{} needs at least one source and a destination: {} SRC... DEST",
                    node.keyword, node.keyword
                ),
            ));
        }
    };
    if !json && heredoc_marker(&dest.text, lexer).is_some() {
        return Err(Diagnostic::error(
            node.location_at(dest.offset),
            format!("{} cannot take a heredoc as its destination", node.keyword),
        ));
    }
    let mut next_heredoc = 0;
    let mut sources = Vec::new();
    for a in args {
        if !json && next_heredoc < node.heredocs.len() && heredoc_marker(&a.text, lexer).is_some() {
            sources.push(Source::Heredoc(next_heredoc));
            next_heredoc += 1;
        } else {
            sources.push(Source::Path(a));
        }
    }
    Ok(Instruction::Copy(Copy {
        is_add,
        from: flags.str("from"),
        chown: flags.str("chown"),
        chmod: flags.str("chmod"),
        checksum: flags.str("checksum"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        keep_git_dir: flags.bool("keep-git-dir"),
        excludes: flags.list("exclude"),
        sources,
        dest,
    }))
}

fn parse_healthcheck(node: &Node) -> Result<Instruction, Diagnostic> {
    let (raw, rest) = extract_flags(node.args());
    let spec = [
        ("interval", Kind::Str),
        ("timeout", Kind::Str),
        ("start-period", Kind::Str),
        ("start-interval", Kind::Str),
        ("retries", Kind::Str),
    ];
    let flags = check_flags(node, node.args_offset, raw, &spec)?;
    let start = node.args_offset + rest;
    let text = node.original[start..].trim_start();
    let kind_len = text.find(char::is_whitespace).unwrap_or(text.len());
    let kind = &text[..kind_len];
    let after = text[kind_len..].trim();
    if kind.eq_ignore_ascii_case("NONE") {
        if !after.is_empty() || !flags.is_empty() {
            return Err(Diagnostic::error(
                node.location,
                "HEALTHCHECK NONE takes no other arguments or flags",
            ));
        }
        return Ok(Instruction::Healthcheck(None));
    }
    if !kind.eq_ignore_ascii_case("CMD") {
        let what = if kind.is_empty() {
            "nothing".to_string()
        } else {
            format!("{kind:?}")
        };
        return Err(Diagnostic::error(
            node.location_at(start),
            format!("HEALTHCHECK expects CMD or NONE, found {what}"),
        ));
    }
    let test = match parse_json(after) {
        Json::Strings(v) if !v.is_empty() => std::iter::once("CMD".to_string()).chain(v).collect(),
        Json::Mixed => return Err(json_not_strings(node, start)),
        Json::Strings(_) => {
            return Err(Diagnostic::error(
                node.location,
                "HEALTHCHECK CMD needs a command",
            ));
        }
        Json::Invalid if after.is_empty() => {
            return Err(Diagnostic::error(
                node.location,
                "HEALTHCHECK CMD needs a command",
            ));
        }
        Json::Invalid => vec!["CMD-SHELL".to_string(), after.to_string()],
    };
    let duration = |name: &str| -> Result<Option<u64>, Diagnostic> {
        let Some(w) = flags.str(name) else {
            return Ok(None);
        };
        let loc = node.location_at(w.offset);
        let ns = parse_duration(&w.text).ok_or_else(|| {
            Diagnostic::error(
                loc,
                format!(
                    "--{name}: invalid duration {:?} (examples: 30s, 1m30s, 500ms)",
                    w.text
                ),
            )
        })?;
        if ns < 0 {
            return Err(Diagnostic::error(
                loc,
                format!("--{name} cannot be negative"),
            ));
        }
        if ns != 0 && ns < 1_000_000 {
            return Err(Diagnostic::error(
                loc,
                format!("--{name} cannot be less than 1ms"),
            ));
        }
        Ok(Some(u64::try_from(ns).map_err(|_| {
            Diagnostic::error(loc, format!("--{name} is too large"))
        })?))
    };
    let retries = match flags.str("retries") {
        None => None,
        Some(w) => {
            let loc = node.location_at(w.offset);
            let n: i64 = w.text.parse().map_err(|_| {
                Diagnostic::error(loc, format!("--retries expects a number, not {:?}", w.text))
            })?;
            if n < 0 {
                return Err(Diagnostic::error(loc, "--retries cannot be negative"));
            }
            Some(u32::try_from(n).map_err(|_| Diagnostic::error(loc, "--retries is too large"))?)
        }
    };
    Ok(Instruction::Healthcheck(Some(Health {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })))
}

fn parse_onbuild(
    node: &Node,
    lexer: &Lexer,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Instruction, Diagnostic> {
    if node.args().is_empty() {
        return Err(Diagnostic::error(
            node.location,
            "ONBUILD requires an instruction",
        ));
    }
    let sub = node.sub_node(node.args_offset);
    match sub.keyword.as_str() {
        "ONBUILD" => {
            return Err(Diagnostic::error(
                sub.location,
                "ONBUILD ONBUILD is not allowed",
            ));
        }
        "FROM" | "MAINTAINER" => {
            return Err(Diagnostic::error(
                sub.location,
                format!("{} is not allowed as an ONBUILD trigger", sub.keyword),
            ));
        }
        _ => {}
    }
    if matches!(sub.keyword.as_str(), "RUN" | "COPY" | "ADD")
        && lexer
            .raw_words(sub.args())
            .iter()
            .any(|w| heredoc_marker(w, lexer).is_some())
    {
        return Err(Diagnostic::error(
            sub.location,
            "heredocs are not supported in ONBUILD triggers",
        ));
    }
    parse_instruction(&sub, lexer, warnings)?;
    Ok(Instruction::Onbuild(sub.original.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Location;
    use crate::parser::parse;

    fn one(src: &str) -> Result<Instruction, Diagnostic> {
        let df = parse(src).unwrap_or_else(|e| panic!("{e:?}"));
        let lexer = Lexer::new(df.directives.escape);
        let node = df.nodes.last().unwrap();
        parse_instruction(node, &lexer, &mut Vec::new())
    }

    fn ok(src: &str) -> Instruction {
        one(src).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn err(src: &str) -> Diagnostic {
        one(src).expect_err(src)
    }

    fn w(text: &str, offset: usize) -> Word {
        Word {
            text: text.into(),
            offset,
        }
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            ok("FROM alpine"),
            Instruction::From(From {
                platform: None,
                image: w("alpine", 5),
                name: None
            })
        );
        assert_eq!(
            ok("from --platform=$BUILDPLATFORM golang:1.22 as Build"),
            Instruction::From(From {
                platform: Some(w("$BUILDPLATFORM", 16)),
                image: w("golang:1.22", 31),
                name: Some("build".into())
            })
        );
        assert!(err("FROM a b").message.contains("FROM takes an image"));
        assert!(err("FROM a AS 1x").message.contains("invalid stage name"));
        let e = err("FROM --plat=x a");
        assert!(
            e.message.contains("unknown flag --plat")
                && e.message.contains("did you mean --platform?"),
            "{}",
            e.message
        );
        assert_eq!(e.location, Some(Location::new(1, 6)));
    }

    #[test]
    fn arg_forms() {
        assert_eq!(
            ok("ARG A B=2 C=\"x y\""),
            Instruction::Arg(vec![
                ArgDecl {
                    name: "A".into(),
                    default: None
                },
                ArgDecl {
                    name: "B".into(),
                    default: Some(w("2", 8))
                },
                ArgDecl {
                    name: "C".into(),
                    default: Some(w("\"x y\"", 12))
                },
            ])
        );
        assert!(err("ARG").message.contains("requires a name"));
        let e = err("ARG  =x");
        assert!(e.message.contains("has no name"));
        assert_eq!(e.location, Some(Location::new(1, 6)));
    }

    #[test]
    fn run_forms() {
        assert_eq!(
            ok("RUN echo  hi "),
            Instruction::Run(Run {
                mounts: vec![],
                network: None,
                command: CommandLine::Shell("echo  hi".into())
            })
        );
        assert_eq!(
            ok("RUN [\"a\", \"b c\"]"),
            Instruction::Run(Run {
                mounts: vec![],
                network: None,
                command: CommandLine::Exec(vec!["a".into(), "b c".into()])
            })
        );
        // Invalid JSON falls back to the shell form.
        assert_eq!(
            ok("RUN [\"a\", 'b']"),
            Instruction::Run(Run {
                mounts: vec![],
                network: None,
                command: CommandLine::Shell("[\"a\", 'b']".into())
            })
        );
        assert!(err("RUN [\"a\", 1]").message.contains("only strings"));
        let Instruction::Run(r) =
            ok("RUN --mount=type=cache,target=/c --mount=type=secret,id=x --network=none make")
        else {
            panic!()
        };
        assert_eq!(
            r.mounts,
            vec![w("type=cache,target=/c", 12), w("type=secret,id=x", 41)]
        );
        assert_eq!(r.network, Some(w("none", 68)));
        assert_eq!(r.command, CommandLine::Shell("make".into()));
        // Quotes in flag values are removed.
        let Instruction::Run(r) = ok("RUN --mount=\"type=bind,source=a b\" ls") else {
            panic!()
        };
        assert_eq!(r.mounts[0].text, "type=bind,source=a b");
        // `--` ends the flags.
        let Instruction::Run(r) = ok("RUN -- --version") else {
            panic!()
        };
        assert_eq!(r.command, CommandLine::Shell("--version".into()));
        assert!(err("RUN").message.contains("requires a command"));
        assert!(err("RUN --mount").message.contains("--mount needs a value"));
        assert!(
            err("RUN --security=insecure x")
                .message
                .contains("not supported")
        );
        assert!(
            err("RUN --device=x y")
                .message
                .contains("unknown flag --device for RUN")
        );
    }

    #[test]
    fn run_heredocs() {
        let Instruction::Run(r) = ok("RUN <<EOF\necho a\necho b\nEOF\n") else {
            panic!()
        };
        assert_eq!(r.command, CommandLine::Shell("echo a\necho b\n".into()));
        let Instruction::Run(r) = ok("RUN <<-EOF\n\techo a\n\tEOF\n") else {
            panic!()
        };
        assert_eq!(r.command, CommandLine::Shell("echo a\n".into()));
        let Instruction::Run(r) = ok("RUN python3 <<EOF > /out\nprint(1)\nEOF\n") else {
            panic!()
        };
        assert_eq!(
            r.command,
            CommandLine::Shell("python3 <<EOF > /out\nprint(1)\nEOF".into())
        );
        let Instruction::Run(r) = ok("RUN <<A cat && <<-B cat\na\nA\n\tb\n\tB\n") else {
            panic!()
        };
        assert_eq!(
            r.command,
            CommandLine::Shell("<<A cat && <<-B cat\na\nA\n\tb\nB".into())
        );
        let Instruction::Run(r) = ok("RUN <<EOF\n#!/usr/bin/env python3\nprint('hi')\nEOF\n")
        else {
            panic!()
        };
        assert_eq!(
            r.command,
            CommandLine::Shell("'/usr/bin/env' 'python3' /dev/stdin <<'EOF'\n#!/usr/bin/env python3\nprint('hi')\nEOF".into())
        );
    }

    #[test]
    fn cmd_entrypoint_shell() {
        assert_eq!(
            ok("CMD [\"a\"]"),
            Instruction::Cmd(CommandLine::Exec(vec!["a".into()]))
        );
        assert_eq!(ok("CMD []"), Instruction::Cmd(CommandLine::Exec(vec![])));
        assert_eq!(
            ok("entrypoint exec  app"),
            Instruction::Entrypoint(CommandLine::Shell("exec  app".into()))
        );
        assert!(err("CMD").message.contains("requires a command"));
        assert!(err("CMD --help").message.contains("CMD takes no flags"));
        assert_eq!(
            ok("SHELL [\"pwsh\", \"-c\"]"),
            Instruction::Shell(vec!["pwsh".into(), "-c".into()])
        );
        let e = err("SHELL /bin/bash -c");
        assert!(e.message.contains("JSON array"));
        assert_eq!(e.location, Some(Location::new(1, 7)));
        assert!(err("SHELL []").message.contains("at least"));
        assert!(err("SHELL [\"a\",]").message.contains("JSON array"));
    }

    #[test]
    fn copy_forms() {
        let Instruction::Copy(c) = ok(
            "COPY --from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=x a b /d/",
        ) else {
            panic!()
        };
        assert_eq!(c.from.unwrap().text, "build");
        assert_eq!(c.chown.unwrap().text, "1:2");
        assert_eq!(c.chmod.unwrap().text, "0755");
        assert!(c.link && c.parents && !c.is_add);
        assert_eq!(
            c.excludes
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>(),
            ["*.md", "x"]
        );
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.dest.text, "/d/");
        let Instruction::Copy(c) = ok("COPY --link=false [\"a b\", \"/x y/\"]") else {
            panic!()
        };
        assert!(!c.link);
        assert_eq!(c.sources, vec![Source::Path(w("a b", 18))]);
        assert_eq!(c.dest.text, "/x y/");
        let Instruction::Copy(c) =
            ok("ADD --checksum=sha256:abc --keep-git-dir=true https://x/y.tgz /y")
        else {
            panic!()
        };
        assert!(c.is_add && c.keep_git_dir);
        assert_eq!(c.checksum.unwrap().text, "sha256:abc");
        assert!(
            err("COPY a")
                .message
                .contains("at least one source and a destination")
        );
        assert!(
            err("ADD --from=x a b")
                .message
                .contains("unknown flag --from for ADD")
        );
        assert!(
            err("COPY --checksum=x a b")
                .message
                .contains("unknown flag --checksum for COPY")
        );
        assert!(
            err("COPY --link=maybe a b")
                .message
                .contains("true or false")
        );
        assert!(
            err("COPY --from=a --from=b x y")
                .message
                .contains("more than once")
        );
    }

    #[test]
    fn copy_heredocs() {
        let Instruction::Copy(c) = ok("COPY <<A data.txt <<\"B\" /dst/\n1\nA\n2\nB\n") else {
            panic!()
        };
        assert_eq!(
            c.sources,
            vec![
                Source::Heredoc(0),
                Source::Path(w("data.txt", 9)),
                Source::Heredoc(1)
            ]
        );
        assert!(
            err("COPY a <<EOF\nx\nEOF\n")
                .message
                .contains("destination")
        );
    }

    #[test]
    fn env_label_pairs() {
        let Instruction::Env(p) = ok("ENV A=1 B=\"x y\" C=a\\ b") else {
            panic!()
        };
        let kv: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.key.text.as_str(), p.value.text.as_str()))
            .collect();
        assert_eq!(kv, [("A", "1"), ("B", "\"x y\""), ("C", "a\\ b")]);
        let mut warnings = Vec::new();
        let df = parse("ENV LEG some value here").unwrap();
        let Instruction::Env(p) =
            parse_instruction(&df.nodes[0], &Lexer::new('\\'), &mut warnings).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (p[0].key.text.as_str(), p[0].value.text.as_str()),
            ("LEG", "some value here")
        );
        assert_eq!(warnings.len(), 1);
        let Instruction::Label(p) = ok("LABEL \"a b\"=c 'd'=\"e f\"") else {
            panic!()
        };
        assert_eq!(p[0].key.text, "\"a b\"");
        assert_eq!(p[1].value.text, "\"e f\"");
        assert!(err("LABEL a=1 b").message.contains("has no '='"));
        assert!(err("ENV =x").message.contains("can not be blank"));
        assert!(err("ENV A").message.contains("has no value"));
        assert!(err("ENV").message.contains("at least one"));
    }

    #[test]
    fn simple_instructions() {
        assert_eq!(
            ok("EXPOSE 80 53/udp"),
            Instruction::Expose(vec![w("80", 7), w("53/udp", 10)])
        );
        assert_eq!(
            ok("VOLUME [\"/a\", \"/b\"]"),
            Instruction::Volume(vec![w("/a", 7), w("/b", 7)])
        );
        assert_eq!(
            ok("VOLUME /a /b"),
            Instruction::Volume(vec![w("/a", 7), w("/b", 10)])
        );
        assert_eq!(ok("USER app:app"), Instruction::User(w("app:app", 5)));
        assert_eq!(ok("WORKDIR /my dir"), Instruction::Workdir(w("/my dir", 8)));
        assert_eq!(
            ok("STOPSIGNAL SIGKILL"),
            Instruction::StopSignal(w("SIGKILL", 11))
        );
        assert_eq!(
            ok("MAINTAINER Jo <jo@x>"),
            Instruction::Maintainer("Jo <jo@x>".into())
        );
        assert!(err("USER").message.contains("exactly one"));
        assert!(err("EXPOSE").message.contains("at least one port"));
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(ok("HEALTHCHECK NONE"), Instruction::Healthcheck(None));
        assert_eq!(
            ok(
                "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --start-interval=500ms --retries=3 CMD curl -f x || exit 1"
            ),
            Instruction::Healthcheck(Some(Health {
                test: vec!["CMD-SHELL".into(), "curl -f x || exit 1".into()],
                interval: Some(30_000_000_000),
                timeout: Some(90_000_000_000),
                start_period: Some(1_500_000_000),
                start_interval: Some(500_000_000),
                retries: Some(3),
            }))
        );
        let Instruction::Healthcheck(Some(h)) = ok("healthcheck cmd [\"/bin/check\", \"-q\"]")
        else {
            panic!()
        };
        assert_eq!(h.test, ["CMD", "/bin/check", "-q"]);
        assert!(
            err("HEALTHCHECK --interval=5s NONE")
                .message
                .contains("NONE takes no")
        );
        assert!(
            err("HEALTHCHECK RUN x")
                .message
                .contains("expects CMD or NONE")
        );
        assert!(err("HEALTHCHECK CMD").message.contains("needs a command"));
        assert!(
            err("HEALTHCHECK --interval=5 CMD x")
                .message
                .contains("invalid duration")
        );
        assert!(
            err("HEALTHCHECK --interval=10us CMD x")
                .message
                .contains("less than 1ms")
        );
        assert!(
            err("HEALTHCHECK --retries=-1 CMD x")
                .message
                .contains("negative")
        );
        assert!(
            err("HEALTHCHECK --foo=1 CMD x")
                .message
                .contains("unknown flag --foo")
        );
    }

    #[test]
    fn onbuild_forms() {
        assert_eq!(
            ok("ONBUILD  run echo hi"),
            Instruction::Onbuild("run echo hi".into())
        );
        assert_eq!(
            ok("ONBUILD COPY --chown=1 . /app/"),
            Instruction::Onbuild("COPY --chown=1 . /app/".into())
        );
        assert!(
            err("ONBUILD ONBUILD RUN x")
                .message
                .contains("ONBUILD ONBUILD")
        );
        assert!(err("ONBUILD FROM x").message.contains("not allowed"));
        let e = err("ONBUILD RUNN x");
        assert!(e.message.contains("did you mean RUN?"));
        assert_eq!(e.location, Some(Location::new(1, 9)));
        assert!(err("ONBUILD RUN").message.contains("requires a command"));
        assert!(err("ONBUILD").message.contains("requires an instruction"));
    }

    #[test]
    fn unknown_instruction() {
        let e = err("FROM x\n  COPPY a b");
        assert_eq!(e.message, "unknown instruction: COPPY (did you mean COPY?)");
        assert_eq!(e.location, Some(Location::new(2, 3)));
        assert_eq!(
            err("FROM x\nfrobnicate a").message,
            "unknown instruction: frobnicate"
        );
    }

    #[test]
    fn durations_and_chmod() {
        assert_eq!(parse_duration("1h2m3s"), Some(3_723_000_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_duration("-1s"), Some(-1_000_000_000));
        assert_eq!(parse_duration("1"), None);
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
        assert!(
            valid_chmod("644")
                && valid_chmod("0755")
                && valid_chmod("u+x,go-w")
                && valid_chmod("a=rX")
        );
        assert!(
            !valid_chmod("999") && !valid_chmod("rwx") && !valid_chmod("") && !valid_chmod("77777")
        );
    }
}
