//! `LayerWriter`: one pass over a layer tar that computes its diff_id, compresses it (block-parallel gzip, zstd or
//! none), and computes the compressed digest and size while writing to any `Write`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};
use sha2::{Digest as _, Sha256};

use kiln_core::{Compression, Digest};

/// Uncompressed bytes per gzip block. Fixed so that the output never depends on the number of threads.
pub const GZIP_BLOCK_SIZE: usize = 1 << 20;
/// Bytes of the previous block used as the deflate dictionary of the next one (the deflate window).
const DICT_SIZE: usize = 32 * 1024;

/// How a [`LayerWriter`] compresses.
#[derive(Debug, Clone)]
pub struct LayerWriterOptions {
    /// The compression to apply.
    pub compression: Compression,
    /// Compression level: gzip 0-9 (default 1, fastest), zstd 1-22 (default 3). `None` picks the default.
    pub level: Option<i32>,
    /// Compression threads (gzip and zstd); 0 picks the number of available cores (at most 8). The compressed
    /// bytes are identical for every thread count.
    pub threads: usize,
}

impl LayerWriterOptions {
    /// Options for `compression` with its default level and automatic threads.
    pub fn new(compression: Compression) -> Self {
        LayerWriterOptions {
            compression,
            level: None,
            threads: 0,
        }
    }
}

/// Digests and size of a finished layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar (the config's rootfs diff_id).
    pub diff_id: Digest,
    /// sha256 of the bytes written to the inner writer (the manifest's layer digest).
    pub digest: Digest,
    /// Number of bytes written to the inner writer.
    pub size: u64,
    /// Number of uncompressed tar bytes.
    pub uncompressed_size: u64,
    /// The compression used.
    pub compression: Compression,
    /// The OCI media type of the blob (`kiln_core::media_types::docker_layer_type` gives the Docker one).
    pub media_type: &'static str,
}

fn finish_digest(h: Sha256) -> Digest {
    Digest::from_bytes(h.finalize().into())
}

/// A writer that hashes and counts what passes through it (a plain tar is not hashed here: its
/// digest is its diff_id).
struct Counted<W: Write> {
    inner: W,
    hasher: Option<Sha256>,
    size: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Sink<W: Write> {
    Plain(Counted<W>),
    Zstd(zstd::stream::write::Encoder<'static, Counted<W>>),
    Gzip(Box<BlockGzip<Counted<W>>>),
}

/// Wraps a `Write` (a blob writer) and turns the uncompressed layer tar written into it into a compressed blob,
/// computing diff_id, digest and size in the same pass. Call [`LayerWriter::finish`] at the end.
pub struct LayerWriter<W: Write> {
    diff: Sha256,
    uncompressed: u64,
    compression: Compression,
    sink: Sink<W>,
}

impl<W: Write> LayerWriter<W> {
    /// A writer with `compression` at its default level and automatic threads.
    pub fn new(inner: W, compression: Compression) -> io::Result<Self> {
        Self::with_options(inner, &LayerWriterOptions::new(compression))
    }

    /// A writer configured by `opts`.
    pub fn with_options(inner: W, opts: &LayerWriterOptions) -> io::Result<Self> {
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8)
        } else {
            opts.threads
        };
        let counted = Counted {
            inner,
            hasher: (opts.compression != Compression::None).then(Sha256::new),
            size: 0,
        };
        let sink = match opts.compression {
            Compression::None => Sink::Plain(counted),
            Compression::Zstd => {
                let level = opts.level.unwrap_or(3);
                let mut enc = zstd::stream::write::Encoder::new(counted, level)?;
                // Always in worker mode (at least one worker) so the frame does not depend on the thread count.
                enc.multithread(threads as u32)?;
                // Fixed job and overlap sizes: zstd otherwise sizes jobs from the level and the
                // workers' progress, and the frame would depend on timing.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(4 << 20))?;
                enc.set_parameter(zstd::stream::raw::CParameter::OverlapSizeLog(6))?;
                Sink::Zstd(enc)
            }
            Compression::Gzip => {
                let level = opts.level.unwrap_or(1).clamp(0, 9) as u32;
                Sink::Gzip(Box::new(BlockGzip::new(counted, level, threads)))
            }
        };
        Ok(LayerWriter {
            diff: Sha256::new(),
            uncompressed: 0,
            compression: opts.compression,
            sink,
        })
    }

    /// Uncompressed bytes written so far.
    pub fn uncompressed_size(&self) -> u64 {
        self.uncompressed
    }

