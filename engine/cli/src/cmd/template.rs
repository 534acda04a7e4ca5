//! The part of Go's text/template that scripts use with buildah's `--format`, rendered against
//! the JSON of what buildah would have formatted.
//!
//! Supported: text and `{{PIPELINE}}` actions (with `{{-`/`-}}` trimming and `{{/* comments */}}`);
//! fields `.A.B`, `.`, `$`, `$var.A`; string, raw-string, number and boolean literals;
//! parenthesised pipelines; `|` pipes; `{{if}}`/`{{else if}}`/`{{else}}`/`{{end}}`,
//! `{{range}}` (with `$v :=` or `$k, $v :=`, and `{{else}}`), `{{with}}`, `{{$x := …}}` (declares
//! `$x` in the current scope) and `{{$x = …}}` (sets the `$x` already declared); and the
//! functions `json`, `index`, `len`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `not`, `and`, `or`,
//! `print`, `println`, `printf`, `upper`, `lower`, `join`, `slice`. `printf` is Go's fmt (verbs,
//! flags, width, precision, `*`, `[n]`, and Go's `%!verb(type=value)` forms for mistakes).
//! Times (`.OCIv1.Created`, `.CreatedAtRaw`) print as Go's `time.Time` does and have its
//! argument-less methods (`.Created.Unix`). `table …` formats of the list verbs get a header row
//! and columns aligned as by Go's tabwriter ([`render_list`]).
//!
//! Field names of buildah's structs match JSON keys ignoring case, `_` and `.` (so
//! `{{.OCIv1.RootFS.DiffIDs}}` finds `diff_ids`); keys of what are Go maps in buildah's structs
//! (`Labels`, `Annotations`, `ExposedPorts`, `Volumes`) match exactly, as in Go. Values print as Go's fmt prints them: strings bare, lists `[a b]`, maps
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
    render_with(t, root, false)
}

/// Render `t` against `root` as a Go map rather than a struct: a key `root` lacks prints
/// `<no value>` instead of being an error (the header row of a `table` format).
fn render_map(t: &str, root: &Value) -> Result<String> {
    render_with(t, root, true)
}

fn render_with(t: &str, root: &Value, root_is_map: bool) -> Result<String> {
    let t = t.replace("\\n", "\n").replace("\\t", "\t");
    let nodes = parse(&t).map_err(|e| anyhow!("template: {e}"))?;
    let mut maps = std::collections::HashSet::new();
    go_maps(root, &mut maps);
    let mut ex = Exec {
        root,
        root_is_map,
        maps,
        vars: vec![("$".into(), V::Ref(root))],
    };
    let mut out = String::new();
    ex.walk(&nodes, &V::Ref(root), &mut out)
        .map_err(|e| anyhow!("template: {e}"))?;
    Ok(out)
}

/// The template of a `table …` format (buildah's `table` prefix, then optional blanks), if it is one.
pub fn table_body(format: &str) -> Option<&str> {
    let rest = format.strip_prefix("table")?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace) || rest.starts_with("{{"))
        .then(|| rest.trim_start())
}

/// What `kiln images|containers --format FORMAT` prints for `rows`, as buildah does: each row
/// rendered on its own line; for a `table …` format, a header row first (the template rendered
/// against `header`, where a field it lacks is `<no value>`; none with `noheading`), every blank
/// of the template a column break (buildah turns spaces into tabs), and the columns aligned by
/// Go's tabwriter with three spaces of padding. Nothing is printed when a row fails.
pub fn render_list(
    format: &str,
    header: &Value,
    rows: &[Value],
    noheading: bool,
) -> Result<String> {
    let mut out = String::new();
    let Some(body) = table_body(format) else {
        for r in rows {
            out.push_str(&render(format, r)?);
            out.push('\n');
        }
        return Ok(out);
    };
    let body = body.replace(' ', "\t");
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    };
    if !noheading {
        line(&mut out, render_map(&body, header)?);
    }
    for r in rows {
        line(&mut out, render(&body, r)?);
    }
    Ok(tabwrite(&out, 3))
}

/// Go's `text/tabwriter` (minimum width 0, `padding` spaces, no flags) over `text`: cells end at
/// tabs, a line's last cell is not aligned, and a column's width holds over consecutive lines
/// that have it.
pub fn tabwrite(text: &str, padding: usize) -> String {
    let ends_with_newline = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    tab_format(&lines, 0, lines.len(), &mut widths, padding, &mut out);
    if ends_with_newline {
        out.push('\n');
    }
    out
}

fn tab_format(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A block of lines that have a cell in this column.
        tab_write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        tab_format(lines, line0, this, widths, padding, out);
        widths.pop();
        line0 = this;
    }
    tab_write_lines(lines, line0, line1, widths, out);
}

fn tab_write_lines(
    lines: &[Vec<&str>],
    from: usize,
    to: usize,
    widths: &[usize],
    out: &mut String,
) {
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j) {
                out.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
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
    /// A Go `time.Time` (`*time.Time` when the flag is set), kept as its RFC 3339 JSON text:
    /// printed as Go prints times, marshalled as the JSON it came from.
    Time(String, bool),
}

impl<'a> V<'a> {
    fn json(&self) -> Option<&Value> {
        match self {
            V::Ref(v) => Some(v),
            V::Own(v) => Some(v),
            V::Zero(_) | V::Time(..) => None,
        }
    }

    fn truthy(&self) -> bool {
        if let V::Time(..) = self {
            return true;
        }
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
            V::Zero(Zero::NoValue) => "<no value>".into(),
            other => sprintf("%v", std::slice::from_ref(other)),
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
            V::Time(raw, _) => serde_json::to_string(raw)?,
        })
    }

    fn type_name(&self) -> &'static str {
        if let V::Time(..) = self {
            return "time.Time";
        }
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

