//! Secret mount requests: the key=value lists the host passes in `step-info.requested`, checked,
//! and the decision of what to place for each.
//!
//! Keys of one request (every value a string):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `type` | must be `secret`; requests of other types are ignored | `secret` |
//! | `id` | the secret's id (`--secret id=…`) | the target's file name |
//! | `target` (or `dst`, `destination`) | absolute, normalized path in the container | `/run/secrets/ID`, none when `env` is given |
//! | `mode` | octal permission bits | `0400` |
//! | `uid`, `gid` | decimal owner | `0` |
//! | `required` | `true`/`false` (also `1`/`0`, `t`/`f`; empty = true) | `false` |
//! | `env` | also (or, without `target`, only) put the value in this variable of the step's env; the host fills it in | |
//!
//! Any other key is an error, so that a typo is not silently dropped.

use thiserror::Error;

/// Why a request cannot be served.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// A key this plugin does not know.
    #[error("secret request {index}: unknown key {key:?} (id, target, env, mode, uid, gid, required, type)")]
    UnknownKey {
        /// Index of the request in `requested`.
        index: usize,
        /// The key.
        key: String,
    },
    /// A key given twice in one request.
    #[error("secret request {index}: {key:?} is given twice")]
    DuplicateKey {
        /// Index of the request.
        index: usize,
        /// The key.
        key: String,
    },
    /// A value that does not parse.
    #[error("secret request {index}: {key}={value:?} is not {expected}")]
    BadValue {
        /// Index of the request.
        index: usize,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What the value should be.
        expected: &'static str,
    },
    /// Neither an id nor a target to take one from.
    #[error("secret request {index}: needs an id or a target")]
    NoId {
        /// Index of the request.
        index: usize,
    },
    /// A target that is not an absolute, normalized path below `/`.
    #[error("secret {id:?}: target {target:?} is not an absolute, normalized path (the host resolves relative targets against WORKDIR)")]
    BadTarget {
        /// The secret's id.
        id: String,
        /// The target.
        target: String,
    },
    /// Two requests with the same target.
    #[error("secrets {first:?} and {second:?} both go to {target}")]
    SameTarget {
        /// The earlier request's id.
        first: String,
        /// The later request's id.
        second: String,
        /// The shared target.
        target: String,
    },
    /// A required secret the user did not give.
    #[error("secret {id:?} is required but was not given (--secret id={id},src=FILE)")]
    Required {
        /// The secret's id.
        id: String,
    },
    /// The host failed to look a secret up.
    #[error("looking up secret {id:?}: {message}")]
    Lookup {
        /// The secret's id.
        id: String,
        /// What the host said.
        message: String,
    },
}

/// One secret to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    /// The secret's id.
    pub id: String,
    /// Absolute path in the container; None = env only.
    pub target: Option<String>,
    /// Environment variable to put the value in.
    pub env: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Fail the step when the secret was not given.
    pub required: bool,
}

/// The default permission bits of a secret file.
pub const DEFAULT_MODE: u32 = 0o400;

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn is_normalized_absolute(t: &str) -> bool {
    t.starts_with('/')
        && t != "/"
        && !t.ends_with('/')
        && !t.contains('\0')
        && t[1..].split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Read one request; None when it is not a secret request.
pub fn parse(index: usize, kv: &[(String, String)]) -> Result<Option<SecretMount>, Error> {
    let mut seen: Vec<&str> = Vec::new();
    let (mut id, mut target, mut env) = (None, None, None);
    let mut m = SecretMount { id: String::new(), target: None, env: None, mode: DEFAULT_MODE, uid: 0, gid: 0, required: false };
    for (k, v) in kv {
        let canonical = match k.as_str() {
            "dst" | "destination" => "target",
            other => other,
        };
        if seen.contains(&canonical) {
            return Err(Error::DuplicateKey { index, key: k.clone() });
        }
        let bad = |expected| Error::BadValue { index, key: k.clone(), value: v.clone(), expected };
        match canonical {
            "type" if v == "secret" => {}
            "type" => return Ok(None),
            "id" if v.is_empty() || v.contains('\0') => return Err(bad("a non-empty id")),
            "id" => id = Some(v.clone()),
            "target" => target = Some(v.clone()),
            "mode" => {
                let digits = v.strip_prefix("0o").unwrap_or(v);
                m.mode = u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777 && !digits.is_empty())
                    .ok_or_else(|| bad("octal permission bits"))?;
            }
            "uid" => m.uid = v.parse().map_err(|_| bad("a decimal user id"))?,
            "gid" => m.gid = v.parse().map_err(|_| bad("a decimal group id"))?,
            "required" => m.required = parse_bool(v).ok_or_else(|| bad("true or false"))?,
            "env" if v.is_empty() || v.contains('=') || v.contains('\0') => return Err(bad("a variable name")),
            "env" => env = Some(v.clone()),
            _ => return Err(Error::UnknownKey { index, key: k.clone() }),
        }
        seen.push(canonical);
    }
    m.id = match (id, &target) {
        (Some(id), _) => id,
        (None, Some(t)) => t.rsplit('/').find(|c| !c.is_empty()).map(str::to_string).ok_or(Error::NoId { index })?,
        (None, None) => return Err(Error::NoId { index }),
    };
    m.target = match (target, &env) {
        (Some(t), _) => Some(t),
        (None, Some(_)) => None,
        (None, None) => Some(format!("/run/secrets/{}", m.id)),
    };
    if let Some(t) = m.target.as_ref().filter(|t| !is_normalized_absolute(t)) {
        return Err(Error::BadTarget { id: m.id, target: t.clone() });
    }
    m.env = env;
    Ok(Some(m))
}

