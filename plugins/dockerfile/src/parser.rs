//! Dockerfile lexical structure: parser directives, logical lines (continuations, comments),
//! heredoc bodies, and the mapping from a logical line back to file positions.

use crate::diag::{Diagnostic, Location};
use crate::words::Lexer;

/// Every instruction keyword of the Dockerfile reference, upper case.
pub const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Instructions whose arguments may open heredocs.
const HEREDOC_INSTRUCTIONS: [&str; 3] = ["RUN", "COPY", "ADD"];

/// Parser directives found at the top of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# syntax=` (the host chooses the frontend; recorded only).
    pub syntax: Option<String>,
    /// `# check=` (lint configuration; recorded only).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A heredoc opened by an instruction (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, unquoted.
    pub name: String,
    /// The body as written, each line ending in `\n`, without the terminator line.
    pub content: String,
    /// False when the delimiter was quoted or escaped: the body is taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines and the terminator.
    pub chomp: bool,
}

impl Heredoc {
    /// The body with leading tabs removed from each line when the heredoc is `<<-`.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        let mut out = String::with_capacity(self.content.len());
        for line in self.content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    offset: usize,
    line: u32,
    column: u32,
}

/// One instruction: its logical line (continuations joined) and heredoc bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, upper case.
    pub keyword: String,
    /// The logical line as written (continuation characters and comment lines removed, trailing
    /// whitespace trimmed), keyword included.
    pub original: String,
    /// Byte offset in `original` where the arguments start.
    pub args_offset: usize,
    /// Heredocs opened on this line, in order.
    pub heredocs: Vec<Heredoc>,
    /// The heredoc bodies and terminator lines exactly as written (for history).
    pub heredoc_source: String,
    /// Where the keyword is.
    pub location: Location,
    segments: Vec<Segment>,
}

impl Node {
    /// Everything after the keyword.
    pub fn args(&self) -> &str {
        &self.original[self.args_offset..]
    }

    /// The file position of byte `offset` of `original`.
    pub fn location_at(&self, offset: usize) -> Location {
        let offset = offset.min(self.original.len());
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.offset <= offset)
            .copied()
            .unwrap_or(self.segments[0]);
        let chars = self
            .original
            .get(seg.offset..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0) as u32;
        Location::new(seg.line, seg.column + chars)
    }

    /// A node for the instruction that starts at byte `offset` of this one (the trigger of
    /// `ONBUILD`), keeping file positions.
    pub fn sub_node(&self, offset: usize) -> Node {
        let text = &self.original[offset..];
        let lead = text.len() - text.trim_start().len();
        let start = offset + lead;
        let mut segments: Vec<Segment> = Vec::new();
        let first = self.location_at(start);
        segments.push(Segment {
            offset: 0,
            line: first.line,
            column: first.column,
        });
        for s in &self.segments {
            if s.offset > start {
                segments.push(Segment {
                    offset: s.offset - start,
                    ..*s
                });
            }
        }
        let mut n = split_keyword(&self.original[start..], segments);
        n.heredocs = self.heredocs.clone();
        n.heredoc_source = self.heredoc_source.clone();
        n
    }
}

/// A parsed Dockerfile: directives, instructions, and warnings met while reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives.
    pub directives: Directives,
    /// Instructions in order.
    pub nodes: Vec<Node>,
    /// Non-fatal findings (empty continuation lines, continuation at end of file).
    pub warnings: Vec<Diagnostic>,
}

/// Build a node from one line of text at `location` (for ONBUILD triggers of base images).
pub fn parse_line(text: &str, location: Location) -> Node {
    let t = text.trim();
    split_keyword(
        t,
        vec![Segment {
            offset: 0,
            line: location.line,
            column: location.column,
        }],
    )
}

fn split_keyword(text: &str, segments: Vec<Segment>) -> Node {
    let original = text.trim_end().to_string();
    let kw_end = original.find(char::is_whitespace).unwrap_or(original.len());
    let args_offset = kw_end + (original[kw_end..].len() - original[kw_end..].trim_start().len());
    let first = segments[0];
    Node {
        keyword: original[..kw_end].to_ascii_uppercase(),
        original,
        args_offset,
        heredocs: Vec::new(),
        heredoc_source: String::new(),
        location: Location::new(first.line, first.column),
        segments,
    }
}

/// Parse a parser directive line (`# name=value`); returns the lower-case name and the value.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[name_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_string()))
}

/// Remove a trailing line continuation (`escape` followed only by spaces or tabs).
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(s) => (s, true),
        None => (line, false),
    }
}

/// Whether `word` opens a heredoc (`[n]<<[-]NAME`); returns the name, expand and chomp flags.
pub fn heredoc_marker(word: &str, lexer: &Lexer) -> Option<(String, bool, bool)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = lexer.unquote_delimiter(rest)?;
    if name.is_empty() {
        return None;
    }
    Some((name, !quoted, chomp))
}

