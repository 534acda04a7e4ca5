//! Applying layer tars onto real directories: whiteouts, opaque directories, replacement rules, hardlinks, xattrs,
//! devices, modes, owners and times, privileged and in an unprivileged user namespace.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use kiln_layer::{ApplyOptions, Compression, LayerError, LayerWriter, apply_layer, decompress};
use std::io::Write;
use tar::EntryType;

fn lower(root: &Path) {
    sh(&format!(
        "cd {} && mkdir -p d re/sub gone/deep keep a_dir && echo lower-a > a && echo f1 > d/f1 && echo f2 > d/f2 \
         && echo x > re/x && echo y > re/sub/y && echo g > gone/deep/g && echo k > keep/k && echo in > a_dir/in \
         && echo shared > lowerfile && ln -s d/f1 link",
        root.display()
    ));
}

#[test]
fn whiteouts_opaque_and_replacement() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path();
    lower(dest);
    let layer = RawTar::new()
        .file(".wh.gone", b"")
        .file("d/.wh.f1", b"")
        .dir("re")
        .file("re/.wh..wh..opq", b"")
        .file("re/new", b"new")
        // A directory replaces a file, a file replaces a directory.
        .dir("a")
        .file("a/inner", b"inner")
        .file("a_dir", b"now a file")
        // Same-layer entries survive a whiteout that names them.
        .file("same", b"same layer")
        .file(".wh.same", b"")
        // A whiteout naming a directory this layer wrote into removes only its lower content.
        .file("keep/mine", b"mine")
        .file(".wh.keep", b"")
        // Whiteout of something that does not exist is fine.
        .file(".wh.never-existed", b"")
        // A new file in a directory that is not in the layer as an entry: parents are created.
        .file("fresh/deep/file", b"deep")
        .finish();
    let stats = apply_layer(&layer[..], dest, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 5);
    assert_eq!(stats.opaque_dirs, 1);

    let snap = snapshot(dest, &[]);
    let paths: Vec<&str> = snap.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "a",
            "a/inner",
            "a_dir",
            "d",
            "d/f2",
            "fresh",
            "fresh/deep",
            "fresh/deep/file",
            "keep",
            "keep/mine",
            "link",
            "lowerfile",
            "re",
            "re/new",
            "same"
        ]
    );
    assert!(snap["a"].starts_with("dir "));
    assert!(snap["a_dir"].starts_with("file "));
    assert_eq!(fs::read_to_string(dest.join("same")).unwrap(), "same layer");
    assert_eq!(fs::read_to_string(dest.join("re/new")).unwrap(), "new");
}

#[test]
fn opaque_keeps_entries_of_its_own_layer_in_any_order() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path();
    lower(dest);
    // The marker comes after a new entry and after a merged subdirectory with a new file.
    let layer = RawTar::new()
        .dir("re")
        .file("re/early", b"early")
        .dir("re/sub")
        .file("re/sub/z", b"z")
        .file("re/.wh..wh..opq", b"")
        .finish();
    apply_layer(&layer[..], dest, &ApplyOptions::default()).unwrap();
    let snap = snapshot(&dest.join("re"), &[]);
    let paths: Vec<&str> = snap.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        paths,
        vec!["early", "sub", "sub/z"],
        "lower re/x and re/sub/y must be gone"
    );
}

#[test]
fn round_trip_diff_dirs_then_apply() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("lower");
    fs::create_dir(&base).unwrap();
    lower(&base);
    let target = t.path().join("target");
    sh(&format!("cp -a {} {}", base.display(), target.display()));
    // Delete a directory and recreate it with other content, delete files, change content, mode and owner,
    // add hardlinks and a symlink change.
    sh(&format!(
        "cd {} && rm -rf re && mkdir re && echo again > re/x2 && rm d/f1 && rm -rf gone && echo changed >> a \
         && chmod 0600 d/f2 && chown 123:456 keep/k && ln lowerfile lowerfile.link && mkdir new && echo n > new/n \
         && ln new/n new/n2 && ln -sf keep link && chmod 1777 new",
        target.display()
    ));
    set_xattr(&target.join("new/n"), "user.kiln", b"value\0with nul");

    let mut tar = Vec::new();
    let stats = kiln_layer::diff_dirs(&base, &target, &[], &Default::default(), &mut tar).unwrap();
    assert!(!stats.is_empty());
    assert_eq!(stats.whiteouts, 4, "d/f1, gone, re/sub, re/x");

    let flat = t.path().join("flat");
    sh(&format!("cp -a {} {}", base.display(), flat.display()));
    apply_layer(&tar[..], &flat, &ApplyOptions::default()).unwrap();
    assert_same(
        &snapshot(&target, &[]),
        &snapshot(&flat, &[]),
        "target vs lower+layer",
    );

    // The hardlink to an unchanged lower file is a hardlink entry, not a copy.
    let mut ar = tar::Archive::new(&tar[..]);
    let mut found = false;
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().to_str() == Some("lowerfile.link") {
            assert_eq!(e.header().entry_type(), EntryType::Link);
            found = true;
        }
        assert_ne!(
            e.path().unwrap().to_str(),
            Some("lowerfile"),
            "unchanged file must not be in the diff"
        );
    }
    assert!(found);
}

