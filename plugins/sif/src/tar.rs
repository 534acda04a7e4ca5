//! A streaming tar reader for image layers: ustar, PAX (local and global headers) and GNU long
//! names/links; octal and base-256 numbers. File data is read through [`TarReader::read_data`]
//! and whatever the caller leaves unread is skipped before the next header.

use crate::error::{Error, Result};
use std::io::Read;

const BLOCK: usize = 512;

/// The type of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (also contiguous files).
    File,
    /// A hard link to `link`.
    Hardlink,
    /// A symbolic link to `link`.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A directory.
    Dir,
    /// A named pipe.
    Fifo,
}

/// One entry's header, with PAX and GNU extensions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The path as stored (not normalized).
    pub path: Vec<u8>,
    /// Entry type.
    pub kind: Kind,
    /// Mode bits (permissions plus setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Bytes of data that follow (0 for anything but files).
    pub size: u64,
    /// Link target for hard and symbolic links.
    pub link: Vec<u8>,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Extended attributes present in PAX records (not kept).
    pub xattrs: usize,
    /// Offset of the header in the stream.
    pub offset: u64,
}

#[derive(Debug, Clone, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: usize,
}

impl Pax {
    fn merge_from(&mut self, o: &Pax) {
        if o.path.is_some() {
            self.path = o.path.clone();
        }
        if o.link.is_some() {
            self.link = o.link.clone();
        }
        self.size = o.size.or(self.size);
        self.uid = o.uid.or(self.uid);
        self.gid = o.gid.or(self.gid);
        self.mtime = o.mtime.or(self.mtime);
        self.xattrs += o.xattrs;
    }
}

/// Reads tar entries from a stream.
pub struct TarReader<R: Read> {
    r: R,
    pos: u64,
    /// Data bytes of the current entry not read yet.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    global: Pax,
    done: bool,
}