    /// Ends the compressed stream, flushes the inner writer and returns the digests; the inner writer is dropped.
    pub fn finish(self) -> io::Result<LayerDigests> {
        self.finish_into_inner().map(|(d, _)| d)
    }

    /// Like [`LayerWriter::finish`], and also hands back the inner writer (to commit a blob under its digest).
    pub fn finish_into_inner(self) -> io::Result<(LayerDigests, W)> {
        let mut counted = match self.sink {
            Sink::Plain(c) => c,
            Sink::Zstd(enc) => enc.finish()?,
            Sink::Gzip(g) => g.finish()?,
        };
        counted.flush()?;
        let diff_id = finish_digest(self.diff);
        let digests = LayerDigests {
            diff_id,
            digest: counted.hasher.map_or(diff_id, finish_digest),
            size: counted.size,
            uncompressed_size: self.uncompressed,
            compression: self.compression,
            media_type: kiln_core::media_types::oci_layer_type(self.compression),
        };
        Ok((digests, counted.inner))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Plain(c) => c.write_all(buf)?,
            Sink::Zstd(z) => z.write_all(buf)?,
            Sink::Gzip(g) => g.write_all(buf)?,
        }
        self.diff.update(buf);
        self.uncompressed += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Compressed output is flushed at block boundaries; flushing mid-block would change the bytes produced.
        Ok(())
    }
}

struct Job {
    seq: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    out: io::Result<Vec<u8>>,
    data: Vec<u8>,
}

/// gzip in independent 1 MiB blocks, each primed with the previous 32 KiB as dictionary and ended with a sync
/// flush (the last one with a final block), concatenated into one gzip member with the CRC-32 of the whole input.
/// The bytes depend only on the input and the level, never on the number of threads.
struct BlockGzip<W: Write> {
    out: W,
    level: u32,
    crc: flate2::Crc,
    cur: Vec<u8>,
    dict: Vec<u8>,
    next_seq: u64,
    next_out: u64,
    ready: BTreeMap<u64, Vec<u8>>,
    inflight: usize,
    max_inflight: usize,
    workers: Vec<(Sender<Job>, JoinHandle<()>)>,
    results: Option<Receiver<Done>>,
    inline: Option<Compress>,
    spare: Vec<Vec<u8>>,
    header_written: bool,
}

/// Bytes of each probe of [`incompressible`].
const PROBE: usize = 4096;