#[test]
fn diff_of_identical_trees_is_empty() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    fs::create_dir(&a).unwrap();
    lower(&a);
    let b = t.path().join("b");
    sh(&format!("cp -a {} {}", a.display(), b.display()));
    // Only an mtime change with identical content: unchanged.
    sh(&format!("touch -d @1 {}/d/f2", b.display()));
    let mut tar = Vec::new();
    let stats = kiln_layer::diff_dirs(&a, &b, &[], &Default::default(), &mut tar).unwrap();
    assert!(stats.is_empty(), "{stats:?}");
    assert_eq!(tar.len(), 1024, "only the end-of-archive marker");

    // Same size, same mtime, different content: found only with always_compare_content.
    fs::write(b.join("d/f2"), "F2\n").unwrap();
    sh(&format!(
        "touch -r {0}/d/f2 {1}/d/f2",
        a.display(),
        b.display()
    ));
    let stats = kiln_layer::diff_dirs(&a, &b, &[], &Default::default(), Vec::new()).unwrap();
    assert!(stats.is_empty());
    let opts = kiln_layer::DiffOptions {
        always_compare_content: true,
        ..Default::default()
    };
    let stats = kiln_layer::diff_dirs(&a, &b, &[], &opts, Vec::new()).unwrap();
    assert_eq!((stats.files, stats.dirs), (1, 1), "d/ and d/f2");
}

/// A v2 file capability: cap_net_bind_service in the permitted and effective sets.
fn capability() -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v
}

fn metadata_layer() -> Vec<u8> {
    let suid = Meta {
        mode: 0o4755,
        uid: 1000,
        gid: 2000,
        mtime: 1_234_567_890,
        ..Meta::default()
    };
    let xm = Meta {
        xattrs: vec![
            ("user.kiln.test".to_string(), b"hello".to_vec()),
            ("security.capability".to_string(), capability()),
        ],
        ..Meta::default()
    };
    let sticky = Meta {
        mode: 0o1777,
        mtime: 1_000_000_000,
        ..Meta::default()
    };
    let mut t = RawTar::new();
    t.dir_meta("tmp", &sticky)
        .file_meta("tmp/suid", b"#!/bin/sh\n", &suid)
        .hardlink("tmp/suid.link", "tmp/suid")
        .hardlink("shared.link", "lowerfile")
        .file_meta("cap", b"binary", &xm)
        .symlink("tmp/sym", "/nowhere/at/all");
    t.raw(
        b"dev/null",
        EntryType::Char,
        b"",
        b"",
        &Meta {
            mode: 0o666,
            ..Meta::default()
        },
        (1, 3),
    );
    t.raw(
        b"dev/fifo",
        EntryType::Fifo,
        b"",
        b"",
        &Meta {
            mode: 0o620,
            uid: 7,
            ..Meta::default()
        },
        (0, 0),
    );
    t.finish()
}

