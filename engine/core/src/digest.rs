//! sha256 content digests (`sha256:<64 hex>`) and readers/writers that hash the bytes passing through.

use crate::Error;
use sha2::Digest as _;
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// The only digest algorithm kiln produces and accepts.
pub const SHA256: &str = "sha256";

/// A sha256 content digest. Displays and serializes as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parse `sha256:<hex>`; the hex part must be exactly 64 lowercase hex characters.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(Error::digest(
                s,
                "missing algorithm prefix (expected sha256:<hex>)",
            ));
        };
        if alg != SHA256 {
            return Err(Error::digest(
                s,
                format!("unsupported algorithm {alg:?} (only sha256)"),
            ));
        }
        Self::from_hex(hex).map_err(|e| match e {
            Error::InvalidDigest { reason, .. } => Error::digest(s, reason),
            other => other,
        })
    }

    /// Parse the bare 64-character lowercase hex form (as used in blob file names).
    pub fn from_hex(hex: &str) -> Result<Self, Error> {
        if hex.len() != 64 {
            return Err(Error::digest(
                hex,
                format!("sha256 hex must be 64 characters, got {}", hex.len()),
            ));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::digest(hex, "sha256 hex must be lowercase [0-9a-f]"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|e| Error::digest(hex, e.to_string()))?;
        Ok(Digest(out))
    }

    /// Build from raw 32 bytes.
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        Digest(raw)
    }

    /// The digest of a byte slice.
    pub fn of_bytes(data: &[u8]) -> Self {
        Digest(sha2::Sha256::digest(data).into())
    }

    /// Hash a whole reader; returns the digest and the number of bytes read.
    pub fn of_reader<R: Read>(r: R) -> io::Result<(Self, u64)> {
        let mut hr = HashingReader::new(r);
        io::copy(&mut hr, &mut io::sink())?;
        Ok((hr.digest(), hr.size()))
    }

    /// The algorithm name: always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        SHA256
    }

    /// The 64-character lowercase hex encoding.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, as `buildah images` shows IDs.
    pub fn short(&self) -> String {
        let mut h = self.hex();
        h.truncate(12);
        h
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256}:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// OCI chain IDs of a layer stack: `ChainID(L0) = DiffID(L0)`,
/// `ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))`. One entry per layer, base first;
/// the last one identifies the whole stack.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => *d,
            Some(prev) => Digest::of_bytes(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// An incremental sha256 hasher producing a [`Digest`].
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest of everything fed so far (the hasher can keep going).
    pub fn digest(&self) -> Digest {
        Digest(self.0.clone().finalize().into())
    }
    /// Consume the hasher and return the digest.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// A writer that hashes (sha256) and counts every byte written through it to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    /// Digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }
    /// Number of bytes written so far.
    pub fn size(&self) -> u64 {
        self.bytes
    }
    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
    /// The wrapped writer, mutably (bytes written to it directly are not hashed).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
    /// Unwrap: the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes (sha256) and counts every byte read through it from `inner`.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    /// Digest of the bytes read so far.
    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }
    /// Number of bytes read so far.
    pub fn size(&self) -> u64 {
        self.bytes
    }
    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
    /// Unwrap: the inner reader, the digest and the byte count.
    pub fn finish(self) -> (R, Digest, u64) {
        (self.inner, self.hasher.finish(), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_values() {
        assert_eq!(Digest::of_bytes(b"").to_string(), EMPTY);
        assert_eq!(
            Digest::of_bytes(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(EMPTY).unwrap(), Digest::of_bytes(b""));
        assert_eq!(Digest::of_bytes(b"").short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn serde_roundtrip() {
        let d = Digest::of_bytes(b"x");
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(j, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&j).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let ids = chain_ids(&[a, b]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of_bytes(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn hashing_streams() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = HashingWriter::new(Vec::new());
        for chunk in data.chunks(777) {
            w.write_all(chunk).unwrap();
        }
        let (out, d, n) = w.finish();
        assert_eq!(out, data);
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, Digest::of_bytes(&data));
        let (d2, n2) = Digest::of_reader(&data[..]).unwrap();
        assert_eq!((d2, n2), (d, n));
    }
}
