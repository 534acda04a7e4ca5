//! The part of Go's text/template that scripts use with buildah's `--format`, rendered against
//! the JSON of what buildah would have formatted.
//!
//! Supported: text and `{{PIPELINE}}` actions (with `{{-`/`-}}` trimming and `{{/* comments */}}`);
//! fields `.A.B`, `.`, `$`, `$var.A`; string, raw-string, number and boolean literals;
//! parenthesised pipelines; `|` pipes; `{{if}}`/`{{else if}}`/`{{else}}`/`{{end}}`,
//! `{{range}}` (with `$v :=` or `$k, $v :=`, and `{{else}}`), `{{with}}`, `{{$x := …}}`; and the
//! functions `json`, `index`, `len`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `not`, `and`, `or`,
//! `print`, `println`, `printf`, `upper`, `lower`, `join`.
//!
//! Field names match JSON keys ignoring case, `_` and `.` (so `{{.OCIv1.RootFS.DiffIDs}}` finds
//! `diff_ids`). Values print as Go's fmt prints them: strings bare, lists `[a b]`, maps
//! `map[k:v]`. Go formats Go structs, where an unset field still has its zero value; kiln formats
//! JSON, where an unset field is absent or null. So an absent or null key renders as the zero
//! value of what that field is in buildah's structs: `[]` for lists (`Entrypoint`, `Cmd`, …),
//! `map[]` for maps (`Labels`, …), `<nil>` for pointers (`Healthcheck`), else an empty string;
//! a key a map lacks, read as a field (`.Labels.x`), is Go's `<no value>`. Only
//! a name that is not a field of the top-level object (which is always complete) is an error, as
//! Go's "can't evaluate field".

use anyhow::{Result, anyhow};
use serde_json::Value;
use std::fmt::Write as _;

/// Render template `t` against `root`. A literal `\n` or `\t` in `t` is a newline or tab, as
/// buildah users write them in shell words.
pub fn render(t: &str, root: &Value) -> Result<String> {
    let t = t.replace("\\n", "\n").replace("\\t", "\t");
    let nodes = parse(&t).map_err(|e| anyhow!("template: {e}"))?;
    let mut ex = Exec {
        root,
        vars: vec![("$".into(), V::Ref(root))],
    };
    let mut out = String::new();
    ex.walk(&nodes, &V::Ref(root), &mut out)
        .map_err(|e| anyhow!("template: {e}"))?;
    Ok(out)
}

// ---------- values ----------

/// What an unset field is in Go: its zero value, by kind.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Zero {
    Str,
    List,
    Map,
    Nil,
    Bool,
    Num,
    /// A key a map lacks, read as a field (`.Labels.x`): Go prints `<no value>`.
    NoValue,
}

/// A value during execution.
#[derive(Clone, Debug)]
enum V<'a> {
    Ref(&'a Value),
    Own(Value),
    Zero(Zero),
}

impl<'a> V<'a> {
    fn json(&self) -> Option<&Value> {
        match self {
            V::Ref(v) => Some(v),
            V::Own(v) => Some(v),
            V::Zero(_) => None,
        }
    }

    fn truthy(&self) -> bool {
        match self.json() {
            None => false,
            Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(m)) => !m.is_empty(),
        }
    }

    /// As Go's fmt prints it with `%v`.
    fn print(&self) -> String {
        match self {
            V::Zero(z) => match z {
                Zero::Str => String::new(),
                Zero::List => "[]".into(),
                Zero::Map => "map[]".into(),
                Zero::Nil => "<nil>".into(),
                Zero::Bool => "false".into(),
                Zero::Num => "0".into(),
                Zero::NoValue => "<no value>".into(),
            },
            V::Ref(v) => go_fmt(v),
            V::Own(v) => go_fmt(v),
        }
    }

    /// As Go's `json.Marshal` writes it (a nil list, map or pointer is `null`).
    fn to_json(&self) -> Result<String> {
        Ok(match self {
            V::Zero(Zero::Str) => "\"\"".into(),
            V::Zero(Zero::Bool) => "false".into(),
            V::Zero(Zero::Num) => "0".into(),
            V::Zero(_) => "null".into(),
            V::Ref(v) => serde_json::to_string(v)?,
            V::Own(v) => serde_json::to_string(v)?,
        })
    }

    fn type_name(&self) -> &'static str {
        match self.json() {
            None | Some(Value::Null) => "nil",
            Some(Value::Bool(_)) => "bool",
            Some(Value::Number(_)) => "number",
            Some(Value::String(_)) => "string",
            Some(Value::Array(_)) => "list",
            Some(Value::Object(_)) => "map",
        }
    }
}

fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut items: Vec<_> = m.iter().collect();
            items.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = items
                .into_iter()
                .map(|(k, x)| format!("{k}:{}", go_fmt(x)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '.')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The zero value of buildah's field of this name (see the module comment).
fn zero_of(field: &str) -> Zero {
    match fold(field).as_str() {
        "entrypoint" | "cmd" | "env" | "shell" | "onbuild" | "diffids" | "history" | "names"
        | "test" | "layers" | "manifests" | "features" | "osfeatures" => Zero::List,
        "labels" | "annotations" | "imageannotations" | "exposedports" | "volumes" => Zero::Map,
        "healthcheck" | "created" => Zero::Nil,
        "argsescaped" | "emptylayer" | "readonly" | "builder" => Zero::Bool,
        "retries" | "size" => Zero::Num,
        _ => Zero::Str,
    }
}

// ---------- parsing ----------

#[derive(Debug)]
enum Node {
    Text(String),
    Print(Pipe),
    If(Vec<(Pipe, Vec<Node>)>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// `$a, $b := cmd | cmd …`
#[derive(Debug)]
struct Pipe {
    decl: Vec<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug)]
enum Arg {
    /// `.A.B` (no fields: `.`)
    Dot(Vec<String>),
    /// `$x.A.B`
    Var(String, Vec<String>),
    Lit(Value),
    Func(String),
    /// `(pipeline).A.B`
    Sub(Pipe, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(Value),
    Ident(String),
    Pipe,
    Open,
    /// `)` and the fields right after it
    Close(Vec<String>),
    Declare,
    Comma,
}

/// A template split into text and action contents.
enum Seg {
    Text(String),
    Action(String),
}

fn segments(t: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    let mut rest = t;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_before = after.starts_with("- ")
            || after.starts_with("-\t")
            || after.starts_with("-\n")
            || after.starts_with("-\r");
        if trim_before {
            text = text.trim_end();
        }
        segs.push(Seg::Text(text.to_string()));
        // Find the closing braces outside string literals.
        let bytes = after.as_bytes();
        let mut i = 0;
        let mut end = None;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        if bytes[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                b'`' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'`' {
                        i += 1;
                    }
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let Some(end) = end else {
            return Err(format!("unclosed action in {t:?}"));
        };
        let mut body = &after[..end];
        if trim_before {
            body = &body[1..];
        }
        trim_next = body.ends_with(" -")
            || body.ends_with("\t-")
            || body.ends_with("\n-")
            || body.ends_with("\r-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            segs.push(Seg::Action(body.to_string()));
        }
        rest = &after[end + 2..];
    }
    segs.push(Seg::Text(if trim_next {
        rest.trim_start().to_string()
    } else {
        rest.to_string()
    }));
    Ok(segs)
}

fn fields(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let word_end = |from: usize| {
            let mut j = from;
            while j < chars.len() && is_word(chars[j]) {
                j += 1;
            }
            j
        };
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                let j = word_end(i + 1);
                let f: String = chars[i + 1..j].iter().collect();
                if !f.is_empty() && !f.starts_with('.') {
                    return Err(format!("unexpected {f:?} after ) in {s:?}"));
                }
                toks.push(Tok::Close(fields(&f)));
                i = j;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Declare);
                i += 1;
            }
            '"' => {
                let mut j = i + 1;
                let mut out = String::new();
                loop {
                    match chars.get(j) {
                        None => return Err(format!("unterminated string in {s:?}")),
                        Some('"') => break,
                        Some('\\') => {
                            j += 1;
                            match chars.get(j) {
                                Some('n') => out.push('\n'),
                                Some('t') => out.push('\t'),
                                Some('r') => out.push('\r'),
                                Some(&c) => out.push(c),
                                None => return Err(format!("unterminated string in {s:?}")),
                            }
                        }
                        Some(&c) => out.push(c),
                    }
                    j += 1;
                }
                toks.push(Tok::Str(out));
                i = j + 1;
            }
            '`' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '`' {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!("unterminated raw string in {s:?}"));
                }
                toks.push(Tok::Str(chars[i + 1..j].iter().collect()));
                i = j + 1;
            }
            '.' => {
                let j = word_end(i);
                let f: String = chars[i..j].iter().collect();
                if f.chars().nth(1).is_some_and(|c| c.is_ascii_digit()) {
                    toks.push(Tok::Num(number(&f).ok_or(format!("bad number {f:?}"))?));
                } else {
                    toks.push(Tok::Field(fields(&f)));
                }
                i = j;
            }
            '$' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[i..j].iter().collect();
                let k = word_end(j);
                let f: String = chars[j..k].iter().collect();
                toks.push(Tok::Var(name, fields(&f)));
                i = k;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '.') {
                    j += 1;
                }
                let n: String = chars[i..j].iter().collect();
                toks.push(Tok::Num(number(&n).ok_or(format!("bad number {n:?}"))?));
                i = j;
            }
            c if c.is_alphabetic() || c == '_' => {
                let j = word_end(i);
                toks.push(Tok::Ident(chars[i..j].iter().collect()));
                i = j;
            }
            other => return Err(format!("unexpected {other:?} in {s:?}")),
        }
    }
    Ok(toks)
}

