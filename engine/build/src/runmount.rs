//! `kiln build --run-mount TYPE-SPEC`: a mount written exactly as `RUN --mount=` takes it, read on
//! the host and added to every RUN of every stage (never to a layer).

use kiln_plugin_host::plan::{CopyFrom, MountType, RunMount};

/// Why a `--run-mount` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--run-mount {spec:?}: {reason}")]
pub struct RunMountError {
    /// The value as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A size such as `512`, `64k`, `64m`, `1g` (bytes, binary units).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, shift) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 10),
        'm' => (&v[..v.len() - 1], 20),
        'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Read one `--run-mount` value: `type=bind|cache|tmpfs|secret|ssh` (default bind) and the keys
/// `RUN --mount=` takes (target/dst/destination, source/src, from (an image; `context` for the
/// build context), id, ro/readonly, rw/readwrite, required, mode, uid, gid, env, sharing, size),
/// with the same defaults.
pub fn parse_run_mount(spec: &str) -> Result<RunMount, RunMountError> {
    let bad = |reason: String| RunMountError {
        spec: spec.to_string(),
        reason,
    };
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match field.split_once('=') {
            Some((k, v)) => pairs.push((k.trim().to_ascii_lowercase(), Some(v.to_string()))),
            None => pairs.push((field.to_ascii_lowercase(), None)),
        }
    }
    let mut kind = MountType::Bind;
    for (k, v) in &pairs {
        if k == "type" {
            kind = match v.as_deref() {
                Some("bind") => MountType::Bind,
                Some("cache") => MountType::Cache,
                Some("tmpfs") => MountType::Tmpfs,
                Some("secret") => MountType::Secret,
                Some("ssh") => MountType::Ssh,
                other => {
                    return Err(bad(format!(
                        "unknown mount type {other:?} (bind, cache, tmpfs, secret, ssh)"
                    )));
                }
            };
        }
    }
    let type_name = match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    };
    let mut m = RunMount {
        kind,
        target: None,
        source: None,
        from: None,
        id: None,
        read_write: matches!(kind, MountType::Cache | MountType::Tmpfs),
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
        let flag = v.is_none();
        let value = v.unwrap_or_default();
        let boolean = |v: &str| {
            parse_bool(v).ok_or_else(|| bad(format!("{k} expects true or false, not {v:?}")))
        };
        let number = |v: &str, radix: u32| {
            u32::from_str_radix(v, radix).map_err(|_| bad(format!("{k}={v} is not a valid number")))
        };
        let needs_value = || {
            if flag {
                Err(bad(format!("{k} needs a value ({k}=...)")))
            } else {
                Ok(())
            }
        };
        match k.as_str() {
            "target" | "dst" | "destination" => {
                needs_value()?;
                m.target = Some(value)
            }
            "source" | "src" => {
                needs_value()?;
                only(
                    matches!(kind, MountType::Bind | MountType::Cache | MountType::Secret),
                    "source",
                )?;
                m.source = Some(value)
            }
            "from" => {
                needs_value()?;
                only(matches!(kind, MountType::Bind | MountType::Cache), "from")?;
                m.from = Some(if value == "context" {
                    CopyFrom::Context
                } else {
                    CopyFrom::Image(value)
                })
            }
            "id" => {
                needs_value()?;
                m.id = Some(value)
            }
            "ro" | "readonly" => m.read_write = !boolean(&value)?,
            "rw" | "readwrite" => m.read_write = boolean(&value)?,
            "required" => {
                only(
                    matches!(kind, MountType::Secret | MountType::Ssh),
                    "required",
                )?;
                m.required = boolean(&value)?
            }
            "mode" => {
                needs_value()?;
                m.mode = Some(number(&value, 8)?)
            }
            "uid" => {
                needs_value()?;
                m.uid = Some(number(&value, 10)?)
            }
            "gid" => {
                needs_value()?;
                m.gid = Some(number(&value, 10)?)
            }
            "env" => {
                needs_value()?;
                only(kind == MountType::Secret, "env")?;
                m.env = Some(value)
            }
            "sharing" => {
                only(kind == MountType::Cache, "sharing")?;
                if !matches!(value.as_str(), "shared" | "private" | "locked") {
                    return Err(bad(format!(
                        "sharing={value}: expected shared, private or locked"
                    )));
                }
                m.sharing = Some(value)
            }
            "size" => {
                only(kind == MountType::Tmpfs, "size")?;
                m.size =
                    Some(parse_size(&value).ok_or_else(|| {
                        bad(format!("size={value}: expected a size like 64m or 1g"))
                    })?)
            }
            other => return Err(bad(format!("unknown option {other:?}"))),
        }
    }
    match kind {
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            if m.target.as_deref().is_none_or(str::is_empty) {
                return Err(bad(format!(
                    "type={type_name} needs a target (target=/path)"
                )));
            }
            if kind == MountType::Cache && m.id.is_none() {
                m.id = m.target.clone();
            }
        }
        MountType::Secret => {
            if m.id.is_none() {
                m.id = match &m.target {
                    Some(t) => t.rsplit('/').find(|s| !s.is_empty()).map(str::to_string),
                    None => return Err(bad("type=secret needs an id or a target".into())),
                };
            }
            if m.target.is_none() && m.env.is_none() {
                m.target = Some(format!(
                    "/run/secrets/{}",
                    m.id.as_deref().unwrap_or_default()
                ));
            }
        }
        MountType::Ssh => {
            if m.id.is_none() {
                m.id = Some("default".into());
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_run_mount() {
        let m = parse_run_mount("type=secret,id=tok").unwrap();
        assert!(matches!(m.kind, MountType::Secret));
        assert_eq!(
            (m.id.as_deref(), m.target.as_deref(), m.required),
            (Some("tok"), Some("/run/secrets/tok"), false)
        );
        let m = parse_run_mount("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!((m.target, m.env.as_deref()), (None, Some("TOKEN")));
        let m = parse_run_mount("type=secret,target=/etc/app/key.pem,required").unwrap();
        assert_eq!((m.id.as_deref(), m.required), (Some("key.pem"), true));
        let m = parse_run_mount("type=cache,target=/root/.cache").unwrap();
        assert_eq!(
            (m.id.as_deref(), m.read_write),
            (Some("/root/.cache"), true)
        );
        let m = parse_run_mount("source=data,target=/mnt/data").unwrap();
        assert!(matches!(m.kind, MountType::Bind));
        assert!(!m.read_write);
        let m = parse_run_mount("type=bind,src=/x,dst=/y,from=busybox,rw=true").unwrap();
        assert!(matches!(&m.from, Some(CopyFrom::Image(r)) if r == "busybox"));
        assert!(m.read_write);
        let m = parse_run_mount("type=tmpfs,target=/scratch,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = parse_run_mount("type=ssh").unwrap();
        assert_eq!((m.id.as_deref(), m.target), (Some("default"), None));
        let m = parse_run_mount("type=secret,id=a,mode=0440,uid=10,gid=20").unwrap();
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o440), Some(10), Some(20)));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        let e = parse_run_mount("type=nfs,target=/x").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--run-mount \"type=nfs,target=/x\": unknown mount type"),
            "{e}"
        );
        assert!(
            parse_run_mount("type=cache")
                .unwrap_err()
                .reason
                .contains("needs a target")
        );
        assert!(
            parse_run_mount("type=secret")
                .unwrap_err()
                .reason
                .contains("needs an id or a target")
        );
        assert!(
            parse_run_mount("type=secret,id=a,from=img")
                .unwrap_err()
                .reason
                .contains("from does not apply")
        );
        assert!(
            parse_run_mount("type=bind,target=/x,colour=red")
                .unwrap_err()
                .reason
                .contains("unknown option \"colour\"")
        );
        assert!(
            parse_run_mount("type=secret,id=a,mode=9")
                .unwrap_err()
                .reason
                .contains("not a valid number")
        );
        assert!(
            parse_run_mount("type=secret,id=a,required=maybe")
                .unwrap_err()
                .reason
                .contains("true or false")
        );
        assert!(
            parse_run_mount("type=secret,id")
                .unwrap_err()
                .reason
                .contains("id needs a value")
        );
    }
}