/// Go's `time.Time.String()` of an RFC 3339 time: `2026-12-06 13:50:11.906033189 +0000 UTC`.
fn go_time(raw: &str) -> Option<String> {
    use chrono::Timelike as _;
    let t = chrono::DateTime::parse_from_rfc3339(raw).ok()?;
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let ns = t.nanosecond() % 1_000_000_000;
    if ns > 0 {
        let frac = format!("{ns:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let off = t.offset().local_minus_utc();
    let a = off.abs();
    let sign = if off < 0 { '-' } else { '+' };
    let num = format!("{sign}{:02}{:02}", a / 3600, a / 60 % 60);
    // Go names UTC; a zone it has no name for is printed by its offset twice.
    let name = if off == 0 {
        "UTC".to_string()
    } else {
        num.clone()
    };
    Some(format!("{s} {num} {name}"))
}

/// Whether a field of this name is a Go `time.Time` in buildah's structs (and whether a pointer).
fn time_field(field: &str) -> Option<bool> {
    match fold(field).as_str() {
        "created" => Some(true),
        "createdatraw" => Some(false),
        _ => None,
    }
}

/// A method of Go's `time.Time` that takes no arguments, called as a field (`.Created.Unix`).
fn time_method<'a>(raw: &str, name: &str) -> Option<V<'a>> {
    use chrono::{Datelike as _, Timelike as _};
    let t = chrono::DateTime::parse_from_rfc3339(raw).ok()?;
    let n = |x: i64| Some(V::Own(Value::from(x)));
    match name {
        "Unix" => n(t.timestamp()),
        "UnixMilli" => n(t.timestamp_millis()),
        "UnixNano" => n(t.timestamp_nanos_opt()?),
        "Year" => n(t.year().into()),
        "YearDay" => n(t.ordinal().into()),
        "Month" => Some(V::Own(Value::String(t.format("%B").to_string()))),
        "Day" => n(t.day().into()),
        "Hour" => n(t.hour().into()),
        "Minute" => n(t.minute().into()),
        "Second" => n(t.second().into()),
        "Nanosecond" => n((t.nanosecond() % 1_000_000_000).into()),
        "String" => Some(V::Own(Value::String(go_time(raw)?))),
        "IsZero" => Some(V::Own(Value::Bool(
            t.timestamp() == -62135596800 && t.nanosecond() == 0,
        ))),
        "UTC" => Some(V::Time(
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            false,
        )),
        _ => None,
    }
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '.')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Collect the objects under `v` that are Go maps in buildah's structs (`Labels`,
/// `Annotations`, `ExposedPorts`, `Volumes`, …: a field whose zero value is `map[]`), whose keys
/// are data, matched exactly; every other object stands for a struct.
fn go_maps(v: &Value, out: &mut std::collections::HashSet<*const Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if x.is_object() && zero_of(k) == Zero::Map {
                    // A map's values are strings or empty structs: nothing below is a field.
                    out.insert(x as *const Value);
                } else {
                    go_maps(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| go_maps(x, out)),
        _ => {}
    }
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

/// `$a, $b := cmd | cmd …` (or `$a = …`: `assign`)
#[derive(Debug)]
struct Pipe {
    decl: Vec<String>,
    /// `=`: the variables are ones already declared, set rather than declared anew.
    assign: bool,
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
    /// `:=`
    Declare,
    /// `=`
    Assign,
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
                toks.push(Tok::Assign);
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
                while j < chars.len()
                    && (chars[j].is_alphanumeric()
                        || chars[j] == '.'
                        || chars[j] == '_'
                        // an exponent's sign: 1e-7, 0x1p+3
                        || (matches!(chars[j], '+' | '-')
                            && matches!(chars[j - 1], 'e' | 'E' | 'p' | 'P')))
                {
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
    let s = s.replace('_', "");
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    let radix = match digits.get(..2) {
        Some("0x" | "0X") => Some(16),
        Some("0o" | "0O") => Some(8),
        Some("0b" | "0B") => Some(2),
        _ if digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(8)
        }
        _ => None,
    };
    if let Some(r) = radix {
        let body = if r == 8 && !digits[1..].starts_with(['o', 'O']) {
            &digits[1..]
        } else {
            &digits[2..]
        };
        if let Ok(i) = i64::from_str_radix(body, r) {
            return Some(Value::from(if neg { -i } else { i }));
        }
    }
    if s.ends_with(['e', 'E']) || s.contains("0x") || s.contains("0X") {
        return None;
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::from)
}

/// Parse a pipeline from `toks[*i..]`, up to the end or a `)`.
fn parse_pipe(toks: &[Tok], i: &mut usize, src: &str) -> Result<Pipe, String> {
    let mut decl = Vec::new();
    let mut assign = false;
    // `$a := …` or `$a, $b := …` (`=` for variables already declared)
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
            Some(t @ (Tok::Declare | Tok::Assign)) => {
                decl = names.clone();
                assign = *t == Tok::Assign;
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
                if sub.decl.len() > 1 {
                    return Err(format!("too many declarations in {src:?}"));
                }
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
            Tok::Comma | Tok::Declare | Tok::Assign => {
                return Err(format!("unexpected token in {src:?}"));
            }
        }
    }
    if !cmd.is_empty() {
        cmds.push(cmd);
    }
    if cmds.is_empty() {
        return Err(format!("missing value in {{{{{src}}}}}"));
    }
    Ok(Pipe { decl, assign, cmds })
}

/// The pipeline of an action; only `range` may declare two variables.
fn pipe_of(src: &str, range: bool) -> Result<Pipe, String> {
    let toks = lex(src)?;
    let mut i = 0;
    let p = parse_pipe(&toks, &mut i, src)?;
    if i != toks.len() {
        return Err(format!("unexpected ) in {{{{{src}}}}}"));
    }
    if p.decl.len() > if range { 2 } else { 1 } {
        return Err(format!("too many declarations in {{{{{src}}}}}"));
    }
    Ok(p)
}

const FUNCS: &[&str] = &[
    "json", "index", "len", "eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or", "print",
    "println", "printf", "upper", "lower", "join", "slice",
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
                let mut branches = vec![(pipe_of(rest, false)?, Vec::new())];
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
                            branches.push((pipe_of(&cond, false)?, Vec::new()));
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
                let pipe = pipe_of(rest, word == "range")?;
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
            _ => nodes.push(Node::Print(pipe_of(&a, false)?)),
        }
    }
    Ok((nodes, Stop::Eof))
}

// ---------- execution ----------