fn number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    s.parse::<f64>().ok().map(Value::from)
}

/// Parse a pipeline from `toks[*i..]`, up to the end or a `)`.
fn parse_pipe(toks: &[Tok], i: &mut usize, src: &str) -> Result<Pipe, String> {
    let mut decl = Vec::new();
    // `$a := …` or `$a, $b := …`
    let mut j = *i;
    let mut names = Vec::new();
    while let Some(Tok::Var(n, f)) = toks.get(j) {
        if !f.is_empty() {
            break;
        }
        names.push(n.clone());
        j += 1;
        match toks.get(j) {
            Some(Tok::Comma) => j += 1,
            Some(Tok::Declare) => {
                decl = names.clone();
                *i = j + 1;
                break;
            }
            _ => break,
        }
    }
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while let Some(t) = toks.get(*i) {
        match t {
            Tok::Close(_) => break,
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err(format!("missing command before | in {src:?}"));
                }
                cmds.push(std::mem::take(&mut cmd));
                *i += 1;
            }
            Tok::Open => {
                *i += 1;
                let sub = parse_pipe(toks, i, src)?;
                let Some(Tok::Close(f)) = toks.get(*i) else {
                    return Err(format!("unclosed ( in {src:?}"));
                };
                cmd.push(Arg::Sub(sub, f.clone()));
                *i += 1;
            }
            Tok::Field(f) => {
                cmd.push(Arg::Dot(f.clone()));
                *i += 1;
            }
            Tok::Var(n, f) => {
                cmd.push(Arg::Var(n.clone(), f.clone()));
                *i += 1;
            }
            Tok::Str(s) => {
                cmd.push(Arg::Lit(Value::String(s.clone())));
                *i += 1;
            }
            Tok::Num(n) => {
                cmd.push(Arg::Lit(n.clone()));
                *i += 1;
            }
            Tok::Ident(id) => {
                cmd.push(match id.as_str() {
                    "true" => Arg::Lit(Value::Bool(true)),
                    "false" => Arg::Lit(Value::Bool(false)),
                    "nil" => Arg::Lit(Value::Null),
                    f if FUNCS.contains(&f) => Arg::Func(id.clone()),
                    f => return Err(format!("function {f:?} not defined")),
                });
                *i += 1;
            }
            Tok::Comma | Tok::Declare => return Err(format!("unexpected token in {src:?}")),
        }
    }
    if !cmd.is_empty() {
        cmds.push(cmd);
    }
    if cmds.is_empty() {
        return Err(format!("missing value in {{{{{src}}}}}"));
    }
    Ok(Pipe { decl, cmds })
}

fn pipe_of(src: &str) -> Result<Pipe, String> {
    let toks = lex(src)?;
    let mut i = 0;
    let p = parse_pipe(&toks, &mut i, src)?;
    if i != toks.len() {
        return Err(format!("unexpected ) in {{{{{src}}}}}"));
    }
    Ok(p)
}

const FUNCS: &[&str] = &[
    "json", "index", "len", "eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or", "print",
    "println", "printf", "upper", "lower", "join",
];

/// What ended a list of nodes.
enum Stop {
    Eof,
    End,
    Else(Option<String>),
}