/// Whether deflate would gain nothing on `data` (already compressed or random content): three
/// samples, from its start, middle and end, each shrink by less than 2%. Deterministic, so the
/// output still depends only on the input.
fn incompressible(c: &mut Compress, data: &[u8]) -> io::Result<bool> {
    if data.len() < 4 * PROBE {
        return Ok(false);
    }
    let err = |e: flate2::CompressError| io::Error::other(format!("deflate: {e}"));
    let mid = data.len() / 2;
    let end = data.len() - PROBE;
    let mut out = Vec::with_capacity(2 * PROBE);
    for at in [0, mid, end] {
        c.reset();
        out.clear();
        c.compress_vec(&data[at..at + PROBE], &mut out, FlushCompress::Sync)
            .map_err(err)?;
        if out.len() * 100 < PROBE * 98 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `data` as stored (uncompressed) deflate blocks, byte-aligned as a sync flush leaves the
/// stream; with `last`, the final block of the stream.
fn stored_blocks(data: &[u8], last: bool) -> Vec<u8> {
    const MAX: usize = 65_535;
    let mut out = Vec::with_capacity(data.len() + data.len() / MAX * 5 + 10);
    let mut chunks = data.chunks(MAX).peekable();
    if chunks.peek().is_none() && last {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let fin = last && chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(fin as u8);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn compress_block(c: &mut Compress, dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let err = |e: flate2::CompressError| io::Error::other(format!("deflate: {e}"));
    // Random or already-compressed data: deflating costs most of a commit's time and saves
    // nothing, so the block is stored as it is (still one valid gzip stream).
    if incompressible(c, data)? {
        return Ok(stored_blocks(data, last));
    }
    c.reset();
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(err)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out: Vec<u8> = Vec::with_capacity(data.len() / 2 + 4096);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 16 * 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before = c.total_in();
        let status = c.compress_vec(input, &mut out, flush).map_err(err)?;
        input = &input[(c.total_in() - before) as usize..];
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is taken and the output buffer was not filled up.
            _ if !last && input.is_empty() && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

impl<W: Write> BlockGzip<W> {
    fn new(out: W, level: u32, threads: usize) -> Self {
        let mut g = BlockGzip {
            out,
            level,
            crc: flate2::Crc::new(),
            cur: Vec::with_capacity(GZIP_BLOCK_SIZE),
            dict: Vec::new(),
            next_seq: 0,
            next_out: 0,
            ready: BTreeMap::new(),
            inflight: 0,
            max_inflight: threads * 2,
            workers: Vec::new(),
            results: None,
            inline: None,
            spare: Vec::new(),
            header_written: false,
        };
        if threads <= 1 {
            g.inline = Some(Compress::new(flate2::Compression::new(level), false));
        } else {
            let (done_tx, done_rx) = mpsc::channel::<Done>();
            for i in 0..threads {
                let (job_tx, job_rx) = mpsc::channel::<Job>();
                let done_tx = done_tx.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("kiln-gzip-{i}"))
                    .spawn(move || {
                        let mut c = Compress::new(flate2::Compression::new(level), false);
                        while let Ok(job) = job_rx.recv() {
                            let out = compress_block(&mut c, &job.dict, &job.data, job.last);
                            if done_tx
                                .send(Done {
                                    seq: job.seq,
                                    out,
                                    data: job.data,
                                })
                                .is_err()
                            {
                                break;
                            }
                        }
                    })
                    .expect("spawn gzip worker thread");
                g.workers.push((job_tx, handle));
            }
            g.results = Some(done_rx);
        }
        g
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            let xfl = match self.level {
                1 => 4,
                9 => 2,
                _ => 0,
            };
            // Magic, deflate, no flags, mtime 0, extra flags, OS unknown.
            self.out
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        self.write_header()?;
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK_SIZE));
        let data = std::mem::replace(&mut self.cur, fresh);
        self.crc.update(&data);
        let dict = std::mem::replace(
            &mut self.dict,
            data[data.len().saturating_sub(DICT_SIZE)..].to_vec(),
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(c) = self.inline.as_mut() {
            let out = compress_block(c, &dict, &data, last)?;
            self.out.write_all(&out)?;
            self.next_out += 1;
            let mut data = data;
            data.clear();
            self.spare.push(data);
            return Ok(());
        }
        while self.inflight >= self.max_inflight {
            self.collect(true)?;
        }
        let idx = (seq % self.workers.len() as u64) as usize;
        self.workers[idx]
            .0
            .send(Job {
                seq,
                dict,
                data,
                last,
            })
            .map_err(|_| io::Error::other("gzip worker thread stopped"))?;
        self.inflight += 1;
        self.collect(false)
    }

    /// Takes finished blocks off the result channel (waiting for one if `block`) and writes those next in order.
    fn collect(&mut self, block: bool) -> io::Result<()> {
        let rx = self.results.as_ref().expect("threaded mode");
        let mut got = Vec::new();
        if block {
            got.push(
                rx.recv()
                    .map_err(|_| io::Error::other("gzip worker thread stopped"))?,
            );
        }
        while let Ok(d) = rx.try_recv() {
            got.push(d);
        }
        for d in got {
            let mut data = d.data;
            data.clear();
            if self.spare.len() < self.max_inflight {
                self.spare.push(data);
            }
            self.ready.insert(d.seq, d.out?);
        }
        while let Some(out) = self.ready.remove(&self.next_out) {
            self.out.write_all(&out)?;
            self.next_out += 1;
            self.inflight -= 1;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.next_out < self.next_seq {
            self.collect(true)?;
        }
        let crc = self.crc.sum();
        let isize = self.crc.amount();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&isize.to_le_bytes())?;
        for (tx, handle) in std::mem::take(&mut self.workers) {
            drop(tx);
            let _ = handle.join();
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for BlockGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = (GZIP_BLOCK_SIZE - self.cur.len()).min(rest.len());
            self.cur.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.cur.len() == GZIP_BLOCK_SIZE {
                self.dispatch(false)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let words = [
            &b"layer "[..],
            b"kiln ",
            b"tar ",
            b"\n",
            b"usr/lib/",
            b"0000",
        ];
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(5) {
                v.push((x >> 24) as u8);
            } else {
                v.extend_from_slice(words[(x % words.len() as u64) as usize]);
            }
        }
        v.truncate(len);
        v
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_is_valid_and_thread_independent() {
        for len in [
            0,
            1,
            1000,
            GZIP_BLOCK_SIZE,
            GZIP_BLOCK_SIZE + 7,
            3 * GZIP_BLOCK_SIZE + 12345,
        ] {
            let data = sample(len);
            let mut outs = Vec::new();
            for threads in [1, 2, 3] {
                let opts = LayerWriterOptions {
                    compression: Compression::Gzip,
                    level: None,
                    threads,
                };
                let mut w = LayerWriter::with_options(Vec::new(), &opts).unwrap();
                for chunk in data.chunks(70_001) {
                    w.write_all(chunk).unwrap();
                }
                let (d, blob) = w.finish_into_inner().unwrap();
                assert_eq!(gunzip(&blob), data, "len {len} threads {threads}");
                assert_eq!(d.size, blob.len() as u64);
                assert_eq!(d.uncompressed_size, len as u64);
                assert_eq!(
                    d.diff_id.to_string(),
                    format!("sha256:{}", hex::encode(Sha256::digest(&data)))
                );
                assert_eq!(
                    d.digest.to_string(),
                    format!("sha256:{}", hex::encode(Sha256::digest(&blob)))
                );
                assert_eq!(d.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
                outs.push(blob);
            }
            assert!(
                outs.windows(2).all(|w| w[0] == w[1]),
                "len {len}: output differs between thread counts"
            );
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_and_still_gzip() {
        // Random bytes, then text, then random again: stored and deflated blocks in one stream.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |n: usize| {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect::<Vec<u8>>()
        };
        let mut data = random(2 * GZIP_BLOCK_SIZE + 100);
        data.extend(sample(GZIP_BLOCK_SIZE));
        data.extend(random(GZIP_BLOCK_SIZE / 2));
        let mut outs = Vec::new();
        for threads in [1, 2] {
            let opts = LayerWriterOptions {
                compression: Compression::Gzip,
                level: None,
                threads,
            };
            let mut w = LayerWriter::with_options(Vec::new(), &opts).unwrap();
            w.write_all(&data).unwrap();
            let (d, blob) = w.finish_into_inner().unwrap();
            assert_eq!(gunzip(&blob), data);
            assert_eq!(
                d.digest.to_string(),
                format!("sha256:{}", hex::encode(Sha256::digest(&blob)))
            );
            outs.push(blob);
        }
        assert_eq!(outs[0], outs[1], "output differs between thread counts");
        // The random parts cost their size plus framing; the text part still shrinks.
        let random_len = 2 * GZIP_BLOCK_SIZE + 100 + GZIP_BLOCK_SIZE / 2;
        assert!(outs[0].len() < random_len + GZIP_BLOCK_SIZE / 2, "{}", outs[0].len());
        assert!(outs[0].len() > random_len);
        // The probe tells the two kinds apart.
        let mut c = Compress::new(flate2::Compression::new(1), false);
        assert!(incompressible(&mut c, &data[..GZIP_BLOCK_SIZE]).unwrap());
        assert!(!incompressible(&mut c, &sample(GZIP_BLOCK_SIZE)).unwrap());
        // A stored block by itself, final or not, is a valid stream.
        assert_eq!(stored_blocks(&[], true), vec![1, 0, 0, 0xff, 0xff]);
        let stored = stored_blocks(b"abc", true);
        let mut d = flate2::read::DeflateDecoder::new(&stored[..]);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
    }

    #[test]
    fn zstd_is_thread_independent() {
        // Several zstd jobs' worth of input.
        let data = sample(24 << 20);
        let mut outs = Vec::new();
        for threads in [1, 2, 3] {
            let opts = LayerWriterOptions {
                compression: Compression::Zstd,
                level: Some(1),
                threads,
            };
            let mut w = LayerWriter::with_options(Vec::new(), &opts).unwrap();
            for chunk in data.chunks(1 << 20) {
                w.write_all(chunk).unwrap();
            }
            let (_, blob) = w.finish_into_inner().unwrap();
            outs.push(blob);
        }
        assert!(
            outs.windows(2).all(|w| w[0] == w[1]),
            "zstd output differs between thread counts"
        );
        assert_eq!(zstd::decode_all(&outs[0][..]).unwrap(), data);
    }

    #[test]
    fn zstd_and_plain_digests() {
        let data = sample(500_000);
        let mut w = LayerWriter::new(Vec::new(), Compression::Zstd).unwrap();
        w.write_all(&data).unwrap();
        let (d, blob) = w.finish_into_inner().unwrap();
        assert_eq!(zstd::decode_all(&blob[..]).unwrap(), data);
        assert!(d.size < data.len() as u64);
        assert_eq!(d.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");

        let mut w = LayerWriter::new(Vec::new(), Compression::None).unwrap();
        w.write_all(&data).unwrap();
        let (d, blob) = w.finish_into_inner().unwrap();
        assert_eq!(blob, data);
        assert_eq!(d.diff_id, d.digest);
    }
}