struct Exec<'a> {
    root: &'a Value,
    /// The root is a Go map (a table's header): a key it lacks is `<no value>`.
    root_is_map: bool,
    /// The objects of `root` that are Go maps (see [`go_maps`]).
    maps: std::collections::HashSet<*const Value>,
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
                    let Pipe { cmds, decl, assign } = p;
                    let by_key = |m: Vec<(String, V<'a>)>| -> Vec<(V<'a>, V<'a>)> {
                        let mut m = m;
                        m.sort_by(|a, b| a.0.cmp(&b.0));
                        m.into_iter()
                            .map(|(k, x)| (V::Own(Value::String(k)), x))
                            .collect()
                    };
                    let collection = self.cmds(cmds, dot)?;
                    // As Go: `range $x = …` first sets `$x` to what is ranged over (what it
                    // keeps when that is empty).
                    if *assign {
                        for name in decl {
                            self.set_var(name, collection.clone())?;
                        }
                    }
                    let items: Vec<(V<'a>, V<'a>)> = match collection {
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
                        match (decl.as_slice(), assign) {
                            ([], _) => {}
                            ([v], false) => self.vars.push((v.clone(), x.clone())),
                            ([kn, vn, ..], false) => {
                                self.vars.push((kn.clone(), k));
                                self.vars.push((vn.clone(), x.clone()));
                            }
                            // `range $x = …`: the variables declared before take each item.
                            ([v], true) => self.set_var(v, x.clone())?,
                            ([kn, vn, ..], true) => {
                                self.set_var(kn, k)?;
                                self.set_var(vn, x.clone())?;
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
        for name in &p.decl {
            if p.assign {
                self.set_var(name, v.clone())?;
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    /// `$x = …`: set the innermost variable of that name already declared (Go's `setVar`).
    fn set_var(&mut self, name: &str, v: V<'a>) -> Result<(), String> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(format!("undefined variable: {name}")),
        }
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
            // A Go map (`Labels`) is read by its exact key, and lacking it gives `<no value>`
            // (as does anything read from `<no value>`). A struct's field matches its JSON key
            // loosely, and one it lacks here only lacks it in the JSON, so has its zero value.
            let in_map = match &cur {
                V::Ref(v) => self.maps.contains(&(*v as *const Value)),
                V::Zero(z) => matches!(z, Zero::Map | Zero::NoValue),
                V::Own(_) => parent.is_some_and(|p| zero_of(p) == Zero::Map),
                V::Time(..) => false,
            };
            let zero = if in_map { Zero::NoValue } else { zero_of(f) };
            let at_root = matches!(cur, V::Ref(v) if std::ptr::eq(v, self.root));
            cur = match cur {
                V::Zero(_) => V::Zero(zero),
                V::Time(raw, _) => time_method(&raw, f)
                    .ok_or_else(|| format!("can't evaluate field {f} in type time.Time"))?,
                V::Ref(v) => match lookup(v, f, in_map) {
                    Some(Value::Null) => V::Zero(zero),
                    Some(x) => V::Ref(x),
                    None if at_root && self.root_is_map => V::Zero(Zero::NoValue),
                    None if v.is_object() && !at_root => V::Zero(zero),
                    None => return Err(cant_evaluate(f, v)),
                },
                V::Own(v) => match lookup(&v, f, in_map) {
                    Some(Value::Null) => V::Zero(zero),
                    Some(x) => V::Own(x.clone()),
                    None if v.is_object() => V::Zero(zero),
                    None => return Err(cant_evaluate(f, &v)),
                },
            };
            // Go's times (`.OCIv1.Created`, `.CreatedAtRaw`) print as Go prints them; a map's
            // values are data, never times.
            if !in_map
                && let (Some(ptr), Some(Value::String(raw))) = (time_field(f), cur.json())
                && go_time(raw).is_some()
            {
                cur = V::Time(raw.clone(), ptr);
            }
            parent = Some(f);
        }
        Ok(cur)
    }
}

fn cant_evaluate(f: &str, v: &Value) -> String {
    format!("can't evaluate field {f} in type {}", V::Ref(v).type_name())
}

/// Field `field` of `v`: a map's key exactly (`exact`), else a struct field's JSON key, which
/// may differ in case, `_` and `.` (`DiffIDs` is `diff_ids`).
fn lookup<'v>(v: &'v Value, field: &str, exact: bool) -> Option<&'v Value> {
    let obj = v.as_object()?;
    if let Some(x) = obj.get(field) {
        return Some(x);
    }
    if exact {
        return None;
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
        V::Zero(_) | V::Time(..) => None,
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
            let is_str = |v: &V| matches!(P::of(v), P::Str(_) | P::Stringer(..));
            for (i, a) in args.iter().enumerate() {
                if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                    out.push(' ');
                }
                out.push_str(&sprintf("%v", std::slice::from_ref(a)));
            }
            s(out)
        }
        "println" => s(format!(
            "{}\n",
            args.iter()
                .map(|a| sprintf("%v", std::slice::from_ref(a)))
                .collect::<Vec<_>>()
                .join(" ")
        )),
        "printf" => {
            let (f, rest) = args
                .split_first()
                .ok_or("wrong number of args for printf")?;
            s(sprintf(&f.print(), rest))
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
        "slice" => {
            let (item, idx) = args.split_first().ok_or("wrong number of args for slice")?;
            let mut ix = Vec::new();
            for i in idx {
                match i.json() {
                    Some(Value::Number(n)) => match n.as_i64() {
                        Some(x) if x >= 0 => ix.push(x as usize),
                        Some(x) => {
                            return Err(format!("error calling slice: index out of range: {x}"));
                        }
                        None => {
                            return Err(
                                "error calling slice: cannot index slice/array with type float64"
                                    .into(),
                            );
                        }
                    },
                    _ => {
                        return Err(format!(
                            "error calling slice: cannot index slice/array with type {}",
                            i.type_name()
                        ));
                    }
                }
            }
            let sliced = |len: usize, three: bool| -> Result<(usize, usize), String> {
                if ix.len() > 3 || (ix.len() == 3 && !three) {
                    return Err(if three {
                        format!("error calling slice: too many slice indexes: {}", ix.len())
                    } else {
                        "error calling slice: cannot 3-index slice a string".into()
                    });
                }
                let cap = len;
                let lo = ix.first().copied().unwrap_or(0);
                let hi = ix.get(1).copied().unwrap_or(len);
                for &x in &ix {
                    if x > cap {
                        return Err(format!("error calling slice: index out of range: {x}"));
                    }
                }
                if lo > hi {
                    return Err(format!(
                        "error calling slice: invalid slice index: {lo} > {hi}"
                    ));
                }
                if let Some(&max) = ix.get(2)
                    && hi > max
                {
                    return Err(format!(
                        "error calling slice: invalid slice index: {hi} > {max}"
                    ));
                }
                Ok((lo, hi))
            };
            match item.json() {
                Some(Value::String(x)) => {
                    let (lo, hi) = sliced(x.len(), false)?;
                    let b = &x.as_bytes()[lo..hi];
                    s(String::from_utf8_lossy(b).into_owned())
                }
                Some(Value::Array(a)) => {
                    let (lo, hi) = sliced(a.len(), true)?;
                    Ok(V::Own(Value::Array(a[lo..hi].to_vec())))
                }
                None if matches!(item, V::Zero(Zero::Str)) => {
                    sliced(0, false)?;
                    s(String::new())
                }
                None if matches!(item, V::Zero(Zero::List)) => {
                    sliced(0, true)?;
                    Ok(item.clone())
                }
                _ => Err(format!(
                    "error calling slice: can't slice item of type {}",
                    item.type_name()
                )),
            }
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

// ---------- Go's fmt ----------

/// An operand as Go's fmt sees it.
#[derive(Clone, Debug)]
enum P {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// A value with a `String` method (a time): its string, and its Go type.
    Stringer(String, &'static str),
    List(Vec<P>),
    Map(Vec<(String, P)>),
}

impl P {
    fn of(v: &V) -> P {
        match v {
            V::Zero(z) => match z {
                Zero::Str => P::Str(String::new()),
                Zero::List => P::List(Vec::new()),
                Zero::Map => P::Map(Vec::new()),
                Zero::Nil | Zero::NoValue => P::Nil,
                Zero::Bool => P::Bool(false),
                Zero::Num => P::Int(0),
            },
            V::Time(raw, ptr) => P::Stringer(
                go_time(raw).unwrap_or_else(|| raw.clone()),
                if *ptr { "*time.Time" } else { "time.Time" },
            ),
            V::Ref(j) => P::json(j),
            V::Own(j) => P::json(j),
        }
    }

    fn json(j: &Value) -> P {
        match j {
            Value::Null => P::Nil,
            Value::Bool(b) => P::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => P::Int(i.into()),
                (_, Some(u)) => P::Int(u.into()),
                _ => P::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => P::Str(s.clone()),
            Value::Array(a) => P::List(a.iter().map(P::json).collect()),
            Value::Object(m) => {
                let mut items: Vec<(String, P)> =
                    m.iter().map(|(k, x)| (k.clone(), P::json(x))).collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                P::Map(items)
            }
        }
    }

    /// Go's name of this operand's type (`%T`), as buildah's structs would have it.
    fn type_name(&self) -> String {
        match self {
            P::Nil => "<nil>".into(),
            P::Bool(_) => "bool".into(),
            P::Int(_) => "int".into(),
            P::Float(_) => "float64".into(),
            P::Str(_) => "string".into(),
            P::Stringer(_, t) => (*t).into(),
            P::List(a) if a.iter().all(|x| matches!(x, P::Str(_))) => "[]string".into(),
            P::List(_) => "[]interface {}".into(),
            P::Map(m) if m.iter().all(|(_, x)| matches!(x, P::Str(_))) => {
                "map[string]string".into()
            }
            P::Map(_) => "map[string]interface {}".into(),
        }
    }
}

/// Flags, width and precision of one verb.
#[derive(Clone, Copy, Debug, Default)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    wid: Option<usize>,
    prec: Option<usize>,
    /// `%+v` and `%#v`: the flags are cleared and these set instead.
    plus_v: bool,
    sharp_v: bool,
}

impl Spec {
    /// `s` padded to the width with spaces (or zeros, with `0`), on the left unless `-`.
    fn pad(&self, out: &mut String, s: &str) {
        let n = s.chars().count();
        let fill = self.wid.unwrap_or(0).saturating_sub(n);
        if self.minus {
            out.push_str(s);
            out.extend(std::iter::repeat_n(' ', fill));
        } else {
            let c = if self.zero { '0' } else { ' ' };
            out.extend(std::iter::repeat_n(c, fill));
            out.push_str(s);
        }
    }

    fn pad_spaces(&self, out: &mut String, s: &str) {
        Spec {
            zero: false,
            ..*self
        }
        .pad(out, s)
    }
}

/// Go's `fmt.Sprintf`: the verbs `%v %s %q %d %b %o %O %x %X %c %U %e %E %f %F %g %G %t %T %%`,
/// flags `+ - # 0 space`, width and precision (also `*` and `[n]` argument indexes), and
/// Go's `%!verb(type=value)`, `%!verb(MISSING)`, `%!(EXTRA …)` and `%!(NOVERB)` for mistakes.
fn sprintf(format: &str, args: &[V]) -> String {
    let args: Vec<P> = args.iter().map(P::of).collect();
    let f: Vec<char> = format.chars().collect();
    let end = f.len();
    let mut out = String::new();
    let mut arg_num = 0usize;
    let mut reordered = false;
    let mut i = 0;
    while i < end {
        let mut good_arg_num = true;
        while i < end && f[i] != '%' {
            out.push(f[i]);
            i += 1;
        }
        if i >= end {
            break;
        }
        i += 1;
        let mut sp = Spec::default();
        while i < end {
            match f[i] {
                '#' => sp.sharp = true,
                '0' => sp.zero = !sp.minus,
                '+' => sp.plus = true,
                '-' => {
                    sp.minus = true;
                    sp.zero = false;
                }
                ' ' => sp.space = true,
                _ => break,
            }
            i += 1;
        }
        // `[n]`: an explicit argument index.
        let mut arg_index = |arg_num: &mut usize, i: &mut usize, good: &mut bool| -> bool {
            if *i >= end || f[*i] != '[' {
                return false;
            }
            reordered = true;
            let close = f[*i + 1..].iter().position(|c| *c == ']');
            let Some(close) = close.map(|c| *i + 1 + c) else {
                *i += 1;
                *good = false;
                return false;
            };
            let digits: String = f[*i + 1..close].iter().collect();
            *i = close + 1;
            match digits.parse::<usize>() {
                Ok(n) if n >= 1 && n <= args.len() && !digits.starts_with('+') => {
                    *arg_num = n - 1;
                    true
                }
                Ok(_) => {
                    *good = false;
                    true
                }
                Err(_) => {
                    *good = false;
                    false
                }
            }
        };
        let mut after_index = arg_index(&mut arg_num, &mut i, &mut good_arg_num);
        // Width.
        if i < end && f[i] == '*' {
            i += 1;
            match int_arg(&args, &mut arg_num) {
                Some(w) => {
                    if w < 0 {
                        sp.minus = true;
                        sp.zero = false;
                    }
                    sp.wid = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            after_index = false;
        } else {
            let (n, j) = parse_num(&f, i);
            i = j;
            if n.is_some() {
                sp.wid = n;
                if after_index {
                    good_arg_num = false;
                }
            }
        }
        // Precision.
        if i + 1 < end && f[i] == '.' {
            i += 1;
            if after_index {
                good_arg_num = false;
            }
            after_index = arg_index(&mut arg_num, &mut i, &mut good_arg_num);
            if i < end && f[i] == '*' {
                i += 1;
                match int_arg(&args, &mut arg_num) {
                    Some(p) => sp.prec = (p >= 0).then_some(p as usize),
                    None => out.push_str("%!(BADPREC)"),
                }
                after_index = false;
            } else {
                let (n, j) = parse_num(&f, i);
                i = j;
                sp.prec = Some(n.unwrap_or(0));
            }
        }
        if !after_index {
            arg_index(&mut arg_num, &mut i, &mut good_arg_num);
        }
        if i >= end {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = f[i];
        i += 1;
        if verb == '%' {
            out.push('%');
        } else if !good_arg_num {
            let _ = write!(out, "%!{verb}(BADINDEX)");
        } else if arg_num >= args.len() {
            let _ = write!(out, "%!{verb}(MISSING)");
        } else {
            if verb == 'v' {
                sp.sharp_v = sp.sharp;
                sp.sharp = false;
                sp.plus_v = sp.plus;
                sp.plus = false;
            }
            fmt_arg(&mut out, &args[arg_num], verb, &sp);
            arg_num += 1;
        }
    }
    if !reordered && arg_num < args.len() {
        out.push_str("%!(EXTRA ");
        for (n, a) in args[arg_num..].iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            if let P::Nil = a {
                out.push_str("<nil>");
            } else {
                out.push_str(&a.type_name());
                out.push('=');
                fmt_arg(&mut out, a, 'v', &Spec::default());
            }
        }
        out.push(')');
    }
    out
}

/// A number at `f[i..]` (at most 1e6, as Go's fmt), and the index after it.
fn parse_num(f: &[char], mut i: usize) -> (Option<usize>, usize) {
    let start = i;
    let mut n = 0usize;
    while i < f.len() && f[i].is_ascii_digit() {
        if n > 1_000_000 {
            return (None, f.len());
        }
        n = n * 10 + (f[i] as usize - '0' as usize);
        i += 1;
    }
    ((i > start).then_some(n), i)
}

/// The int operand for a `*` width or precision (advancing past it), if it is one.
fn int_arg(args: &[P], arg_num: &mut usize) -> Option<i128> {
    let a = args.get(*arg_num)?;
    *arg_num += 1;
    match a {
        P::Int(n) if n.abs() <= 1_000_000 => Some(*n),
        _ => None,
    }
}

/// `%!verb(type=value)`, Go's output for a verb that does not suit its operand.
fn bad_verb(out: &mut String, p: &P, verb: char, sp: &Spec) {
    let _ = write!(out, "%!{verb}(");
    match p {
        P::Nil => out.push_str("<nil>"),
        _ => {
            out.push_str(&p.type_name());
            out.push('=');
            fmt_arg(out, p, 'v', sp);
        }
    }
    out.push(')');
}

fn fmt_arg(out: &mut String, p: &P, verb: char, sp: &Spec) {
    if verb == 'T' {
        let t = p.type_name();
        let sp = Spec { prec: None, ..*sp };
        sp.pad(out, &t);
        return;
    }
    match p {
        P::Nil => match verb {
            'v' => sp.pad(out, "<nil>"),
            _ => bad_verb(out, p, verb, sp),
        },
        P::Bool(b) => match verb {
            't' | 'v' => sp.pad(out, if *b { "true" } else { "false" }),
            _ => bad_verb(out, p, verb, sp),
        },
        P::Int(n) => fmt_int(out, *n, verb, sp, p),
        P::Float(x) => fmt_float(out, *x, verb, sp, p),
        P::Str(s) => fmt_str(out, s, verb, sp, p),
        P::Stringer(s, _) => match verb {
            'v' | 's' | 'x' | 'X' | 'q' => fmt_str(out, s, verb, sp, p),
            _ => bad_verb(out, p, verb, sp),
        },
        P::List(items) => {
            if sp.sharp_v {
                out.push_str(&p.type_name());
                out.push('{');
                for (n, x) in items.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    fmt_arg(out, x, verb, sp);
                }
                out.push('}');
                return;
            }
            out.push('[');
            for (n, x) in items.iter().enumerate() {
                if n > 0 {
                    out.push(' ');
                }
                fmt_arg(out, x, verb, sp);
            }
            out.push(']');
        }
        P::Map(items) => {
            if sp.sharp_v {
                out.push_str(&p.type_name());
                out.push('{');
            } else {
                out.push_str("map[");
            }
            for (n, (k, x)) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(if sp.sharp_v { ", " } else { " " });
                }
                fmt_arg(out, &P::Str(k.clone()), verb, sp);
                out.push(':');
                fmt_arg(out, x, verb, sp);
            }
            out.push(if sp.sharp_v { '}' } else { ']' });
        }
    }
}

fn fmt_str(out: &mut String, s: &str, verb: char, sp: &Spec, p: &P) {
    let truncated = |s: &str| -> String {
        match sp.prec {
            Some(n) => s.chars().take(n).collect(),
            None => s.to_string(),
        }
    };
    match verb {
        'v' if sp.sharp_v => sp.pad(out, &go_quote(s, false)),
        'v' | 's' => sp.pad(out, &truncated(s)),
        'q' => {
            let s = truncated(s);
            let q = if sp.sharp && can_backquote(&s) {
                format!("`{s}`")
            } else {
                go_quote(&s, sp.plus)
            };
            sp.pad(out, &q);
        }
        'x' | 'X' => {
            let digits: &[u8; 16] = if verb == 'x' {
                b"0123456789abcdef"
            } else {
                b"0123456789ABCDEF"
            };
            let bytes = s.as_bytes();
            let len = sp.prec.map_or(bytes.len(), |p| p.min(bytes.len()));
            let mut hex = String::new();
            if len > 0 && sp.sharp {
                hex.push('0');
                hex.push(verb);
            }
            for (n, c) in bytes[..len].iter().enumerate() {
                if sp.space && n > 0 {
                    hex.push(' ');
                    if sp.sharp {
                        hex.push('0');
                        hex.push(verb);
                    }
                }
                hex.push(digits[(c >> 4) as usize] as char);
                hex.push(digits[(c & 15) as usize] as char);
            }
            sp.pad(out, &hex);
        }
        _ => bad_verb(out, p, verb, sp),
    }
}

/// Go's `strconv.Quote` (with `ascii`, `QuoteToASCII`).
fn go_quote(s: &str, ascii: bool) -> String {
    let mut q = String::from('"');
    for c in s.chars() {
        quote_char(&mut q, c, '"', ascii);
    }
    q.push('"');
    q
}

fn quote_char(q: &mut String, c: char, delim: char, ascii: bool) {
    match c {
        c if c == delim || c == '\\' => {
            q.push('\\');
            q.push(c);
        }
        '\x07' => q.push_str("\\a"),
        '\x08' => q.push_str("\\b"),
        '\x0c' => q.push_str("\\f"),
        '\n' => q.push_str("\\n"),
        '\r' => q.push_str("\\r"),
        '\t' => q.push_str("\\t"),
        '\x0b' => q.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(q, "\\x{:02x}", c as u32);
        }
        c if ascii && !c.is_ascii() || c.is_control() => {
            if (c as u32) < 0x10000 {
                let _ = write!(q, "\\u{:04x}", c as u32);
            } else {
                let _ = write!(q, "\\U{:08x}", c as u32);
            }
        }
        c => q.push(c),
    }
}

fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !c.is_control()))
}

fn fmt_int(out: &mut String, n: i128, verb: char, sp: &Spec, p: &P) {
    let (base, upper) = match verb {
        'v' | 'd' => (10, false),
        'b' => (2, false),
        'o' | 'O' => (8, false),
        'x' => (16, false),
        'X' => (16, true),
        'c' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            sp.pad(out, &c.to_string());
            return;
        }
        'q' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            let mut q = String::from('\'');
            quote_char(&mut q, c, '\'', sp.plus);
            q.push('\'');
            let q = if sp.sharp && c != '`' && !c.is_control() && c != '\'' {
                format!("`{c}`")
            } else {
                q
            };
            sp.pad(out, &q);
            return;
        }
        'U' => {
            let mut u = format!("U+{:0w$X}", n, w = sp.prec.unwrap_or(4).max(4));
            if sp.sharp
                && let Some(c) = u32::try_from(n).ok().and_then(char::from_u32)
                && !c.is_control()
            {
                let _ = write!(u, " '{c}'");
            }
            sp.pad_spaces(out, &u);
            return;
        }
        _ => return bad_verb(out, p, verb, sp),
    };
    let neg = n < 0;
    let u = n.unsigned_abs();
    let mut digits = match base {
        2 => format!("{u:b}"),
        8 => format!("{u:o}"),
        16 if upper => format!("{u:X}"),
        16 => format!("{u:x}"),
        _ => u.to_string(),
    };
    let mut prec = 0;
    if let Some(p) = sp.prec {
        if p == 0 && u == 0 {
            sp.pad_spaces(out, "");
            return;
        }
        prec = p;
    } else if sp.zero && !sp.minus && sp.wid.is_some() {
        prec = sp.wid.unwrap_or(0);
        if neg || sp.plus || sp.space {
            prec = prec.saturating_sub(1);
        }
    }
    if digits.len() < prec {
        digits = "0".repeat(prec - digits.len()) + &digits;
    }
    let mut prefix = String::new();
    if neg {
        prefix.push('-');
    } else if sp.plus {
        prefix.push('+');
    } else if sp.space {
        prefix.push(' ');
    }
    if sp.sharp {
        match base {
            2 => prefix.push_str("0b"),
            8 if !digits.starts_with('0') => prefix.push('0'),
            16 => prefix.push_str(if upper { "0X" } else { "0x" }),
            _ => {}
        }
    }
    if verb == 'O' {
        prefix.push_str("0o");
    }
    sp.pad_spaces(out, &(prefix + &digits));
}

