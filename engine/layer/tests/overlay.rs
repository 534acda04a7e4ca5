//! Diffs of real overlayfs upper directories: mounted as root in a private mount namespace (trusted.overlay.*
//! xattrs) and in a user namespace with `userxattr` (user.overlay.*). The layer applied onto the lower must give
//! the merged view.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kiln_layer::{ApplyOptions, DiffOptions, apply_layer, diff_overlay_upper};
use tar::EntryType;

struct TarEntry {
    kind: EntryType,
    link: Option<String>,
    mtime: u64,
    xattrs: Vec<String>,
}

fn entries(tar: &[u8]) -> BTreeMap<String, TarEntry> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(tar);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let xattrs = e
            .pax_extensions()
            .unwrap()
            .map(|p| {
                p.filter_map(|r| r.ok())
                    .map(|r| r.key().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        out.insert(
            name,
            TarEntry {
                kind: e.header().entry_type(),
                link,
                mtime: e.header().mtime().unwrap(),
                xattrs,
            },
        );
    }
    out
}

fn make_lower(lower: &Path) {
    sh(&format!(
        "mkdir -p {0} && cd {0} && mkdir -p etc usr/bin usr/lib gone/deep re/sub && echo root:x:0:0 > etc/passwd \
         && echo host > etc/hostname && printf '#!/bin/sh\\n' > usr/bin/tool && chmod 0755 usr/bin/tool \
         && echo lib > usr/lib/libx.so && echo g > gone/deep/g && echo x > re/x && echo y > re/sub/y \
         && echo del > del.txt && echo chm > chm.txt && echo hl > hl1 && ln hl1 hl2",
        lower.display()
    ));
}

struct Mounted {
    merged: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

fn scenario(userxattr: bool) {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    let upper = t.path().join("upper");
    let work = t.path().join("work");
    let merged = t.path().join("merged");
    make_lower(&lower);
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let mut opts = format!(
        "lowerdir={},upperdir={},workdir={},metacopy=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    if userxattr {
        // userxattr implies redirect_dir=nofollow and refuses redirect_dir=off.
        opts.push_str(",userxattr");
    } else {
        opts.push_str(",redirect_dir=off");
    }
    sh(&format!(
        "mount -t overlay overlay -o {opts} {}",
        merged.display()
    ));
    let _m = Mounted {
        merged: merged.clone(),
    };

    sh(&format!(
        "cd {} && rm del.txt && rm -rf gone && rm -rf re && mkdir re && echo new > re/new && echo mod >> usr/lib/libx.so \
         && chmod 0600 chm.txt && mkdir newdir && echo a > newdir/a && ln newdir/a newdir/b && mkfifo newdir/fifo \
         && ln -s ../etc/hostname newdir/sym && touch etc/resolv.conf && touch -r {}/etc etc",
        merged.display(),
        lower.display()
    ));
    set_xattr(&merged.join("newdir/a"), "user.kiln", b"v");
    if !userxattr {
        sh(&format!("chown 1:1 {}/usr/bin/tool", merged.display()));
    }

    let exclude = [PathBuf::from("/etc/resolv.conf")];
    let with_lower = DiffOptions {
        lower: vec![lower.clone()],
        ..Default::default()
    };
    let mut tar = Vec::new();
    let stats = diff_overlay_upper(&upper, &exclude, &with_lower, &mut tar).unwrap();
    let ents = entries(&tar);
    let names: Vec<&str> = ents.keys().map(|s| s.as_str()).collect();
    for want in [
        ".wh.del.txt",
        ".wh.gone",
        "re/",
        "re/.wh..wh..opq",
        "re/new",
        "newdir/",
        "newdir/a",
        "chm.txt",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("etc")),
        "etc/ is only a mount-point parent: {names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("resolv")), "{names:?}");
    assert!(
        !names.contains(&"hl1") && !names.contains(&"re/x"),
        "{names:?}"
    );
    assert_eq!(ents["newdir/b"].kind, EntryType::Link);
    assert_eq!(ents["newdir/b"].link.as_deref(), Some("newdir/a"));
    assert_eq!(ents["newdir/fifo"].kind, EntryType::Fifo);
    assert_eq!(
        ents["newdir/a"].xattrs,
        vec!["SCHILY.xattr.user.kiln".to_string()]
    );
    for (n, e) in &ents {
        assert!(
            e.xattrs.iter().all(|x| !x.contains("overlay")),
            "{n} carries {:?}",
            e.xattrs
        );
    }
    // The opaque marker comes right after its directory; names are sorted.
    let re = names.iter().position(|n| *n == "re/").unwrap();
    assert_eq!(names[re + 1], "re/.wh..wh..opq");
    assert_eq!((stats.whiteouts, stats.opaque_dirs), (2, 1), "{stats:?}");

    // Same bytes on a second run; all mtimes clamped with SOURCE_DATE_EPOCH.
    let mut again = Vec::new();
    diff_overlay_upper(&upper, &exclude, &with_lower, &mut again).unwrap();
    assert!(tar == again, "diff is not reproducible");
    let mut clamped = Vec::new();
    let epoch = DiffOptions {
        source_date_epoch: Some(1000),
        lower: vec![lower.clone()],
        ..Default::default()
    };
    diff_overlay_upper(&upper, &exclude, &epoch, &mut clamped).unwrap();
    assert!(entries(&clamped).values().all(|e| e.mtime <= 1000));

    // Without the lower, the copied-up etc/ is written too, but never the excluded stub.
    let mut no_lower = Vec::new();
    diff_overlay_upper(&upper, &exclude, &DiffOptions::default(), &mut no_lower).unwrap();
    let nl = entries(&no_lower);
    assert!(nl.contains_key("etc/") && !nl.contains_key("etc/resolv.conf"));

    // lower + layer == merged.
    let flat = t.path().join("flat");
    sh(&format!("cp -a {} {}", lower.display(), flat.display()));
    let st = apply_layer(&tar[..], &flat, &ApplyOptions::default()).unwrap();
    assert_eq!((st.chown_failed, st.xattr_failed), (0, 0), "{st:?}");
    let ignore = ["etc/resolv.conf"];
    assert_same(
        &snapshot(&merged, &ignore),
        &snapshot(&flat, &ignore),
        "merged vs lower+layer",
    );

    if let Some(tool) = ocitree() {
        let out = Command::new("python3")
            .arg(&tool)
            .args(["diff"])
            .arg(&merged)
            .arg(&flat)
            .args(["--ignore", "/etc/resolv.conf"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ocitree diff: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("shared/tools/ocitree.py not found; skipped that comparison");
    }
}

#[test]
fn overlay_upper_as_root() {
    if !is_root() {
        eprintln!("needs root for a trusted.* overlay; skipped");
        return;
    }
    if !in_unshare("overlay_upper_as_root", &["-m", "--propagation", "private"]) {
        return;
    }
    scenario(false);
}

#[test]
fn overlay_upper_userxattr_in_user_namespace() {
    if !in_unshare(
        "overlay_upper_userxattr_in_user_namespace",
        &["-U", "-r", "-m"],
    ) {
        return;
    }
    scenario(true);
}

#[test]
fn hand_made_upper_whiteout_and_opaque_forms() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    fs::create_dir_all(up.join("opq")).unwrap();
    fs::create_dir_all(up.join("notopq")).unwrap();
    fs::write(up.join("opq/keep"), "k").unwrap();
    fs::write(up.join("notopq/f"), "f").unwrap();
    fs::write(up.join("wo_x"), "").unwrap();
    fs::write(up.join("plain"), "p").unwrap();
    set_xattr(&up.join("opq"), "user.overlay.opaque", b"y");
    set_xattr(&up.join("notopq"), "user.overlay.opaque", b"x");
    set_xattr(&up.join("wo_x"), "user.overlay.whiteout", b"");
    set_xattr(&up.join("plain"), "user.overlay.origin", b"\x00\xfb");
    set_xattr(&up.join("plain"), "user.other", b"1");
    let _sock = std::os::unix::net::UnixListener::bind(up.join("sock")).unwrap();
    if is_root() {
        sh(&format!(
            "mknod {}/wo_c c 0 0 && mkdir {}/topq",
            up.display(),
            up.display()
        ));
        set_xattr(&up.join("topq"), "trusted.overlay.opaque", b"y");
    }
    let mut tar = Vec::new();
    let stats = diff_overlay_upper(&up, &[], &DiffOptions::default(), &mut tar).unwrap();
    assert_eq!(stats.skipped, 1, "the socket");
    let ents = entries(&tar);
    let names: Vec<&str> = ents.keys().map(|s| s.as_str()).collect();
    let mut want = vec![
        ".wh.wo_x",
        "notopq/",
        "notopq/f",
        "opq/",
        "opq/.wh..wh..opq",
        "opq/keep",
        "plain",
    ];
    if is_root() {
        want.extend([".wh.wo_c", "topq/", "topq/.wh..wh..opq"]);
        want.sort();
    }
    assert_eq!(names, want);
    assert_eq!(
        ents["plain"].xattrs,
        vec!["SCHILY.xattr.user.other".to_string()]
    );

    set_xattr(&up.join("notopq"), "user.overlay.redirect", b"/elsewhere");
    let err = diff_overlay_upper(&up, &[], &DiffOptions::default(), Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("redirect_dir") && err.to_string().contains("notopq"),
        "{err}"
    );
    fs::remove_dir_all(up.join("notopq")).unwrap();
    set_xattr(&up.join("plain"), "user.overlay.metacopy", b"");
    let err = diff_overlay_upper(&up, &[], &DiffOptions::default(), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("metacopy"), "{err}");
}

#[test]
fn copied_up_parents_are_pruned_against_a_lower_stack() {
    let t = tempfile::tempdir().unwrap();
    let (base, u1, u2) = (
        t.path().join("base"),
        t.path().join("u1"),
        t.path().join("u2"),
    );
    sh(&format!(
        "mkdir -p {0}/etc {0}/opt {0}/srv {1}/opt {2}/etc {2}/opt {2}/srv && echo x > {0}/opt/x \
         && : > {1}/srv && touch {2}/etc/resolv.conf {2}/opt/stub \
         && chmod 0755 {0}/etc {0}/opt {0}/srv {2}/etc {2}/srv && chmod 0700 {1}/opt {2}/opt \
         && touch -r {0}/etc {2}/etc && touch -r {1}/opt {2}/opt && touch -r {0}/srv {2}/srv",
        base.display(),
        u1.display(),
        u2.display()
    ));
    // u1 recreated opt/ (opaque, mode 0700) and deleted srv/.
    set_xattr(&u1.join("opt"), "user.overlay.opaque", b"y");
    set_xattr(&u1.join("srv"), "user.overlay.whiteout", b"");
    let exclude = [PathBuf::from("etc/resolv.conf"), PathBuf::from("/opt/stub")];
    let opts = DiffOptions {
        lower: vec![u1.clone(), base.clone()],
        ..Default::default()
    };
    let mut tar = Vec::new();
    let stats = diff_overlay_upper(&u2, &exclude, &opts, &mut tar).unwrap();
    let names: Vec<String> = entries(&tar).into_keys().collect();
    // etc/ equals base's etc/ and opt/ equals u1's opt/: pruned. srv/ is new (whited out in u1): kept.
    assert_eq!(names, vec!["srv/".to_string()]);
    assert_eq!(stats.entries, 1);

    // With the base alone, opt/ (0755 there) differs from the upper's 0700 and is written.
    let opts = DiffOptions {
        lower: vec![base.clone()],
        ..Default::default()
    };
    let mut tar = Vec::new();
    diff_overlay_upper(&u2, &exclude, &opts, &mut tar).unwrap();
    let names: Vec<String> = entries(&tar).into_keys().collect();
    assert_eq!(names, vec!["opt/".to_string()]);

    // A directory whose only change is its modification time is written.
    sh(&format!("touch -d 2001-02-03 {}/etc", u2.display()));
    let mut tar = Vec::new();
    diff_overlay_upper(&u2, &exclude, &opts, &mut tar).unwrap();
    let ents = entries(&tar);
    assert_eq!(ents.keys().collect::<Vec<_>>(), ["etc/", "opt/"]);
    assert_eq!(ents["etc/"].mtime, 981158400);
}
