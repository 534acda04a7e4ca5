//! `kiln build --run-mount TYPE-SPEC`: a mount written exactly as `RUN --mount=` takes it, read on
//! the host and added to every RUN of every stage (never to a layer).

use kiln_mountspec::MountKind;
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

/// Read one `--run-mount` value: `type=bind|cache|tmpfs|secret|ssh` (default bind) and the keys
/// `RUN --mount=` takes (target/dst/destination, source/src, from (an image; `context` for the
/// build context), id, ro/readonly, rw/readwrite, required, mode, uid, gid, env, sharing, size),
/// with the same defaults (see `kiln-mountspec`).
pub fn parse_run_mount(spec: &str) -> Result<RunMount, RunMountError> {
    let m = kiln_mountspec::parse_literal(spec).map_err(|e| RunMountError {
        spec: spec.to_string(),
        reason: e.to_string(),
    })?;
    Ok(RunMount {
        kind: match m.kind {
            MountKind::Bind => MountType::Bind,
            MountKind::Cache => MountType::Cache,
            MountKind::Tmpfs => MountType::Tmpfs,
            MountKind::Secret => MountType::Secret,
            MountKind::Ssh => MountType::Ssh,
        },
        target: m.target,
        source: m.source,
        from: m.from.map(|f| {
            if f == "context" {
                CopyFrom::Context
            } else {
                CopyFrom::Image(f)
            }
        }),
        id: m.id,
        read_write: m.read_write,
        required: m.required,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        env: m.env,
        sharing: m.sharing,
        size: m.size,
    })
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
