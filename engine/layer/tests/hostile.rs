//! Hostile layer tars: every escape attempt is refused with an error naming the entry, and nothing outside the
//! destination changes.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use kiln_layer::{ApplyOptions, LayerError, apply_layer};

struct Setup {
    _t: tempfile::TempDir,
    dest: std::path::PathBuf,
    outside: std::path::PathBuf,
}

/// `base/dest` (the rootfs, with a symlink `lnk` pointing at `base/outside` and `rel` -> `../outside`) and
/// `base/outside` holding a secret.
fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("dest");
    let outside = t.path().join("outside");
    fs::create_dir_all(dest.join("sub")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "secret").unwrap();
    fs::write(dest.join("sub/file"), "lower").unwrap();
    symlink(&outside, dest.join("lnk")).unwrap();
    symlink("../outside", dest.join("rel")).unwrap();
    symlink(outside.join("secret"), dest.join("secretlink")).unwrap();
    Setup {
        _t: t,
        dest,
        outside,
    }
}

fn refused(tar: Vec<u8>, entry: &str) -> Setup {
    let s = setup();
    let before = snapshot(&s.outside, &[]);
    let parent = s.outside.parent().unwrap().to_path_buf();
    let parent_before: Vec<_> = fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    match apply_layer(&tar[..], &s.dest, &ApplyOptions::default()) {
        Err(LayerError::Unsafe { entry: e, reason }) => {
            assert_eq!(e, entry, "error names the entry (reason: {reason})");
            let msg = LayerError::Unsafe { entry: e, reason }.to_string();
            assert!(msg.contains(entry), "{msg}");
        }
        other => panic!("entry {entry:?}: expected a refusal, got {other:?}"),
    }
    assert_same(&before, &snapshot(&s.outside, &[]), "outside changed");
    let mut parent_after: Vec<_> = fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut parent_before = parent_before;
    parent_before.sort();
    parent_after.sort();
    assert_eq!(parent_before, parent_after, "nothing new next to dest");
    assert_eq!(
        fs::read_to_string(s.outside.join("secret")).unwrap(),
        "secret"
    );
    s
}

#[test]
fn absolute_path() {
    refused(
        RawTar::new()
            .file("/pwned-by-kiln-layer-test", b"x")
            .finish(),
        "/pwned-by-kiln-layer-test",
    );
    assert!(!Path::new("/pwned-by-kiln-layer-test").exists());
}

#[test]
fn dotdot_paths() {
    refused(
        RawTar::new().file("../outside/pwn", b"x").finish(),
        "../outside/pwn",
    );
    refused(
        RawTar::new().file("sub/../../outside/pwn", b"x").finish(),
        "sub/../../outside/pwn",
    );
    refused(RawTar::new().dir("sub/../..").finish(), "sub/../..");
}

#[test]
fn write_through_symlink_made_by_the_layer() {
    // x -> /etc, then x/<name>: refused, /etc untouched.
    let name = "x/kiln-layer-test-must-not-exist";
    refused(
        RawTar::new().symlink("x", "/etc").file(name, b"x").finish(),
        name,
    );
    assert!(!Path::new("/etc/kiln-layer-test-must-not-exist").exists());
    // A relative symlink climbing out, then a directory and a file through it.
    refused(
        RawTar::new()
            .symlink("y", "../../outside")
            .dir("y/newdir")
            .finish(),
        "y/newdir",
    );
    refused(
        RawTar::new()
            .symlink("y", "../outside")
            .file("y/secret", b"overwritten")
            .finish(),
        "y/secret",
    );
}

#[test]
fn write_through_symlink_in_lower() {
    refused(RawTar::new().file("lnk/pwn", b"x").finish(), "lnk/pwn");
    refused(
        RawTar::new().file("rel/secret", b"overwritten").finish(),
        "rel/secret",
    );
    refused(RawTar::new().file("lnk/a/b/c", b"x").finish(), "lnk/a/b/c");
    refused(RawTar::new().symlink("lnk/s", "/").finish(), "lnk/s");
}

#[test]
fn whiteouts_through_symlinks() {
    refused(
        RawTar::new().file("lnk/.wh.secret", b"").finish(),
        "lnk/.wh.secret",
    );
    refused(
        RawTar::new().file("rel/.wh..wh..opq", b"").finish(),
        "rel/.wh..wh..opq",
    );
    refused(
        RawTar::new().file("../.wh.outside", b"").finish(),
        "../.wh.outside",
    );
}

#[test]
fn hardlink_targets_outside() {
    refused(
        RawTar::new().hardlink("h", "../outside/secret").finish(),
        "h",
    );
    refused(RawTar::new().hardlink("h", "/etc/passwd").finish(), "h");
    refused(RawTar::new().hardlink("h", "lnk/secret").finish(), "h");
    refused(
        RawTar::new()
            .hardlink("h", "sub/../../outside/secret")
            .finish(),
        "h",
    );
    refused(
        RawTar::new()
            .symlink("z", "/etc")
            .hardlink("h", "z/passwd")
            .finish(),
        "h",
    );
}

#[test]
fn replacing_a_symlink_never_writes_through_it() {
    let s = setup();
    // A file, a directory and a hardlink at names that are symlinks to outside: the symlinks are replaced.
    let tar = RawTar::new()
        .file("secretlink", b"replaced")
        .dir("lnk")
        .file("lnk/inside", b"inside")
        .hardlink("rel", "sub/file")
        .finish();
    apply_layer(&tar[..], &s.dest, &ApplyOptions::default()).unwrap();
    assert_eq!(
        fs::read_to_string(s.outside.join("secret")).unwrap(),
        "secret"
    );
    assert!(
        fs::symlink_metadata(s.dest.join("secretlink"))
            .unwrap()
            .is_file()
    );
    assert_eq!(
        fs::read_to_string(s.dest.join("lnk/inside")).unwrap(),
        "inside"
    );
    assert!(!s.outside.join("inside").exists());
    assert_eq!(fs::read_to_string(s.dest.join("rel")).unwrap(), "lower");
    let names: Vec<_> = fs::read_dir(&s.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["secret"]);
}

#[test]
fn hardlink_to_missing_or_directory_is_a_clear_error() {
    let s = setup();
    let tar = RawTar::new().hardlink("h", "does/not/exist").finish();
    let err = apply_layer(&tar[..], &s.dest, &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(&err, LayerError::BadEntry { entry, .. } if entry == "h"),
        "{err}"
    );
    let tar = RawTar::new().hardlink("h", "sub").finish();
    let err = apply_layer(&tar[..], &s.dest, &ApplyOptions::default()).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}
