//! The copy-based (`vfs`) working rootfs: `copy_tree` of a lower, changes made in the copy, `diff_tree` into a
//! layer. The layer applied onto the lower must give the changed copy, and the same changes made through a real
//! overlayfs mount (root, private mount namespace) must give the same flattened tree and the same tar entries.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kiln_layer::{
    ApplyOptions, DiffOptions, apply_layer, copy_tree, diff_overlay_upper, diff_tree,
};
use tar::EntryType;

fn capability() -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v
}

/// One tar entry: (type, link target, uid, gid, mode, xattr keys).
type Entry = (EntryType, Option<String>, u64, u64, u32, Vec<String>);

/// Tar entries by name.
fn entries(tar: &[u8]) -> BTreeMap<String, Entry> {
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
        let h = e.header();
        out.insert(
            name,
            (
                h.entry_type(),
                link,
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mode().unwrap(),
                xattrs,
            ),
        );
    }
    out
}

fn make_lower(lower: &Path) {
    sh(&format!(
        "mkdir -p {0} && cd {0} && mkdir -p etc usr/bin gone/deep re/sub keep/deep && echo root:x:0:0 > etc/passwd \
         && echo host > etc/hostname && printf '#!/bin/sh\\n' > usr/bin/tool && chmod 0755 usr/bin/tool \
         && echo g > gone/deep/g && echo x > re/x && echo y > re/sub/y && echo k > keep/deep/k \
         && echo del > del.txt && echo chm > chm.txt && echo own > chown.txt && printf abc > same_size.txt \
         && echo cap > cap.bin && echo hl > hl1 && ln hl1 hl2 && ln -s /etc/hostname link \
         && mkfifo fifo && mknod null c 1 3 && chown 7:8 keep/deep/k && chmod 4755 usr/bin/tool \
         && touch -d @1600000000 same_size.txt && head -c 3000001 /dev/urandom > big.bin \
         && mkdir many && for i in $(seq 1 300); do head -c $((i * 37)) /dev/urandom > many/f$i; done",
        lower.display()
    ));
    set_xattr(&lower.join("keep/deep/k"), "user.kiln", b"lower");
}

/// Changes made the same way on the overlay mount and on the copy (new files get a fixed mtime, so that the two
/// runs compare equal when a second passes between them). The mount point `etc/resolv.conf` is made with its
/// directory's times put back, as the sandbox makes mount points.
const COMMON_CHANGES: &str = "echo added > added.txt && mkdir -p newdir/sub && echo n > newdir/sub/n \
     && printf MOD > same_size.txt && touch -d @1600000000 same_size.txt \
     && chmod 0600 chm.txt && chown 123:456 chown.txt && rm del.txt && rm -rf gone \
     && rm -rf re && mkdir re && echo new > re/new \
     && ln -sfn /etc/passwd link && echo pair > p1 && ln p1 p2 \
     && touch -r etc p1 && touch etc/resolv.conf && touch -r p1 etc \
     && touch -d @1700000000 added.txt newdir/sub/n re/new p1";

fn changes(root: &Path, extra: &str) {
    sh(&format!("cd {} && {COMMON_CHANGES}{extra}", root.display()));
    set_xattr(&root.join("cap.bin"), "security.capability", &capability());
}