fn parse(t: &str) -> Result<Vec<Node>, String> {
    let segs = segments(t)?;
    let mut it = segs.into_iter();
    let (nodes, stop) = parse_nodes(&mut it)?;
    match stop {
        Stop::Eof => Ok(nodes),
        Stop::End => Err("unexpected {{end}}".into()),
        Stop::Else(_) => Err("unexpected {{else}}".into()),
    }
}

fn parse_nodes(it: &mut impl Iterator<Item = Seg>) -> Result<(Vec<Node>, Stop), String> {
    let mut nodes = Vec::new();
    while let Some(seg) = it.next() {
        let a = match seg {
            Seg::Text(s) => {
                if !s.is_empty() {
                    nodes.push(Node::Text(s));
                }
                continue;
            }
            Seg::Action(a) => a,
        };
        let (word, rest) = match a.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (a.as_str(), ""),
        };
        match word {
            "end" => return Ok((nodes, Stop::End)),
            "else" => {
                let cond = rest.strip_prefix("if").map(|r| r.trim().to_string());
                if cond.is_none() && !rest.is_empty() {
                    return Err(format!("unexpected {{{{{a}}}}}"));
                }
                return Ok((nodes, Stop::Else(cond)));
            }
            "if" => {
                let mut branches = vec![(pipe_of(rest)?, Vec::new())];
                let mut otherwise = Vec::new();
                loop {
                    let (body, stop) = parse_nodes(it)?;
                    match stop {
                        Stop::Eof => return Err("{{if}} without {{end}}".into()),
                        Stop::End => {
                            branches.last_mut().expect("a branch").1 = body;
                            break;
                        }
                        Stop::Else(Some(cond)) => {
                            branches.last_mut().expect("a branch").1 = body;
                            branches.push((pipe_of(&cond)?, Vec::new()));
                        }
                        Stop::Else(None) => {
                            branches.last_mut().expect("a branch").1 = body;
                            let (body, stop) = parse_nodes(it)?;
                            if !matches!(stop, Stop::End) {
                                return Err("{{else}} without {{end}}".into());
                            }
                            otherwise = body;
                            break;
                        }
                    }
                }
                nodes.push(Node::If(branches, otherwise));
            }
            "range" | "with" => {
                let pipe = pipe_of(rest)?;
                if word == "with" && !pipe.decl.is_empty() && pipe.decl.len() != 1 {
                    return Err(format!("too many declarations in {{{{{a}}}}}"));
                }
                if pipe.decl.len() > 2 {
                    return Err(format!("too many declarations in {{{{{a}}}}}"));
                }
                let (body, stop) = parse_nodes(it)?;
                let otherwise = match stop {
                    Stop::End => Vec::new(),
                    Stop::Else(None) => {
                        let (body, stop) = parse_nodes(it)?;
                        if !matches!(stop, Stop::End) {
                            return Err(format!("{{{{{word}}}}} without {{{{end}}}}"));
                        }
                        body
                    }
                    _ => return Err(format!("{{{{{word}}}}} without {{{{end}}}}")),
                };
                nodes.push(if word == "range" {
                    Node::Range(pipe, body, otherwise)
                } else {
                    Node::With(pipe, body, otherwise)
                });
            }
            "template" | "define" | "block" | "break" | "continue" => {
                return Err(format!("{{{{{word}}}}} is not supported"));
            }
            _ => nodes.push(Node::Print(pipe_of(&a)?)),
        }
    }
    Ok((nodes, Stop::Eof))
}

// ---------- execution ----------

struct Exec<'a> {
    root: &'a Value,
    vars: Vec<(String, V<'a>)>,
}

