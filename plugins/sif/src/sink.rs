//! Output sinks: an append-only byte stream that can patch bytes already written, and the
//! block compressor the squashfs writer calls.

use crate::error::{Error, Result};

/// Where a SIF file is written: append, patch earlier bytes, tell the current length.
pub trait Sink {
    /// Append `data`.
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Overwrite `data.len()` bytes at `offset`; the range must already have been written.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Bytes written so far (the offset the next `write` lands at).
    fn position(&self) -> u64;

    /// Append `len` zero bytes.
    fn write_zeros(&mut self, mut len: u64) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while len > 0 {
            let n = len.min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
            len -= n as u64;
        }
        Ok(())
    }
}

/// An in-memory sink (tests, small outputs).
#[derive(Debug, Default, Clone)]
pub struct VecSink {
    /// Everything written.
    pub bytes: Vec<u8>,
}

impl Sink for VecSink {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let start = usize::try_from(offset).map_err(|_| Error::Internal(format!("offset {offset} too large")))?;
        let end = start.checked_add(data.len()).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            Error::Internal(format!(
                "write-at {offset}+{} is past the {} bytes written",
                data.len(),
                self.bytes.len()
            ))
        })?;
        self.bytes[start..end].copy_from_slice(data);
        Ok(())
    }

    fn position(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Compresses independent blocks (squashfs data blocks, fragment blocks, metadata blocks).
///
/// The result holds one compressed block per input block, in order. Implementations decide the
/// algorithm; the squashfs writer only stores a block compressed when that made it smaller.
pub trait Compress {
    /// Compress each of `blocks` on its own.
    fn compress(&mut self, blocks: &[Vec<u8>]) -> Result<Vec<Vec<u8>>>;

    /// Start compressing `blocks` and return without waiting when the implementation can (the
    /// host's `submit-blocks`): [`Pending::Ticket`] is then redeemed with [`Compress::collect`].
    /// By default the blocks are compressed at once.
    fn submit(&mut self, blocks: &[Vec<u8>]) -> Result<Pending> {
        self.compress(blocks).map(Pending::Done)
    }

    /// The results of a batch [`Compress::submit`] answered with a ticket (waits for them).
    fn collect(&mut self, ticket: u64) -> Result<Vec<Vec<u8>>> {
        Err(Error::Internal(format!("no compression batch has ticket {ticket}")))
    }
}

/// What [`Compress::submit`] answered.
#[derive(Debug)]
pub enum Pending {
    /// The compressed blocks.
    Done(Vec<Vec<u8>>),
    /// A batch being compressed in the background.
    Ticket(u64),
}

impl<F: FnMut(&[Vec<u8>]) -> Result<Vec<Vec<u8>>>> Compress for F {
    fn compress(&mut self, blocks: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        self(blocks)
    }
}

/// Checks a batch's results hold one block per input.
pub(crate) fn check_count(out: &[Vec<u8>], inputs: usize) -> Result<()> {
    if out.len() != inputs {
        return Err(Error::Internal(format!("the compressor returned {} blocks for {inputs}", out.len())));
    }
    Ok(())
}

/// Calls `compress` and checks the host returned one block per input.
pub(crate) fn compress_checked(comp: &mut dyn Compress, blocks: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let out = comp.compress(blocks)?;
    if out.len() != blocks.len() {
        return Err(Error::Internal(format!(
            "the compressor returned {} blocks for {}",
            out.len(),
            blocks.len()
        )));
    }
    Ok(out)
}
