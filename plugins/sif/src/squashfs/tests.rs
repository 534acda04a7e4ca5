//! Squashfs writer tests: images are read back with squashfs-tools' `unsquashfs`.

use super::*;
use crate::sink::VecSink;
use crate::test_util::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

struct Built {
    tree: FsTree,
    files: Vec<(String, Vec<u8>)>,
}

fn meta(mode: u16, uid: u32, gid: u32, mtime: u32) -> Meta {
    Meta { mode, uid, gid, mtime }
}

/// Add a file at `dir/name`, writing its data now.
#[allow(clippy::too_many_arguments)]
fn file(
    b: &mut Built,
    sq: &mut SquashfsWriter,
    sink: &mut VecSink,
    comp: &mut dyn Compress,
    dir: u32,
    path: &str,
    m: Meta,
    data: Vec<u8>,
) -> u32 {
    let id = sq.data().add_file(sink, comp, &data).unwrap();
    b.tree.inodes.push(Inode {
        meta: m,
        kind: InodeKind::File(id),
    });
    let x = b.tree.inodes.len() as u32 - 1;
    let name = path.rsplit('/').next().unwrap();
    b.tree.dirs[dir as usize].entries.push((name.as_bytes().to_vec(), Target::Inode(x)));
    b.files.push((path.to_string(), data));
    x
}

fn subdir(b: &mut Built, parent: u32, name: &str, m: Meta) -> u32 {
    b.tree.dirs.push(Dir {
        meta: m,
        entries: Vec::new(),
    });
    let d = b.tree.dirs.len() as u32 - 1;
    b.tree.dirs[parent as usize]
        .entries
        .push((name.as_bytes().to_vec(), Target::Dir(d)));
    d
}

fn other(b: &mut Built, dir: u32, name: &str, m: Meta, kind: InodeKind) -> u32 {
    b.tree.inodes.push(Inode { meta: m, kind });
    let x = b.tree.inodes.len() as u32 - 1;
    b.tree.dirs[dir as usize].entries.push((name.as_bytes().to_vec(), Target::Inode(x)));
    x
}

