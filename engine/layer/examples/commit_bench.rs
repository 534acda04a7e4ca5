//! Benchmark of committing an upper directory: diff → tar → hash + compress, printing MB/s and peak RSS.
//!
//! `cargo run --release -p kiln-layer --example commit_bench -- [--size-mib 1024] [--compression gzip|zstd|none]
//! [--threads N] [--level N] [--dir PATH] [--keep] [--upper EXISTING-DIR]`
//!
//! The upper is made by copying real files from `--source` (default `/usr`: binaries, libraries, text, as in a
//! rootfs) into a fresh directory under `--dir` (default: the system temp dir) until it holds `--size-mib`; it is
//! served from the page cache while timing. `--upper` reuses an existing directory instead.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_layer::{Compression, DiffOptions, LayerWriter, LayerWriterOptions, diff_overlay_upper};

struct Args {
    size_mib: u64,
    compression: Compression,
    threads: usize,
    level: Option<i32>,
    dir: PathBuf,
    upper: Option<PathBuf>,
    source: PathBuf,
    keep: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        size_mib: 1024,
        compression: Compression::Gzip,
        threads: 0,
        level: None,
        dir: std::env::temp_dir(),
        upper: None,
        source: PathBuf::from("/usr"),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--size-mib" => a.size_mib = val().parse().expect("--size-mib N"),
            "--threads" => a.threads = val().parse().expect("--threads N"),
            "--level" => a.level = Some(val().parse().expect("--level N")),
            "--dir" => a.dir = PathBuf::from(val()),
            "--keep" => a.keep = true,
            "--upper" => a.upper = Some(PathBuf::from(val())),
            "--source" => a.source = PathBuf::from(val()),
            "--compression" => {
                a.compression = match val().as_str() {
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    "none" => Compression::None,
                    other => panic!("unknown compression {other}"),
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Copies regular files from `source` (recursively, in a stable order) into `root` until `total` bytes, going
/// around again under a new prefix if `source` holds less.
fn generate(source: &Path, root: &Path, total: u64) -> io::Result<(u64, u64)> {
    let mut list = Vec::new();
    collect(source, &mut list)?;
    list.sort();
    if list.is_empty() {
        return Err(io::Error::other(format!(
            "no regular files under {}",
            source.display()
        )));
    }
    let (mut written, mut files) = (0u64, 0u64);
    let mut round = 0;
    'outer: loop {
        for (path, size) in &list {
            if written >= total {
                break 'outer;
            }
            let rel = path.strip_prefix(source).unwrap();
            let dest = root.join(format!("r{round}")).join(rel);
            fs::create_dir_all(dest.parent().unwrap())?;
            if fs::copy(path, &dest).is_ok() {
                written += size;
                files += 1;
            }
        }
        round += 1;
    }
    Ok((written, files))
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> io::Result<()> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        if md.is_dir() {
            collect(&e.path(), out)?;
        } else if md.is_file() && md.len() < (64 << 20) {
            out.push((e.path(), md.len()));
        }
    }
    Ok(())
}

fn peak_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Counts and discards, standing in for the store's blob writer.
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let generated = args.upper.is_none();
    let upper = match &args.upper {
        Some(u) => u.clone(),
        None => {
            let upper = args
                .dir
                .join(format!("kiln-commit-bench-{}", std::process::id()));
            fs::create_dir_all(&upper)?;
            let t0 = Instant::now();
            let (bytes, files) = generate(&args.source, &upper, args.size_mib << 20)?;
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "generated {files} files, {} MiB in {secs:.1}s at {}",
                bytes >> 20,
                upper.display()
            );
            upper
        }
    };

    let opts = LayerWriterOptions {
        compression: args.compression,
        level: args.level,
        threads: args.threads,
    };
    let rss_before = peak_rss_kib();
    let t1 = Instant::now();
    let mut writer = LayerWriter::with_options(Sink(0), &opts)?;
    let stats = diff_overlay_upper(&upper, &[], &DiffOptions::default(), &mut writer)?;
    let digests = writer.finish()?;
    let secs = t1.elapsed().as_secs_f64();
    let mb = digests.uncompressed_size as f64 / 1e6;
    println!(
        "commit: {} entries, tar {:.0} MB -> {:?} {:.0} MB ({:.1}%) in {:.2}s: {:.0} MB/s (uncompressed tar)",
        stats.entries,
        mb,
        digests.compression,
        digests.size as f64 / 1e6,
        100.0 * digests.size as f64 / digests.uncompressed_size as f64,
        secs,
        mb / secs
    );
    println!("diff_id {}\ndigest  {}", digests.diff_id, digests.digest);
    println!(
        "peak RSS: {} MiB (before commit {} MiB)",
        peak_rss_kib() / 1024,
        rss_before / 1024
    );
    if generated && !args.keep {
        fs::remove_dir_all(&upper)?;
    }
    Ok(())
}
