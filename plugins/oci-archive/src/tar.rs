//! POSIX ustar headers for the archives this plugin writes, with PAX records for long names and sizes.

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// Largest value an 11-digit octal field holds (8 GiB - 1).
pub const OCTAL_11_MAX: u64 = 0o777_7777_7777;

const NAME_LEN: usize = 100;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A regular file of `size` bytes.
    File {
        /// Bytes of content that follow the header.
        size: u64,
    },
    /// A directory (its path should end with `/`).
    Dir,
    /// A symbolic link to `target`.
    Symlink {
        /// The link's target, as stored.
        target: &'a str,
    },
}

/// One archive member: path, type, permission bits and modification time (uid/gid are 0, names empty).
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Path inside the archive.
    pub path: &'a str,
    /// Type (and size for files).
    pub kind: Kind<'a>,
    /// Permission bits, for example `0o644`.
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// Errors building headers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarError {
    /// A fixed (patchable) header was asked for a path longer than the ustar name field.
    #[error("tar path `{0}` is longer than {NAME_LEN} bytes and cannot have a patchable header")]
    PathTooLong(String),
}

/// The header blocks of `e`: a PAX extended header first when its path, link target or size does
/// not fit the ustar fields, then the ustar header.
pub fn header(e: &Entry<'_>) -> Vec<u8> {
    let (typeflag, size, link) = match e.kind {
        Kind::File { size } => (b'0', size, ""),
        Kind::Dir => (b'5', 0, ""),
        Kind::Symlink { target } => (b'2', 0, target),
    };
    let mut records = Vec::new();
    if e.path.len() > NAME_LEN {
        pax_record(&mut records, "path", e.path);
    }
    if link.len() > NAME_LEN {
        pax_record(&mut records, "linkpath", link);
    }
    if size > OCTAL_11_MAX {
        pax_record(&mut records, "size", &size.to_string());
    }
    let mut out = Vec::with_capacity(BLOCK * 2);
    if !records.is_empty() {
        let pax_name = pax_header_name(e.path);
        out.extend_from_slice(&ustar_block(pax_name.as_bytes(), 0o644, records.len() as u64, e.mtime, b'x', b""));
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    out.extend_from_slice(&ustar_block(
        truncate(e.path, NAME_LEN).as_bytes(),
        e.mode,
        size,
        e.mtime,
        typeflag,
        truncate(link, NAME_LEN).as_bytes(),
    ));
    out
}

/// A single-block header for a regular file whose size is known only after its content is written:
/// write it with a placeholder size, then overwrite it in place. Sizes past 8 GiB use the base-256
/// encoding of the size field (read by GNU tar, bsdtar, Go and Python), so the header never grows.
pub fn fixed_file_header(path: &str, mode: u32, size: u64, mtime: u64) -> Result<[u8; BLOCK], TarError> {
    if path.len() > NAME_LEN {
        return Err(TarError::PathTooLong(path.to_string()));
    }
    Ok(ustar_block(path.as_bytes(), mode, size, mtime, b'0', b""))
}

/// Zero bytes that follow `size` bytes of content to reach a block boundary.
pub fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// The end-of-archive marker: two zero blocks.
pub fn end_of_archive() -> [u8; 2 * BLOCK] {
    [0; 2 * BLOCK]
}

fn ustar_block(name: &[u8], mode: u32, size: u64, mtime: u64, typeflag: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(mode & 0o7777));
    octal(&mut b[108..116], 0);
    octal(&mut b[116..124], 0);
    if size > OCTAL_11_MAX {
        base256(&mut b[124..136], size);
    } else {
        octal(&mut b[124..136], size);
    }
    octal(&mut b[136..148], mtime.min(OCTAL_11_MAX));
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], 0);
    octal(&mut b[337..345], 0);
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
    b
}

