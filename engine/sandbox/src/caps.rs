//! Linux capabilities of a step's process: the names, the set buildah gives a RUN step, and
//! `--cap-add`/`--cap-drop` applied to it.
//!
//! The set is a bounding set: a step running as root gets exactly these capabilities (in its user
//! namespace), one running as another user gets none but cannot gain more than these through
//! setuid or file-capability programs.

use std::fmt;

/// Capability names in kernel order (`CAP_CHOWN` is 0), without the `CAP_` prefix.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Capability numbers the seccomp filter asks about.
pub(crate) mod number {
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_RAWIO: u32 = 17;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_PACCT: u32 = 20;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const SYS_TIME: u32 = 25;
    pub const SYS_TTY_CONFIG: u32 = 26;
    pub const SYSLOG: u32 = 34;
}

/// A set of capabilities (bit n = capability number n).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities(u64);

/// An unknown capability name, or one both added and dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapError {
    /// Not a capability this kernel interface knows.
    #[error("unknown capability {0:?}")]
    Unknown(String),
    /// Given to `--cap-add` and `--cap-drop` at once.
    #[error("capability {0} is both added and dropped")]
    AddedAndDropped(String),
}

impl Capabilities {
    /// No capability.
    pub const NONE: Capabilities = Capabilities(0);

    /// Every capability kiln knows the name of.
    pub const ALL: Capabilities = Capabilities((1 << NAMES.len()) - 1);

    /// What buildah gives a RUN step (containers.conf's `default_capabilities`): CHOWN,
    /// DAC_OVERRIDE, FOWNER, FSETID, KILL, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID and
    /// SYS_CHROOT.
    pub const BUILDAH_DEFAULT: Capabilities = Capabilities(
        1 << 0
            | 1 << 1
            | 1 << 3
            | 1 << 4
            | 1 << 5
            | 1 << 6
            | 1 << 7
            | 1 << 8
            | 1 << 10
            | 1 << 18
            | 1 << 31,
    );

    /// The number of a capability name: `NET_RAW`, `net_raw` and `CAP_NET_RAW` all work.
    pub fn number(name: &str) -> Result<u32, CapError> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .map(|i| i as u32)
            .ok_or_else(|| CapError::Unknown(name.to_string()))
    }

    /// Whether capability `n` is in the set.
    pub fn contains(self, n: u32) -> bool {
        n < 64 && self.0 & (1 << n) != 0
    }

    /// The raw bit mask.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// `self` with `--cap-add` and `--cap-drop` applied as buildah does: `ALL` among the adds
    /// gives every capability but the dropped ones, `ALL` among the drops starts from none;
    /// naming one capability in both lists is an error.
    pub fn with_changes<A: AsRef<str>, D: AsRef<str>>(
        self,
        add: &[A],
        drop: &[D],
    ) -> Result<Capabilities, CapError> {
        let is_all = |s: &str| s.trim().eq_ignore_ascii_case("all");
        let parse = |list: &[&str]| -> Result<u64, CapError> {
            let mut bits = 0;
            for s in list.iter().filter(|s| !is_all(s)) {
                bits |= 1 << Self::number(s)?;
            }
            Ok(bits)
        };
        let add: Vec<&str> = add.iter().map(AsRef::as_ref).collect();
        let drop: Vec<&str> = drop.iter().map(AsRef::as_ref).collect();
        let (add_bits, drop_bits) = (parse(&add)?, parse(&drop)?);
        if let Some(n) = (0..NAMES.len()).find(|n| add_bits & drop_bits & (1 << n) != 0) {
            return Err(CapError::AddedAndDropped(format!("CAP_{}", NAMES[n])));
        }
        let base = if add.iter().any(|s| is_all(s)) {
            Self::ALL.0
        } else if drop.iter().any(|s| is_all(s)) {
            0
        } else {
            self.0
        };
        Ok(Capabilities((base | add_bits) & !drop_bits))
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::BUILDAH_DEFAULT
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = (0..NAMES.len() as u32)
            .filter(|n| self.contains(*n))
            .map(|n| format!("CAP_{}", NAMES[n as usize]))
            .collect();
        write!(f, "[{}]", names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildah_default_is_the_mask_buildah_steps_show() {
        // CapBnd of a `buildah bud` RUN step: 00000000800405fb.
        assert_eq!(Capabilities::BUILDAH_DEFAULT.bits(), 0x8004_05fb);
    }

    #[test]
    fn names_take_any_case_with_or_without_prefix() {
        assert_eq!(Capabilities::number("NET_RAW"), Ok(13));
        assert_eq!(Capabilities::number("cap_net_raw"), Ok(13));
        assert_eq!(Capabilities::number("checkpoint_restore"), Ok(40));
        assert!(matches!(
            Capabilities::number("NET_RAWR"),
            Err(CapError::Unknown(_))
        ));
    }

    #[test]
    fn changes_apply_as_buildah_applies_them() {
        let d = Capabilities::BUILDAH_DEFAULT;
        let none: [&str; 0] = [];
        let raw = d.with_changes(&["net_raw"], &["CHOWN"]).unwrap();
        assert!(raw.contains(13) && !raw.contains(0) && raw.contains(1));
        let all = d.with_changes(&["ALL"], &["SYS_ADMIN"]).unwrap();
        assert!(all.contains(number::SYS_MODULE) && !all.contains(number::SYS_ADMIN));
        let only = d.with_changes(&["KILL"], &["all"]).unwrap();
        assert_eq!(only.bits(), 1 << 5);
        assert_eq!(d.with_changes(&none, &none).unwrap(), d);
        assert_eq!(
            d.with_changes(&["KILL"], &["CAP_KILL"]),
            Err(CapError::AddedAndDropped("CAP_KILL".into()))
        );
        assert_eq!(format!("{:?}", only), "[CAP_KILL]");
    }
}