impl<R: Read> TarReader<R> {
    /// Read tar entries from `r`.
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            remaining: 0,
            padding: 0,
            global: Pax::default(),
            done: false,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("reading tar at offset {}", self.pos + got as u64), e)),
            }
        }
        self.pos += got as u64;
        Ok(got)
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.fill(&mut buf[..want])?;
            if got < want {
                return Err(Error::InvalidInput(format!(
                    "tar stream ends inside an entry at offset {}",
                    self.pos
                )));
            }
            n -= got as u64;
        }
        Ok(())
    }

    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>> {
        let mut b = [0u8; BLOCK];
        match self.fill(&mut b)? {
            0 => Ok(None),
            BLOCK => Ok(Some(b)),
            n => Err(Error::InvalidInput(format!(
                "tar stream ends inside a header at offset {}",
                self.pos - n as u64
            ))),
        }
    }

    /// Read a whole (small) extension payload of `size` bytes.
    fn read_payload(&mut self, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > 16 << 20 {
            return Err(Error::InvalidInput(format!(
                "tar {what} of {size} bytes at offset {} is too large",
                self.pos
            )));
        }
        let mut v = vec![0u8; size as usize];
        if self.fill(&mut v)? != v.len() {
            return Err(Error::InvalidInput(format!(
                "tar stream ends inside a {what} at offset {}",
                self.pos
            )));
        }
        self.skip(pad(size))?;
        Ok(v)
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Header>> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut local = Pax::default();
        let mut gnu_name: Option<Vec<u8>> = None;
        let mut gnu_link: Option<Vec<u8>> = None;
        loop {
            let offset = self.pos;
            let Some(b) = self.read_block()? else {
                self.done = true;
                return Ok(None);
            };
            if b.iter().all(|&x| x == 0) {
                self.done = true;
                return Ok(None);
            }
            verify_checksum(&b, offset)?;
            let typeflag = b[156];
            let size = number(&b[124..136]).map_err(|e| e.context(format!("tar header at offset {offset}: size")))?;
            match typeflag {
                b'x' | b'g' => {
                    let data = self.read_payload(size, "PAX header")?;
                    let pax = parse_pax(&data).map_err(|e| e.context(format!("tar PAX header at offset {offset}")))?;
                    if typeflag == b'g' {
                        self.global.merge_from(&pax);
                    } else {
                        local.merge_from(&pax);
                    }
                    continue;
                }
                b'L' => {
                    gnu_name = Some(trim_nul(&self.read_payload(size, "GNU long name")?).to_vec());
                    continue;
                }
                b'K' => {
                    gnu_link = Some(trim_nul(&self.read_payload(size, "GNU long link")?).to_vec());
                    continue;
                }
                _ => {}
            }
            let ustar = &b[257..263] == b"ustar\0";
            let mut path = cstr(&b[0..100]).to_vec();
            if ustar && b[345] != 0 {
                let mut p = cstr(&b[345..500]).to_vec();
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
            let mut pax = self.global.clone();
            pax.merge_from(&local);
            if let Some(n) = gnu_name {
                path = n;
            }
            if let Some(p) = pax.path.take() {
                path = p;
            }
            let mut link = cstr(&b[157..257]).to_vec();
            if let Some(l) = gnu_link {
                link = l;
            }
            if let Some(l) = pax.link.take() {
                link = l;
            }
            let ctx = |field: &str| format!("tar entry {:?} at offset {offset}: {field}", String::from_utf8_lossy(&path));
            let kind = match typeflag {
                b'0' | 0 | b'7' => {
                    if path.ends_with(b"/") {
                        Kind::Dir
                    } else {
                        Kind::File
                    }
                }
                b'1' => Kind::Hardlink,
                b'2' => Kind::Symlink,
                b'3' => Kind::CharDevice,
                b'4' => Kind::BlockDevice,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                b'S' => return Err(Error::Unsupported(format!("{}: GNU sparse files are not supported", ctx("type")))),
                other => {
                    return Err(Error::Unsupported(format!(
                        "{}: unknown entry type {:?}",
                        ctx("type"),
                        other as char
                    )));
                }
            };
            let size = pax.size.unwrap_or(size);
            let mode = number(&b[100..108]).map_err(|e| e.context(ctx("mode")))? as u32 & 0o7777;
            let uid = match pax.uid {
                Some(u) => u,
                None => number(&b[108..116]).map_err(|e| e.context(ctx("uid")))?,
            };
            let gid = match pax.gid {
                Some(g) => g,
                None => number(&b[116..124]).map_err(|e| e.context(ctx("gid")))?,
            };
            let mtime = match pax.mtime {
                Some(t) => t,
                None => signed_number(&b[136..148]).map_err(|e| e.context(ctx("mtime")))?,
            };
            let (dev_major, dev_minor) = if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
                (
                    number(&b[329..337]).map_err(|e| e.context(ctx("devmajor")))? as u32,
                    number(&b[337..345]).map_err(|e| e.context(ctx("devminor")))? as u32,
                )
            } else {
                (0, 0)
            };
            // Only regular files carry data; other types' size fields are skipped all the same.
            self.remaining = size;
            self.padding = pad(size);
            let data_size = if kind == Kind::File { size } else { 0 };
            return Ok(Some(Header {
                path,
                kind,
                mode,
                uid,
                gid,
                mtime,
                size: data_size,
                link,
                dev_major,
                dev_minor,
                xattrs: pax.xattrs,
                offset,
            }));
        }
    }

    /// Read data of the current entry; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = (buf.len() as u64).min(self.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        let got = self.fill(&mut buf[..want])?;
        if got == 0 {
            return Err(Error::InvalidInput(format!(
                "tar stream ends inside file data at offset {}",
                self.pos
            )));
        }
        self.remaining -= got as u64;
        Ok(got)
    }

    /// Fill `buf` completely with data of the current entry.
    pub fn read_data_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut at = 0;
        while at < buf.len() {
            let n = self.read_data(&mut buf[at..])?;
            if n == 0 {
                return Err(Error::InvalidInput(format!("tar entry data ends early at offset {}", self.pos)));
            }
            at += n;
        }
        Ok(())
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

fn trim_nul(b: &[u8]) -> &[u8] {
    cstr(b)
}

