//! The `RUN --mount=` option syntax: one CSV record of `key=value` fields (`type=` first or
//! anywhere, bind by default), checked key by key against the mount type, with BuildKit's
//! defaults filled in (a cache's id is its target, a secret's id the target's last component
//! and its target `/run/secrets/ID`, an ssh mount's id `default`).

use std::fmt;

/// The kind of a mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A read-only (by default) bind of the context, a stage or an image.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file or environment variable.
    Secret,
    /// An ssh-agent socket.
    Ssh,
}

impl MountKind {
    /// The name `type=` takes.
    pub fn name(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Cache => "cache",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Secret => "secret",
            MountKind::Ssh => "ssh",
        }
    }
}

/// A parsed mount option. `from` is left as written (`F = String`) for the caller to resolve
/// into its own type with [`MountSpec::resolve_from`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec<F = String> {
    /// `type=`.
    pub kind: MountKind,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `from=`.
    pub from: Option<F>,
    /// `id=` (or its default).
    pub id: Option<String>,
    /// `rw`/`ro` (caches and tmpfs are writable by default).
    pub read_write: bool,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `env=` (secret).
    pub env: Option<String>,
    /// `sharing=shared|private|locked` (cache).
    pub sharing: Option<String>,
    /// `size=` in bytes (tmpfs).
    pub size: Option<u64>,
}

impl<F> MountSpec<F> {
    /// The same mount with `from` turned into `G` (a stage index, an image…).
    pub fn resolve_from<G, E>(
        self,
        resolve: impl FnOnce(F) -> Result<G, E>,
    ) -> Result<MountSpec<G>, E> {
        Ok(MountSpec {
            from: self.from.map(resolve).transpose()?,
            kind: self.kind,
            target: self.target,
            source: self.source,
            id: self.id,
            read_write: self.read_write,
            required: self.required,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            env: self.env,
            sharing: self.sharing,
            size: self.size,
        })
    }
}

/// Why a mount option is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountError {
    /// A key no mount type takes.
    UnknownKey(String),
    /// Anything else, in one sentence.
    Invalid(String),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::UnknownKey(k) => write!(f, "unknown option {k:?}"),
            MountError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for MountError {}

/// Every key a mount option may carry.
pub const KEYS: [&str; 19] = [
    "type",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "id",
    "ro",
    "readonly",
    "rw",
    "readwrite",
    "required",
    "mode",
    "uid",
    "gid",
    "env",
    "sharing",
    "size",
];

/// A boolean as Go's `strconv.ParseBool` reads it.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A size like `64m`, `1g`, `512k`, `1.5GiB`, `1024` (binary multiples), in bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let num_len = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let num: f64 = v[..num_len].parse().ok()?;
    let unit = v[num_len..].trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return None,
    };
    let bytes = num * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Split one CSV record: commas separate fields, `"..."` quotes a field and `""` inside it is a
/// quote.
pub fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quote".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        out.push(field);
    }
}

