//! A streaming squashfs 4.0 writer: file contents are written as they arrive (see [`data`]);
//! inodes, directories, fragment, export and id tables are built from a [`FsTree`] at the end
//! and the superblock is patched in with `write_at`.
//!
//! Image layout, as `mksquashfs` writes it: superblock (96 bytes) · data and fragment blocks ·
//! inode table · directory table · fragment table · export table · id table, then zero padding
//! to a multiple of 4 KiB. Every offset inside the image is relative to its first byte.
//! Extended attributes are not written.

pub mod data;
pub mod meta;

use std::collections::HashMap;

pub use data::{DataWriter, FileId, FileLayout};

use crate::error::{Error, Result};
use crate::sink::{Compress, Sink};
use meta::{METADATA_SIZE, MetaWriter, indexed_table};

/// Superblock size.
pub const SUPERBLOCK_SIZE: usize = 96;
/// The default (and Apptainer's) block size.
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;
/// The image is padded to a multiple of this.
pub const PADDING: u64 = 4096;

const FLAG_NO_XATTRS: u16 = 0x0200;
const FLAG_COMPRESSOR_OPTIONS: u16 = 0x0400;
/// Size of the xz compressor options record (dictionary size, executable filters) with its
/// metadata block header.
const XZ_OPTIONS_SIZE: usize = 2 + 8;
const FLAG_EXPORTABLE: u16 = 0x0080;
const NO_FRAGMENT: u32 = 0xFFFF_FFFF;
const NO_XATTR: u32 = 0xFFFF_FFFF;

/// Compression algorithms, with their squashfs ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zlib streams (what `mksquashfs -comp gzip` writes), id 1.
    Gzip,
    /// xz streams, id 4.
    Xz,
    /// zstd frames, id 6.
    Zstd,
}

impl Compression {
    /// The superblock compression id.
    pub fn id(self) -> u16 {
        match self {
            Compression::Gzip => 1,
            Compression::Xz => 4,
            Compression::Zstd => 6,
        }
    }

    /// The option value naming it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// Image-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Compression algorithm (the compressor handed to the writer must produce it).
    pub compression: Compression,
    /// Block size: a power of two from 4 KiB to 1 MiB.
    pub block_size: u32,
    /// The file system's creation time.
    pub mkfs_time: u32,
    /// Bytes handed to the compressor per batch of data blocks.
    pub batch_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compression: Compression::Gzip,
            block_size: DEFAULT_BLOCK_SIZE,
            mkfs_time: 0,
            batch_bytes: 4 << 20,
        }
    }
}

/// Ownership, permissions and time of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: u32,
}

/// What a non-directory inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InodeKind {
    /// A regular file whose contents went through the [`DataWriter`].
    File(FileId),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

/// A non-directory inode; several directory entries may point at one (hard links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Ownership, permissions, time.
    pub meta: Meta,
    /// Type and payload.
    pub kind: InodeKind,
}

/// What a directory entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A directory of [`FsTree::dirs`].
    Dir(u32),
    /// An inode of [`FsTree::inodes`].
    Inode(u32),
}

/// A directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dir {
    /// Ownership, permissions, time.
    pub meta: Meta,
    /// Entries, sorted by name (byte order), names without `/`.
    pub entries: Vec<(Vec<u8>, Target)>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }
}

/// The file system to write: `dirs[0]` is the root. Every directory but the root must be the
/// target of exactly one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsTree {
    /// Directories.
    pub dirs: Vec<Dir>,
    /// Other inodes.
    pub inodes: Vec<Inode>,
}

/// What [`SquashfsWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Bytes of the image before padding (`bytes_used`).
    pub bytes_used: u64,
    /// Bytes written including the padding.
    pub padded_size: u64,
    /// Inodes in the image.
    pub inode_count: u32,
    /// What the xz streams declared (all default for other compressions).
    pub xz: XzFacts,
}

/// A squashfs image being written to a sink.
pub struct SquashfsWriter {
    base: u64,
    options: Options,
    data: DataWriter,
}

/// What the xz streams a compressor produced declare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XzFacts {
    /// The largest LZMA2 dictionary.
    pub dictionary: Option<u32>,
    /// Some stream uses an integrity check other than none or CRC32 (Linux cannot read it).
    pub unsupported_check: bool,
}