fn vfs_layer(lower: &Path, copy: &Path, extra: &str) -> Vec<u8> {
    fs::create_dir(copy).unwrap();
    let (stamp, stats) = copy_tree(lower, copy).unwrap();
    assert_eq!(
        stats.chown_failed + stats.xattr_failed + stats.devices_skipped,
        0,
        "{stats:?}"
    );
    assert_same(
        &snapshot(lower, &[]),
        &snapshot(copy, &[]),
        "lower vs its copy",
    );

    // Nothing changed: no layer.
    let mut tar = Vec::new();
    let st = diff_tree(
        lower,
        copy,
        Some(&stamp),
        &[],
        &DiffOptions::default(),
        &mut tar,
    )
    .unwrap();
    assert!(
        st.is_empty(),
        "a fresh copy differs from its lower: {:?}",
        entries(&tar).keys()
    );

    changes(copy, extra);
    let exclude = [PathBuf::from("/etc/resolv.conf")];
    let mut tar = Vec::new();
    diff_tree(
        lower,
        copy,
        Some(&stamp),
        &exclude,
        &DiffOptions::default(),
        &mut tar,
    )
    .unwrap();
    let mut again = Vec::new();
    diff_tree(
        lower,
        copy,
        Some(&stamp),
        &exclude,
        &DiffOptions::default(),
        &mut again,
    )
    .unwrap();
    assert!(tar == again, "diff_tree is not reproducible");
    tar
}

fn apply_onto_copy_of(lower: &Path, tar: &[u8], flat: &Path) {
    sh(&format!("cp -a {} {}", lower.display(), flat.display()));
    let st = apply_layer(tar, flat, &ApplyOptions::default()).unwrap();
    assert_eq!((st.chown_failed, st.xattr_failed), (0, 0), "{st:?}");
}

