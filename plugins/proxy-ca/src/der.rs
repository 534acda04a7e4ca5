//! Minimal ASN.1 DER: the writers the PKCS#12 truststore needs and a reader for certificates.

use thiserror::Error;

/// Tag of an INTEGER.
pub const INTEGER: u8 = 0x02;
/// Tag of an OCTET STRING.
pub const OCTET_STRING: u8 = 0x04;
/// Tag of a NULL.
pub const NULL: u8 = 0x05;
/// Tag of an OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;
/// Tag of a UTF8String.
pub const UTF8_STRING: u8 = 0x0c;
/// Tag of a PrintableString.
pub const PRINTABLE_STRING: u8 = 0x13;
/// Tag of a TeletexString (T61String).
pub const TELETEX_STRING: u8 = 0x14;
/// Tag of an IA5String.
pub const IA5_STRING: u8 = 0x16;
/// Tag of a UniversalString (UCS-4).
pub const UNIVERSAL_STRING: u8 = 0x1c;
/// Tag of a BMPString (UCS-2, big endian).
pub const BMP_STRING: u8 = 0x1e;
/// Tag of a (constructed) SEQUENCE.
pub const SEQUENCE: u8 = 0x30;
/// Tag of a (constructed) SET.
pub const SET: u8 = 0x31;

/// Why bytes are not the DER that was expected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DerError {
    /// The input ended inside an element.
    #[error("DER ends early at byte {at}")]
    Truncated {
        /// Offset into the element being read.
        at: usize,
    },
    /// A length form DER does not allow (indefinite, over-long, too large).
    #[error("bad DER length at byte {at}")]
    BadLength {
        /// Offset into the element being read.
        at: usize,
    },
    /// A different tag than the structure needs.
    #[error("expected DER tag {expected:#04x}, found {found:#04x}")]
    UnexpectedTag {
        /// The tag the structure needs.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// Bytes after the outermost element.
    #[error("{0} trailing bytes after the DER element")]
    Trailing(usize),
}

/// The DER encoding of a length.
fn length(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut out = vec![0x80 | (bytes.len() - skip) as u8];
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// One element: `tag`, DER length, `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    out.extend(length(content.len()));
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already encoded elements.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A SET OF already encoded elements, sorted by their encodings as DER requires.
pub fn set_of(mut items: Vec<Vec<u8>>) -> Vec<u8> {
    items.sort();
    tlv(SET, &items.concat())
}

/// `[n] EXPLICIT` around an encoded element.
pub fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// An OBJECT IDENTIFIER from its arcs (at least two).
pub fn oid(arcs: &[u64]) -> Vec<u8> {
    assert!(arcs.len() >= 2 && arcs[0] <= 2, "an OID has at least two arcs and starts with 0, 1 or 2");
    let mut content = Vec::new();
    let mut push_arc = |mut v: u64| {
        let mut groups = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        groups.reverse();
        content.extend(groups);
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    for &a in &arcs[2..] {
        push_arc(a);
    }
    tlv(OID, &content)
}

/// A non-negative INTEGER.
pub fn integer(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = Vec::new();
    if bytes[skip] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(&bytes[skip..]);
    tlv(INTEGER, &content)
}

/// An OCTET STRING.
pub fn octet_string(b: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, b)
}

/// A NULL.
pub fn null() -> Vec<u8> {
    vec![NULL, 0]
}

/// A BMPString (UTF-16 big endian; characters outside the BMP become surrogate pairs).
pub fn bmp_string(s: &str) -> Vec<u8> {
    let content: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(BMP_STRING, &content)
}

/// One element read from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    /// Its tag byte (only single-byte tags are supported).
    pub tag: u8,
    /// Its content octets.
    pub content: &'a [u8],
    /// Its whole encoding (tag, length, content).
    pub raw: &'a [u8],
}

