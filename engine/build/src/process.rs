//! `--cap-add`, `--cap-drop`, `--security-opt`, `--ulimit` and `--device` as a build or a
//! working container takes them, and what they become for the sandbox: a [`Confinement`] and
//! device binds.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use kiln_sandbox::{Capabilities, Confinement, ExtraMount, Rlimit};
use serde::{Deserialize, Serialize};

/// How RUN processes are confined and which host devices they see, as the flags spell it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessOptions {
    /// `--cap-add`: capabilities added to buildah's default set (`ALL` for every one).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`: capabilities removed from it (`ALL` for every one).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--security-opt`: `seccomp=unconfined`, `no-new-privileges`, `label=disable`,
    /// `apparmor=unconfined`.
    #[serde(default)]
    pub security_opts: Vec<String>,
    /// `--ulimit TYPE=SOFT[:HARD]`.
    #[serde(default)]
    pub ulimits: Vec<String>,
    /// `--device HOST[:CONTAINER[:PERMISSIONS]]`.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// A host device bound into every RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device node on the host.
    pub host: PathBuf,
    /// Where RUN sees it.
    pub target: String,
}

impl ProcessOptions {
    /// Whether nothing was given (RUN gets buildah's defaults).
    pub fn is_default(&self) -> bool {
        *self == ProcessOptions::default()
    }

    /// The sandbox confinement these options ask for; an error names the bad value.
    pub fn confinement(&self) -> Result<Confinement, String> {
        let mut c = Confinement {
            capabilities: Capabilities::BUILDAH_DEFAULT
                .with_changes(&self.cap_add, &self.cap_drop)
                .map_err(|e| format!("--cap-add/--cap-drop: {e}"))?,
            ..Confinement::default()
        };
        for o in &self.security_opts {
            c.apply_security_opt(o)?;
        }
        for u in &self.ulimits {
            c.rlimits.push(Rlimit::parse(u)?);
        }
        Ok(c)
    }

    /// The `--device` values, checked: the host path must be a character or block device, the
    /// target absolute. Permissions other than `rwm` are refused: kiln has no device cgroup to
    /// restrict access with.
    pub fn devices(&self) -> Result<Vec<Device>, String> {
        self.devices.iter().map(|d| parse_device(d)).collect()
    }

    /// The devices as sandbox mounts.
    pub fn device_mounts(&self) -> Result<Vec<ExtraMount>, String> {
        Ok(self
            .devices()?
            .into_iter()
            .map(|d| ExtraMount::BindFile {
                src: d.host,
                target: d.target,
                readonly: false,
            })
            .collect())
    }
}

fn parse_device(spec: &str) -> Result<Device, String> {
    let bad = |why: String| format!("--device {spec}: {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, perms) = match parts.as_slice() {
        [h] => (*h, *h, None),
        [h, t] if !t.starts_with('/') => (*h, *h, Some(*t)),
        [h, t] => (*h, *t, None),
        [h, t, p] => (*h, *t, Some(*p)),
        _ => return Err(bad("expected HOST[:CONTAINER[:PERMISSIONS]]".into())),
    };
    if let Some(p) = perms {
        if p.is_empty() || !p.chars().all(|c| "rwm".contains(c)) {
            return Err(bad(format!("{p:?} is not a combination of r, w and m")));
        }
        if !(p.contains('r') && p.contains('w') && p.contains('m')) {
            return Err(bad(format!(
                "kiln cannot restrict a device to {p:?} (it has no device cgroup); give rwm"
            )));
        }
    }
    if !target.starts_with('/') {
        return Err(bad(format!("{target:?} is not an absolute path")));
    }
    let meta = std::fs::metadata(host).map_err(|e| bad(format!("{host}: {e}")))?;
    let ft = meta.file_type();
    if !(ft.is_char_device() || ft.is_block_device()) {
        return Err(bad(format!("{host} is not a device")));
    }
    Ok(Device {
        host: PathBuf::from(host),
        target: target.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_as_buildah_writes_them() {
        let d = |s: &str| parse_device(s);
        assert_eq!(d("/dev/null").unwrap().target, "/dev/null");
        assert_eq!(d("/dev/null:/dev/mynull").unwrap().target, "/dev/mynull");
        assert_eq!(d("/dev/null:rwm").unwrap().target, "/dev/null");
        assert_eq!(
            d("/dev/zero:/dev/z:mrw").unwrap().host,
            PathBuf::from("/dev/zero")
        );
        assert!(d("/dev/null:r").unwrap_err().contains("device cgroup"));
        assert!(d("/dev/null:/x:rx").unwrap_err().contains("combination"));
        assert!(d("/etc/passwd").unwrap_err().contains("not a device"));
        assert!(d("/dev/null:dev/n:rwm").unwrap_err().contains("absolute"));
        assert!(d("/dev/nonexistent-kiln").is_err());
    }

    #[test]
    fn confinement_from_flags() {
        let o = ProcessOptions {
            cap_add: vec!["NET_RAW".into()],
            cap_drop: vec!["chown".into()],
            security_opts: vec!["no-new-privileges".into()],
            ulimits: vec!["nofile=100:200".into()],
            devices: vec![],
        };
        let c = o.confinement().unwrap();
        assert!(c.capabilities.contains(13) && !c.capabilities.contains(0));
        assert!(c.no_new_privileges && c.seccomp);
        assert_eq!((c.rlimits[0].soft, c.rlimits[0].hard), (100, 200));
        assert!(ProcessOptions::default().is_default());
        let bad = ProcessOptions {
            cap_add: vec!["NOPE".into()],
            ..Default::default()
        };
        assert!(bad.confinement().unwrap_err().contains("NOPE"));
    }
}
