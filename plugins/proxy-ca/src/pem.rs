//! Certificates in PEM bundles (and single DER files): parsing, re-encoding, subject names.

use crate::der::{self, DerError};
use thiserror::Error;

/// One X.509 certificate, as DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// The certificate's DER encoding (one SEQUENCE, nothing after it).
    pub der: Vec<u8>,
}

/// Why a bundle could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PemError {
    /// A `-----BEGIN …-----` without its `-----END …-----`.
    #[error("line {line}: BEGIN {label} has no matching END line")]
    Unterminated {
        /// 1-based line of the BEGIN line.
        line: usize,
        /// The block's label.
        label: String,
    },
    /// A block's body is not base64.
    #[error("line {line}: the {label} block is not valid base64")]
    Base64 {
        /// 1-based line of the BEGIN line.
        line: usize,
        /// The block's label.
        label: String,
    },
    /// A certificate block that does not hold one DER certificate.
    #[error("line {line}: the {label} block is not a DER certificate: {source}")]
    NotACertificate {
        /// 1-based line of the BEGIN line.
        line: usize,
        /// The block's label.
        label: String,
        /// What the DER reader found.
        source: DerError,
    },
    /// A block that is not a certificate (a key, a CSR, …).
    #[error("line {line}: a {label} block; only certificates belong in a CA bundle")]
    NotCertificateLabel {
        /// 1-based line of the BEGIN line.
        line: usize,
        /// The block's label.
        label: String,
    },
    /// No certificate at all.
    #[error("no certificates (expected PEM CERTIFICATE blocks or one DER certificate)")]
    Empty,
}

/// The labels whose blocks hold a certificate. OpenSSL's `TRUSTED CERTIFICATE` carries trust
/// settings after the certificate; only the certificate is kept.
const CERT_LABELS: &[&str] = &["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"];

/// A block found in a PEM text.
struct Block {
    line: usize,
    label: String,
    body: Vec<u8>,
}

fn blocks(text: &[u8]) -> (Vec<Block>, Vec<PemError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut open: Option<(usize, String, Vec<u8>)> = None;
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line = trim(raw);
        if let Some(label) = line.strip_prefix(b"-----BEGIN ").and_then(|l| l.strip_suffix(b"-----")) {
            let label = String::from_utf8_lossy(label).into_owned();
            if let Some((at, old, _)) = open.take() {
                errors.push(PemError::Unterminated { line: at, label: old });
            }
            open = Some((i + 1, label, Vec::new()));
        } else if let Some(label) = line.strip_prefix(b"-----END ").and_then(|l| l.strip_suffix(b"-----")) {
            match open.take() {
                Some((at, begin, body)) if begin.as_bytes() == label => out.push(Block { line: at, label: begin, body }),
                Some((at, begin, _)) => errors.push(PemError::Unterminated { line: at, label: begin }),
                None => {}
            }
        } else if let Some((_, _, body)) = open.as_mut() {
            body.extend_from_slice(line);
        }
    }
    if let Some((at, label, _)) = open {
        errors.push(PemError::Unterminated { line: at, label });
    }
    (out, errors)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && first.is_ascii_whitespace()
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && last.is_ascii_whitespace()
    {
        s = rest;
    }
    s
}

/// Check that `der` starts with one certificate; returns exactly its encoding.
fn first_certificate(der: &[u8]) -> Result<&[u8], DerError> {
    let (cert, _) = der::expect(der, der::SEQUENCE)?;
    let (tbs, _) = der::expect(cert.content, der::SEQUENCE)?;
    der::expect(tbs.content, der::SEQUENCE).map(|_| ()).or_else(|_| {
        // Version 3 certificates start the TBS with [0] EXPLICIT version.
        der::expect(tbs.content, 0xa0).map(|_| ())
    })?;
    Ok(cert.raw)
}