/// Read the element at the start of `input`; returns it and the bytes after it.
pub fn read(input: &[u8]) -> Result<(Element<'_>, &[u8]), DerError> {
    let tag = *input.first().ok_or(DerError::Truncated { at: 0 })?;
    if tag & 0x1f == 0x1f {
        return Err(DerError::UnexpectedTag { expected: SEQUENCE, found: tag });
    }
    let first = *input.get(1).ok_or(DerError::Truncated { at: 1 })?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(DerError::BadLength { at: 1 });
        }
        let bytes = input.get(2..2 + n).ok_or(DerError::Truncated { at: 2 })?;
        if bytes[0] == 0 {
            return Err(DerError::BadLength { at: 2 });
        }
        let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        if len < 0x80 {
            return Err(DerError::BadLength { at: 1 });
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len).ok_or(DerError::BadLength { at: 1 })?;
    if end > input.len() {
        return Err(DerError::Truncated { at: input.len() });
    }
    Ok((Element { tag, content: &input[header..end], raw: &input[..end] }, &input[end..]))
}

/// Read an element that must have tag `tag`.
pub fn expect(input: &[u8], tag: u8) -> Result<(Element<'_>, &[u8]), DerError> {
    let (e, rest) = read(input)?;
    if e.tag != tag {
        return Err(DerError::UnexpectedTag { expected: tag, found: e.tag });
    }
    Ok((e, rest))
}

/// The elements inside a constructed element's content, in order.
pub fn children(mut content: &[u8]) -> Result<Vec<Element<'_>>, DerError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (e, rest) = read(content)?;
        out.push(e);
        content = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_like_the_registry_says() {
        // sha256: 2.16.840.1.101.3.4.2.1
        assert_eq!(oid(&[2, 16, 840, 1, 101, 3, 4, 2, 1]), [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]);
        // commonName: 2.5.4.3
        assert_eq!(oid(&[2, 5, 4, 3]), [0x06, 0x03, 0x55, 0x04, 0x03]);
        // pkcs-9 friendlyName: 1.2.840.113549.1.9.20
        assert_eq!(oid(&[1, 2, 840, 113549, 1, 9, 20]), [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x14]);
    }

    #[test]
    fn lengths_switch_to_long_form_at_128() {
        assert_eq!(tlv(OCTET_STRING, &[0; 127])[..2], [0x04, 0x7f]);
        assert_eq!(tlv(OCTET_STRING, &[0; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(OCTET_STRING, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        let long = tlv(OCTET_STRING, &[7; 70000]);
        let (e, rest) = read(&long).unwrap();
        assert_eq!(e.content.len(), 70000);
        assert!(rest.is_empty());
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(integer(0), [0x02, 0x01, 0x00]);
        assert_eq!(integer(3), [0x02, 0x01, 0x03]);
        assert_eq!(integer(128), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(2048), [0x02, 0x02, 0x08, 0x00]);
    }

    #[test]
    fn set_of_sorts_its_members() {
        let s = set_of(vec![vec![0x04, 0x01, 0x02], vec![0x04, 0x01, 0x01]]);
        assert_eq!(s, [0x31, 0x06, 0x04, 0x01, 0x01, 0x04, 0x01, 0x02]);
    }

    #[test]
    fn reader_rejects_what_der_forbids() {
        assert_eq!(read(&[0x30, 0x80, 0x00, 0x00]).unwrap_err(), DerError::BadLength { at: 1 });
        assert_eq!(read(&[0x30, 0x81, 0x05, 1, 2, 3, 4, 5]).unwrap_err(), DerError::BadLength { at: 1 });
        assert_eq!(read(&[0x30, 0x05, 1, 2]).unwrap_err(), DerError::Truncated { at: 4 });
        assert_eq!(read(&[]).unwrap_err(), DerError::Truncated { at: 0 });
        assert_eq!(expect(&[0x31, 0x00], SEQUENCE).unwrap_err(), DerError::UnexpectedTag { expected: SEQUENCE, found: SET });
    }

    #[test]
    fn bmp_strings_are_utf16_big_endian() {
        assert_eq!(bmp_string("Aé"), [0x1e, 0x04, 0x00, 0x41, 0x00, 0xe9]);
    }
}