/// A compressor wrapper that records [`XzFacts`] about its outputs.
pub(crate) struct Probing<'a> {
    pub(crate) inner: &'a mut dyn Compress,
    pub(crate) xz: &'a mut XzFacts,
}

impl Probing<'_> {
    fn probe(&mut self, out: &[Vec<u8>]) {
        for b in out {
            if let Some(d) = xz_dictionary_size(b) {
                self.xz.dictionary = Some(self.xz.dictionary.map_or(d, |m| m.max(d)));
                if !matches!(b[7] & 0x0f, 0 | 1) {
                    self.xz.unsupported_check = true;
                }
            }
        }
    }
}

impl Compress for Probing<'_> {
    fn compress(&mut self, blocks: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let out = self.inner.compress(blocks)?;
        self.probe(&out);
        Ok(out)
    }

    fn submit(&mut self, blocks: &[Vec<u8>]) -> Result<crate::sink::Pending> {
        let p = self.inner.submit(blocks)?;
        if let crate::sink::Pending::Done(out) = &p {
            self.probe(out);
        }
        Ok(p)
    }

    fn collect(&mut self, ticket: u64) -> Result<Vec<Vec<u8>>> {
        let out = self.inner.collect(ticket)?;
        self.probe(&out);
        Ok(out)
    }
}

