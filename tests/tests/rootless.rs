//! Rootless builds from the CLI: an ordinary user created by the test (no privileges) runs
//! `kiln build` with its own store under its home. Without `/etc/subuid` ranges RUN sees only id 0
//! (the caller); with ranges (and `newuidmap`) RUN can chown to other ids. Either way the image
//! records the owners the step saw inside, not the host ids that back them.

#[path = "../conformance/support.rs"]
mod support;

use kiln_tests::kiln_bin;
use kiln_tests::util::lossy;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::Bases;

/// An unprivileged user for one test: created with a home, removed (with its home and any
/// subordinate-id lines) on drop, even when the test fails.
struct TestUser {
    name: String,
    home: PathBuf,
}

impl TestUser {
    fn create(tag: &str) -> TestUser {
        let name = format!("kiln-{tag}-{}", std::process::id() % 100_000);
        let _ = Command::new("userdel").args(["-r", &name]).output();
        let st = Command::new("useradd").args(["-m", "-s", "/bin/sh", &name]).status().expect("running useradd");
        assert!(st.success(), "useradd {name} failed");
        let user = TestUser { home: PathBuf::from(format!("/home/{name}")), name };
        user.set_subids(None);
        user
    }

    /// Give the user the subordinate ids `first..first+count` (or none) in /etc/subuid and
    /// /etc/subgid.
    fn set_subids(&self, range: Option<(u32, u32)>) {
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| l.split(':').next() != Some(self.name.as_str()))
                .map(str::to_string)
                .collect();
            if let Some((first, count)) = range {
                lines.push(format!("{}:{first}:{count}", self.name));
            }
            let mut out = lines.join("\n");
            out.push('\n');
            std::fs::write(file, out).unwrap_or_else(|e| panic!("writing {file}: {e}"));
        }
    }

    /// `kiln --root HOME/store ARGS…` as this user, with a clean environment.
    fn kiln(&self, bin: &Path, args: &[&str]) -> std::process::Output {
        Command::new("runuser")
            .args(["-u", &self.name, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(bin)
            .arg("--root")
            .arg(self.home.join("store"))
            .args(args)
            .output()
            .expect("running runuser")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        self.set_subids(None);
        let _ = Command::new("userdel").args(["-r", "-f", &self.name]).output();
    }
}

/// A directory every user can read and enter, removed on drop.
fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Build `dockerfile` as `user` into an oci-archive in its home; returns the archive's summary.
fn build_as(user: &TestUser, bin: &Path, bases: &Bases, dockerfile: &str, flags: &[&str]) -> serde_json::Value {
    let ctx = shared_dir("kiln-rootless-ctx.");
    let text = dockerfile.replace("BASE", &bases.reg.reference("busybox:latest"));
    std::fs::write(ctx.path().join("Containerfile"), text).unwrap();
    std::fs::set_permissions(ctx.path().join("Containerfile"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = user.home.join("out.tar");
    let _ = std::fs::remove_file(&out);
    let dest = format!("oci-archive:{}", out.display());
    let ctxs = ctx.path().to_str().unwrap();
    let file = format!("{ctxs}/Containerfile");
    let mut args = vec!["build", "--tls-verify=false"];
    args.extend_from_slice(flags);
    args.extend(["-t", &dest, "-f", &file, ctxs]);
    let o = user.kiln(bin, &args);
    assert!(
        o.status.success(),
        "rootless build as {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        user.name,
        o.status,
        lossy(&o.stdout),
        lossy(&o.stderr)
    );
    support::summary(&out)
}

fn owner(s: &serde_json::Value, path: &str) -> (u64, u64) {
    let f = support::file(s, path).unwrap_or_else(|| panic!("{path} is not in the image"));
    (f["uid"].as_u64().unwrap(), f["gid"].as_u64().unwrap())
}

#[test]
fn an_unprivileged_user_builds_with_and_without_subordinate_ids() {
    let bases = Bases::start(false);
    // The kiln binary where the user can run it.
    let bindir = shared_dir("kiln-rootless-bin.");
    let bin = bindir.path().join("kiln");
    std::fs::copy(kiln_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = TestUser::create("rl");

    // No subordinate ids: RUN is root inside (the caller mapped to 0) and the layer says 0:0.
    // The same with the copy-based vfs driver (its copies are made by the user, outside any
    // namespace), over two RUN steps so that the second copies the first's result.
    for flags in [&[][..], &["--storage-driver", "vfs"][..]] {
        let s = build_as(
            &user,
            &bin,
            &bases,
            "FROM BASE\nRUN id -u > /uid && echo hi > /f && mkdir /d\nRUN rm /bin/ls && echo more >> /f\n",
            flags,
        );
        support::assert_file(&s, "/uid", b"0\n");
        support::assert_file(&s, "/f", b"hi\nmore\n");
        assert!(support::file(&s, "/bin/ls").is_none(), "{flags:?}");
        assert_eq!(owner(&s, "/f"), (0, 0), "a file root wrote in a rootless RUN ({flags:?})");
        assert_eq!(owner(&s, "/d"), (0, 0), "a directory root made in a rootless RUN ({flags:?})");
        assert_eq!(owner(&s, "/bin/busybox"), (0, 0), "a base image file ({flags:?})");
    }

    // With a subordinate range (newuidmap/newgidmap from uidmap): other owners work and are kept.
    if Path::new("/usr/bin/newuidmap").exists() {
        user.set_subids(Some((1_200_000, 65536)));
        std::fs::remove_dir_all(user.home.join("store")).ok();
        let s = build_as(
            &user,
            &bin,
            &bases,
            "FROM BASE\nRUN echo hi > /f && chown 1000:1001 /f && mkdir /d && chown 7:8 /d && id -u > /uid\n",
            &[],
        );
        support::assert_file(&s, "/uid", b"0\n");
        assert_eq!(owner(&s, "/f"), (1000, 1001), "chown inside a rootless RUN with subordinate ids");
        assert_eq!(owner(&s, "/d"), (7, 8));
    } else {
        eprintln!("newuidmap not installed: the subordinate-id half is skipped");
    }
}