fn fmt_float(out: &mut String, x: f64, verb: char, sp: &Spec, p: &P) {
    let (verb, default_prec) = match verb {
        'v' => ('g', None),
        'b' | 'g' | 'G' | 'x' | 'X' => (verb, None),
        'f' | 'F' | 'e' | 'E' => (verb, Some(6)),
        _ => return bad_verb(out, p, verb, sp),
    };
    let prec = sp.prec.or(default_prec);
    let mut num = format_float(x, verb, prec);
    if !num.starts_with(['-', '+']) {
        num.insert(0, '+');
    }
    if sp.space && num.starts_with('+') && !sp.plus {
        num.replace_range(0..1, " ");
    }
    if num[1..].starts_with(['I', 'N']) {
        if num[1..].starts_with('N') && !sp.space && !sp.plus {
            num.remove(0);
        }
        sp.pad_spaces(out, &num);
        return;
    }
    if sp.plus || !num.starts_with('+') {
        let w = sp.wid.unwrap_or(0);
        if sp.zero && w > num.len() {
            out.push_str(&num[..1]);
            out.extend(std::iter::repeat_n('0', w - num.len()));
            out.push_str(&num[1..]);
            return;
        }
        sp.pad(out, &num);
        return;
    }
    sp.pad(out, &num[1..]);
}

