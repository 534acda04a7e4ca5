//! How a step's process is confined beyond its namespaces: its capabilities, the seccomp filter,
//! `no_new_privs` and resource limits (`--cap-add`, `--cap-drop`, `--security-opt`, `--ulimit`).

use crate::caps::Capabilities;

/// Confinement of a step's process. The default is what buildah gives a RUN step: its default
/// capabilities and a seccomp filter, resource limits inherited from kiln.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Confinement {
    /// The step's bounding set (all it has when it runs as root).
    pub capabilities: Capabilities,
    /// Install kiln's seccomp filter (`--security-opt seccomp=unconfined` turns it off).
    pub seccomp: bool,
    /// Set `no_new_privs` (`--security-opt no-new-privileges`): setuid and file-capability
    /// programs gain nothing.
    pub no_new_privileges: bool,
    /// Resource limits set for the step (`--ulimit`); others are inherited.
    pub rlimits: Vec<Rlimit>,
}

impl Default for Confinement {
    fn default() -> Self {
        Confinement {
            capabilities: Capabilities::BUILDAH_DEFAULT,
            seccomp: true,
            no_new_privileges: false,
            rlimits: Vec::new(),
        }
    }
}

impl Confinement {
    /// Applies one `--security-opt` value: `seccomp=unconfined`, `no-new-privileges[=true|false]`;
    /// `label=disable` and `apparmor=unconfined` (kiln applies no SELinux label and no AppArmor
    /// profile) are accepted. Anything else is refused.
    pub fn apply_security_opt(&mut self, opt: &str) -> Result<(), String> {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (opt.trim(), None),
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => self.seccomp = false,
            ("seccomp", Some(_)) => {
                return Err(format!(
                    "--security-opt {opt}: seccomp profiles from a file are not supported; \
                     kiln's filter is on by default, seccomp=unconfined turns it off"
                ));
            }
            ("no-new-privileges", None | Some("true")) => self.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => self.no_new_privileges = false,
            ("label", Some("disable")) | ("apparmor", Some("unconfined")) => {}
            ("label" | "apparmor", _) => {
                return Err(format!(
                    "--security-opt {opt}: kiln applies no SELinux labels or AppArmor profiles \
                     (label=disable and apparmor=unconfined are accepted)"
                ));
            }
            _ => return Err(format!("--security-opt {opt}: unknown option")),
        }
        Ok(())
    }
}

/// One resource limit (`setrlimit(2)`), as `--ulimit TYPE=SOFT[:HARD]` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rlimit {
    /// `RLIMIT_*` number.
    pub resource: i32,
    /// Soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// `--ulimit` type names, as Docker and buildah spell them.
const RLIMIT_NAMES: [(&str, libc::__rlimit_resource_t); 16] = [
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
    ("as", libc::RLIMIT_AS),
];

impl Rlimit {
    /// Parses `TYPE=SOFT[:HARD]` (`nofile=1024:4096`, `core=0`, `stack=unlimited`; `-1` is
    /// unlimited too). Without a hard limit, both are SOFT.
    pub fn parse(s: &str) -> Result<Rlimit, String> {
        let bad = |why: &str| format!("--ulimit {s}: {why}");
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| bad("expected TYPE=SOFT[:HARD]"))?;
        let resource = RLIMIT_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(_, r)| *r as i32)
            .ok_or_else(|| bad(&format!("unknown limit type {name:?}")))?;
        let value = |v: &str| -> Result<u64, String> {
            match v.trim() {
                "unlimited" | "-1" => Ok(u64::MAX),
                n => n
                    .parse::<u64>()
                    .map_err(|_| bad(&format!("{n:?} is not a number"))),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((a, b)) => (value(a)?, value(b)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(bad("the soft limit is above the hard limit"));
        }
        Ok(Rlimit {
            resource,
            soft,
            hard,
        })
    }

    /// The limit's `--ulimit` type name.
    pub fn name(&self) -> &'static str {
        RLIMIT_NAMES
            .iter()
            .find(|(_, r)| *r as i32 == self.resource)
            .map_or("?", |(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse_as_docker_writes_them() {
        let r = Rlimit::parse("nofile=1024:4096").unwrap();
        assert_eq!(
            (r.resource, r.soft, r.hard),
            (libc::RLIMIT_NOFILE as i32, 1024, 4096)
        );
        assert_eq!(r.name(), "nofile");
        let c = Rlimit::parse("core=0").unwrap();
        assert_eq!((c.soft, c.hard), (0, 0));
        let s = Rlimit::parse("stack=unlimited:-1").unwrap();
        assert_eq!((s.soft, s.hard), (u64::MAX, u64::MAX));
        for bad in ["nofile", "files=1", "nofile=a", "nofile=10:5"] {
            assert!(
                Rlimit::parse(bad).unwrap_err().starts_with("--ulimit "),
                "{bad}"
            );
        }
    }

    #[test]
    fn security_opts() {
        let mut c = Confinement::default();
        c.apply_security_opt("seccomp=unconfined").unwrap();
        c.apply_security_opt("no-new-privileges").unwrap();
        c.apply_security_opt("label=disable").unwrap();
        assert!(!c.seccomp && c.no_new_privileges);
        assert!(c.apply_security_opt("seccomp=/etc/profile.json").is_err());
        assert!(c.apply_security_opt("apparmor=my-profile").is_err());
        assert!(c.apply_security_opt("bogus").is_err());
    }
}