/// Read a mount option written as one CSV record (`type=cache,target=/root/.cache`); values go
/// through `expand` (variable substitution, or none) before they are checked.
pub fn parse(
    spec: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<MountSpec, MountError> {
    let bad = MountError::Invalid;
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    for f in csv_fields(spec).map_err(bad)? {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        match f.split_once('=') {
            Some((k, v)) => pairs.push((k.trim().to_ascii_lowercase(), Some(v.to_string()))),
            None => pairs.push((f.to_ascii_lowercase(), None)),
        }
    }
    let mut kind = MountKind::Bind;
    for (k, v) in &pairs {
        if k == "type" {
            kind = match v.as_deref() {
                Some("bind") => MountKind::Bind,
                Some("cache") => MountKind::Cache,
                Some("tmpfs") => MountKind::Tmpfs,
                Some("secret") => MountKind::Secret,
                Some("ssh") => MountKind::Ssh,
                Some(t) => {
                    return Err(bad(format!(
                        "unknown mount type {t:?} (bind, cache, tmpfs, secret, ssh)"
                    )));
                }
                None => return Err(bad("type needs a value".into())),
            };
        }
    }
    let type_name = kind.name();
    let mut m = MountSpec {
        kind,
        target: None,
        source: None,
        from: None,
        id: None,
        read_write: matches!(kind, MountKind::Cache | MountKind::Tmpfs),
        required: false,
        mode: None,
        uid: None,
        gid: None,
        env: None,
        sharing: None,
        size: None,
    };
    let only = |ok: bool, key: &str| {
        if ok {
            Ok(())
        } else {
            Err(bad(format!("{key} does not apply to type={type_name}")))
        }
    };
    for (k, v) in pairs {
        if k == "type" {
            continue;
        }
        let Some(raw) = v else {
            match k.as_str() {
                "ro" | "readonly" => m.read_write = false,
                "rw" | "readwrite" => m.read_write = true,
                "required" => {
                    only(
                        matches!(kind, MountKind::Secret | MountKind::Ssh),
                        "required",
                    )?;
                    m.required = true
                }
                _ if KEYS.contains(&k.as_str()) => {
                    return Err(bad(format!("{k} needs a value ({k}=...)")));
                }
                _ => return Err(MountError::UnknownKey(k)),
            }
            continue;
        };
        let value = expand(&raw).map_err(bad)?;
        let boolean = |v: &str| {
            parse_bool(v).ok_or_else(|| bad(format!("{k} expects true or false, not {v:?}")))
        };
        let number = |v: &str, radix: u32| {
            u32::from_str_radix(v, radix).map_err(|_| bad(format!("{k}={v} is not a valid number")))
        };
        match k.as_str() {
            "target" | "dst" | "destination" => m.target = Some(value),
            "source" | "src" => {
                only(
                    matches!(kind, MountKind::Bind | MountKind::Cache | MountKind::Secret),
                    "source",
                )?;
                m.source = Some(value)
            }
            "from" => {
                only(matches!(kind, MountKind::Bind | MountKind::Cache), "from")?;
                m.from = Some(value)
            }
            "id" => m.id = Some(value),
            "ro" | "readonly" => m.read_write = !boolean(&value)?,
            "rw" | "readwrite" => m.read_write = boolean(&value)?,
            "required" => {
                only(
                    matches!(kind, MountKind::Secret | MountKind::Ssh),
                    "required",
                )?;
                m.required = boolean(&value)?
            }
            "mode" => m.mode = Some(number(&value, 8)?),
            "uid" => m.uid = Some(number(&value, 10)?),
            "gid" => m.gid = Some(number(&value, 10)?),
            "env" => {
                only(kind == MountKind::Secret, "env")?;
                m.env = Some(value)
            }
            "sharing" => {
                only(kind == MountKind::Cache, "sharing")?;
                if !matches!(value.as_str(), "shared" | "private" | "locked") {
                    return Err(bad(format!(
                        "sharing={value}: expected shared, private or locked"
                    )));
                }
                m.sharing = Some(value)
            }
            "size" => {
                only(kind == MountKind::Tmpfs, "size")?;
                m.size = Some(parse_size(&value).ok_or_else(|| {
                    bad(format!("size={value}: expected a size like 64m or 1g"))
                })?)
            }
            _ => return Err(MountError::UnknownKey(k)),
        }
    }
    match kind {
        MountKind::Bind | MountKind::Cache | MountKind::Tmpfs => {
            if m.target.as_deref().is_none_or(str::is_empty) {
                return Err(bad(format!(
                    "type={type_name} needs a target (target=/path)"
                )));
            }
            if kind == MountKind::Cache && m.id.is_none() {
                m.id = m.target.clone();
            }
        }
        MountKind::Secret => {
            if m.id.is_none() {
                match &m.target {
                    Some(t) => m.id = t.rsplit('/').find(|s| !s.is_empty()).map(str::to_string),
                    None => return Err(bad("type=secret needs an id or a target".into())),
                }
            }
            if m.target.is_none() && m.env.is_none() {
                m.target = Some(format!(
                    "/run/secrets/{}",
                    m.id.as_deref().unwrap_or_default()
                ));
            }
        }
        MountKind::Ssh => {
            if m.id.is_none() {
                m.id = Some("default".into());
            }
        }
    }
    Ok(m)
}

/// [`parse`] with values taken as written.
pub fn parse_literal(spec: &str) -> Result<MountSpec, MountError> {
    parse(spec, &mut |v| Ok(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_buildkit() {
        let m = parse_literal("type=secret,id=tok").unwrap();
        assert_eq!(m.kind, MountKind::Secret);
        assert_eq!(
            (m.id.as_deref(), m.target.as_deref(), m.required),
            (Some("tok"), Some("/run/secrets/tok"), false)
        );
        let m = parse_literal("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!((m.target, m.env.as_deref()), (None, Some("TOKEN")));
        let m = parse_literal("type=secret,target=/etc/app/key.pem,required").unwrap();
        assert_eq!((m.id.as_deref(), m.required), (Some("key.pem"), true));
        let m = parse_literal("type=cache,target=/root/.cache").unwrap();
        assert_eq!((m.id.as_deref(), m.read_write), (Some("/root/.cache"), true));
        let m = parse_literal("source=data,target=/mnt/data").unwrap();
        assert_eq!((m.kind, m.read_write), (MountKind::Bind, false));
        let m = parse_literal("type=bind,src=/x,dst=/y,from=busybox,rw=true").unwrap();
        assert_eq!((m.from.as_deref(), m.read_write), (Some("busybox"), true));
        let m = parse_literal("type=tmpfs,target=/scratch,size=1.5m").unwrap();
        assert_eq!(m.size, Some(1024 * 1024 * 3 / 2));
        let m = parse_literal("type=ssh").unwrap();
        assert_eq!((m.id.as_deref(), m.target), (Some("default"), None));
        let m = parse_literal("type=secret,id=a,mode=0440,uid=10,gid=20").unwrap();
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o440), Some(10), Some(20)));
        let m = parse_literal(r#""target=/a,b",type=cache"#).unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
    }

    #[test]
    fn values_are_expanded_before_they_are_checked() {
        let m = parse("type=cache,target=$DIR,mode=$M", &mut |v| {
            Ok(v.replace("$DIR", "/c").replace("$M", "0700"))
        })
        .unwrap();
        assert_eq!((m.target.as_deref(), m.mode), (Some("/c"), Some(0o700)));
        let e = parse("type=cache,target=$X", &mut |_| Err("X is not set".into())).unwrap_err();
        assert_eq!(e, MountError::Invalid("X is not set".into()));
    }

    #[test]
    fn bad_options_say_why() {
        let err = |s: &str| parse_literal(s).unwrap_err().to_string();
        assert!(err("type=nfs,target=/x").starts_with("unknown mount type \"nfs\""));
        assert!(err("type=cache").contains("needs a target"));
        assert!(err("type=secret").contains("needs an id or a target"));
        assert!(err("type=secret,id=a,from=img").contains("from does not apply to type=secret"));
        assert_eq!(
            parse_literal("type=bind,target=/x,colour=red").unwrap_err(),
            MountError::UnknownKey("colour".into())
        );
        assert!(err("type=secret,id=a,mode=9").contains("not a valid number"));
        assert!(err("type=secret,id=a,required=maybe").contains("true or false"));
        assert!(err("type=secret,id").contains("id needs a value"));
        assert!(err("type=cache,target=/x,sharing=all").contains("shared, private or locked"));
        assert!(err("type=tmpfs,target=/x,size=lots").contains("a size like"));
        assert!(err("\"target=/x").contains("unterminated quote"));
    }
}
