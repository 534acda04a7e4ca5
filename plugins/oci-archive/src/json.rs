//! Minimal JSON helpers: Go-compatible string quoting and compaction, and the top-level members of an object.
//!
//! The docker-archive metadata is keyed by digests of JSON that skopeo produces with Go's
//! `encoding/json`; producing the same bytes keeps the archives identical to skopeo's.

/// Errors reading JSON.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonError {
    /// The text is not the JSON this module expects.
    #[error("invalid JSON at byte {at}: {what}")]
    Invalid {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected.
        what: &'static str,
    },
}

/// `s` as a JSON string literal, escaped like Go's `encoding/json` (HTML-safe).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `raw` without insignificant whitespace, with `<`, `>`, `&`, U+2028 and U+2029 inside strings
/// escaped: what Go's `json.Marshal` does to an embedded `json.RawMessage`.
pub fn compact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        } else {
            match c {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    out
}

/// The members of the JSON object `doc`: decoded keys and the raw text of each value, in document
/// order. Values are checked to be well formed.
pub fn members(doc: &str) -> Result<Vec<(String, &str)>, JsonError> {
    let mut p = Parser { s: doc.as_bytes(), i: 0 };
    p.ws();
    p.expect(b'{', "`{` starting an object")?;
    let mut out = Vec::new();
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key = p.string()?;
            p.ws();
            p.expect(b':', "`:` after a key")?;
            p.ws();
            let start = p.i;
            p.value(0)?;
            out.push((key, &doc[start..p.i]));
            p.ws();
            match p.bump() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(p.err("`,` or `}` after a member")),
            }
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("end of input after the object"));
    }
    Ok(out)
}

/// The value of the last member named `key` (JSON objects with repeated keys keep the last one).
pub fn member<'a>(members: &[(String, &'a str)], key: &str) -> Option<&'a str> {
    members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 512;

impl Parser<'_> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError::Invalid { at: self.i, what }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn bump(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }
    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("less nesting"));
        }
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.expect(b':', "`:` after a key")?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.bump() {
                        Some(b',') => continue,
                        Some(b'}') => return Ok(()),
                        _ => return Err(self.err("`,` or `}` in an object")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.bump() {
                        Some(b',') => continue,
                        Some(b']') => return Ok(()),
                        _ => return Err(self.err("`,` or `]` in an array")),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("true, false or null"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else if self.digits() == 0 {
            return Err(self.err("digits"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("digits after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("exponent digits"));
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("four hex digits"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.err("four hex digits"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("four hex digits"))?;
        self.i += 4;
        Ok(v)
    }

    /// A string literal, decoded.
    fn string(&mut self) -> Result<String, JsonError> {
        self.expect(b'"', "a string")?;
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(self.err("closing `\"`")),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'/') => out.push(b'/'),
                    Some(b'b') => out.push(8),
                    Some(b'f') => out.push(12),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'u') => {
                        let mut cp = self.hex4()?;
                        if (0xd800..0xdc00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                            let save = self.i;
                            self.i += 2;
                            let lo = self.hex4()?;
                            if (0xdc00..0xe000).contains(&lo) {
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                            } else {
                                self.i = save;
                            }
                        }
                        let c = char::from_u32(cp).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(self.err("an escape sequence")),
                },
                Some(c) if c < 0x20 => return Err(self.err("no control characters in strings")),
                Some(c) => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_like_go() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("<a>&\n\u{1}\u{2028}é"), r#""\u003ca\u003e\u0026\n\u0001\u2028é""#);
    }

    #[test]
    fn compact_drops_whitespace_outside_strings_only() {
        let raw = "{ \"Env\" : [ \"A=1 2\", \"B=<x>\" ],\n\t\"n\": 1.5e3 , \"q\":\"a\\\" <\" }";
        assert_eq!(compact(raw), r#"{"Env":["A=1 2","B=\u003cx\u003e"],"n":1.5e3,"q":"a\" \u003c"}"#);
    }

    #[test]
    fn members_keep_raw_values_in_order() {
        let doc = r#" {"created":"2024-01-01T00:00:00Z", "config" : {"Env":["A=1"], "Cmd":null},
            "a\u0072chitecture":"amd64","n":[1,-2.5e-3,true,false,null,{}], "os":"x", "os":"linux"} "#;
        let m = members(doc).unwrap();
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["created", "config", "architecture", "n", "os", "os"]);
        assert_eq!(member(&m, "config"), Some(r#"{"Env":["A=1"], "Cmd":null}"#));
        assert_eq!(member(&m, "os"), Some(r#""linux""#));
        assert_eq!(member(&m, "n"), Some("[1,-2.5e-3,true,false,null,{}]"));
        assert_eq!(member(&m, "missing"), None);
        assert_eq!(members("{}").unwrap(), vec![]);
    }

    #[test]
    fn members_reject_malformed_documents() {
        for bad in ["", "[]", "{", r#"{"a":}"#, r#"{"a":1,}"#, r#"{"a":01x}"#, r#"{"a":"x} "#, r#"{"a":1} x"#, r#"{"a":tru}"#] {
            assert!(members(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn surrogate_pairs_decode() {
        let m = members(r#"{"\ud83d\ude00":1}"#).unwrap();
        assert_eq!(m[0].0, "😀");
    }
}