impl<'a> Exec<'a> {
    fn walk(&mut self, nodes: &[Node], dot: &V<'a>, out: &mut String) -> Result<(), String> {
        for n in nodes {
            match n {
                Node::Text(s) => out.push_str(s),
                Node::Print(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        out.push_str(&v.print());
                    }
                }
                Node::If(branches, otherwise) => {
                    let mark = self.vars.len();
                    let mut done = false;
                    for (cond, body) in branches {
                        if self.pipe(cond, dot)?.truthy() {
                            self.walk(body, dot, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.walk(otherwise, dot, out)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::With(p, body, otherwise) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    if v.truthy() {
                        self.walk(body, &v, out)?;
                    } else {
                        self.walk(otherwise, dot, out)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range(p, body, otherwise) => {
                    let mark = self.vars.len();
                    let Pipe { cmds, decl } = p;
                    let by_key = |m: Vec<(String, V<'a>)>| -> Vec<(V<'a>, V<'a>)> {
                        let mut m = m;
                        m.sort_by(|a, b| a.0.cmp(&b.0));
                        m.into_iter()
                            .map(|(k, x)| (V::Own(Value::String(k)), x))
                            .collect()
                    };
                    let items: Vec<(V<'a>, V<'a>)> = match self.cmds(cmds, dot)? {
                        V::Zero(_) | V::Ref(Value::Null) | V::Own(Value::Null) => Vec::new(),
                        V::Ref(Value::Array(a)) => a
                            .iter()
                            .enumerate()
                            .map(|(i, x)| (V::Own(Value::from(i)), V::Ref(x)))
                            .collect(),
                        V::Own(Value::Array(a)) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (V::Own(Value::from(i)), V::Own(x)))
                            .collect(),
                        V::Ref(Value::Object(m)) => {
                            by_key(m.iter().map(|(k, x)| (k.clone(), V::Ref(x))).collect())
                        }
                        V::Own(Value::Object(m)) => {
                            by_key(m.into_iter().map(|(k, x)| (k, V::Own(x))).collect())
                        }
                        other => return Err(format!("range can't iterate over {}", other.print())),
                    };
                    if items.is_empty() {
                        self.walk(otherwise, dot, out)?;
                    }
                    for (k, x) in items {
                        let inner = self.vars.len();
                        match decl.as_slice() {
                            [] => {}
                            [v] => self.vars.push((v.clone(), x.clone())),
                            [kn, vn, ..] => {
                                self.vars.push((kn.clone(), k));
                                self.vars.push((vn.clone(), x.clone()));
                            }
                        }
                        self.walk(body, &x, out)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &V<'a>) -> Result<V<'a>, String> {
        let v = self.cmds(&p.cmds, dot)?;
        if let Some(name) = p.decl.first() {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn cmds(&mut self, cmds: &[Vec<Arg>], dot: &V<'a>) -> Result<V<'a>, String> {
        let mut prev: Option<V<'a>> = None;
        for cmd in cmds {
            prev = Some(self.cmd(cmd, dot, prev)?);
        }
        prev.ok_or_else(|| "missing value".to_string())
    }

    fn cmd(&mut self, cmd: &[Arg], dot: &V<'a>, piped: Option<V<'a>>) -> Result<V<'a>, String> {
        let (first, rest) = cmd.split_first().ok_or("empty command")?;
        if let Arg::Func(name) = first {
            let mut args = rest
                .iter()
                .map(|a| self.arg(a, dot))
                .collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            return call(name, args);
        }
        if !rest.is_empty() || piped.is_some() {
            return Err(format!("can't give arguments to a non-function {first:?}"));
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, a: &Arg, dot: &V<'a>) -> Result<V<'a>, String> {
        match a {
            Arg::Dot(f) => self.fields(dot.clone(), f),
            Arg::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable: {name}"))?;
                self.fields(v, f)
            }
            Arg::Lit(v) => Ok(V::Own(v.clone())),
            Arg::Func(name) => call(name, Vec::new()),
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                self.fields(v, f)
            }
        }
    }

    fn fields(&self, mut cur: V<'a>, fields: &[String]) -> Result<V<'a>, String> {
        let mut parent: Option<&str> = None;
        for f in fields {
            // In buildah's structs a map (`Labels`) lacking a key gives `<no value>`; a struct
            // lacking a field here only lacks it in the JSON, so it has its zero value.
            let zero = if parent.is_some_and(|p| zero_of(p) == Zero::Map) {
                Zero::NoValue
            } else {
                zero_of(f)
            };
            cur = match cur {
                V::Zero(_) => V::Zero(zero),
                V::Ref(v) => match lookup(v, f) {
                    Some(Value::Null) => V::Zero(zero),
                    Some(x) => V::Ref(x),
                    None if v.is_object() && !std::ptr::eq(v, self.root) => V::Zero(zero),
                    None => return Err(cant_evaluate(f, v)),
                },
                V::Own(v) => match lookup(&v, f) {
                    Some(Value::Null) => V::Zero(zero),
                    Some(x) => V::Own(x.clone()),
                    None if v.is_object() => V::Zero(zero),
                    None => return Err(cant_evaluate(f, &v)),
                },
            };
            parent = Some(f);
        }
        Ok(cur)
    }
}

fn cant_evaluate(f: &str, v: &Value) -> String {
    format!("can't evaluate field {f} in type {}", V::Ref(v).type_name())
}

fn lookup<'v>(v: &'v Value, field: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    if let Some(x) = obj.get(field) {
        return Some(x);
    }
    let f = fold(field);
    obj.iter().find(|(k, _)| fold(k) == f).map(|(_, x)| x)
}

/// A list index or a map key.
enum Key {
    Idx(usize),
    Name(String),
}

fn get<'v>(v: &'v Value, k: &Key) -> Option<&'v Value> {
    match k {
        Key::Idx(i) => v.as_array()?.get(*i),
        Key::Name(n) => v.as_object()?.get(n),
    }
    .filter(|x| !x.is_null())
}

/// The element `k` of `cur`, borrowed when `cur` is.
fn child<'a>(cur: &V<'a>, k: &Key) -> Option<V<'a>> {
    match cur {
        V::Ref(v) => get(v, k).map(V::Ref),
        V::Own(v) => get(v, k).cloned().map(V::Own),
        V::Zero(_) => None,
    }
}

fn want(name: &str, args: &[V], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

/// Compare two basic values (`eq`, `lt`, …): numbers as numbers, else as printed.
fn compare(a: &V, b: &V) -> Result<std::cmp::Ordering, String> {
    let num = |v: &V| match v.json() {
        Some(Value::Number(n)) => n.as_f64(),
        None => match v {
            V::Zero(Zero::Num) => Some(0.0),
            _ => None,
        },
        _ => None,
    };
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return x
            .partial_cmp(&y)
            .ok_or_else(|| "incomparable numbers".to_string());
    }
    for v in [a, b] {
        if matches!(v.json(), Some(Value::Array(_)) | Some(Value::Object(_)))
            || matches!(v, V::Zero(Zero::List | Zero::Map))
        {
            return Err(format!(
                "incompatible types for comparison: {}",
                v.type_name()
            ));
        }
    }
    Ok(a.print().cmp(&b.print()))
}

fn call<'a>(name: &str, args: Vec<V<'a>>) -> Result<V<'a>, String> {
    use std::cmp::Ordering::*;
    let s = |x: String| Ok(V::Own(Value::String(x)));
    let b = |x: bool| Ok(V::Own(Value::Bool(x)));
    match name {
        "json" => {
            want(name, &args, 1)?;
            s(args[0].to_json().map_err(|e| e.to_string())?)
        }
        "len" => {
            want(name, &args, 1)?;
            let n = match args[0].json() {
                None => 0,
                Some(Value::String(x)) => x.len(),
                Some(Value::Array(x)) => x.len(),
                Some(Value::Object(x)) => x.len(),
                Some(Value::Null) => 0,
                Some(_) => return Err(format!("len of type {}", args[0].type_name())),
            };
            Ok(V::Own(Value::from(n)))
        }
        "index" => {
            let (first, keys) = args.split_first().ok_or("wrong number of args for index")?;
            let mut cur = first.clone();
            for k in keys {
                let key = match (cur.json(), k.json()) {
                    (Some(Value::Array(a)), Some(Value::Number(n))) => {
                        let i = n.as_u64().ok_or(format!("index out of range: {n}"))? as usize;
                        if i >= a.len() {
                            return Err(format!("index out of range: {i}"));
                        }
                        Key::Idx(i)
                    }
                    (Some(Value::Object(_)), _) => Key::Name(k.print()),
                    (Some(Value::Array(_)), _) | (None, _)
                        if matches!(cur, V::Zero(Zero::List)) =>
                    {
                        return Err(format!("index out of range: {}", k.print()));
                    }
                    (None | Some(Value::Null), _) => Key::Name(k.print()),
                    _ => {
                        return Err(format!(
                            "can't index item of type {} with {}",
                            cur.type_name(),
                            k.print()
                        ));
                    }
                };
                cur = child(&cur, &key).unwrap_or(V::Zero(Zero::Str));
            }
            Ok(cur)
        }
        "not" => {
            want(name, &args, 1)?;
            b(!args[0].truthy())
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err(format!("wrong number of args for {name}"));
            }
            let and = name == "and";
            let n = args.len();
            for (i, a) in args.into_iter().enumerate() {
                if i + 1 == n || a.truthy() != and {
                    return Ok(a);
                }
            }
            unreachable!("the last argument returns")
        }
        "eq" => {
            let (first, rest) = args.split_first().ok_or("wrong number of args for eq")?;
            if rest.is_empty() {
                return Err("wrong number of args for eq: want at least 2".into());
            }
            for r in rest {
                if compare(first, r)? == Equal {
                    return b(true);
                }
            }
            b(false)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            let o = compare(&args[0], &args[1])?;
            b(match name {
                "ne" => o != Equal,
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            })
        }
        "print" => {
            // Go's Sprint: spaces between operands when neither is a string.
            let mut out = String::new();
            for (i, a) in args.iter().enumerate() {
                let is_str = |v: &V| matches!(v.json(), Some(Value::String(_)));
                if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                    out.push(' ');
                }
                out.push_str(&a.print());
            }
            s(out)
        }
        "println" => s(format!(
            "{}\n",
            args.iter().map(V::print).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            let (f, rest) = args
                .split_first()
                .ok_or("wrong number of args for printf")?;
            s(printf(&f.print(), rest))
        }
        "upper" | "lower" => {
            want(name, &args, 1)?;
            let x = args[0].print();
            s(if name == "upper" {
                x.to_uppercase()
            } else {
                x.to_lowercase()
            })
        }
        "join" => {
            want(name, &args, 2)?;
            let sep = args[1].print();
            match args[0].json() {
                Some(Value::Array(a)) => s(a
                    .iter()
                    .map(|x| V::Ref(x).print())
                    .collect::<Vec<_>>()
                    .join(&sep)),
                None => s(String::new()),
                _ => Err(format!("join of type {}", args[0].type_name())),
            }
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

/// `%s %v %d %q %%` of Go's Printf.
fn printf(f: &str, args: &[V]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb) => match args.next() {
                Some(a) => match verb {
                    'q' => {
                        let _ = write!(out, "{:?}", a.print());
                    }
                    _ => out.push_str(&a.print()),
                },
                None => {
                    let _ = write!(out, "%!{verb}(MISSING)");
                }
            },
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        render(t, v).unwrap_or_else(|e| panic!("{t}: {e:#}"))
    }

    fn sample() -> Value {
        json!({
            "FromImageID": "abc",
            "Docker": {"config": {"Cmd": null, "Healthcheck": null}},
            "OCIv1": {
                "created": "2024-01-01T00:00:00Z",
                "config": {"Env": ["A=1", "B=2"], "Labels": {"x": "y", "a": "b"}, "Cmd": ["sh"]},
                "rootfs": {"diff_ids": ["sha256:1"]}
            }
        })
    }

    #[test]
    fn fields_and_printing() {
        let v = sample();
        assert_eq!(r("{{.FromImageID}}", &v), "abc");
        assert_eq!(r("{{.OCIv1.Config.Env}}", &v), "[A=1 B=2]");
        assert_eq!(r("{{ .OCIv1.RootFS.DiffIDs }}", &v), "[sha256:1]");
        assert_eq!(r("{{.OCIv1.Config.Labels}}", &v), "map[a:b x:y]");
        assert_eq!(
            r("env={{json .OCIv1.Config.Env}}\\n", &v),
            "env=[\"A=1\",\"B=2\"]\n"
        );
        assert_eq!(r("{{.OCIv1.Config.Env | json}}", &v), "[\"A=1\",\"B=2\"]");
    }

    #[test]
    fn unset_fields_are_zero_values() {
        let v = sample();
        assert_eq!(r("{{.OCIv1.Config.User}}", &v), "");
        assert_eq!(r("{{.OCIv1.Config.Entrypoint}}", &v), "[]");
        assert_eq!(r("{{.Docker.Config.Cmd}}", &v), "[]");
        assert_eq!(r("{{.OCIv1.Config.Volumes}}", &v), "map[]");
        assert_eq!(r("{{.OCIv1.Author}}", &v), "");
        assert_eq!(r("{{.Docker.Config.Healthcheck}}", &v), "<nil>");
        assert_eq!(r("{{json .OCIv1.Config.Entrypoint}}", &v), "null");
        assert_eq!(r("{{len .OCIv1.Config.Entrypoint}}", &v), "0");
        assert_eq!(r("{{.Docker.Config.Healthcheck.Test}}", &v), "[]");
        // A key a map lacks, as a field: Go's `<no value>` (but `index` gives the zero value).
        assert_eq!(r("{{.OCIv1.Config.Labels.x}}", &v), "y");
        assert_eq!(r("{{.OCIv1.Config.Labels.nope}}", &v), "<no value>");
        assert_eq!(r("{{.OCIv1.Config.Annotations.nope}}", &v), "<no value>");
        // Not a field of the (complete) top-level object: Go's error.
        let e = render("{{.Nope}}", &v).unwrap_err().to_string();
        assert!(e.contains("can't evaluate field Nope"), "{e}");
        // A field of a string.
        assert!(render("{{.FromImageID.X}}", &v).is_err());
    }

    #[test]
    fn functions() {
        let v = sample();
        assert_eq!(r(r#"{{index .OCIv1.Config.Labels "x"}}"#, &v), "y");
        assert_eq!(r(r#"{{index .OCIv1.Config.Labels "nope"}}"#, &v), "");
        assert_eq!(r(r#"{{index .OCIv1.Config.Annotations "k"}}"#, &v), "");
        assert_eq!(r("{{index .OCIv1.Config.Env 1}}", &v), "B=2");
        assert!(render("{{index .OCIv1.Config.Env 5}}", &v).is_err());
        assert_eq!(
            r("{{len .OCIv1.Config.Env}} {{len .OCIv1.Config.Labels}}", &v),
            "2 2"
        );
        assert_eq!(
            r(r#"{{eq .FromImageID "abc"}} {{ne 1 2}} {{lt 1 2}}"#, &v),
            "true true true"
        );
        assert_eq!(r(r#"{{printf "%s-%d" .FromImageID 3}}"#, &v), "abc-3");
        assert_eq!(r(r#"{{join .OCIv1.Config.Env ","}}"#, &v), "A=1,B=2");
        assert_eq!(r("{{(index .OCIv1.Config.Env 0) | upper}}", &v), "A=1");
        assert!(render("{{nosuch .X}}", &v).is_err());
    }

    #[test]
    fn control_structures() {
        let v = sample();
        assert_eq!(
            r("{{if .OCIv1.Config.User}}user{{else}}root{{end}}", &v),
            "root"
        );
        assert_eq!(
            r("{{if .OCIv1.Config.Cmd}}cmd{{else if .X}}x{{end}}", &v),
            "cmd"
        );
        assert_eq!(
            r(
                r#"{{if eq .FromImageID "zzz"}}a{{else if eq .FromImageID "abc"}}b{{else}}c{{end}}"#,
                &v
            ),
            "b"
        );
        assert_eq!(
            r("{{range .OCIv1.Config.Env}}<{{.}}>{{end}}", &v),
            "<A=1><B=2>"
        );
        assert_eq!(
            r(
                "{{range $k, $v := .OCIv1.Config.Labels}}{{$k}}={{$v}};{{end}}",
                &v
            ),
            "a=b;x=y;"
        );
        assert_eq!(
            r(
                "{{range $i, $e := .OCIv1.Config.Env}}{{$i}}:{{$e}} {{end}}",
                &v
            ),
            "0:A=1 1:B=2 "
        );
        assert_eq!(
            r("{{range .OCIv1.Config.Entrypoint}}x{{else}}none{{end}}", &v),
            "none"
        );
        assert_eq!(
            r("{{range .OCIv1.Config.Env}}{{$.FromImageID}}{{end}}", &v),
            "abcabc"
        );
        assert_eq!(r("{{with .OCIv1.Config}}{{.Cmd}}{{end}}", &v), "[sh]");
        assert_eq!(
            r(
                "{{$id := .FromImageID}}{{range .OCIv1.Config.Env}}{{$id}}{{end}}",
                &v
            ),
            "abcabc"
        );
        assert_eq!(
            r("a {{- /* note */ -}} b\n{{- .FromImageID }}", &v),
            "ababc"
        );
        assert_eq!(r("x  {{- .FromImageID -}}  y", &v), "xabcy");
        assert!(render("{{if .FromImageID}}open", &v).is_err());
        assert!(render("{{end}}", &v).is_err());
    }
}
