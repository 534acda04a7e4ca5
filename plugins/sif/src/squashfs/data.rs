//! The squashfs data area: file contents cut into blocks, small files packed into fragment
//! blocks, compressed in batches through [`Compress`] and appended to the sink in order.
//!
//! Batches are submitted without waiting where the compressor can ([`Compress::submit`]): up
//! to [`MAX_IN_FLIGHT`] are compressed in the background while the next ones are packed, and
//! each is written (and its blocks' places recorded) when it is collected, oldest first.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::sink::{Compress, Pending, Sink, check_count};

/// Batches compressed in the background at once, at most.
pub const MAX_IN_FLIGHT: usize = 4;

/// Bit set in a block size word when the block is stored uncompressed.
pub const UNCOMPRESSED_BIT: u32 = 1 << 24;

/// Identifies a file whose contents went through [`DataWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// Where a file's contents ended up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileLayout {
    /// Offset of its first data block from the start of the squashfs image.
    pub start: u64,
    /// One size word per block: compressed length, `UNCOMPRESSED_BIT` if stored raw, 0 for a
    /// sparse (all-zero) block.
    pub blocks: Vec<u32>,
    /// Fragment block index and offset inside it, for files smaller than a block.
    pub fragment: Option<(u32, u32)>,
    /// File size in bytes.
    pub size: u64,
    /// Bytes in sparse blocks.
    pub sparse: u64,
    start_set: bool,
}

/// What the data area holds once [`DataWriter::finish`] ran.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// File layouts, indexed by [`FileId`].
    pub files: Vec<FileLayout>,
    /// Fragment table entries: start and size word.
    pub fragments: Vec<(u64, u32)>,
    /// What the xz streams among the compressed blocks declared.
    pub xz: super::XzFacts,
}

enum Item {
    Block(FileId, Vec<u8>),
    Sparse(FileId, u64),
    Fragment(u32, Vec<u8>),
}

/// Where one item of a batch goes: a file's block, a fragment block, or a sparse block of a
/// file (its length).
type Shape = (Option<FileId>, Option<u32>, u64);

/// A batch handed to the compressor and not written yet.
struct Batch {
    shapes: Vec<Shape>,
    raw: Vec<Vec<u8>>,
    pending: Pending,
}

struct Current {
    id: FileId,
    size: u64,
    received: u64,
    block: Vec<u8>,
    small: bool,
}

/// Streams file contents into the data area.
pub struct DataWriter {
    base: u64,
    block_size: usize,
    batch_bytes: usize,
    files: Vec<FileLayout>,
    fragment: Vec<u8>,
    fragments: Vec<(u64, u32)>,
    fragment_count: u32,
    pending: Vec<Item>,
    pending_bytes: usize,
    in_flight: VecDeque<Batch>,
    current: Option<Current>,
    xz: super::XzFacts,
}

impl DataWriter {
    /// A writer for an image that starts at sink offset `base`, with `block_size` blocks,
    /// handing the compressor about `batch_bytes` per call.
    pub fn new(base: u64, block_size: usize, batch_bytes: usize) -> Self {
        DataWriter {
            base,
            block_size,
            batch_bytes: batch_bytes.max(block_size),
            files: Vec::new(),
            fragment: Vec::new(),
            fragments: Vec::new(),
            fragment_count: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            in_flight: VecDeque::new(),
            current: None,
            xz: super::XzFacts::default(),
        }
    }

    /// Start a file of `size` bytes; its contents follow with [`DataWriter::write`].
    pub fn begin_file(&mut self, size: u64) -> Result<FileId> {
        if self.current.is_some() {
            return Err(Error::Internal("a squashfs file is still being written".into()));
        }
        let id = FileId(u32::try_from(self.files.len()).map_err(|_| Error::Unsupported("too many files".into()))?);
        let small = size > 0 && size < self.block_size as u64;
        let mut layout = FileLayout {
            size,
            ..Default::default()
        };
        if small {
            if self.fragment.len() + size as usize > self.block_size {
                self.close_fragment();
            }
            layout.fragment = Some((self.fragment_count, self.fragment.len() as u32));
        }
        self.files.push(layout);
        self.current = Some(Current {
            id,
            size,
            received: 0,
            block: Vec::new(),
            small,
        });
        Ok(id)
    }

    /// Append contents of the file being written.
    pub fn write(&mut self, sink: &mut dyn Sink, comp: &mut dyn Compress, mut data: &[u8]) -> Result<()> {
        let bs = self.block_size;
        let cur = self
            .current
            .as_mut()
            .ok_or_else(|| Error::Internal("no squashfs file is open".into()))?;
        if cur.received + data.len() as u64 > cur.size {
            return Err(Error::InvalidInput(format!(
                "file data exceeds its declared size of {} bytes",
                cur.size
            )));
        }
        cur.received += data.len() as u64;
        if cur.small {
            self.fragment.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            let cur = self.current.as_mut().expect("checked above");
            let take = (bs - cur.block.len()).min(data.len());
            if cur.block.is_empty() && take == bs {
                let id = cur.id;
                self.push_block(id, data[..bs].to_vec());
            } else {
                cur.block.extend_from_slice(&data[..take]);
                if cur.block.len() == bs {
                    let id = cur.id;
                    let block = std::mem::take(&mut cur.block);
                    self.push_block(id, block);
                }
            }
            data = &data[take..];
            if self.pending_bytes >= self.batch_bytes {
                self.flush(sink, comp)?;
            }
        }
        Ok(())
    }