fn verify_checksum(b: &[u8; BLOCK], offset: u64) -> Result<()> {
    let stored = number(&b[148..156]).map_err(|e| e.context(format!("tar header at offset {offset}: checksum")))?;
    let unsigned: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &c)| if (148..156).contains(&i) { 32 } else { c as u64 })
        .sum();
    let signed: i64 = b
        .iter()
        .enumerate()
        .map(|(i, &c)| if (148..156).contains(&i) { 32 } else { c as i8 as i64 })
        .sum();
    if stored != unsigned && stored as i64 != signed {
        return Err(Error::InvalidInput(format!(
            "tar header at offset {offset} has a bad checksum (not a tar stream?)"
        )));
    }
    Ok(())
}

/// An unsigned numeric field: octal text (spaces/NULs around it) or GNU base-256.
fn number(field: &[u8]) -> Result<u64> {
    let v = signed_number(field)?;
    u64::try_from(v).map_err(|_| Error::InvalidInput(format!("negative number {v}")))
}

fn signed_number(field: &[u8]) -> Result<i64> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        // Base-256: big-endian two's complement with the marker bit.
        let negative = first & 0x40 != 0;
        let mut v: i128 = if negative { -1 } else { 0 };
        for (i, &c) in field.iter().enumerate() {
            let c = if i == 0 { if negative { c | 0x80 } else { c & 0x7f } } else { c };
            v = (v << 8) | c as i128;
        }
        return i64::try_from(v).map_err(|_| Error::InvalidInput("base-256 number out of range".into()));
    }
    let text = cstr(field);
    let s = std::str::from_utf8(text)
        .map_err(|_| Error::InvalidInput("number is not text".into()))?
        .trim_matches(|c| c == ' ' || c == '\0');
    if s.is_empty() {
        return Ok(0);
    }
    i64::from_str_radix(s, 8).map_err(|_| Error::InvalidInput(format!("{s:?} is not an octal number")))
}

