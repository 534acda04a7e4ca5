//! Squashfs metadata blocks: 8 KiB chunks, each stored as a 2-byte header (length, bit 15 set
//! when stored uncompressed) followed by the (compressed) bytes.

use crate::error::Result;
use crate::sink::{Compress, compress_checked};

/// Uncompressed size of a metadata block.
pub const METADATA_SIZE: usize = 8192;

/// Encode compressed/raw `blocks` (each ≤ 8 KiB uncompressed) into `out`, returning each
/// block's start offset within `out`.
fn append_blocks(out: &mut Vec<u8>, raw: &[Vec<u8>], compressed: Vec<Vec<u8>>) -> Vec<u64> {
    let mut starts = Vec::with_capacity(raw.len());
    for (r, c) in raw.iter().zip(compressed) {
        starts.push(out.len() as u64);
        if c.len() < r.len() {
            out.extend_from_slice(&(c.len() as u16).to_le_bytes());
            out.extend_from_slice(&c);
        } else {
            out.extend_from_slice(&(r.len() as u16 | 0x8000).to_le_bytes());
            out.extend_from_slice(r);
        }
    }
    starts
}

/// A metadata table written incrementally (the inode and directory tables).
///
/// Bytes are appended uncompressed; a position in that uncompressed stream is turned into a
/// squashfs reference (start of its block in the compressed table, offset in the block) by
/// [`MetaWriter::resolve`], which compresses every complete block before it in one batch.
#[derive(Debug, Default)]
pub struct MetaWriter {
    out: Vec<u8>,
    starts: Vec<u64>,
    pending: Vec<u8>,
}

impl MetaWriter {
    /// Uncompressed bytes written so far.
    pub fn position(&self) -> u64 {
        (self.starts.len() * METADATA_SIZE + self.pending.len()) as u64
    }

    /// Append bytes.
    pub fn write(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
    }

    fn compress_full(&mut self, comp: &mut dyn Compress, upto_block: usize) -> Result<()> {
        let done = self.starts.len();
        if upto_block <= done {
            return Ok(());
        }
        let raw: Vec<Vec<u8>> = self.pending[..(upto_block - done) * METADATA_SIZE]
            .chunks(METADATA_SIZE)
            .map(|c| c.to_vec())
            .collect();
        let compressed = compress_checked(comp, &raw)?;
        self.starts.extend(append_blocks(&mut self.out, &raw, compressed));
        self.pending.drain(..raw.len() * METADATA_SIZE);
        Ok(())
    }

    /// The reference of uncompressed position `pos`: (block start in the compressed table,
    /// offset within the block).
    pub fn resolve(&mut self, comp: &mut dyn Compress, pos: u64) -> Result<(u64, u16)> {
        let block = (pos / METADATA_SIZE as u64) as usize;
        self.compress_full(comp, block)?;
        let start = self.starts.get(block).copied().unwrap_or(self.out.len() as u64);
        Ok((start, (pos % METADATA_SIZE as u64) as u16))
    }

    /// Compress what is left and return the table.
    pub fn finish(mut self, comp: &mut dyn Compress) -> Result<Vec<u8>> {
        let full = self.starts.len() + self.pending.len() / METADATA_SIZE;
        self.compress_full(comp, full)?;
        if !self.pending.is_empty() {
            let raw = vec![std::mem::take(&mut self.pending)];
            let compressed = compress_checked(comp, &raw)?;
            append_blocks(&mut self.out, &raw, compressed);
        }
        Ok(self.out)
    }
}

/// A table stored as metadata blocks plus a lookup array of u64 block locations (fragment,
/// export and id tables). `base` is where the blocks will start in the image; returns the
/// encoded blocks followed by the lookup array, and the offset of the lookup array in it.
pub fn indexed_table(comp: &mut dyn Compress, data: &[u8], base: u64) -> Result<(Vec<u8>, u64)> {
    let raw: Vec<Vec<u8>> = data.chunks(METADATA_SIZE).map(|c| c.to_vec()).collect();
    let compressed = compress_checked(comp, &raw)?;
    let mut out = Vec::new();
    let starts = append_blocks(&mut out, &raw, compressed);
    let index_at = out.len() as u64;
    for s in starts {
        out.extend_from_slice(&(base + s).to_le_bytes());
    }
    Ok((out, index_at))
}