    /// Finish the file being written; its contents must have reached the declared size.
    pub fn end_file(&mut self, sink: &mut dyn Sink, comp: &mut dyn Compress) -> Result<FileId> {
        let cur = self
            .current
            .take()
            .ok_or_else(|| Error::Internal("no squashfs file is open".into()))?;
        if cur.received != cur.size {
            return Err(Error::InvalidInput(format!(
                "file data has {} bytes, its header says {}",
                cur.received, cur.size
            )));
        }
        if !cur.block.is_empty() {
            self.push_block(cur.id, cur.block);
        }
        if self.pending_bytes >= self.batch_bytes {
            self.flush(sink, comp)?;
        }
        Ok(cur.id)
    }

    /// Write a whole file.
    pub fn add_file(&mut self, sink: &mut dyn Sink, comp: &mut dyn Compress, data: &[u8]) -> Result<FileId> {
        self.begin_file(data.len() as u64)?;
        self.write(sink, comp, data)?;
        self.end_file(sink, comp)
    }

    fn push_block(&mut self, id: FileId, block: Vec<u8>) {
        if block.iter().all(|&b| b == 0) {
            self.pending.push(Item::Sparse(id, block.len() as u64));
        } else {
            self.pending_bytes += block.len();
            self.pending.push(Item::Block(id, block));
        }
    }

    fn close_fragment(&mut self) {
        if self.fragment.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.fragment);
        self.pending_bytes += data.len();
        self.pending.push(Item::Fragment(self.fragment_count, data));
        self.fragment_count += 1;
    }

    /// Hand everything queued to the compressor; write the batches that are done, and wait for
    /// the oldest while more than [`MAX_IN_FLIGHT`] are out.
    pub fn flush(&mut self, sink: &mut dyn Sink, comp: &mut dyn Compress) -> Result<()> {
        if !self.pending.is_empty() {
            let items = std::mem::take(&mut self.pending);
            self.pending_bytes = 0;
            let mut raw = Vec::new();
            let mut shapes = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Item::Block(id, data) => {
                        shapes.push((Some(id), None, 0));
                        raw.push(data);
                    }
                    Item::Fragment(index, data) => {
                        shapes.push((None, Some(index), 0));
                        raw.push(data);
                    }
                    Item::Sparse(id, len) => shapes.push((Some(id), None, len)),
                }
            }
            let pending = if raw.is_empty() {
                Pending::Done(Vec::new())
            } else {
                let mut probe = super::Probing {
                    inner: &mut *comp,
                    xz: &mut self.xz,
                };
                probe.submit(&raw)?
            };
            self.in_flight.push_back(Batch { shapes, raw, pending });
        }
        while let Some(front) = self.in_flight.front() {
            if matches!(front.pending, Pending::Ticket(_)) && self.in_flight.len() <= MAX_IN_FLIGHT {
                break;
            }
            self.write_oldest(sink, comp)?;
        }
        Ok(())
    }

    /// Hand everything queued to the compressor and write every batch.
    fn drain(&mut self, sink: &mut dyn Sink, comp: &mut dyn Compress) -> Result<()> {
        self.flush(sink, comp)?;
        while !self.in_flight.is_empty() {
            self.write_oldest(sink, comp)?;
        }
        Ok(())
    }

    /// Collect the oldest batch and append its blocks (compressed when that made them smaller).
    fn write_oldest(&mut self, sink: &mut dyn Sink, comp: &mut dyn Compress) -> Result<()> {
        let Some(Batch { shapes, raw, pending }) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let compressed = match pending {
            Pending::Done(c) => c,
            Pending::Ticket(t) => {
                let mut probe = super::Probing {
                    inner: comp,
                    xz: &mut self.xz,
                };
                probe.collect(t)?
            }
        };
        check_count(&compressed, raw.len())?;
        let mut blocks = raw.into_iter().zip(compressed);
        for (file, fragment, sparse_len) in shapes {
            let pos = sink.position() - self.base;
            if sparse_len > 0 {
                let f = &mut self.files[file.expect("sparse items belong to a file").0 as usize];
                if !f.start_set {
                    f.start = pos;
                    f.start_set = true;
                }
                f.blocks.push(0);
                f.sparse += sparse_len;
                continue;
            }
            let (r, c) = blocks
                .next()
                .ok_or_else(|| Error::Internal("compressed block count mismatch".into()))?;
            let word = if c.len() < r.len() {
                sink.write(&c)?;
                c.len() as u32
            } else {
                sink.write(&r)?;
                r.len() as u32 | UNCOMPRESSED_BIT
            };
            if let Some(id) = file {
                let f = &mut self.files[id.0 as usize];
                if !f.start_set {
                    f.start = pos;
                    f.start_set = true;
                }
                f.blocks.push(word);
            } else if let Some(index) = fragment {
                debug_assert_eq!(index as usize, self.fragments.len());
                self.fragments.push((pos, word));
            }
        }
        Ok(())
    }

    /// Close the last fragment block and write everything queued.
    pub fn finish(mut self, sink: &mut dyn Sink, comp: &mut dyn Compress) -> Result<Finished> {
        if self.current.is_some() {
            return Err(Error::Internal("a squashfs file is still being written".into()));
        }
        self.close_fragment();
        self.drain(sink, comp)?;
        Ok(Finished {
            files: self.files,
            fragments: self.fragments,
            xz: self.xz,
        })
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> usize {
        self.block_size
    }
}
