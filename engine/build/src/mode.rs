//! `COPY --chmod`/`ADD --chmod` values: an octal mode, or symbolic clauses as chmod(1) takes them
//! (`u+x`, `go-w`, `a=rX`, `u=g`), applied to each copied file against its own mode. One
//! difference from chmod(1): a clause without a class (`+x`) applies to all classes, as there is
//! no umask to honour.

/// At most this many `who op perms` actions in one value.
const MAX_ACTIONS: usize = 16;

/// One `OP PERMS` of a clause, for the classes in `who`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Action {
    /// Bits of the classes affected: 0o4700 for u, 0o2070 for g, 0o1007 for o.
    who: u32,
    /// `+`, `-` or `=`.
    op: u8,
    /// Fixed bits (r, w, x, s, t spread over all classes before `who` masks them).
    bits: u32,
    /// `X`: execute where the file is a directory or someone may execute it.
    cond_x: bool,
    /// `u`, `g` or `o`: that class's current permissions (copied to the affected classes).
    copy_from: Option<u8>,
}

/// A parsed `--chmod` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeSpec {
    octal: Option<u32>,
    actions: [Action; MAX_ACTIONS],
    len: usize,
}

impl ModeSpec {
    /// Parses `0644`/`755` (at most 0o7777) or symbolic clauses separated by commas.
    pub fn parse(s: &str) -> Result<ModeSpec, String> {
        let bad =
            || format!("--chmod={s}: expected an octal mode like 0644 or a symbolic one like u+x");
        let mut spec = ModeSpec {
            octal: None,
            actions: [Action::default(); MAX_ACTIONS],
            len: 0,
        };
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            let m = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            if m > 0o7777 {
                return Err(bad());
            }
            spec.octal = Some(m);
            return Ok(spec);
        }
        if s.is_empty() {
            return Err(bad());
        }
        for clause in s.split(',') {
            let bytes = clause.as_bytes();
            let mut i = 0;
            let mut who = 0;
            while i < bytes.len() && b"ugoa".contains(&bytes[i]) {
                who |= match bytes[i] {
                    b'u' => 0o4700,
                    b'g' => 0o2070,
                    b'o' => 0o1007,
                    _ => 0o7777,
                };
                i += 1;
            }
            if who == 0 {
                who = 0o7777;
            }
            if i >= bytes.len() {
                return Err(bad());
            }
            while i < bytes.len() {
                let op = bytes[i];
                if !b"+-=".contains(&op) {
                    return Err(bad());
                }
                i += 1;
                let mut a = Action {
                    who,
                    op,
                    ..Action::default()
                };
                if i < bytes.len() && b"ugo".contains(&bytes[i]) {
                    a.copy_from = Some(bytes[i]);
                    i += 1;
                } else {
                    while i < bytes.len() && b"rwxXst".contains(&bytes[i]) {
                        match bytes[i] {
                            b'r' => a.bits |= 0o444,
                            b'w' => a.bits |= 0o222,
                            b'x' => a.bits |= 0o111,
                            b'X' => a.cond_x = true,
                            b's' => a.bits |= 0o6000,
                            _ => a.bits |= 0o1000,
                        }
                        i += 1;
                    }
                }
                if spec.len == MAX_ACTIONS {
                    return Err(format!("--chmod={s}: too many clauses"));
                }
                spec.actions[spec.len] = a;
                spec.len += 1;
            }
        }
        Ok(spec)
    }

    /// The mode a file of mode `mode` (permission bits) gets; `is_dir` for `X`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        if let Some(m) = self.octal {
            return m;
        }
        let mut m = mode & 0o7777;
        for a in &self.actions[..self.len] {
            let mut bits = a.bits;
            if a.cond_x && (is_dir || m & 0o111 != 0) {
                bits |= 0o111;
            }
            if let Some(c) = a.copy_from {
                let class = match c {
                    b'u' => (m >> 6) & 7,
                    b'g' => (m >> 3) & 7,
                    _ => m & 7,
                };
                bits |= class << 6 | class << 3 | class;
            }
            let bits = bits & a.who;
            m = match a.op {
                b'+' => m | bits,
                b'-' => m & !bits,
                // As chmod(1), `=` keeps a directory's setuid/setgid bits unless it names `s`.
                _ if is_dir => (m & !(a.who & 0o1777)) | bits,
                _ => (m & !(a.who & 0o7777)) | bits,
            };
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::ModeSpec;

    fn apply(spec: &str, mode: u32, dir: bool) -> u32 {
        ModeSpec::parse(spec).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic_modes() {
        assert_eq!(apply("0755", 0o600, false), 0o755);
        assert_eq!(apply("644", 0o777, true), 0o644);
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("u=rw,go=r", 0o777, false), 0o644);
        assert_eq!(apply("a=rX", 0o640, true), 0o555);
        assert_eq!(apply("a=rX", 0o640, false), 0o444);
        assert_eq!(apply("a=rX", 0o740, false), 0o555);
        assert_eq!(apply("g=u", 0o640, false), 0o660);
        assert_eq!(apply("u+s,+t", 0o755, true), 0o5755);
        assert_eq!(apply("o=", 0o777, false), 0o770);
        assert_eq!(apply("g=rx", 0o2775, true), 0o2755);
        assert_eq!(apply("g=rx", 0o2775, false), 0o755);
        for bad in ["", "99999", "8", "u", "u+q", "z+x", "u+x,", "17777"] {
            assert!(ModeSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