fn parse_pax(data: &[u8]) -> Result<Pax> {
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&c| c == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| Error::InvalidInput("record without a length".into()))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::InvalidInput("bad record length".into()))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(Error::InvalidInput("bad record length".into()));
        }
        let record = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = record
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| Error::InvalidInput("record without '='".into()))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let text = || std::str::from_utf8(value).map_err(|_| Error::InvalidInput(format!("{} is not text", String::from_utf8_lossy(key))));
        let int = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| Error::InvalidInput(format!("{} {s:?} is not a number", String::from_utf8_lossy(key))))
        };
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.link = Some(value.to_vec()),
            b"size" => pax.size = Some(int(text()?)?),
            b"uid" => pax.uid = Some(int(text()?)?),
            b"gid" => pax.gid = Some(int(text()?)?),
            b"mtime" => {
                let t = text()?;
                let whole = t.split('.').next().unwrap_or("");
                let v: i64 = whole
                    .parse()
                    .map_err(|_| Error::InvalidInput(format!("mtime {t:?} is not a number")))?;
                // "-1.5" means 1.5 s before the epoch: round toward negative infinity.
                let frac_nonzero = t.split('.').nth(1).is_some_and(|f| f.bytes().any(|c| c != b'0'));
                pax.mtime = Some(if v <= 0 && t.starts_with('-') && frac_nonzero { v - 1 } else { v });
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(Error::Unsupported("GNU sparse files are not supported".into()));
            }
            k if k.starts_with(b"SCHILY.xattr.") || k.starts_with(b"LIBARCHIVE.xattr.") => pax.xattrs += 1,
            _ => {}
        }
    }
    Ok(pax)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut r = TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(h) = r.next_entry().unwrap() {
            let mut data = vec![0u8; h.size as usize];
            r.read_data_exact(&mut data).unwrap();
            out.push((h, data));
        }
        out
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h
    }

    #[test]
    fn reads_gnu_long_names_links_and_devices() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(100));
        let target = format!("{}/target", "t".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Regular, 5);
        h.set_uid(1234);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut h = header(tar::EntryType::Symlink, 0);
        b.append_link(&mut h, "lnk", &target).unwrap();
        let mut h = header(tar::EntryType::Block, 0);
        h.set_device_major(8).unwrap();
        h.set_device_minor(17).unwrap();
        b.append_data(&mut h, "dev/sdb1", &b""[..]).unwrap();
        let mut h = header(tar::EntryType::Directory, 0);
        h.set_mode(0o1777);
        b.append_data(&mut h, "tmp/", &b""[..]).unwrap();
        let mut h = header(tar::EntryType::Link, 0);
        b.append_link(&mut h, "hard", &long).unwrap();
        let bytes = b.into_inner().unwrap();
        let e = entries(&bytes);
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].0.path, long.as_bytes());
        assert_eq!(
            (e[0].0.uid, e[0].0.mtime, e[0].0.mode, &e[0].1[..]),
            (1234, 1_600_000_000, 0o644, &b"hello"[..])
        );
        assert_eq!((e[1].0.kind, &e[1].0.link[..]), (Kind::Symlink, target.as_bytes()));
        assert_eq!((e[2].0.kind, e[2].0.dev_major, e[2].0.dev_minor), (Kind::BlockDevice, 8, 17));
        assert_eq!((e[3].0.kind, e[3].0.mode), (Kind::Dir, 0o1777));
        assert_eq!((e[4].0.kind, &e[4].0.link[..]), (Kind::Hardlink, long.as_bytes()));
    }

    fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
        let body_len = key.len() + value.len() + 3;
        let mut len = body_len + 1;
        while format!("{len}").len() + body_len != len {
            len += 1;
        }
        let mut r = format!("{len} {key}=").into_bytes();
        r.extend_from_slice(value);
        r.push(b'\n');
        r
    }

    #[test]
    fn reads_pax_overrides_and_ustar_prefix() {
        let mut b = tar::Builder::new(Vec::new());
        let mut records = Vec::new();
        let long = "p/".repeat(120) + "file";
        records.extend(pax_record("path", long.as_bytes()));
        records.extend(pax_record("mtime", b"1700000000.75"));
        records.extend(pax_record("uid", b"3000000"));
        records.extend(pax_record("SCHILY.xattr.security.capability", b"\x01\x02"));
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(records.len() as u64);
        h.set_cksum();
        b.append(&h, &records[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(3);
        h.set_mode(0o755);
        h.set_path("short").unwrap();
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        // A ustar name split into prefix and name.
        let split = format!("{}/name", "q".repeat(120));
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_path(&split).unwrap();
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let e = entries(&bytes);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0.path, long.as_bytes());
        assert_eq!(
            (e[0].0.mtime, e[0].0.uid, e[0].0.xattrs, e[0].0.mode),
            (1_700_000_000, 3_000_000, 1, 0o755)
        );
        assert_eq!(e[0].1, b"abc");
        assert_eq!(e[1].0.path, split.as_bytes());
    }

    #[test]
    fn reads_base256_and_skips_unread_data() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Regular, 700);
        h.set_uid(u32::MAX as u64 + 5); // forces base-256 in a GNU header
        b.append_data(&mut h, "a", &vec![7u8; 700][..]).unwrap();
        let mut h = header(tar::EntryType::Regular, 1);
        b.append_data(&mut h, "b", &b"z"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut r = TarReader::new(&bytes[..]);
        let a = r.next_entry().unwrap().unwrap();
        assert_eq!(a.uid, u32::MAX as u64 + 5);
        let mut two = [0u8; 2];
        r.read_data_exact(&mut two).unwrap();
        let b2 = r.next_entry().unwrap().unwrap();
        assert_eq!((b2.path.as_slice(), b2.offset), (&b"b"[..], 512 + 1024));
        assert!(r.next_entry().unwrap().is_none());
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        let garbage = vec![b'x'; 1024];
        assert!(matches!(TarReader::new(&garbage[..]).next_entry(), Err(Error::InvalidInput(_))));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Regular, 2000);
        b.append_data(&mut h, "a", &vec![1u8; 2000][..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut r = TarReader::new(&bytes[..1000]);
        r.next_entry().unwrap().unwrap();
        let mut buf = vec![0u8; 2000];
        assert!(matches!(r.read_data_exact(&mut buf), Err(Error::InvalidInput(_))));
        // A stream without the two zero blocks still ends cleanly after the last entry.
        let mut r = TarReader::new(&bytes[..512 + 2048]);
        assert!(r.next_entry().unwrap().is_some());
        assert!(r.next_entry().unwrap().is_none());
    }
}
