//! Writing a large file with direct I/O: full 4 MiB chunks go from aligned buffers straight to
//! the device (`O_DIRECT`) on a writer thread while the caller fills the next chunk; the
//! unaligned tail goes through the page cache. A file that stays under one chunk, or a filesystem
//! that refuses direct I/O, is written the ordinary way.

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Alignment of buffer addresses, file offsets and lengths for direct I/O.
const ALIGN: usize = 4096;
/// Bytes per direct write.
const CHUNK: usize = 4 << 20;

/// A chunk buffer whose data starts at an `ALIGN`-aligned address.
struct Chunk {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Chunk {
    fn new() -> Self {
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Chunk { buf, start, len: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// The file and how it is being written; owned by the writer thread once there is one.
struct Sink {
    file: File,
    /// Whether `O_DIRECT` is set on `file`.
    direct: bool,
    /// Set when direct I/O failed or left the file offset unaligned: the rest goes buffered.
    buffered_only: bool,
}

impl Sink {
    /// Turn `O_DIRECT` on or off; `false` if the filesystem refuses it.
    fn set_direct(&mut self, on: bool) -> bool {
        let Ok(bits) = fcntl(&self.file, FcntlArg::F_GETFL) else {
            return false;
        };
        let mut flags = OFlag::from_bits_truncate(bits);
        flags.set(OFlag::O_DIRECT, on);
        let ok = fcntl(&self.file, FcntlArg::F_SETFL(flags)).is_ok();
        if ok {
            self.direct = on;
        }
        ok
    }

    fn fall_back(&mut self) -> io::Result<()> {
        self.buffered_only = true;
        if self.direct && !self.set_direct(false) {
            return Err(io::Error::other("cannot turn off direct I/O"));
        }
        Ok(())
    }

    /// Write `data`: directly if it is a whole number of aligned blocks and direct I/O works.
    fn write_out(&mut self, data: &[u8]) -> io::Result<()> {
        let want_direct = data.len().is_multiple_of(ALIGN) && !self.buffered_only;
        if want_direct && !self.direct && !self.set_direct(true) {
            self.buffered_only = true;
        }
        if !want_direct && self.direct {
            self.fall_back()?;
        }
        let mut done = 0;
        while done < data.len() {
            match self.file.write(&data[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    done += k;
                    // A short direct write leaves the offset unaligned: finish without it.
                    if self.direct && !k.is_multiple_of(ALIGN) {
                        self.fall_back()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.fall_back()?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The writer thread of a file that reached one chunk.
struct Background {
    full: SyncSender<Chunk>,
    empty: Receiver<Chunk>,
    thread: JoinHandle<io::Result<Sink>>,
}

/// A write-only file that goes to direct I/O once it has a full chunk to write.
pub(crate) struct DirectFile {
    /// Until the first full chunk: the file, written by the caller's thread.
    sink: Option<Sink>,
    background: Option<Background>,
    cur: Chunk,
}

impl DirectFile {
    /// Write into `file` (opened for writing, at offset 0).
    pub(crate) fn new(file: File) -> Self {
        DirectFile {
            sink: Some(Sink {
                file,
                direct: false,
                buffered_only: false,
            }),
            background: None,
            cur: Chunk::new(),
        }
    }

    /// Hand the full current chunk to the writer thread (started on the first one) and take an
    /// empty one back.
    fn send_full(&mut self) -> io::Result<()> {
        if self.background.is_none() {
            let mut sink = self
                .sink
                .take()
                .expect("a file without a writer thread has its sink");
            // Two chunks in flight at most: one being written, one waiting.
            let (full_tx, full_rx) = sync_channel::<Chunk>(1);
            let (empty_tx, empty_rx) = sync_channel::<Chunk>(2);
            let _ = empty_tx.send(Chunk::new());
            let thread = std::thread::Builder::new()
                .name("blob-writer".into())
                .spawn(move || {
                    for mut chunk in full_rx {
                        sink.write_out(chunk.data())?;
                        chunk.len = 0;
                        let _ = empty_tx.send(chunk);
                    }
                    Ok(sink)
                })?;
            self.background = Some(Background {
                full: full_tx,
                empty: empty_rx,
                thread,
            });
        }
        let bg = self.background.as_ref().expect("started above");
        let next = match bg.empty.recv() {
            Ok(c) => c,
            // The writer stopped: its error is what `finish` reports; say so now.
            Err(_) => return Err(self.stop_writer().err().unwrap_or_else(writer_gone)),
        };
        let full = std::mem::replace(&mut self.cur, next);
        if bg.full.send(full).is_err() {
            return Err(self.stop_writer().err().unwrap_or_else(writer_gone));
        }
        Ok(())
    }

    /// Wait for the writer thread to write what it has and take the file back.
    fn stop_writer(&mut self) -> io::Result<Sink> {
        match self.background.take() {
            None => Ok(self
                .sink
                .take()
                .expect("a file without a writer thread has its sink")),
            Some(bg) => {
                drop(bg.full);
                bg.thread
                    .join()
                    .map_err(|_| io::Error::other("the blob writer thread panicked"))?
            }
        }
    }

    /// Write what is buffered and hand back the file (not synced).
    pub(crate) fn finish(mut self) -> io::Result<File> {
        let small = self.background.is_none();
        let mut sink = self.stop_writer()?;
        // A file under one chunk is not worth a synchronous trip to the device.
        sink.buffered_only |= small;
        let data = self.cur.data();
        let aligned = if sink.direct {
            data.len() / ALIGN * ALIGN
        } else {
            0
        };
        if aligned > 0 {
            sink.write_out(&data[..aligned])?;
        }
        if aligned < data.len() {
            sink.write_out(&data[aligned..])?;
        }
        if sink.direct {
            sink.fall_back()?;
        }
        Ok(sink.file)
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the blob writer thread stopped")
}

impl Write for DirectFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.cur.len == CHUNK {
            self.send_full()?;
        }
        let n = data.len().min(CHUNK - self.cur.len);
        let at = self.cur.start + self.cur.len;
        self.cur.buf[at..at + n].copy_from_slice(&data[..n]);
        self.cur.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Buffered bytes are written in whole chunks or by `finish`.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn what_is_written_is_what_the_file_holds_at_every_size() {
        let dir = tempfile::tempdir().unwrap();
        for size in [
            0,
            1,
            ALIGN - 1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 12345,
        ] {
            let data = pattern(size);
            let path = dir.path().join(format!("f{size}"));
            let mut w = DirectFile::new(File::create(&path).unwrap());
            // Odd write sizes, as a tar stream makes them.
            for piece in data.chunks(10_007) {
                w.write_all(piece).unwrap();
            }
            drop(w.finish().unwrap());
            let mut back = Vec::new();
            File::open(&path).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), size, "size {size}");
            assert!(back == data, "content of a {size}-byte file");
        }
    }
}
