//! Searching files for bytes that must not be there: every regular file under a directory, as
//! stored and, when it is gzip or zstd, decompressed (streamed, across read boundaries).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A named byte string that must not leave the build.
#[derive(Clone)]
pub struct Needle {
    /// What the needle is, as hits name it.
    pub name: String,
    /// The bytes looked for.
    pub bytes: Vec<u8>,
}

/// A [`Needle`] named `name`.
pub fn needle(name: &str, bytes: impl Into<Vec<u8>>) -> Needle {
    Needle {
        name: name.to_string(),
        bytes: bytes.into(),
    }
}

/// Names of the needles `r` contains (searched across read boundaries).
pub fn stream_hits(mut r: impl Read, needles: &[Needle]) -> std::io::Result<Vec<String>> {
    let keep = needles.iter().map(|n| n.bytes.len()).max().unwrap_or(1) - 1;
    let mut hits: Vec<String> = Vec::new();
    let mut window: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hits);
        }
        window.extend_from_slice(&buf[..n]);
        for nd in needles {
            if !hits.contains(&nd.name)
                && window
                    .windows(nd.bytes.len())
                    .any(|w| w == nd.bytes.as_slice())
            {
                hits.push(nd.name.clone());
            }
        }
        let drop = window.len().saturating_sub(keep);
        window.drain(..drop);
    }
}

/// One finding: which needle, in which file, and whether it was seen after decompression.
#[derive(Debug, PartialEq, Eq)]
pub struct Hit {
    /// The needle's name.
    pub needle: String,
    /// The file it was found in.
    pub path: PathBuf,
    /// Whether it was found in the gunzipped/unzstded content of the file.
    pub decompressed: bool,
}

/// Every regular file under `root`, as stored and, when it is gzip or zstd, decompressed.
/// Returns the findings and the number of files read.
pub fn traces(root: &Path, needles: &[Needle]) -> (Vec<Hit>, usize) {
    let mut hits = Vec::new();
    let mut files = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            files += 1;
            let open = || {
                std::io::BufReader::new(
                    std::fs::File::open(&p)
                        .unwrap_or_else(|e| panic!("opening {}: {e}", p.display())),
                )
            };
            let mut magic = [0u8; 4];
            let n = open().read(&mut magic).unwrap_or(0);
            let decompressed = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
                stream_hits(flate2::read::MultiGzDecoder::new(open()), needles)
                    .unwrap_or_else(|e| panic!("gunzipping {}: {e}", p.display()))
            } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
                let mut child = Command::new("zstd")
                    .args(["-dcq", "--"])
                    .arg(&p)
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("running zstd -dc");
                let r = stream_hits(child.stdout.take().unwrap(), needles)
                    .unwrap_or_else(|e| panic!("unzstd {}: {e}", p.display()));
                assert!(
                    child.wait().unwrap().success(),
                    "zstd -dc {} failed",
                    p.display()
                );
                r
            } else {
                Vec::new()
            };
            for name in decompressed {
                hits.push(Hit {
                    needle: name,
                    path: p.clone(),
                    decompressed: true,
                });
            }
            for name in stream_hits(open(), needles)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            {
                hits.push(Hit {
                    needle: name,
                    path: p.clone(),
                    decompressed: false,
                });
            }
        }
    }
    (hits, files)
}

/// The needle names of `hits`, sorted, each once.
pub fn names(hits: &[Hit]) -> Vec<&str> {
    let mut v: Vec<&str> = hits.iter().map(|h| h.needle.as_str()).collect();
    v.sort();
    v.dedup();
    v
}