/// Every certificate of a bundle, in order, with the problems of the blocks that were skipped.
/// Text outside blocks (comments, `openssl x509 -text` output) is ignored, and so are blocks
/// that are not certificates.
pub fn parse_lenient(data: &[u8]) -> (Vec<Cert>, Vec<PemError>) {
    let (blocks, mut errors) = blocks(data);
    let mut certs = Vec::new();
    for b in blocks {
        if !CERT_LABELS.contains(&b.label.as_str()) {
            errors.push(PemError::NotCertificateLabel { line: b.line, label: b.label });
            continue;
        }
        let Some(bytes) = base64_decode(&b.body) else {
            errors.push(PemError::Base64 { line: b.line, label: b.label });
            continue;
        };
        let checked = first_certificate(&bytes).and_then(|c| {
            if b.label != "TRUSTED CERTIFICATE" && c.len() != bytes.len() {
                return Err(DerError::Trailing(bytes.len() - c.len()));
            }
            Ok(c)
        });
        match checked {
            Ok(c) => certs.push(Cert { der: c.to_vec() }),
            Err(source) => errors.push(PemError::NotACertificate { line: b.line, label: b.label, source }),
        }
    }
    (certs, errors)
}

/// The certificates of a file the user handed over: PEM blocks, or one DER certificate. Any
/// block that is not a well-formed certificate (a private key, broken base64) is an error.
pub fn parse_strict(data: &[u8]) -> Result<Vec<Cert>, PemError> {
    if !contains(data, b"-----BEGIN ") && data.first() == Some(&der::SEQUENCE) {
        let c = first_certificate(data).map_err(|source| PemError::NotACertificate { line: 1, label: "DER".into(), source })?;
        if c.len() != data.len() {
            return Err(PemError::NotACertificate { line: 1, label: "DER".into(), source: DerError::Trailing(data.len() - c.len()) });
        }
        return Ok(vec![Cert { der: c.to_vec() }]);
    }
    let (certs, mut errors) = parse_lenient(data);
    if !errors.is_empty() {
        return Err(errors.remove(0));
    }
    if certs.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(certs)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The PEM text of a certificate (64-column base64, trailing newline).
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard base64; whitespace is skipped, padding is optional. None when malformed.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut padding = 0usize;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding of a 2- or 3-character tail.
    if bits >= 6 || acc != 0 || padding > 2 {
        return None;
    }
    Some(out)
}

/// OID arcs of the attributes that may name a certificate, in order of preference.
const NAME_ATTRIBUTES: &[&[u8]] = &[
    &[0x55, 0x04, 0x03], // commonName
    &[0x55, 0x04, 0x0b], // organizationalUnitName
    &[0x55, 0x04, 0x0a], // organizationName
];

/// A readable name for a certificate: the subject's CN (else OU, else O). None when the
/// certificate has none of them or is malformed.
pub fn subject_name(cert: &Cert) -> Option<String> {
    let (c, _) = der::expect(&cert.der, der::SEQUENCE).ok()?;
    let (tbs, _) = der::expect(c.content, der::SEQUENCE).ok()?;
    let mut fields = der::children(tbs.content).ok()?.into_iter();
    let mut next = fields.next()?;
    if next.tag == 0xa0 {
        next = fields.next()?;
    }
    // serial (current), signature algorithm, issuer, validity, subject
    let subject = fields.nth(3)?;
    if next.tag != der::INTEGER || subject.tag != der::SEQUENCE {
        return None;
    }
    let mut found: Vec<(usize, String)> = Vec::new();
    for rdn in der::children(subject.content).ok()? {
        for atv in der::children(rdn.content).ok()? {
            let parts = der::children(atv.content).ok()?;
            let [oid, value] = parts.as_slice() else { continue };
            if oid.tag != der::OID {
                continue;
            }
            if let Some(rank) = NAME_ATTRIBUTES.iter().position(|a| *a == oid.content)
                && let Some(text) = directory_string(value)
            {
                found.push((rank, text));
            }
        }
    }
    found.into_iter().min_by_key(|(rank, _)| *rank).map(|(_, t)| t).filter(|t| !t.is_empty())
}