/// Read every request; two secrets may not share a target.
pub fn parse_all(requested: &[Vec<(String, String)>]) -> Result<Vec<SecretMount>, Error> {
    let mut out: Vec<SecretMount> = Vec::new();
    for (i, kv) in requested.iter().enumerate() {
        if let Some(m) = parse(i, kv)? {
            if let Some(first) = out.iter().find(|o| o.target.is_some() && o.target == m.target) {
                return Err(Error::SameTarget { first: first.id.clone(), second: m.id, target: m.target.unwrap_or_default() });
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// What the host said about a secret id.
#[derive(Debug)]
pub enum Lookup<S> {
    /// The secret, granted to this plugin.
    Found(S),
    /// The user did not give it (the host denied the lookup).
    NotGiven,
    /// Anything else.
    Failed(String),
}

/// The secrets to mount, with the ids of optional ones that were skipped.
#[derive(Debug)]
pub struct Placed<S> {
    /// Each request with the host's handle for its secret.
    pub mounts: Vec<(SecretMount, S)>,
    /// Ids of optional secrets the user did not give.
    pub skipped: Vec<String>,
}

/// Look each secret up: found ones are placed, missing optional ones skipped, missing required
/// ones fail the step.
pub fn place<S>(wanted: Vec<SecretMount>, mut lookup: impl FnMut(&str) -> Lookup<S>) -> Result<Placed<S>, Error> {
    let mut placed = Placed { mounts: Vec::new(), skipped: Vec::new() };
    for m in wanted {
        match lookup(&m.id) {
            Lookup::Found(s) => placed.mounts.push((m, s)),
            Lookup::NotGiven if m.required => return Err(Error::Required { id: m.id }),
            Lookup::NotGiven => placed.skipped.push(m.id),
            Lookup::Failed(message) => return Err(Error::Lookup { id: m.id, message }),
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_follow_buildkit() {
        let m = parse(0, &kv(&[("type", "secret"), ("id", "npmrc")])).unwrap().unwrap();
        assert_eq!(
            m,
            SecretMount { id: "npmrc".into(), target: Some("/run/secrets/npmrc".into()), env: None, mode: 0o400, uid: 0, gid: 0, required: false }
        );
    }

    #[test]
    fn every_key_is_read() {
        let m =
            parse(0, &kv(&[("id", "tok"), ("dst", "/root/.token"), ("mode", "0440"), ("uid", "1000"), ("gid", "100"), ("required", "")]))
                .unwrap()
                .unwrap();
        assert_eq!(
            m,
            SecretMount { id: "tok".into(), target: Some("/root/.token".into()), env: None, mode: 0o440, uid: 1000, gid: 100, required: true }
        );
        let m = parse(0, &kv(&[("target", "/etc/app/key.pem"), ("required", "false"), ("mode", "0o600")])).unwrap().unwrap();
        assert_eq!((m.id.as_str(), m.mode, m.required), ("key.pem", 0o600, false));
    }

    #[test]
    fn env_alone_mounts_nothing_and_env_with_target_does_both() {
        let m = parse(0, &kv(&[("id", "tok"), ("env", "TOKEN")])).unwrap().unwrap();
        assert_eq!((m.target, m.env.as_deref()), (None, Some("TOKEN")));
        let m = parse(0, &kv(&[("id", "tok"), ("env", "TOKEN"), ("target", "/t")])).unwrap().unwrap();
        assert_eq!((m.target.as_deref(), m.env.as_deref()), (Some("/t"), Some("TOKEN")));
        // Two env-only requests share no target.
        assert_eq!(parse_all(&[kv(&[("id", "a"), ("env", "A")]), kv(&[("id", "b"), ("env", "B")])]).unwrap().len(), 2);
    }

    #[test]
    fn other_mount_types_are_ignored() {
        assert_eq!(parse(0, &kv(&[("type", "cache"), ("target", "/root/.cache")])).unwrap(), None);
        let all = parse_all(&[kv(&[("type", "ssh")]), kv(&[("id", "a")])]).unwrap();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        assert_eq!(parse(2, &kv(&[("id", "a"), ("sharing", "locked")])), Err(Error::UnknownKey { index: 2, key: "sharing".into() }));
        assert_eq!(
            parse(0, &kv(&[("id", "a"), ("target", "/x"), ("dst", "/y")])),
            Err(Error::DuplicateKey { index: 0, key: "dst".into() })
        );
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("mode", "0999")])), Err(Error::BadValue { expected: "octal permission bits", .. })));
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("mode", "17777")])), Err(Error::BadValue { .. })));
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("uid", "-1")])), Err(Error::BadValue { .. })));
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("required", "yes")])), Err(Error::BadValue { .. })));
        assert!(matches!(parse(0, &kv(&[("id", "")])), Err(Error::BadValue { .. })));
        assert_eq!(parse(1, &kv(&[("mode", "0400")])), Err(Error::NoId { index: 1 }));
        assert_eq!(
            parse(0, &kv(&[("id", "a"), ("target", "rel/path")])),
            Err(Error::BadTarget { id: "a".into(), target: "rel/path".into() })
        );
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("target", "/x/../etc/shadow")])), Err(Error::BadTarget { .. })));
        assert!(matches!(parse(0, &kv(&[("id", "..")])), Err(Error::BadTarget { .. })));
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("env", "A=B")])), Err(Error::BadValue { expected: "a variable name", .. })));
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("env", "")])), Err(Error::BadValue { .. })));
        assert!(matches!(parse(0, &kv(&[("id", "a"), ("env", "T"), ("target", "../x")])), Err(Error::BadTarget { .. })));
        let e = parse_all(&[kv(&[("id", "a"), ("target", "/s")]), kv(&[("id", "b"), ("target", "/s")])]).unwrap_err();
        assert_eq!(e.to_string(), "secrets \"a\" and \"b\" both go to /s");
    }

    #[test]
    fn missing_secrets_are_skipped_unless_required() {
        let wanted = parse_all(&[kv(&[("id", "given")]), kv(&[("id", "optional")])]).unwrap();
        let mut asked = Vec::new();
        let placed = place(wanted, |id| {
            asked.push(id.to_string());
            if id == "given" { Lookup::Found(format!("handle:{id}")) } else { Lookup::NotGiven }
        })
        .unwrap();
        assert_eq!(asked, ["given", "optional"]);
        assert_eq!(placed.mounts.len(), 1);
        assert_eq!(placed.mounts[0].0.target.as_deref(), Some("/run/secrets/given"));
        assert_eq!(placed.mounts[0].1, "handle:given");
        assert_eq!(placed.skipped, ["optional"]);

        let wanted = parse_all(&[kv(&[("id", "must"), ("required", "true")])]).unwrap();
        let e = place::<()>(wanted, |_| Lookup::NotGiven).unwrap_err();
        assert_eq!(e.to_string(), "secret \"must\" is required but was not given (--secret id=must,src=FILE)");

        let wanted = parse_all(&[kv(&[("id", "x")])]).unwrap();
        let e = place::<()>(wanted, |_| Lookup::Failed("host gone".into())).unwrap_err();
        assert_eq!(e, Error::Lookup { id: "x".into(), message: "host gone".into() });
    }
}
