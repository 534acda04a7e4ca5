//! Options every verb shares (`--root`, `--log-level`) and process-wide setup.

use std::path::PathBuf;

/// Global flags, as buildah spells them.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Where kiln keeps images, layers and its build cache.
    /// Default: $XDG_DATA_HOME/kiln (or ~/.local/share/kiln); /var/lib/kiln for root.
    #[arg(long, global = true, env = "KILN_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "warn", env = "KILN_LOG")]
    pub log_level: String,

    /// How RUN steps get a writable rootfs: overlay (overlayfs over the layers) or vfs (a copy of
    /// them). Default: overlay when this kernel allows the mount, else vfs.
    #[arg(long, global = true, env = "KILN_STORAGE_DRIVER", value_name = "DRIVER")]
    pub storage_driver: Option<String>,
}

impl Global {
    /// The store directory in effect.
    pub fn store_root(&self) -> PathBuf {
        if let Some(r) = &self.root {
            return r.clone();
        }
        if nix_is_root() {
            return PathBuf::from("/var/lib/kiln");
        }
        if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("kiln");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".local/share/kiln")
    }

    /// Where compiled plugins are cached. Entries are derived code keyed by the component's
    /// digest and the engine (see `kiln_plugin_host::CompileCache`), so one cache serves every
    /// store and a new `--root` does not recompile: `$KILN_PLUGIN_CACHE`, else
    /// `/var/cache/kiln/plugins` for root and `$XDG_CACHE_HOME/kiln/plugins` (or
    /// `~/.cache/kiln/plugins`) for others; the store's `plugin-cache/` when that cannot be made.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        if let Some(d) = std::env::var_os("KILN_PLUGIN_CACHE").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let shared = if nix_is_root() {
            PathBuf::from("/var/cache/kiln/plugins")
        } else if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            PathBuf::from(d).join("kiln/plugins")
        } else if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            PathBuf::from(h).join(".cache/kiln/plugins")
        } else {
            return self.store_root().join("plugin-cache");
        };
        if std::fs::create_dir_all(&shared).is_ok() && writable(&shared) {
            return shared;
        }
        self.store_root().join("plugin-cache")
    }

    /// The storage driver asked for with `--storage-driver`/`KILN_STORAGE_DRIVER`, if any.
    pub fn requested_storage_driver(&self) -> anyhow::Result<Option<kiln_build::StorageDriver>> {
        match self.storage_driver.as_deref().filter(|s| !s.is_empty()) {
            Some(name) => Ok(Some(name.parse().map_err(|e: String| anyhow::anyhow!("--storage-driver: {e}"))?)),
            None => Ok(None),
        }
    }

    /// The storage driver in effect: the one asked for, else detected once per process with a
    /// probe overlay mount; falling back to vfs is said once on stderr.
    pub fn storage_driver(&self, store: &kiln_store::Store) -> anyhow::Result<kiln_build::StorageDriver> {
        Ok(match self.requested_storage_driver()? {
            Some(d) => d,
            None => kiln_build::detected_storage_driver(store, |m| eprintln!("{m}")),
        })
    }
}

/// Whether this process may create files in `dir`.
fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Set up tracing from `--log-level`.
pub fn init_logging(g: &Global) {
    let filter = tracing_subscriber::EnvFilter::try_new(&g.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// Exit status for an error: 125 like buildah for kiln's own failures, or the failing step's status.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(code) = cause.downcast_ref::<ExitStatusError>() {
            return code.0;
        }
    }
    125
}

/// An error as kiln prints it: each message of its chain once. Many engine errors already end
/// with their cause's message (`{what}: {source}`), so a cause whose text ends what is written
/// so far is not repeated, and an [`ExitStatusError`] is left out when the message already
/// gives that status.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let status_given = cause.downcast_ref::<ExitStatusError>().is_some_and(|s| {
            let said = format!("status {}", s.0);
            out.match_indices(&said)
                .any(|(i, _)| !out[i + said.len()..].starts_with(|c: char| c.is_ascii_digit()))
        });
        // Repeated only when it is the whole text or follows a `: `.
        let repeated = out == text || out.ends_with(&format!(": {text}"));
        if out.is_empty() {
            out = text;
        } else if !text.is_empty() && !repeated && !status_given {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// An error that carries the exit status the process should end with.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitStatusError(pub i32);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{what}: {source}")]
    struct Embeds {
        what: String,
        source: std::io::Error,
    }

    #[test]
    fn error_text_says_each_message_once() {
        let io = std::io::Error::other("exec /x: ENOENT");
        let e = anyhow::Error::new(Embeds {
            what: "kiln run c".into(),
            source: io,
        });
        assert_eq!(
            format!("{e:#}"),
            "kiln run c: exec /x: ENOENT: exec /x: ENOENT"
        );
        assert_eq!(error_text(&e), "kiln run c: exec /x: ENOENT");
        let e = anyhow::Error::new(ExitStatusError(3))
            .context("kiln run c: false exited with status 3");
        assert_eq!(error_text(&e), "kiln run c: false exited with status 3");
        assert_eq!(exit_code(&e), 3);
        let e = anyhow::Error::new(ExitStatusError(3));
        assert_eq!(error_text(&e), "exit status 3");
        let e = anyhow::Error::new(ExitStatusError(3)).context("build failed");
        assert_eq!(error_text(&e), "build failed: exit status 3");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&e), "outer: inner");
        // Only a whole trailing message counts as said, and only the same status.
        let e = anyhow::anyhow!("ner").context("outer: inner");
        assert_eq!(error_text(&e), "outer: inner: ner");
        let e = anyhow::Error::new(ExitStatusError(3)).context("exited with status 31");
        assert_eq!(error_text(&e), "exited with status 31: exit status 3");
    }
}