/// Go's `strconv.FormatFloat(x, verb, prec, 64)` (`prec` None: the shortest that round-trips).
fn format_float(x: f64, verb: char, prec: Option<usize>) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let neg = x.is_sign_negative();
    let sign = if neg { "-" } else { "" };
    let a = x.abs();
    let upper = verb.is_ascii_uppercase();
    let body = match verb.to_ascii_lowercase() {
        'b' => {
            let bits = a.to_bits();
            let mut exp = ((bits >> 52) & 0x7ff) as i64;
            let mut mant = bits & ((1 << 52) - 1);
            if exp == 0 {
                exp = 1;
            } else {
                mant |= 1 << 52;
            }
            format!("{mant}p{:+}", exp - 1075)
        }
        'x' => hex_float(a, prec, upper),
        'f' => match prec {
            Some(p) => format!("{a:.p$}"),
            None => format!("{a}"),
        },
        'e' => {
            let (digits, dp) = float_digits(a, prec.map(|p| p + 1));
            let p = prec.unwrap_or(digits.len() - 1);
            fmt_e(&digits, dp, p, upper)
        }
        _ => {
            // %g: %e for large and small exponents, else %f, without trailing zeros.
            let shortest = prec.is_none();
            let (digits, dp) = float_digits(a, prec.map(|p| p.max(1)));
            let nd = digits.len() as i64;
            let mut p = prec.map_or(nd, |p| p.max(1) as i64);
            let mut eprec = p;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                if p > nd {
                    p = nd;
                }
                fmt_e(&digits, dp, (p - 1) as usize, upper)
            } else {
                if p > dp {
                    p = nd;
                }
                fmt_f(&digits, dp, (p - dp).max(0) as usize)
            }
        }
    };
    format!("{sign}{body}")
}

/// The decimal digits of `a` ≥ 0 (to `sig` significant digits, else the shortest that round-trip),
/// without trailing zeros, and the decimal point's position: `a` = 0.DIGITS × 10^dp.
fn float_digits(a: f64, sig: Option<usize>) -> (String, i64) {
    let s = match sig {
        Some(n) => format!("{a:.p$e}", p = n.max(1) - 1),
        None => format!("{a:e}"),
    };
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let mut digits: String = m.chars().filter(|c| *c != '.').collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let exp: i64 = e.parse().unwrap_or(0);
    (digits, exp + 1)
}

/// `d.ddd` (with `prec` decimals) `e±XX` from significant digits.
fn fmt_e(digits: &str, dp: i64, prec: usize, upper: bool) -> String {
    let d: Vec<char> = digits.chars().collect();
    let zero = d.iter().all(|c| *c == '0');
    let mut s = String::new();
    s.push(d[0]);
    if prec > 0 {
        s.push('.');
        for k in 1..=prec {
            s.push(d.get(k).copied().unwrap_or('0'));
        }
    }
    let exp = if zero { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.abs());
    s
}

