//! A small reproducible tar writer for layer diffs: ustar headers, PAX records for long names, large ids and xattrs,
//! empty user/group names, and exact-length file content.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

/// What a tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    Link(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One tar entry's metadata; `path` is relative, without a leading `./` or a trailing `/`.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

const MAX_OCTAL_ID: u64 = 0o7_777_777;
const MAX_OCTAL_TIME: i64 = 0o77_777_777_777;

pub(crate) struct TarWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 3 + key.len() + value.len();
    let mut len = rest + 1;
    while rest + len.to_string().len() != len {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Puts `name` into the ustar name/prefix fields; false when it does not fit.
fn set_ustar_name(h: &mut Header, name: &[u8]) -> bool {
    let u = h.as_ustar_mut().expect("ustar header");
    if name.len() <= 100 {
        u.name = [0; 100];
        u.name[..name.len()].copy_from_slice(name);
        u.prefix = [0; 155];
        return true;
    }
    // Split at a '/' so that the prefix holds at most 155 bytes and the rest at most 100.
    for (i, b) in name.iter().enumerate().rev() {
        if *b != b'/' {
            continue;
        }
        let (prefix, rest) = (&name[..i], &name[i + 1..]);
        if rest.len() > 100 || rest.is_empty() {
            break;
        }
        if prefix.len() <= 155 && !prefix.is_empty() {
            u.name = [0; 100];
            u.name[..rest.len()].copy_from_slice(rest);
            u.prefix = [0; 155];
            u.prefix[..prefix.len()].copy_from_slice(prefix);
            return true;
        }
    }
    false
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            buf: vec![0u8; 256 * 1024],
        }
    }

    /// Writes one entry. For `Kind::File`, `data` must yield exactly `node.size` bytes.
    pub fn append(&mut self, node: &Node, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut h = Header::new_ustar();
        let mut pax = Vec::new();
        let mut name = node.path.clone();
        if node.kind == Kind::Dir {
            name.push(b'/');
        }
        if !set_ustar_name(&mut h, &name) {
            pax_record(&mut pax, b"path", &name);
            let mut cut = name[..99].to_vec();
            if node.kind == Kind::Dir {
                cut.push(b'/');
            }
            set_ustar_name(&mut h, &cut);
        }
        h.set_mode(node.mode & 0o7777);
        for (key, id, field) in [("uid", node.uid, 0), ("gid", node.gid, 1)] {
            let id = u64::from(id);
            let v = if id > MAX_OCTAL_ID {
                pax_record(&mut pax, key.as_bytes(), id.to_string().as_bytes());
                0
            } else {
                id
            };
            if field == 0 {
                h.set_uid(v)
            } else {
                h.set_gid(v)
            }
        }
        h.set_mtime(node.mtime.clamp(0, MAX_OCTAL_TIME) as u64);
        let (etype, size) = match &node.kind {
            Kind::File => (EntryType::Regular, node.size),
            Kind::Dir => (EntryType::Directory, 0),
            Kind::Symlink(_) => (EntryType::Symlink, 0),
            Kind::Link(_) => (EntryType::Link, 0),
            Kind::Char(..) => (EntryType::Char, 0),
            Kind::Block(..) => (EntryType::Block, 0),
            Kind::Fifo => (EntryType::Fifo, 0),
        };
        h.set_entry_type(etype);
        h.set_size(size);
        if size > MAX_OCTAL_TIME as u64 {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        if let Kind::Symlink(t) | Kind::Link(t) = &node.kind {
            let u = h.as_ustar_mut().expect("ustar header");
            u.linkname = [0; 100];
            if t.len() <= 100 {
                u.linkname[..t.len()].copy_from_slice(t);
            } else {
                pax_record(&mut pax, b"linkpath", t);
                u.linkname.copy_from_slice(&t[..100]);
            }
        }
        if let Kind::Char(ma, mi) | Kind::Block(ma, mi) = node.kind {
            h.set_device_major(ma)?;
            h.set_device_minor(mi)?;
        }
        for (k, v) in &node.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        h.set_cksum();

        if !pax.is_empty() {
            let mut ph = Header::new_ustar();
            let mut pname = b"PaxHeaders.0/".to_vec();
            let base = name
                .rsplit(|b| *b == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"");
            pname.extend_from_slice(&base[..base.len().min(100 - pname.len())]);
            set_ustar_name(&mut ph, &pname);
            ph.set_mode(0o644);
            ph.set_uid(0);
            ph.set_gid(0);
            ph.set_mtime(0);
            ph.set_entry_type(EntryType::XHeader);
            ph.set_size(pax.len() as u64);
            ph.set_cksum();
            self.out.write_all(ph.as_bytes())?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        self.out.write_all(h.as_bytes())?;
        if size > 0 {
            let data = data.ok_or_else(|| io::Error::other("file entry without content"))?;
            let mut left = size;
            while left > 0 {
                let want = self
                    .buf
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match data.read(&mut self.buf[..want]) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "file shrank while being read ({left} of {size} bytes missing)"
                            ),
                        ));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                self.out.write_all(&self.buf[..n])?;
                left -= n as u64;
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % 512) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_are_self_consistent() {
        for vlen in [0usize, 1, 5, 90, 95, 96, 97, 990, 995, 996, 10_000] {
            let mut out = Vec::new();
            let value = vec![b'v'; vlen];
            pax_record(&mut out, b"path", &value);
            let sp = out.iter().position(|b| *b == b' ').unwrap();
            let n: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(n, out.len(), "value length {vlen}");
        }
    }

    #[test]
    fn long_names_and_xattrs_round_trip_through_tar_reader() {
        let long = format!("{}/{}", "d".repeat(180), "f".repeat(120));
        let node = Node {
            path: long.clone().into_bytes(),
            kind: Kind::File,
            mode: 0o4755,
            uid: 3_000_000,
            gid: 7,
            mtime: 1_700_000_000,
            size: 5,
            xattrs: vec![(b"user.k".to_vec(), b"v\0bin".to_vec())],
        };
        let mut w = TarWriter::new(Vec::new());
        w.append(&node, Some(&mut &b"hello"[..])).unwrap();
        let data = w.finish().unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path_bytes().as_ref(), long.as_bytes());
        assert_eq!(e.header().uid().unwrap(), 3_000_000);
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        let pax: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|r| (r.key().unwrap().to_string(), r.value_bytes().to_vec()))
            .collect();
        assert!(pax.contains(&("SCHILY.xattr.user.k".to_string(), b"v\0bin".to_vec())));
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