/// Zero-padded octal digits filling all but the last byte of `field`, then a NUL.
fn octal(field: &mut [u8], mut v: u64) {
    let digits = field.len() - 1;
    for i in (0..digits).rev() {
        field[i] = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[digits] = 0;
}

/// GNU base-256: the high bit of the first byte set, the value big-endian in the rest.
fn base256(field: &mut [u8], mut v: u64) {
    for i in (1..field.len()).rev() {
        field[i] = (v & 0xff) as u8;
        v >>= 8;
    }
    field[0] = 0x80;
}

/// Append "<len> <key>=<value>\n", where <len> counts the whole record including itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

fn pax_header_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    let (dir, base) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    let name = format!("{dir}PaxHeaders.0/{base}");
    if name.len() <= NAME_LEN { name } else { format!("PaxHeaders.0/{}", truncate(base, NAME_LEN - 13)) }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Path, type flag, size, mode, mtime, link target, content.
    type ReadEntry = (String, u8, u64, u32, u64, Option<String>, Vec<u8>);

    fn read_entries(bytes: &[u8]) -> Vec<ReadEntry> {
        let mut ar = ::tar::Archive::new(bytes);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let h = e.header().clone();
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let size = e.size();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((path, h.entry_type().as_byte(), size, h.mode().unwrap(), h.mtime().unwrap(), link, data));
        }
        out
    }

    #[test]
    fn header_checksum_and_fields_match_ustar() {
        let h = header(&Entry { path: "blobs/", kind: Kind::Dir, mode: 0o755, mtime: 1_700_000_000 });
        assert_eq!(h.len(), BLOCK);
        assert_eq!(&h[..7], b"blobs/\0");
        assert_eq!(&h[100..108], b"0000755\0");
        assert_eq!(&h[136..148], format!("{:011o}\0", 1_700_000_000u64).as_bytes());
        assert_eq!(h[156], b'5');
        assert_eq!(&h[257..265], b"ustar\x0000");
        let mut copy = h.clone();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&x| u32::from(x)).sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn archive_round_trips_through_an_independent_reader() {
        let long = format!("{}/{}", "d".repeat(120), "file-with-a-long-name");
        let long_target = format!("../{}", "t".repeat(150));
        let mut ar = Vec::new();
        for (path, kind, mode, body) in [
            ("blobs/", Kind::Dir, 0o755, &b""[..]),
            ("blobs/a", Kind::File { size: 5 }, 0o644, &b"hello"[..]),
            (long.as_str(), Kind::File { size: 3 }, 0o444, &b"abc"[..]),
            ("x/layer.tar", Kind::Symlink { target: &long_target }, 0, &b""[..]),
        ] {
            ar.extend(header(&Entry { path, kind, mode, mtime: 42 }));
            ar.extend_from_slice(body);
            ar.resize(ar.len() + padding(body.len() as u64), 0);
        }
        ar.extend_from_slice(&end_of_archive());
        assert_eq!(ar.len() % BLOCK, 0);
        let got = read_entries(&ar);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, "blobs/");
        assert_eq!(got[0].1, b'5');
        assert_eq!((got[1].0.as_str(), got[1].3, got[1].4), ("blobs/a", 0o644, 42));
        assert_eq!(got[1].6, b"hello");
        assert_eq!(got[2].0, long);
        assert_eq!(got[2].6, b"abc");
        assert_eq!(got[2].3, 0o444);
        assert_eq!(got[3].1, b'2');
        assert_eq!(got[3].5.as_deref(), Some(long_target.as_str()));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [0usize, 1, 5, 90, 95, 96, 97, 990, 995, 996, 9990] {
            let mut out = Vec::new();
            let value = "v".repeat(n);
            pax_record(&mut out, "path", &value);
            let s = String::from_utf8(out.clone()).unwrap();
            let (len, _) = s.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "value of {n} bytes");
            assert!(s.ends_with('\n'));
        }
    }

    #[test]
    fn huge_sizes_use_pax_and_base256() {
        let size = OCTAL_11_MAX + 1 + 12345;
        let h = header(&Entry { path: "big", kind: Kind::File { size }, mode: 0o644, mtime: 0 });
        assert_eq!(h.len(), 3 * BLOCK, "pax header, one record block, ustar header");
        let rec = std::str::from_utf8(&h[BLOCK..2 * BLOCK]).unwrap().trim_end_matches('\0');
        assert_eq!(rec, format!("{} size={size}\n", 6 + size.to_string().len() + 3));
        let fixed = fixed_file_header("big", 0o444, size, 0).unwrap();
        assert_eq!(fixed[124], 0x80);
        let mut v = 0u64;
        for &b in &fixed[125..136] {
            v = (v << 8) | u64::from(b);
        }
        assert_eq!(v, size);
        let parsed = ::tar::Header::from_byte_slice(&fixed);
        assert_eq!(parsed.size().unwrap(), size);
    }

    #[test]
    fn fixed_header_equals_plain_header_and_rejects_long_paths() {
        let a = fixed_file_header("abc/layer.tar", 0o444, 1027, 0).unwrap();
        let b = header(&Entry { path: "abc/layer.tar", kind: Kind::File { size: 1027 }, mode: 0o444, mtime: 0 });
        assert_eq!(&a[..], &b[..]);
        assert_eq!(fixed_file_header(&"p".repeat(101), 0o444, 0, 0), Err(TarError::PathTooLong("p".repeat(101))));
    }

    #[test]
    fn padding_reaches_block_boundaries() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }

    #[test]
    fn pax_names_stay_within_the_name_field() {
        assert_eq!(pax_header_name("a/b/c"), "a/b/PaxHeaders.0/c");
        let long = format!("{}/{}", "d".repeat(200), "e".repeat(200));
        assert!(pax_header_name(&long).len() <= NAME_LEN);
        assert_eq!(truncate("héllo", 2), "h");
    }
}