/// `ddd.ddd` (with `prec` decimals) from significant digits.
fn fmt_f(digits: &str, dp: i64, prec: usize) -> String {
    let d: Vec<char> = digits.chars().collect();
    let at = |k: i64| {
        if k >= 0 {
            d.get(k as usize).copied().unwrap_or('0')
        } else {
            '0'
        }
    };
    let mut s = String::new();
    if dp > 0 {
        for k in 0..dp {
            s.push(at(k));
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for k in 0..prec as i64 {
            s.push(at(dp + k));
        }
    }
    s
}

/// Go's `%x` of a float: `0x1.cp+01`.
fn hex_float(a: f64, prec: Option<usize>, upper: bool) -> String {
    let bits = a.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1 << 52) - 1);
    if exp == 0 {
        exp = 1;
    } else {
        mant |= 1 << 52;
    }
    exp -= 1023;
    if mant == 0 {
        exp = 0;
    }
    mant <<= 60 - 52;
    while mant != 0 && mant & (1 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    if let Some(p) = prec.filter(|p| *p < 15) {
        let shift = (p * 4) as u32;
        let extra = (mant << shift) & ((1 << 60) - 1);
        mant >>= 60 - shift;
        if extra | (mant & 1) > 1 << 59 {
            mant += 1;
        }
        mant <<= 60 - shift;
        if mant & (1 << 61) != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut s = String::from("0");
    s.push(if upper { 'X' } else { 'x' });
    s.push(if (mant >> 60) & 1 == 1 { '1' } else { '0' });
    mant <<= 4;
    match prec {
        None if mant != 0 => {
            s.push('.');
            while mant != 0 {
                s.push(hex[((mant >> 60) & 15) as usize] as char);
                mant <<= 4;
            }
        }
        Some(p) if p > 0 => {
            s.push('.');
            for _ in 0..p {
                s.push(hex[((mant >> 60) & 15) as usize] as char);
                mant <<= 4;
            }
        }
        _ => {}
    }
    s.push(if upper { 'P' } else { 'p' });
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.abs());
    s
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

    /// `:=` declares a variable in the current scope, `=` sets the one already declared (Go's
    /// text/template since 1.11); outputs as buildah 1.28 prints them.
    #[test]
    fn variable_assignment() {
        let v = sample();
        assert_eq!(
            r(
                r#"{{$f := "no"}}{{if true}}{{$f = "yes"}}{{end}}{{$f}}"#,
                &v
            ),
            "yes"
        );
        assert_eq!(
            r(
                r#"{{$f := "no"}}{{if true}}{{$f := "yes"}}{{end}}{{$f}}"#,
                &v
            ),
            "no"
        );
        assert_eq!(
            r("{{$x := 1}}{{with $x := 2}}{{$x = 3}}{{end}}{{$x}}", &v),
            "1"
        );
        assert_eq!(r("{{$x := 1}}{{if $x = 2}}{{$x}}{{end}}{{$x}}", &v), "22");
        assert_eq!(
            r(
                "{{$last := 0}}{{range .OCIv1.Config.Env}}{{$last = .}}{{end}}{{$last}}",
                &v
            ),
            "B=2"
        );
        assert_eq!(
            r(
                "{{$i := 9}}{{$e := 0}}{{range $i, $e = .OCIv1.Config.Env}}{{end}}{{$i}}|{{$e}}",
                &v
            ),
            "1|B=2"
        );
        assert_eq!(
            r(
                "{{$x := 0}}{{range $x = .OCIv1.Config.Entrypoint}}{{end}}{{$x}}",
                &v
            ),
            "[]"
        );
        assert_eq!(r("{{$x := 1}}{{print ($x = 2)}}{{$x}}", &v), "22");
        let e = render("{{$y = 1}}", &v).unwrap_err().to_string();
        assert!(e.contains("undefined variable: $y"), "{e}");
        assert!(render("{{$a, $b := 1}}", &v).is_err());
    }

    /// Keys of Go maps (labels, annotations, ports, volumes) match exactly; struct fields match
    /// their JSON keys loosely.
    #[test]
    fn map_keys_match_exactly() {
        let v = json!({
            "OCIv1": {
                "os": "linux",
                "created": "2024-01-01T00:00:00Z",
                "config": {
                    "Labels": {"Foo": "upper", "a_b": "under", "created": "2020-01-01T00:00:00Z"},
                    "ExposedPorts": {"80/tcp": {}},
                    "Volumes": {"/Data": {}}
                }
            },
            "ImageAnnotations": {"Org": "x"}
        });
        assert_eq!(r("{{.oCIv1.os}}", &v), "linux");
        assert_eq!(r("{{.OCIv1.Config.Labels.Foo}}", &v), "upper");
        assert_eq!(r("{{.OCIv1.Config.Labels.foo}}", &v), "<no value>");
        assert_eq!(r("{{.OCIv1.Config.Labels.ab}}", &v), "<no value>");
        assert_eq!(r("{{.OCIv1.Config.Labels.a_b}}", &v), "under");
        assert_eq!(r("{{.OCIv1.Config.Labels.foo.bar}}", &v), "<no value>");
        // A label's value is text, whatever its key.
        assert_eq!(
            r("{{.OCIv1.Config.Labels.created}}", &v),
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(r("{{.OCIv1.Created}}", &v), "2024-01-01 00:00:00 +0000 UTC");
        assert_eq!(r("{{.ImageAnnotations.org}}", &v), "<no value>");
        assert_eq!(r("{{.ImageAnnotations.Org}}", &v), "x");
        assert_eq!(
            r("{{with .OCIv1.Config.Labels}}{{.foo}}|{{.Foo}}{{end}}", &v),
            "<no value>|upper"
        );
        assert_eq!(r("{{with .OCIv1.Config.Volumes}}{{len .}}{{end}}", &v), "1");
        assert_eq!(r(r#"{{index .OCIv1.Config.Labels "foo"}}"#, &v), "");
    }

    /// Outputs checked against buildah 1.28 (`buildah inspect --format`).
    #[test]
    fn printf_as_go() {
        let v = json!({
            "OS": "linux",
            "Cmd": ["sh", "-c", "echo"],
            "Labels": {"a": "b"},
            "Created": "2026-12-06T13:50:11.906033189Z",
        });
        let cases = [
            (r#"{{printf "%5d|%-5d|%05d" 3 4 5}}"#, "    3|4    |00005"),
            (r#"{{printf "%.3s" .OS}}"#, "lin"),
            (r#"{{printf "%6.2f" 3.14159}}"#, "  3.14"),
            (r#"{{printf "%x %X %o" 255 255 8}}"#, "ff FF 10"),
            (r#"{{printf "%T" .OS}}"#, "string"),
            (r#"{{printf "%q" .Cmd}}"#, r#"["sh" "-c" "echo"]"#),
            (r#"{{printf "%-8s|" .OS}}"#, "linux   |"),
            (
                r#"{{printf "%05s|%-05s|%5s" "ab" "cd" "ef"}}"#,
                "000ab|cd   |   ef",
            ),
            (
                r#"{{printf "%+v|%+d|% d|%+.2f|%+s" 5 5 5 2.5 "x"}}"#,
                "5|+5| 5|+2.50|x",
            ),
            (
                r#"{{printf "%5s|%d" 3 "x"}}"#,
                "%!s(int=    3)|%!d(string=x)",
            ),
            (r#"{{printf "%s %s" "a"}}"#, "a %!s(MISSING)"),
            (r#"{{printf "%s" "a" 1 "b"}}"#, "a%!(EXTRA int=1, string=b)"),
            (r#"{{printf "%d" 1.5}}"#, "%!d(float64=1.5)"),
            (
                r#"{{printf "%f|%e|%g|%v" 3 3.0 3.0 3.0}}"#,
                "%!f(int=3)|3.000000e+00|3|3",
            ),
            (
                r#"{{printf "%v|%g|%e|%G|%E" 1e6 1e6 123456.789 1e-7 1e21}}"#,
                "1e+06|1e+06|1.234568e+05|1E-07|1.000000E+21",
            ),
            (
                r#"{{printf "%v %v %v %v" 100000.0 0.0001 0.00001 123456789.0}}"#,
                "100000 0.0001 1e-05 1.23456789e+08",
            ),
            (
                r#"{{printf "%.3g|%.3g|%.10g|%.0f|%.0e|%#x|%#o|%#X" 1234.5 3.14159 3.14159 2.5 12345.0 255 8 255}}"#,
                "1.23e+03|3.14|3.14159|2|1e+04|0xff|010|0XFF",
            ),
            (
                r#"{{printf "%08.3f|%-8.2f|%+08d|%08d|%x" -3.14159 2.5 42 -42 -255}}"#,
                "-003.142|2.50    |+0000042|-0000042|-ff",
            ),
            (
                r#"{{printf "%t|%t|%v" true 1 false}}"#,
                "true|%!t(int=1)|false",
            ),
            (
                r#"{{printf "%q|%#q|%+q|%x|% x|%X|%#x" "a\"b\n" "ab" "é" "hi" "hi" "hi" "hi"}}"#,
                r#""a\"b\n"|`ab`|"\u00e9"|6869|68 69|6869|0x6869"#,
            ),
            (
                r#"{{printf "%c|%q|%U|%#U|%b|%O" 65 65 65 65 5 8}}"#,
                "A|'A'|U+0041|U+0041 'A'|101|0o10",
            ),
            (
                r#"{{printf "%*d|%-*d|%.*f|%*s" 5 1 5 2 2 3.14159 -4 "x"}}"#,
                "    1|2    |3.14|x   ",
            ),
            (r#"{{printf "%[2]d %[1]d" 1 2}}"#, "2 1"),
            (r#"{{printf "%[3]d" 1 2}}"#, "%!d(BADINDEX)"),
            (r#"{{printf "%!"}}"#, "%!!(MISSING)"),
            (r#"{{printf "%"}}"#, "%!(NOVERB)"),
            (r#"{{printf "%z" 3}}"#, "%!z(int=3)"),
            (
                r#"{{printf "%d" .Cmd}}"#,
                "[%!d(string=sh) %!d(string=-c) %!d(string=echo)]",
            ),
            (r#"{{printf "%v|%s" .Labels .Labels}}"#, "map[a:b]|map[a:b]"),
            (
                r#"{{printf "%T|%T|%T|%T|%T|%T" 1 1.5 true .Cmd .Labels .Created}}"#,
                "int|float64|bool|[]string|map[string]string|*time.Time",
            ),
            (
                r#"{{printf "%s|%v|%d" nil nil nil}}"#,
                "%!s(<nil>)|<nil>|%!d(<nil>)",
            ),
            (
                r#"{{printf "%v|%s" .Labels.nope .Labels.nope}}"#,
                "<nil>|%!s(<nil>)",
            ),
            (
                r#"{{printf "%6.2v|%.2v|%10.4v" 3.14159 "hello" "abcdefgh"}}"#,
                "   3.1|he|      abcd",
            ),
            (
                r#"{{printf "%.0d|%.3d|%6.3d|%-6.3x" 0 7 7 255}}"#,
                "|007|   007|0ff   ",
            ),
            (r#"{{printf "%x|%X" 3.5 -1.0}}"#, "0x1.cp+01|-0X1P+00"),
            (r#"{{printf "%5%|%-5%|"}}"#, "%|%|"),
            (
                r#"{{printf "%s" .Cmd 5 "x" 2.5 true nil}}"#,
                "[sh -c echo]%!(EXTRA int=5, string=x, float64=2.5, bool=true, <nil>)",
            ),
            (
                r#"{{printf "%10.3q|%-8x|%08q" "abcdef" "ab" "x"}}"#,
                r#"     "abc"|6162    |00000"x""#,
            ),
            (
                r#"{{printf "%e|%.2e|%E" 0.0 -1234.5678 1e100}}"#,
                "0.000000e+00|-1.23e+03|1.000000E+100",
            ),
            (
                r#"{{printf "%g|%g|%g|%.4g|%g" 0.1 100000.0 1000000.0 0.000012345 1e-5}}"#,
                "0.1|100000|1e+06|1.234e-05|1e-05",
            ),
            (
                r#"{{printf "%#v|%#v|%#v|%#v" "a" 5 .Cmd 2.0}}"#,
                r#""a"|5|[]string{"sh", "-c", "echo"}|2"#,
            ),
            (
                r#"{{printf "% 5d|%+5d|%- 5d|" 3 3 3}}"#,
                "    3|   +3| 3   |",
            ),
            (r#"{{print 3.0 1.5 "a" 2}}"#, "3 1.5a2"),
            (r#"{{println 3.0 "x"}}"#, "3 x\n"),
            (r#"{{printf "%d|%d|%d" 0x1f 0o17 1_000}}"#, "31|15|1000"),
        ];
        for (t, want) in cases {
            assert_eq!(r(t, &v), want, "{t}");
        }
    }

    #[test]
    fn times_print_as_go_times() {
        let v = json!({
            "OCIv1": {"created": "2026-12-06T13:50:11.906033189Z"},
            "CreatedAtRaw": "2026-12-06T13:50:11Z",
            "Other": "2026-12-06T13:50:11Z",
        });
        assert_eq!(
            r("{{.OCIv1.Created}}", &v),
            "2026-12-06 13:50:11.906033189 +0000 UTC"
        );
        assert_eq!(r("{{.CreatedAtRaw}}", &v), "2026-12-06 13:50:11 +0000 UTC");
        assert_eq!(r("{{.Other}}", &v), "2026-12-06T13:50:11Z");
        assert_eq!(
            r("{{json .OCIv1.Created}}", &v),
            "\"2026-12-06T13:50:11.906033189Z\""
        );
        assert_eq!(r("{{.OCIv1.Created.Unix}}", &v), "1796565011");
        assert_eq!(r("{{printf \"%T\" .CreatedAtRaw}}", &v), "time.Time");
        assert_eq!(
            go_time("2026-12-06T15:50:11.5+02:00").as_deref(),
            Some("2026-12-06 15:50:11.5 +0200 +0200")
        );
        assert!(render("{{.CreatedAtRaw.Nope}}", &v).is_err());
    }

    #[test]
    fn slice_function() {
        let v = json!({"Cmd": ["sh", "-c", "echo"], "OS": "linux"});
        assert_eq!(
            r(
                "{{slice .Cmd 1}}|{{slice .Cmd 1 2}}|{{slice .OS 1 3}}|{{slice .Cmd}}",
                &v
            ),
            "[-c echo]|[-c]|in|[sh -c echo]"
        );
        let e = render("{{slice .Cmd 5}}", &v).unwrap_err().to_string();
        assert!(e.contains("index out of range: 5"), "{e}");
        assert!(render("{{slice .OS 1 2 3}}", &v).is_err());
        assert!(render("{{slice .Cmd 2 1}}", &v).is_err());
    }

    /// As `buildah images --format 'table …'` prints (Go's tabwriter, three spaces padding).
    #[test]
    fn tables() {
        let header = json!({"Name": "REPOSITORY", "Tag": "TAG"});
        let rows = [
            json!({"Name": "localhost/h5/tp", "Tag": "latest", "ID": "f6"}),
            json!({"Name": "127.0.0.1:5055/busybox", "Tag": "1", "ID": "09"}),
        ];
        let list = |f: &str, noheading| render_list(f, &header, &rows, noheading).unwrap();
        assert_eq!(
            list("table {{.Name}}\\t{{.Tag}}\\t{{.ID}}", false),
            "REPOSITORY               TAG      <no value>\n\
             localhost/h5/tp          latest   f6\n\
             127.0.0.1:5055/busybox   1        09\n"
        );
        // Blanks of the template are column breaks too; the prefix's blanks go.
        assert_eq!(
            list("table  {{.Name}}:{{.Tag}} x{{.ID}}", false),
            "REPOSITORY:TAG             x<no value>\n\
             localhost/h5/tp:latest     xf6\n\
             127.0.0.1:5055/busybox:1   x09\n"
        );
        assert_eq!(list("table{{.ID}}", true), "f6\n09\n");
        assert_eq!(
            list("table {{\"\"}}\\t{{upper .Tag}}", false),
            "   TAG\n   LATEST\n   1\n"
        );
        // Not a table: no header, nothing aligned.
        assert_eq!(
            list("{{.Name}} {{.Tag}}", false),
            "localhost/h5/tp latest\n127.0.0.1:5055/busybox 1\n"
        );
        assert!(render_list("table {{.Nope}}", &header, &rows, false).is_err());
        assert_eq!(table_body("tablet"), None);
        assert_eq!(table_body("table"), Some(""));
        // A column's width holds over the lines that have it.
        assert_eq!(
            tabwrite("a\tb\tc\nxxxx\ty\nz\n", 1),
            "a    b c\nxxxx y\nz\n"
        );
    }
}