fn sort(tree: &mut FsTree) {
    for d in &mut tree.dirs {
        d.entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
}

/// A tree exercising every inode kind, fragments, multi-block, sparse and incompressible files.
fn sample(c: Compression, block_size: u32) -> (Vec<u8>, Built, Summary) {
    let mut comp = native_compress(c);
    let mut sink = VecSink::default();
    sink.bytes.extend_from_slice(b"prefix"); // the image need not start at offset 0
    let opts = Options {
        compression: c,
        block_size,
        mkfs_time: 1_700_000_000,
        batch_bytes: 3 * block_size as usize,
    };
    let mut sq = SquashfsWriter::begin(&mut sink, opts).unwrap();
    let mut b = Built {
        tree: FsTree {
            dirs: vec![Dir {
                meta: meta(0o755, 0, 0, 100),
                entries: vec![],
            }],
            inodes: vec![],
        },
        files: vec![],
    };
    let bs = block_size as usize;
    let etc = subdir(&mut b, 0, "etc", meta(0o755, 0, 0, 200));
    file(
        &mut b,
        &mut sq,
        &mut sink,
        &mut comp,
        etc,
        "/etc/hostname",
        meta(0o644, 0, 0, 300),
        b"kiln\n".to_vec(),
    );
    file(
        &mut b,
        &mut sq,
        &mut sink,
        &mut comp,
        etc,
        "/etc/empty",
        meta(0o600, 1000, 1000, 301),
        Vec::new(),
    );
    let shared = file(
        &mut b,
        &mut sq,
        &mut sink,
        &mut comp,
        etc,
        "/etc/shadow",
        meta(0o640, 0, 42, 302),
        b"root:*:1::::::\n".to_vec(),
    );
    b.tree.dirs[0].entries.push((b"shadow-link".to_vec(), Target::Inode(shared)));
    b.files.push(("/shadow-link".into(), b"root:*:1::::::\n".to_vec()));
    let bin = subdir(&mut b, 0, "bin", meta(0o755, 0, 0, 400));
    let mut big = noise(2 * bs + 1234, 1);
    big[bs..bs + 500].copy_from_slice(&[b'a'; 500]);
    file(&mut b, &mut sq, &mut sink, &mut comp, bin, "/bin/big", meta(0o4755, 0, 0, 401), big);
    file(
        &mut b,
        &mut sq,
        &mut sink,
        &mut comp,
        bin,
        "/bin/exact",
        meta(0o755, 0, 0, 402),
        vec![b'x'; bs],
    );
    let mut sparse = vec![0u8; 3 * bs + 10];
    sparse[bs + 7] = 1;
    file(
        &mut b,
        &mut sq,
        &mut sink,
        &mut comp,
        bin,
        "/bin/sparse",
        meta(0o644, 0, 0, 403),
        sparse,
    );
    for i in 0..40 {
        let data = format!("small file {i}\n").repeat(i * 37 + 1).into_bytes();
        file(
            &mut b,
            &mut sq,
            &mut sink,
            &mut comp,
            bin,
            &format!("/bin/s{i:02}"),
            meta(0o644, 5, 6, 404),
            data,
        );
    }
    other(&mut b, bin, "sh", meta(0o777, 0, 0, 405), InodeKind::Symlink(b"big".to_vec()));
    let dev = subdir(&mut b, 0, "dev", meta(0o755, 0, 0, 500));
    other(
        &mut b,
        dev,
        "null",
        meta(0o666, 0, 0, 501),
        InodeKind::CharDevice { major: 1, minor: 3 },
    );
    other(
        &mut b,
        dev,
        "loop300",
        meta(0o660, 0, 6, 502),
        InodeKind::BlockDevice { major: 7, minor: 300 },
    );
    other(&mut b, dev, "fifo", meta(0o644, 0, 0, 503), InodeKind::Fifo);
    other(&mut b, dev, "sock", meta(0o755, 0, 0, 504), InodeKind::Socket);
    let deep = subdir(&mut b, dev, "a", meta(0o700, 0, 0, 505));
    let deep = subdir(&mut b, deep, "b", meta(0o1777, 0, 0, 506));
    subdir(&mut b, deep, "c", meta(0o755, 7, 8, 507));
    sort(&mut b.tree);
    let summary = sq.finish(&mut sink, &mut comp, &b.tree).unwrap();
    assert_eq!(&sink.bytes[..6], b"prefix");
    (sink.bytes[6..].to_vec(), b, summary)
}

fn check_extracted(root: &std::path::Path, b: &Built) {
    for (path, data) in &b.files {
        let got = std::fs::read(root.join(&path[1..])).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(got == *data, "{path}: contents differ ({} vs {} bytes)", got.len(), data.len());
    }
    let a = std::fs::metadata(root.join("etc/shadow")).unwrap();
    let l = std::fs::metadata(root.join("shadow-link")).unwrap();
    assert_eq!(a.ino(), l.ino(), "hard link lost");
    assert_eq!(a.nlink(), 2);
    assert_eq!(std::fs::read_link(root.join("bin/sh")).unwrap().to_str(), Some("big"));
    let null = std::fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), (1 << 8) | 3);
    let lp = std::fs::symlink_metadata(root.join("dev/loop300")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!((libc_major(lp.rdev()), libc_minor(lp.rdev())), (7, 300));
    assert!(std::fs::symlink_metadata(root.join("dev/fifo")).unwrap().file_type().is_fifo());
    assert!(std::fs::symlink_metadata(root.join("dev/sock")).unwrap().file_type().is_socket());
    let big = std::fs::metadata(root.join("bin/big")).unwrap();
    assert_eq!(big.mode() & 0o7777, 0o4755);
    assert_eq!(big.mtime(), 401);
    let c = std::fs::metadata(root.join("dev/a/b/c")).unwrap();
    assert_eq!((c.uid(), c.gid(), c.mode() & 0o7777), (7, 8, 0o755));
    assert_eq!(std::fs::metadata(root.join("dev/a/b")).unwrap().mode() & 0o7777, 0o1777);
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

fn roundtrip(c: Compression, block_size: u32) {
    if !have("unsquashfs") {
        return;
    }
    let (image, b, summary) = sample(c, block_size);
    assert_eq!(image.len() as u64, summary.padded_size);
    assert_eq!(image.len() % 4096, 0);
    assert_eq!(&image[..4], b"hsqs");
    let dir = Scratch::new("sqfs");
    let path = dir.join("img.sqfs");
    std::fs::write(&path, &image).unwrap();
    let info = run(Command::new("unsquashfs").arg("-s").arg(&path));
    assert!(info.contains(&format!("Compression {}", c.name())), "{info}");
    assert!(info.contains(&format!("Block size {block_size}")), "{info}");
    assert!(info.contains(&format!("Number of inodes {}", summary.inode_count)), "{info}");
    assert!(info.contains("Filesystem is exportable via NFS"), "{info}");
    assert!(info.contains(&format!("Filesystem size {} bytes", summary.bytes_used)), "{info}");
    assert_eq!(summary.inode_count as usize, b.tree.dirs.len() + b.tree.inodes.len());

    let list = unsquashfs_list(&path, None);
    for want in [
        "drwxr-xr-x 0/0 ",
        "-rw-r----- 0/42 15 /etc/shadow",
        "-rw-r----- 0/42 15 /shadow-link",
        "-rw------- 1000/1000 0 /etc/empty",
        "-rwsr-xr-x 0/0 ",
        "lrwxrwxrwx 0/0 3 /bin/sh -> big",
        "crw-rw-rw- 0/0 1,3 /dev/null",
        // unsquashfs -lln prints the raw device word as (word >> 8, word & 0xff), as it does
        // for mksquashfs images; extraction below checks the real 7:300.
        "brw-rw---- 0/6 4103,44 /dev/loop300",
        "prw-r--r-- 0/0 0 /dev/fifo",
        "srwxr-xr-x 0/0 0 /dev/sock",
        "drwxrwxrwt 0/0 ",
        "drwxr-xr-x 7/8 ",
    ] {
        assert!(
            list.iter().any(|l| l.starts_with(want) || l == want),
            "missing {want:?} in\n{}",
            list.join("\n")
        );
    }
    assert_eq!(list.len(), 59, "{}", list.join("\n"));

    let out = dir.join("root");
    unsquashfs_extract(&path, None, &out);
    check_extracted(&out, &b);
    if let Some(m) = kernel_mount(&path, 0, &dir.join("mnt")) {
        compare_trees(&out, &m.0);
    }
}

#[test]
fn gzip_image_reads_back() {
    roundtrip(Compression::Gzip, DEFAULT_BLOCK_SIZE);
}

#[test]
fn zstd_image_reads_back() {
    roundtrip(Compression::Zstd, DEFAULT_BLOCK_SIZE);
}

#[test]
fn xz_image_reads_back() {
    roundtrip(Compression::Xz, 65536);
}

#[test]
fn small_blocks_and_batches_read_back() {
    roundtrip(Compression::Gzip, 4096);
}

#[test]
fn incompressible_blocks_are_stored_raw() {
    let mut comp = native_compress(Compression::Gzip);
    let mut sink = VecSink::default();
    let mut sq = SquashfsWriter::begin(
        &mut sink,
        Options {
            block_size: 4096,
            ..Options::default()
        },
    )
    .unwrap();
    let id = sq.data().add_file(&mut sink, &mut comp, &noise(4096 * 2, 9)).unwrap();
    let tree = FsTree {
        dirs: vec![Dir {
            meta: Meta::default(),
            entries: vec![(b"n".to_vec(), Target::Inode(0))],
        }],
        inodes: vec![Inode {
            meta: Meta::default(),
            kind: InodeKind::File(id),
        }],
    };
    let s = sq.finish(&mut sink, &mut comp, &tree).unwrap();
    // Two raw 4096-byte blocks right after the superblock.
    let inode_table = u64::from_le_bytes(sink.bytes[64..72].try_into().unwrap());
    assert_eq!(inode_table, 96 + 2 * 4096);
    assert!(s.bytes_used > inode_table);
}

#[test]
fn empty_root_and_large_directory() {
    if !have("unsquashfs") {
        return;
    }
    let mut comp = native_compress(Compression::Gzip);
    let dir = Scratch::new("sqfs-large");
    // An empty file system.
    let mut sink = VecSink::default();
    let sq = SquashfsWriter::begin(&mut sink, Options::default()).unwrap();
    sq.finish(
        &mut sink,
        &mut comp,
        &FsTree {
            dirs: vec![Dir::default()],
            inodes: vec![],
        },
    )
    .unwrap();
    std::fs::write(dir.join("empty.sqfs"), &sink.bytes).unwrap();
    assert_eq!(
        unsquashfs_list(&dir.join("empty.sqfs"), None),
        vec!["drwxr-xr-x 0/0 3 /".to_string()]
    );

    // 3000 entries with long names: listing > 64 KiB (extended directory inode), many headers,
    // inode numbers far apart, and a subdirectory after them.
    let mut sink = VecSink::default();
    let mut sq = SquashfsWriter::begin(&mut sink, Options::default()).unwrap();
    let mut b = Built {
        tree: FsTree {
            dirs: vec![Dir::default()],
            inodes: vec![],
        },
        files: vec![],
    };
    let many = subdir(&mut b, 0, "many", Meta::default());
    for i in 0..3000 {
        let name = format!("/many/{}-{i:05}", "n".repeat(40));
        file(
            &mut b,
            &mut sq,
            &mut sink,
            &mut comp,
            many,
            &name,
            Meta::default(),
            format!("{i}").into_bytes(),
        );
    }
    subdir(
        &mut b,
        many,
        "zz",
        Meta {
            mode: 0o700,
            ..Meta::default()
        },
    );
    sort(&mut b.tree);
    sq.finish(&mut sink, &mut comp, &b.tree).unwrap();
    let path = dir.join("large.sqfs");
    std::fs::write(&path, &sink.bytes).unwrap();
    let list = unsquashfs_list(&path, None);
    assert_eq!(list.len(), 3003);
    assert!(
        list.contains(&"drwx------ 0/0 3 /many/zz".to_string()),
        "{:?}",
        &list[list.len() - 3..]
    );
    let out = dir.join("root");
    unsquashfs_extract(&path, None, &out);
    check_files(&out, &b.files);
    if let Some(m) = kernel_mount(&path, 0, &dir.join("mnt")) {
        compare_trees(&out, &m.0);
    }
}

fn check_files(root: &std::path::Path, files: &[(String, Vec<u8>)]) {
    for (path, data) in files {
        let got = std::fs::read(root.join(&path[1..])).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(got == *data, "{path}: contents differ");
    }
}

#[test]
fn rejects_bad_block_size_and_short_data() {
    let mut sink = VecSink::default();
    assert!(matches!(
        SquashfsWriter::begin(
            &mut sink,
            Options {
                block_size: 3000,
                ..Options::default()
            }
        ),
        Err(Error::InvalidInput(_))
    ));
    let mut comp = native_compress(Compression::Gzip);
    let mut sq = SquashfsWriter::begin(&mut sink, Options::default()).unwrap();
    sq.data().begin_file(10).unwrap();
    sq.data().write(&mut sink, &mut comp, b"12345").unwrap();
    assert!(matches!(sq.data().end_file(&mut sink, &mut comp), Err(Error::InvalidInput(_))));
}