fn ocitree_same(a: &Path, b: &Path) {
    let Some(tool) = ocitree() else {
        eprintln!("shared/tools/ocitree.py not found; skipped that comparison");
        return;
    };
    let out = Command::new("python3")
        .arg(&tool)
        .arg("diff")
        .arg(a)
        .arg(b)
        .args(["--ignore", "/etc/resolv.conf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ocitree diff {} {}: {}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn copy_diff_apply_round_trip_with_every_kind_of_change() {
    if !is_root() {
        eprintln!("needs root (chown, mknod, security.capability); skipped");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    make_lower(&lower);
    let copy = t.path().join("copy");
    // Beyond the common changes: one file of a lower hardlink pair modified (both names are one inode), a new
    // link to an untouched lower file, a removed lower hardlink.
    let tar = vfs_layer(
        &lower,
        &copy,
        " && echo more >> hl1 && ln usr/bin/tool usr/bin/tool2 && rm keep/deep/k && echo k2 > keep/deep/k2",
    );
    let ents = entries(&tar);
    let names: Vec<&str> = ents.keys().map(String::as_str).collect();
    let want = [
        ".wh.del.txt",
        ".wh.gone",
        "added.txt",
        "cap.bin",
        "chm.txt",
        "chown.txt",
        "hl1",
        "hl2",
        "keep/",
        "keep/deep/",
        "keep/deep/.wh.k",
        "keep/deep/k2",
        "link",
        "newdir/",
        "newdir/sub/",
        "newdir/sub/n",
        "p1",
        "p2",
        "re/",
        "re/.wh..wh..opq",
        "re/new",
        "same_size.txt",
        "usr/",
        "usr/bin/",
        "usr/bin/tool",
        "usr/bin/tool2",
    ];
    assert_eq!(names, want, "layer entries");
    // Opaque marker right after its directory.
    let re = names.iter().position(|n| *n == "re/").unwrap();
    assert_eq!(names[re + 1], "re/.wh..wh..opq");
    assert_eq!(ents["hl2"].0, EntryType::Link);
    assert_eq!(ents["hl2"].1.as_deref(), Some("hl1"));
    assert_eq!(ents["p2"].1.as_deref(), Some("p1"));
    assert_eq!(ents["usr/bin/tool2"].1.as_deref(), Some("usr/bin/tool"));
    assert_eq!(ents["usr/bin/tool"].4, 0o4755);
    assert_eq!((ents["chown.txt"].2, ents["chown.txt"].3), (123, 456));
    assert_eq!(ents["chm.txt"].4, 0o600);
    assert_eq!(ents["link"].1.as_deref(), Some("/etc/passwd"));
    assert_eq!(
        ents["cap.bin"].5,
        vec!["SCHILY.xattr.security.capability".to_string()]
    );
    assert!(!names.iter().any(|n| n.starts_with("etc")), "{names:?}");

    // lower + layer == the changed copy.
    let flat = t.path().join("flat");
    apply_onto_copy_of(&lower, &tar, &flat);
    let ignore = ["etc/resolv.conf"];
    assert_same(
        &snapshot(&copy, &ignore),
        &snapshot(&flat, &ignore),
        "copy vs lower+layer",
    );
    ocitree_same(&copy, &flat);

    // Without the stamp every entry is compared: the same tree results (the recreated directory as whiteouts).
    let mut plain = Vec::new();
    let exclude = [PathBuf::from("/etc/resolv.conf")];
    diff_tree(
        &lower,
        &copy,
        None,
        &exclude,
        &DiffOptions::default(),
        &mut plain,
    )
    .unwrap();
    let pe = entries(&plain);
    assert!(
        pe.contains_key("re/.wh.x") && !pe.contains_key("re/.wh..wh..opq"),
        "{:?}",
        pe.keys()
    );
    let flat2 = t.path().join("flat2");
    apply_onto_copy_of(&lower, &plain, &flat2);
    assert_same(
        &snapshot(&copy, &ignore),
        &snapshot(&flat2, &ignore),
        "copy vs lower+unstamped layer",
    );

    // SOURCE_DATE_EPOCH clamps every time.
    let mut clamped = Vec::new();
    let opts = DiffOptions {
        source_date_epoch: Some(1000),
        ..Default::default()
    };
    diff_tree(&lower, &copy, None, &exclude, &opts, &mut clamped).unwrap();
    let mut ar = tar::Archive::new(&clamped[..]);
    for e in ar.entries().unwrap() {
        assert!(e.unwrap().header().mtime().unwrap() <= 1000);
    }
}

#[test]
fn vfs_layer_equals_overlay_layer() {
    if !is_root() {
        eprintln!("needs root for a trusted.* overlay; skipped");
        return;
    }
    if !in_unshare(
        "vfs_layer_equals_overlay_layer",
        &["-m", "--propagation", "private"],
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    make_lower(&lower);

    let (upper, work, merged) = (
        t.path().join("upper"),
        t.path().join("work"),
        t.path().join("merged"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    sh(&format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={},metacopy=off,redirect_dir=off {}",
        lower.display(),
        upper.display(),
        work.display(),
        merged.display()
    ));
    changes(&merged, "");
    sh(&format!("umount {}", merged.display()));
    let exclude = [PathBuf::from("/etc/resolv.conf")];
    let opts = DiffOptions {
        lower: vec![lower.clone()],
        ..Default::default()
    };
    let mut otar = Vec::new();
    diff_overlay_upper(&upper, &exclude, &opts, &mut otar).unwrap();

    let copy = t.path().join("copy");
    let vtar = vfs_layer(&lower, &copy, "");

    // The same entries, with the same owners, modes, link targets and xattrs.
    let (oe, ve) = (entries(&otar), entries(&vtar));
    let okeys: Vec<&String> = oe.keys().collect();
    let vkeys: Vec<&String> = ve.keys().collect();
    assert_eq!(okeys, vkeys, "overlay vs vfs layer entries");
    for (k, o) in &oe {
        let v = &ve[k];
        assert_eq!(
            (o.0, &o.1, o.2, o.3, o.4, &o.5),
            (v.0, &v.1, v.2, v.3, v.4, &v.5),
            "entry {k}"
        );
    }

    let (of, vf) = (t.path().join("oflat"), t.path().join("vflat"));
    apply_onto_copy_of(&lower, &otar, &of);
    apply_onto_copy_of(&lower, &vtar, &vf);
    let ignore = ["etc/resolv.conf"];
    assert_same(
        &snapshot(&of, &ignore),
        &snapshot(&vf, &ignore),
        "overlay vs vfs flattened",
    );
    ocitree_same(&of, &vf);
}