/// Split the source into directives and instruction nodes.
pub fn parse(source: &str) -> Result<Dockerfile, Vec<Diagnostic>> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut directives = Directives::default();
    let mut seen: Vec<String> = Vec::new();

    for (i, line) in lines.iter().enumerate() {
        let Some((name, value)) = directive(line) else {
            break;
        };
        let loc = Location::new(i as u32 + 1, 1);
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            break;
        }
        if seen.contains(&name) {
            errors.push(Diagnostic::error(
                loc,
                format!("only one {name} parser directive can be used"),
            ));
            continue;
        }
        seen.push(name.clone());
        match name.as_str() {
            "escape" => match value.as_str() {
                "\\" => directives.escape = '\\',
                "`" => directives.escape = '`',
                v => errors.push(Diagnostic::error(
                    loc,
                    format!("invalid escape character {v:?}: the escape directive takes \\ or `"),
                )),
            },
            "syntax" => directives.syntax = Some(value),
            _ => directives.check = Some(value),
        }
    }

    let escape = directives.escape;
    let lexer = Lexer::new(escape);
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start_line = i as u32 + 1;
        let lead = (raw.chars().count() - trimmed.chars().count()) as u32;
        let mut segments = vec![Segment {
            offset: 0,
            line: start_line,
            column: lead + 1,
        }];
        let (piece, mut cont) = strip_continuation(trimmed, escape);
        let mut text = piece.to_string();
        i += 1;
        let mut warned_empty = false;
        let mut reached_eof = false;
        while cont {
            if i >= lines.len() {
                reached_eof = true;
                break;
            }
            let l = lines[i];
            let t = l.trim_start();
            if t.starts_with('#') {
                i += 1;
                continue;
            }
            if t.is_empty() {
                if !warned_empty {
                    warnings.push(Diagnostic::warning(
                        Location::new(i as u32 + 1, 1),
                        "empty continuation line: a blank line inside a continued instruction is deprecated",
                    ));
                    warned_empty = true;
                }
                i += 1;
                continue;
            }
            segments.push(Segment {
                offset: text.len(),
                line: i as u32 + 1,
                column: 1,
            });
            let (piece, c) = strip_continuation(l, escape);
            text.push_str(piece);
            cont = c;
            i += 1;
        }
        let mut node = split_keyword(&text, segments);
        if reached_eof {
            if node.args().is_empty() {
                errors.push(Diagnostic::error(
                    node.location,
                    format!("{}: the line continuation runs into the end of the file and leaves no arguments", node.keyword),
                ));
                continue;
            }
            warnings.push(Diagnostic::warning(
                node.location,
                "the last instruction ends with a line continuation before the end of the file",
            ));
        }
        if HEREDOC_INSTRUCTIONS.contains(&node.keyword.as_str()) {
            let markers: Vec<(String, bool, bool)> = lexer
                .raw_words(node.args())
                .iter()
                .filter_map(|w| heredoc_marker(w, &lexer))
                .collect();
            for (name, expand, chomp) in markers {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    node.heredoc_source.push_str(l);
                    node.heredoc_source.push('\n');
                    let candidate = if chomp { l.trim_start_matches('\t') } else { l };
                    if candidate == name {
                        terminated = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !terminated {
                    errors.push(Diagnostic::error(
                        node.location,
                        format!("unterminated heredoc <<{name}: no line \"{name}\" closes it before the end of the file"),
                    ));
                }
                node.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                    chomp,
                });
            }
        }
        nodes.push(node);
    }
    if errors.is_empty() {
        Ok(Dockerfile {
            directives,
            nodes,
            warnings,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Dockerfile {
        parse(s).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn directives_only_at_top() {
        let d = p("# syntax=docker/dockerfile:1\n#escape=`\nFROM x\n");
        assert_eq!(d.directives.escape, '`');
        assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        // After a comment, a directive-looking line is a comment.
        let d = p("# hello\n# escape=`\nFROM x\n");
        assert_eq!(d.directives.escape, '\\');
        // After a blank line too.
        let d = p("\n# escape=`\nFROM x\n");
        assert_eq!(d.directives.escape, '\\');
        // Unknown directives end directive processing.
        let d = p("# unknown=1\n# escape=`\nFROM x\n");
        assert_eq!(d.directives.escape, '\\');
        // Whitespace is allowed around the parts; the name is case-insensitive.
        let d = p("#  ESCAPE =  ` \nFROM x\n");
        assert_eq!(d.directives.escape, '`');
        let e = parse("# escape=\\\n# escape=`\nFROM x\n").unwrap_err();
        assert_eq!(e[0].location, Some(Location::new(2, 1)));
        assert!(e[0].message.contains("only one escape"));
        let e = parse("# escape=x\nFROM x\n").unwrap_err();
        assert!(e[0].message.contains("invalid escape"));
    }

    #[test]
    fn continuations_comments_blank_lines() {
        let d = p("FROM x\nRUN a \\\n  # comment\n    b \\\n\n  c\n");
        assert_eq!(d.nodes.len(), 2);
        let run = &d.nodes[1];
        assert_eq!(run.keyword, "RUN");
        assert_eq!(run.original, "RUN a     b   c");
        assert_eq!(run.args(), "a     b   c");
        assert_eq!(run.location, Location::new(2, 1));
        // "c" is at line 6, column 3.
        let off = run.original.rfind('c').unwrap();
        assert_eq!(run.location_at(off), Location::new(6, 3));
        let off = run.original.find('b').unwrap();
        assert_eq!(run.location_at(off), Location::new(4, 5));
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.warnings[0].location, Some(Location::new(5, 1)));
    }

    #[test]
    fn backtick_continuation_and_crlf() {
        let d = p("# escape=`\r\nFROM x\r\nRUN dir c:\\ `\r\n  && echo done\r\n");
        assert_eq!(d.nodes[1].original, "RUN dir c:\\   && echo done");
    }

    #[test]
    fn indented_keyword_column_and_case() {
        let d = p("  from x\n\trun  echo hi  \n");
        assert_eq!(d.nodes[0].keyword, "FROM");
        assert_eq!(d.nodes[0].location, Location::new(1, 3));
        assert_eq!(d.nodes[1].location, Location::new(2, 2));
        assert_eq!(d.nodes[1].args(), "echo hi");
        assert_eq!(d.nodes[1].original, "run  echo hi");
    }

    #[test]
    fn continuation_at_eof() {
        let d = p("FROM x\nRUN echo hi \\");
        assert_eq!(d.nodes[1].args(), "echo hi");
        assert_eq!(d.warnings.len(), 1);
        let e = parse("FROM x\nRUN \\\n").unwrap_err();
        assert_eq!(e[0].location, Some(Location::new(2, 1)));
        assert!(e[0].message.contains("end of the file"), "{}", e[0].message);
    }

    #[test]
    fn heredocs() {
        let d = p(
            "FROM x\nRUN <<EOF\necho $A\n  two\nEOF\nCOPY <<-\"A\" <<B /d/\n\tone\n\tA\ntwo\nB\nUSER x\n",
        );
        assert_eq!(d.nodes.len(), 4);
        let run = &d.nodes[1];
        assert_eq!(
            run.heredocs,
            vec![Heredoc {
                name: "EOF".into(),
                content: "echo $A\n  two\n".into(),
                expand: true,
                chomp: false
            }]
        );
        assert_eq!(run.heredoc_source, "echo $A\n  two\nEOF\n");
        let copy = &d.nodes[2];
        assert_eq!(copy.heredocs.len(), 2);
        assert_eq!(copy.heredocs[0].name, "A");
        assert!(!copy.heredocs[0].expand);
        assert!(copy.heredocs[0].chomp);
        assert_eq!(copy.heredocs[0].content, "\tone\n");
        assert_eq!(copy.heredocs[0].body(), "one\n");
        assert_eq!(copy.heredocs[1].content, "two\n");
        assert_eq!(d.nodes[3].keyword, "USER");
        // Heredocs are only for RUN, COPY, ADD; "<<<" is a here-string, not a heredoc.
        let d = p("FROM x\nRUN cat <<<word\nCMD cat <<EOF\n");
        assert!(d.nodes[1].heredocs.is_empty());
        assert!(d.nodes[2].heredocs.is_empty());
        // Numbered descriptor and a heredoc after other words.
        let d = p("FROM x\nRUN python3 3<<X\nprint(1)\nX\n");
        assert_eq!(d.nodes[1].heredocs[0].name, "X");
    }

    #[test]
    fn unterminated_heredoc() {
        let e = parse("FROM x\nRUN <<EOF\necho\nEO\n").unwrap_err();
        assert_eq!(e[0].location, Some(Location::new(2, 1)));
        assert!(e[0].message.contains("unterminated heredoc <<EOF"));
    }

    #[test]
    fn sub_node_keeps_positions() {
        let d = p("FROM x\nONBUILD   run echo \\\n  hi\n");
        let n = &d.nodes[1];
        let sub = n.sub_node(n.args_offset);
        assert_eq!(sub.keyword, "RUN");
        assert_eq!(sub.location, Location::new(2, 11));
        assert_eq!(sub.args(), "echo   hi");
        let off = sub.original.find("hi").unwrap();
        assert_eq!(sub.location_at(off), Location::new(3, 3));
    }
}
