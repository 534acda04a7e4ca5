//! `std::io` adapters over host handles, so plugins can use ordinary Read/Write code.

use std::io;

macro_rules! adapters {
    ($world:ident) => {
        /// Adapters for handles of this world.
        pub mod $world {
            #![allow(dead_code)]
            use super::io;
            use crate::$world::kiln::plugin::blobs::{BlobReader, BlobWriter, ByteStream};
            use crate::$world::kiln::plugin::types::PluginError;

            fn to_io(e: PluginError) -> io::Error {
                io::Error::other(format!("{e:?}"))
            }

            /// Sequential `Read` over a random-access blob handle.
            pub struct BlobRead<'a> {
                blob: &'a BlobReader,
                pos: u64,
                size: u64,
            }
            impl<'a> BlobRead<'a> {
                /// Read `blob` from its start.
                pub fn new(blob: &'a BlobReader) -> Self {
                    Self { blob, pos: 0, size: blob.size() }
                }
            }
            impl io::Read for BlobRead<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    if self.pos >= self.size || buf.is_empty() {
                        return Ok(0);
                    }
                    let want = buf.len().min(1 << 20) as u32;
                    let got = self.blob.read_at(self.pos, want).map_err(to_io)?;
                    let n = got.len().min(buf.len());
                    buf[..n].copy_from_slice(&got[..n]);
                    self.pos += n as u64;
                    Ok(n)
                }
            }

            /// `Read` over a host byte stream, with a small carry-over buffer.
            pub struct StreamRead {
                stream: ByteStream,
                carry: Vec<u8>,
                at: usize,
                done: bool,
            }
            impl StreamRead {
                /// Wrap an owned stream.
                pub fn new(stream: ByteStream) -> Self {
                    Self { stream, carry: Vec::new(), at: 0, done: false }
                }
            }
            impl io::Read for StreamRead {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    if self.at >= self.carry.len() {
                        if self.done {
                            return Ok(0);
                        }
                        self.carry = self.stream.read(256 * 1024).map_err(to_io)?;
                        self.at = 0;
                        if self.carry.is_empty() {
                            self.done = true;
                            return Ok(0);
                        }
                    }
                    let n = (self.carry.len() - self.at).min(buf.len());
                    buf[..n].copy_from_slice(&self.carry[self.at..self.at + n]);
                    self.at += n;
                    Ok(n)
                }
            }

            /// Buffered `Write` over a host writer (flushes in 256 KiB chunks).
            pub struct BlobWrite<'a> {
                out: &'a BlobWriter,
                buf: Vec<u8>,
            }
            impl<'a> BlobWrite<'a> {
                /// Write into `out`.
                pub fn new(out: &'a BlobWriter) -> Self {
                    Self { out, buf: Vec::with_capacity(256 * 1024) }
                }
                /// Copy `len` bytes of `src` at `offset` straight through the host (after flushing).
                pub fn copy_from(&mut self, src: &BlobReader, offset: u64, len: u64) -> io::Result<()> {
                    io::Write::flush(self)?;
                    self.out.copy_from(src, offset, len).map_err(to_io)
                }
                /// Bytes accepted so far, including buffered ones.
                pub fn position(&self) -> u64 {
                    self.out.position() + self.buf.len() as u64
                }
            }
            impl io::Write for BlobWrite<'_> {
                fn write(&mut self, data: &[u8]) -> io::Result<usize> {
                    self.buf.extend_from_slice(data);
                    if self.buf.len() >= 256 * 1024 {
                        self.flush()?;
                    }
                    Ok(data.len())
                }
                fn flush(&mut self) -> io::Result<()> {
                    if !self.buf.is_empty() {
                        self.out.write(&self.buf).map_err(to_io)?;
                        self.buf.clear();
                    }
                    Ok(())
                }
            }
            impl Drop for BlobWrite<'_> {
                fn drop(&mut self) {
                    let _ = io::Write::flush(self);
                }
            }
        }
    };
}

#[cfg(feature = "exporter")]
adapters!(exporter);
#[cfg(feature = "frontend")]
adapters!(frontend);