fn directory_string(e: &der::Element<'_>) -> Option<String> {
    match e.tag {
        der::UTF8_STRING | der::PRINTABLE_STRING | der::IA5_STRING => std::str::from_utf8(e.content).ok().map(str::to_string),
        der::TELETEX_STRING => Some(e.content.iter().map(|b| *b as char).collect()),
        der::BMP_STRING => {
            let units: Vec<u16> = e.content.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            String::from_utf16(&units).ok()
        }
        der::UNIVERSAL_STRING => e.content.chunks_exact(4).map(|p| char::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))).collect(),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real self-signed certificate (EC P-256, `CN=kiln unit test CA`), made with openssl.
    pub(crate) const TEST_CA: &str = include_str!("../testdata/ca-cn.pem");
    /// Another one whose subject has no CN (`O=kiln second, OU=unit`).
    pub(crate) const TEST_CA_ORG: &str = include_str!("../testdata/ca-org.pem");

    #[test]
    fn base64_round_trips_every_tail_length() {
        for n in 0..10 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64_encode(&data);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), data, "{enc}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode(b"Zm9v\nYmE=\n").unwrap(), b"fooba");
    }

    #[test]
    fn base64_rejects_garbage() {
        assert_eq!(base64_decode(b"Zm9v!"), None);
        assert_eq!(base64_decode(b"Zm=9"), None);
        assert_eq!(base64_decode(b"Zm8"), Some(b"fo".to_vec()));
        // The unused bits of the last character must be zero.
        assert_eq!(base64_decode(b"Zm9="), None);
        // A dangling single character cannot encode a byte.
        assert_eq!(base64_decode(b"Zm9vY"), None);
    }

    #[test]
    fn parses_a_certificate_and_names_it() {
        let certs = parse_strict(TEST_CA.as_bytes()).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].der[0], 0x30);
        assert_eq!(subject_name(&certs[0]).as_deref(), Some("kiln unit test CA"));
        // Re-encoding gives back a bundle that parses to the same DER.
        let again = parse_strict(to_pem(&certs[0].der).as_bytes()).unwrap();
        assert_eq!(again, certs);
    }

    #[test]
    fn without_a_cn_the_ou_names_the_certificate() {
        let certs = parse_strict(TEST_CA_ORG.as_bytes()).unwrap();
        assert_eq!(subject_name(&certs[0]).as_deref(), Some("unit"));
    }

    #[test]
    fn a_der_file_is_one_certificate() {
        let der = parse_strict(TEST_CA.as_bytes()).unwrap().remove(0).der;
        assert_eq!(parse_strict(&der).unwrap(), vec![Cert { der: der.clone() }]);
        let mut longer = der.clone();
        longer.push(0);
        assert!(matches!(parse_strict(&longer), Err(PemError::NotACertificate { source: DerError::Trailing(1), .. })));
    }

    #[test]
    fn strict_parsing_refuses_keys_and_broken_blocks() {
        let key = format!("{TEST_CA}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert_eq!(parse_strict(key.as_bytes()), Err(PemError::NotCertificateLabel { line: 12, label: "PRIVATE KEY".into() }));
        let cut = TEST_CA.replace("-----END CERTIFICATE-----\n", "");
        assert!(matches!(parse_strict(cut.as_bytes()), Err(PemError::Unterminated { line: 1, .. })));
        let bad = TEST_CA.replace("MIIB", "MI*B");
        assert!(matches!(parse_strict(bad.as_bytes()), Err(PemError::Base64 { line: 1, .. })));
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_strict(not_der.as_bytes()), Err(PemError::NotACertificate { .. })));
        assert_eq!(parse_strict(b"just text\n"), Err(PemError::Empty));
        assert_eq!(parse_strict(b""), Err(PemError::Empty));
    }

    #[test]
    fn lenient_parsing_keeps_the_good_blocks() {
        let mixed = format!(
            "# comment\n{TEST_CA}garbage\n-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\r\n{}",
            TEST_CA.replace('\n', "\r\n")
        );
        let (certs, errors) = parse_lenient(mixed.as_bytes());
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0], certs[1]);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn the_host_bundle_parses_completely() {
        // The machine's own CA bundle is a real-world input of a few hundred certificates.
        let Ok(bundle) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") else { return };
        let (certs, errors) = parse_lenient(&bundle);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(certs.len() > 50, "{}", certs.len());
        let named = certs.iter().filter(|c| subject_name(c).is_some()).count();
        assert_eq!(named, certs.len());
    }
}