#[test]
fn hardlinks_xattrs_devices_modes_times() {
    if !is_root() {
        eprintln!("needs root for devices and security.capability; skipped");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dest = t.path();
    lower(dest);
    let stats = apply_layer(&metadata_layer()[..], dest, &ApplyOptions::default()).unwrap();
    assert_eq!(
        (
            stats.chown_failed,
            stats.xattr_failed,
            stats.devices_skipped
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.hardlinks, 2);

    let suid = fs::symlink_metadata(dest.join("tmp/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (1000, 2000));
    assert_eq!(suid.mtime(), 1_234_567_890);
    let link = fs::symlink_metadata(dest.join("tmp/suid.link")).unwrap();
    assert_eq!((link.ino(), link.nlink()), (suid.ino(), 2));
    let lower_link = fs::symlink_metadata(dest.join("shared.link")).unwrap();
    assert_eq!(
        lower_link.ino(),
        fs::symlink_metadata(dest.join("lowerfile")).unwrap().ino()
    );

    let tmp = fs::symlink_metadata(dest.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(
        tmp.mtime(),
        1_000_000_000,
        "directory mtime is set after its contents"
    );
    assert_eq!(
        fs::read_link(dest.join("tmp/sym")).unwrap().to_str(),
        Some("/nowhere/at/all")
    );

    assert_eq!(
        get_xattr(&dest.join("cap"), "user.kiln.test").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        get_xattr(&dest.join("cap"), "security.capability"),
        Some(capability())
    );

    let null = fs::symlink_metadata(dest.join("dev/null")).unwrap();
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let fifo = fs::symlink_metadata(dest.join("dev/fifo")).unwrap();
    assert_eq!((fifo.mode() & 0o7777, fifo.uid()), (0o620, 7));
}

#[test]
fn unprivileged_apply_counts_refusals() {
    if !in_unshare(
        "unprivileged_apply_counts_refusals",
        &["-U", "--map-current-user"],
    ) {
        return;
    }
    // Inside a user namespace where only our own id is mapped: foreign owners, devices and
    // security.capability are refused, and the apply goes on.
    let t = tempfile::tempdir().unwrap();
    let dest = t.path();
    lower(dest);
    let stats = apply_layer(&metadata_layer()[..], dest, &ApplyOptions::default()).unwrap();
    assert!(stats.chown_failed >= 2, "{stats:?}");
    assert_eq!(stats.devices_skipped, 1, "{stats:?}");
    assert!(!dest.join("dev/null").exists());
    assert_eq!(fs::read(dest.join("tmp/suid")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(
        get_xattr(&dest.join("cap"), "user.kiln.test").as_deref(),
        Some(&b"hello"[..])
    );
    assert!(!stats.warnings.is_empty());

    let strict = ApplyOptions {
        strict_owner: true,
        ..Default::default()
    };
    let t2 = tempfile::tempdir().unwrap();
    match apply_layer(&metadata_layer()[..], t2.path(), &strict) {
        Err(LayerError::Entry {
            entry, op: "chown", ..
        }) => assert_eq!(entry, "tmp/suid"),
        other => panic!("expected a chown error, got {other:?}"),
    }
}

#[test]
fn compressed_layers_apply_through_decompress() {
    let layer = RawTar::new()
        .dir("etc")
        .file("etc/hostname", b"kiln\n")
        .finish();
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let mut w = LayerWriter::new(Vec::new(), c).unwrap();
        w.write_all(&layer).unwrap();
        let (d, blob) = w.finish_into_inner().unwrap();
        assert_eq!(Compression::detect(&blob), c);
        assert_eq!(d.compression, c);
        let t = tempfile::tempdir().unwrap();
        apply_layer(
            decompress(&blob[..]).unwrap(),
            t.path(),
            &ApplyOptions::default(),
        )
        .unwrap();
        assert_eq!(fs::read(t.path().join("etc/hostname")).unwrap(), b"kiln\n");
    }
}

#[test]
fn truncated_tar_is_an_error_naming_the_entry() {
    let layer = RawTar::new()
        .file("one", b"1")
        .file("two", &[7u8; 4000])
        .finish();
    let cut = &layer[..512 * 4 + 100];
    let t = tempfile::tempdir().unwrap();
    let err = apply_layer(cut, t.path(), &ApplyOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("two"), "{msg}");
}

/// A tree with long names, hardlinks, symlinks, special modes and user xattrs.
fn interop_tree(root: &Path) {
    let long = "l".repeat(120);
    sh(&format!(
        "mkdir -p {0}/a/{1}/deeper && cd {0} && echo one > a/one && ln a/one a/one.hard && ln -s one a/one.sym \
         && echo deep > a/{1}/deeper/{1}.txt && ln a/{1}/deeper/{1}.txt a/{1}/hard-to-long \
         && ln -s a/{1}/deeper/{1}.txt {2} && chmod 4711 a/one && chmod 1777 a/{1} && mkfifo a/fifo \
         && chown -h 4242:4343 a/one.sym && touch -h -d @1500000000 a/one.sym",
        root.display(),
        long,
        "s".repeat(130)
    ));
    set_xattr(&root.join("a/one"), "user.interop", b"yes");
}

#[test]
fn layers_written_by_gnu_tar_apply_exactly() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    interop_tree(&src);
    let layer = t.path().join("layer.tar");
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --format=pax --numeric-owner -C {} -cf {} .",
        src.display(),
        layer.display()
    ));
    let dest = t.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let stats = apply_layer(
        fs::File::open(&layer).unwrap(),
        &dest,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert!(stats.hardlinks >= 2, "{stats:?}");
    assert_same(
        &snapshot(&src, &[]),
        &snapshot(&dest, &[]),
        "GNU tar layer applied",
    );
    let sym = fs::symlink_metadata(dest.join("a/one.sym")).unwrap();
    assert_eq!(
        (sym.uid(), sym.gid(), sym.mtime()),
        (4242, 4343, 1_500_000_000)
    );
}

#[test]
fn diffs_extract_exactly_with_gnu_tar() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty");
    let src = t.path().join("src");
    fs::create_dir(&empty).unwrap();
    fs::create_dir(&src).unwrap();
    interop_tree(&src);
    let layer = t.path().join("layer.tar");
    let out = fs::File::create(&layer).unwrap();
    kiln_layer::diff_dirs(&empty, &src, &[], &Default::default(), out).unwrap();
    let dest = t.path().join("dest");
    fs::create_dir(&dest).unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --numeric-owner -p -C {} -xf {}",
        dest.display(),
        layer.display()
    ));
    assert_same(
        &snapshot(&src, &[]),
        &snapshot(&dest, &[]),
        "kiln diff extracted by GNU tar",
    );
}