/// The LZMA2 dictionary size declared by an xz stream (`None` if `stream` is not one).
///
/// Kernels preallocate xz dictionaries of the block size unless the superblock carries
/// compressor options; streams declaring a larger dictionary then fail to mount, so the writer
/// records the largest size found in the compressor's output in its compressor options.
pub fn xz_dictionary_size(stream: &[u8]) -> Option<u32> {
    if stream.len() < 12 + 2 || &stream[..6] != b"\xFD7zXZ\0" {
        return None;
    }
    let block = &stream[12..];
    let header_len = (block[0] as usize + 1) * 4;
    let header = block.get(..header_len)?;
    let flags = header[1];
    let mut at = 2;
    let varint = |at: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for i in 0..9 {
            let b = *header.get(*at)?;
            *at += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    if flags & 0x40 != 0 {
        varint(&mut at)?;
    }
    if flags & 0x80 != 0 {
        varint(&mut at)?;
    }
    let mut dict = None;
    for _ in 0..(flags & 3) + 1 {
        let id = varint(&mut at)?;
        let size = varint(&mut at)? as usize;
        let props = header.get(at..at + size)?;
        at += size;
        if id == 0x21 && size == 1 {
            let bits = props[0] as u32;
            if bits > 40 {
                return None;
            }
            dict = Some(if bits == 40 {
                u32::MAX
            } else {
                (2 | (bits & 1)) << (bits / 2 + 11)
            });
        }
    }
    dict
}

impl SquashfsWriter {
    /// Start an image at the sink's current position (a placeholder superblock is written).
    pub fn begin(sink: &mut dyn Sink, options: Options) -> Result<Self> {
        let bs = options.block_size;
        if !bs.is_power_of_two() || !(4096..=1 << 20).contains(&bs) {
            return Err(Error::InvalidInput(format!(
                "squashfs block size {bs} is not a power of two from 4096 to 1048576"
            )));
        }
        let base = sink.position();
        sink.write_zeros(SUPERBLOCK_SIZE as u64)?;
        if options.compression == Compression::Xz {
            sink.write_zeros(XZ_OPTIONS_SIZE as u64)?;
        }
        Ok(SquashfsWriter {
            base,
            options,
            data: DataWriter::new(base, bs as usize, options.batch_bytes),
        })
    }

    /// The data area writer, to stream file contents.
    pub fn data(&mut self) -> &mut DataWriter {
        &mut self.data
    }

    /// Where the image starts in the sink.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Write the tables for `tree`, pad the image and patch the superblock.
    pub fn finish(self, sink: &mut dyn Sink, comp: &mut dyn Compress, tree: &FsTree) -> Result<Summary> {
        let SquashfsWriter { base, options, data } = self;
        let data::Finished {
            files: layouts,
            fragments,
            mut xz,
        } = data.finish(sink, comp)?;
        let comp = &mut Probing { inner: comp, xz: &mut xz };
        let tables = Tables::build(comp, tree, &layouts, options.block_size)?;

        let inode_table_start = sink.position() - base;
        let inode_table = tables.inodes.finish(comp)?;
        sink.write(&inode_table)?;
        let directory_table_start = sink.position() - base;
        let dir_table = tables.dirs.finish(comp)?;
        sink.write(&dir_table)?;

        let mut frag_bytes = Vec::with_capacity(fragments.len() * 16);
        for (start, size) in &fragments {
            frag_bytes.extend_from_slice(&start.to_le_bytes());
            frag_bytes.extend_from_slice(&size.to_le_bytes());
            frag_bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        let fragment_table_start = write_indexed(sink, comp, base, &frag_bytes)?;

        let mut export = Vec::with_capacity(tables.export.len() * 8);
        for r in &tables.export {
            export.extend_from_slice(&r.to_le_bytes());
        }
        let export_table_start = write_indexed(sink, comp, base, &export)?;

        let mut ids = Vec::with_capacity(tables.ids.len() * 4);
        for id in &tables.ids {
            ids.extend_from_slice(&id.to_le_bytes());
        }
        let id_table_start = write_indexed(sink, comp, base, &ids)?;

        let bytes_used = sink.position() - base;
        let padded = bytes_used.div_ceil(PADDING) * PADDING;
        sink.write_zeros(padded - bytes_used)?;

        let mut sb = Vec::with_capacity(SUPERBLOCK_SIZE);
        sb.extend_from_slice(b"hsqs");
        sb.extend_from_slice(&tables.inode_count.to_le_bytes());
        sb.extend_from_slice(&options.mkfs_time.to_le_bytes());
        sb.extend_from_slice(&options.block_size.to_le_bytes());
        sb.extend_from_slice(&(fragments.len() as u32).to_le_bytes());
        sb.extend_from_slice(&options.compression.id().to_le_bytes());
        sb.extend_from_slice(&(options.block_size.trailing_zeros() as u16).to_le_bytes());
        let mut flags = FLAG_EXPORTABLE | FLAG_NO_XATTRS;
        if options.compression == Compression::Xz {
            // Dictionary size (2^n or 2^n + 2^(n-1), as LZMA2 encodes it), no BCJ filters.
            let dict = comp.xz.dictionary.unwrap_or(options.block_size).max(options.block_size);
            let mut opts = Vec::with_capacity(XZ_OPTIONS_SIZE);
            opts.extend_from_slice(&(0x8000u16 | 8).to_le_bytes());
            opts.extend_from_slice(&dict.to_le_bytes());
            opts.extend_from_slice(&0u32.to_le_bytes());
            sink.write_at(base + SUPERBLOCK_SIZE as u64, &opts)?;
            flags |= FLAG_COMPRESSOR_OPTIONS;
        }
        sb.extend_from_slice(&flags.to_le_bytes());
        sb.extend_from_slice(&(tables.ids.len() as u16).to_le_bytes());
        sb.extend_from_slice(&4u16.to_le_bytes());
        sb.extend_from_slice(&0u16.to_le_bytes());
        for v in [
            tables.root_ref,
            bytes_used,
            id_table_start,
            u64::MAX,
            inode_table_start,
            directory_table_start,
            fragment_table_start,
            export_table_start,
        ] {
            sb.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(sb.len(), SUPERBLOCK_SIZE);
        sink.write_at(base, &sb)?;
        Ok(Summary {
            bytes_used,
            padded_size: padded,
            inode_count: tables.inode_count,
            xz: *comp.xz,
        })
    }
}

fn write_indexed(sink: &mut dyn Sink, comp: &mut dyn Compress, base: u64, data: &[u8]) -> Result<u64> {
    let at = sink.position() - base;
    let (bytes, index_at) = indexed_table(comp, data, at)?;
    sink.write(&bytes)?;
    Ok(at + index_at)
}

/// An inode reference: block start in the compressed table << 16 | offset in the block.
fn inode_ref(start: u64, offset: u16) -> u64 {
    (start << 16) | offset as u64
}

#[derive(Clone, Copy)]
enum Node {
    Dir(u32),
    Inode(u32),
}

struct Tables {
    inodes: MetaWriter,
    dirs: MetaWriter,
    export: Vec<u64>,
    ids: Vec<u32>,
    root_ref: u64,
    inode_count: u32,
}

struct IdTable {
    ids: Vec<u32>,
    index: HashMap<u32, u16>,
}

impl IdTable {
    fn get(&mut self, id: u32) -> Result<u16> {
        if let Some(&i) = self.index.get(&id) {
            return Ok(i);
        }
        let i = u16::try_from(self.ids.len()).map_err(|_| Error::Unsupported("more than 65536 distinct uids/gids".into()))?;
        self.ids.push(id);
        self.index.insert(id, i);
        Ok(i)
    }
}

impl Tables {
    fn build(comp: &mut dyn Compress, tree: &FsTree, layouts: &[FileLayout], block_size: u32) -> Result<Tables> {
        if tree.dirs.is_empty() {
            return Err(Error::Internal("the file system has no root directory".into()));
        }
        let order = post_order(tree)?;
        let inode_count = u32::try_from(order.len()).map_err(|_| Error::Unsupported("too many inodes".into()))?;
        let mut dir_number = vec![0u32; tree.dirs.len()];
        let mut inode_number = vec![0u32; tree.inodes.len()];
        for (i, n) in order.iter().enumerate() {
            match *n {
                Node::Dir(d) => dir_number[d as usize] = i as u32 + 1,
                Node::Inode(x) => inode_number[x as usize] = i as u32 + 1,
            }
        }
        let mut nlink = vec![0u32; tree.inodes.len()];
        let mut parent = vec![inode_count + 1; tree.dirs.len()];
        for (d, dir) in tree.dirs.iter().enumerate() {
            for (_, t) in &dir.entries {
                match *t {
                    Target::Inode(x) => nlink[x as usize] += 1,
                    Target::Dir(c) => parent[c as usize] = dir_number[d],
                }
            }
        }

        let mut inodes = MetaWriter::default();
        let mut dirs = MetaWriter::default();
        let mut ids = IdTable {
            ids: Vec::new(),
            index: HashMap::new(),
        };
        let mut dir_pos = vec![0u64; tree.dirs.len()];
        let mut inode_pos = vec![0u64; tree.inodes.len()];
        let mut export = vec![0u64; order.len()];

        for n in &order {
            match *n {
                Node::Inode(x) => {
                    let inode = &tree.inodes[x as usize];
                    inode_pos[x as usize] = inodes.position();
                    let bytes = encode_inode(inode, inode_number[x as usize], nlink[x as usize], layouts, block_size, &mut ids)?;
                    inodes.write(&bytes);
                }
                Node::Dir(d) => {
                    let dir = &tree.dirs[d as usize];
                    // The listing: runs of entries whose inodes share a metadata block.
                    let listing_start = dirs.position();
                    let mut i = 0;
                    let entries = &dir.entries;
                    while i < entries.len() {
                        let pos_of = |t: Target| match t {
                            Target::Dir(c) => (dir_pos[c as usize], dir_number[c as usize]),
                            Target::Inode(x) => (inode_pos[x as usize], inode_number[x as usize]),
                        };
                        let (first_pos, base_number) = pos_of(entries[i].1);
                        let block = first_pos / METADATA_SIZE as u64;
                        let mut j = i;
                        while j < entries.len() && j - i < 256 {
                            let (p, num) = pos_of(entries[j].1);
                            if p / METADATA_SIZE as u64 != block || (num as i64 - base_number as i64).abs() > 32767 {
                                break;
                            }
                            j += 1;
                        }
                        let (start, _) = inodes.resolve(comp, first_pos)?;
                        let mut run = Vec::new();
                        run.extend_from_slice(&((j - i - 1) as u32).to_le_bytes());
                        run.extend_from_slice(&(start as u32).to_le_bytes());
                        run.extend_from_slice(&base_number.to_le_bytes());
                        for (name, t) in &entries[i..j] {
                            if name.is_empty() || name.len() > 256 || name.contains(&b'/') || name == b"." || name == b".." {
                                return Err(Error::InvalidInput(format!(
                                    "invalid file name {:?}",
                                    String::from_utf8_lossy(name)
                                )));
                            }
                            let (p, num) = pos_of(*t);
                            let kind = match *t {
                                Target::Dir(_) => 1u16,
                                Target::Inode(x) => basic_type(&tree.inodes[x as usize].kind),
                            };
                            run.extend_from_slice(&((p % METADATA_SIZE as u64) as u16).to_le_bytes());
                            run.extend_from_slice(&((num as i64 - base_number as i64) as i16).to_le_bytes());
                            run.extend_from_slice(&kind.to_le_bytes());
                            run.extend_from_slice(&((name.len() - 1) as u16).to_le_bytes());
                            run.extend_from_slice(name);
                        }
                        dirs.write(&run);
                        i = j;
                    }
                    let listing_len = dirs.position() - listing_start;
                    let (dstart, doffset) = dirs.resolve(comp, listing_start)?;
                    let subdirs = entries.iter().filter(|(_, t)| matches!(t, Target::Dir(_))).count() as u32;
                    dir_pos[d as usize] = inodes.position();
                    let meta = dir.meta;
                    let file_size = listing_len + 3;
                    let mut b = Vec::with_capacity(40);
                    let ext = file_size > u16::MAX as u64;
                    header(&mut b, if ext { 8 } else { 1 }, &meta, dir_number[d as usize], &mut ids)?;
                    let block_index = u32::try_from(dstart).map_err(|_| Error::Unsupported("directory table over 4 GiB".into()))?;
                    if ext {
                        let size = u32::try_from(file_size).map_err(|_| Error::Unsupported("directory listing over 4 GiB".into()))?;
                        b.extend_from_slice(&(2 + subdirs).to_le_bytes());
                        b.extend_from_slice(&size.to_le_bytes());
                        b.extend_from_slice(&block_index.to_le_bytes());
                        b.extend_from_slice(&parent[d as usize].to_le_bytes());
                        b.extend_from_slice(&0u16.to_le_bytes());
                        b.extend_from_slice(&doffset.to_le_bytes());
                        b.extend_from_slice(&NO_XATTR.to_le_bytes());
                    } else {
                        b.extend_from_slice(&block_index.to_le_bytes());
                        b.extend_from_slice(&(2 + subdirs).to_le_bytes());
                        b.extend_from_slice(&(file_size as u16).to_le_bytes());
                        b.extend_from_slice(&doffset.to_le_bytes());
                        b.extend_from_slice(&parent[d as usize].to_le_bytes());
                    }
                    inodes.write(&b);
                }
            }
        }
        for (i, n) in order.iter().enumerate() {
            let pos = match *n {
                Node::Dir(d) => dir_pos[d as usize],
                Node::Inode(x) => inode_pos[x as usize],
            };
            let (s, o) = inodes.resolve(comp, pos)?;
            export[i] = inode_ref(s, o);
        }
        let root_ref = export[order.len() - 1];
        Ok(Tables {
            inodes,
            dirs,
            export,
            ids: ids.ids,
            root_ref,
            inode_count,
        })
    }
}

/// Directories in post order (children before parents, root last), with each inode placed at
/// its first directory entry.
fn post_order(tree: &FsTree) -> Result<Vec<Node>> {
    let mut out = Vec::with_capacity(tree.dirs.len() + tree.inodes.len());
    let mut seen_dir = vec![false; tree.dirs.len()];
    let mut seen_inode = vec![false; tree.inodes.len()];
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    seen_dir[0] = true;
    while let Some(top) = stack.last_mut() {
        let (d, i) = *top;
        let entries = &tree.dirs[d as usize].entries;
        if i == entries.len() {
            out.push(Node::Dir(d));
            stack.pop();
            continue;
        }
        top.1 += 1;
        match entries[i].1 {
            Target::Dir(c) => {
                let seen = seen_dir
                    .get_mut(c as usize)
                    .ok_or_else(|| Error::Internal(format!("no directory {c}")))?;
                if *seen {
                    return Err(Error::Internal(format!("directory {c} is linked twice")));
                }
                *seen = true;
                stack.push((c, 0));
            }
            Target::Inode(x) => {
                let seen = seen_inode
                    .get_mut(x as usize)
                    .ok_or_else(|| Error::Internal(format!("no inode {x}")))?;
                if !*seen {
                    *seen = true;
                    out.push(Node::Inode(x));
                }
            }
        }
    }
    if seen_inode.iter().any(|s| !s) || seen_dir.iter().any(|s| !s) {
        return Err(Error::Internal("the file system has unreachable inodes".into()));
    }
    Ok(out)
}

fn basic_type(kind: &InodeKind) -> u16 {
    match kind {
        InodeKind::File(_) => 2,
        InodeKind::Symlink(_) => 3,
        InodeKind::BlockDevice { .. } => 4,
        InodeKind::CharDevice { .. } => 5,
        InodeKind::Fifo => 6,
        InodeKind::Socket => 7,
    }
}

fn header(b: &mut Vec<u8>, kind: u16, meta: &Meta, number: u32, ids: &mut IdTable) -> Result<()> {
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&(meta.mode & 0o7777).to_le_bytes());
    b.extend_from_slice(&ids.get(meta.uid)?.to_le_bytes());
    b.extend_from_slice(&ids.get(meta.gid)?.to_le_bytes());
    b.extend_from_slice(&meta.mtime.to_le_bytes());
    b.extend_from_slice(&number.to_le_bytes());
    Ok(())
}

/// Linux `new_encode_dev`.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn encode_inode(inode: &Inode, number: u32, nlink: u32, layouts: &[FileLayout], block_size: u32, ids: &mut IdTable) -> Result<Vec<u8>> {
    let mut b = Vec::with_capacity(48);
    let m = &inode.meta;
    match &inode.kind {
        InodeKind::File(id) => {
            let l = layouts
                .get(id.0 as usize)
                .ok_or_else(|| Error::Internal(format!("no data for file {}", id.0)))?;
            let expected_blocks = match l.fragment {
                Some(_) => l.size / block_size as u64,
                None => l.size.div_ceil(block_size as u64),
            };
            if l.blocks.len() as u64 != expected_blocks {
                return Err(Error::Internal(format!(
                    "file {} has {} blocks, expected {expected_blocks}",
                    id.0,
                    l.blocks.len()
                )));
            }
            let (frag, frag_off) = l.fragment.unwrap_or((NO_FRAGMENT, 0));
            let basic = nlink <= 1 && l.sparse == 0 && l.start <= u32::MAX as u64 && l.size <= u32::MAX as u64;
            if basic {
                header(&mut b, 2, m, number, ids)?;
                b.extend_from_slice(&(l.start as u32).to_le_bytes());
                b.extend_from_slice(&frag.to_le_bytes());
                b.extend_from_slice(&frag_off.to_le_bytes());
                b.extend_from_slice(&(l.size as u32).to_le_bytes());
            } else {
                header(&mut b, 9, m, number, ids)?;
                b.extend_from_slice(&l.start.to_le_bytes());
                b.extend_from_slice(&l.size.to_le_bytes());
                b.extend_from_slice(&l.sparse.to_le_bytes());
                b.extend_from_slice(&nlink.to_le_bytes());
                b.extend_from_slice(&frag.to_le_bytes());
                b.extend_from_slice(&frag_off.to_le_bytes());
                b.extend_from_slice(&NO_XATTR.to_le_bytes());
            }
            for w in &l.blocks {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
        InodeKind::Symlink(target) => {
            header(&mut b, 3, m, number, ids)?;
            b.extend_from_slice(&nlink.to_le_bytes());
            b.extend_from_slice(&(target.len() as u32).to_le_bytes());
            b.extend_from_slice(target);
        }
        InodeKind::BlockDevice { major, minor } | InodeKind::CharDevice { major, minor } => {
            header(&mut b, basic_type(&inode.kind), m, number, ids)?;
            b.extend_from_slice(&nlink.to_le_bytes());
            b.extend_from_slice(&encode_dev(*major, *minor).to_le_bytes());
        }
        InodeKind::Fifo | InodeKind::Socket => {
            header(&mut b, basic_type(&inode.kind), m, number, ids)?;
            b.extend_from_slice(&nlink.to_le_bytes());
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests;
