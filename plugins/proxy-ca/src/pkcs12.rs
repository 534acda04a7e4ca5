//! Java truststores as PKCS#12 files: certificates as trusted entries, no keys, no encryption,
//! integrity-protected by an HMAC keyed from a fixed password (Java refuses a store without a MAC).
//!
//! Each certificate is a `certBag` carrying a `friendlyName` (the alias) and Oracle's
//! trusted-key-usage attribute (`2.16.840.1.113894.746875.1.1` = anyExtendedKeyUsage), which is what
//! makes Java load it as a `trustedCertEntry`. The MAC is HMAC-SHA1 with the RFC 7292 appendix B
//! key derivation, which every JDK since 8 verifies. The salt is derived from the content, so the
//! same certificates always give the same bytes.

use crate::der::{bmp_string, explicit, integer, null, octet_string, oid, sequence, set_of};
use crate::pem::{Cert, subject_name};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

/// The truststore password (the JDK's own default for `cacerts`).
pub const PASSWORD: &str = "changeit";

/// Iterations of the MAC key derivation (OpenSSL's default).
pub const MAC_ITERATIONS: u64 = 2048;

/// Aliases for `certs`: the subject's CN/OU/O in lower case (Java compares aliases without case),
/// made unique with a ` 2`, ` 3`… suffix; `kiln-ca-N` for certificates without such a name.
pub fn aliases(certs: &[Cert]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(certs.len());
    for (i, c) in certs.iter().enumerate() {
        let base = subject_name(c).map(|n| n.to_lowercase()).unwrap_or_else(|| format!("kiln-ca-{}", i + 1));
        let mut alias = base.clone();
        let mut n = 2;
        while out.contains(&alias) {
            alias = format!("{base} {n}");
            n += 1;
        }
        out.push(alias);
    }
    out
}

/// A PKCS#12 truststore holding `certs` as trusted certificate entries, with its MAC keyed by
/// `password`.
pub fn truststore(certs: &[Cert], password: &str) -> Vec<u8> {
    let data = oid(&[1, 2, 840, 113549, 1, 7, 1]);
    let cert_bag = oid(&[1, 2, 840, 113549, 1, 12, 10, 1, 3]);
    let x509_certificate = oid(&[1, 2, 840, 113549, 1, 9, 22, 1]);
    let friendly_name = oid(&[1, 2, 840, 113549, 1, 9, 20]);
    let oracle_trusted_key_usage = oid(&[2, 16, 840, 1, 113894, 746875, 1, 1]);
    let any_extended_key_usage = oid(&[2, 5, 29, 37, 0]);
    let sha1 = oid(&[1, 3, 14, 3, 2, 26]);

    let mut bags = Vec::with_capacity(certs.len());
    for (c, alias) in certs.iter().zip(aliases(certs)) {
        let value = sequence(&[&x509_certificate, &explicit(0, &octet_string(&c.der))]);
        let attributes = set_of(vec![
            sequence(&[&friendly_name, &set_of(vec![bmp_string(&alias)])]),
            sequence(&[&oracle_trusted_key_usage, &set_of(vec![any_extended_key_usage.clone()])]),
        ]);
        bags.push(sequence(&[&cert_bag, &explicit(0, &value), &attributes]));
    }
    let safe_contents = tlv_concat(&bags);
    let content_info = sequence(&[&data, &explicit(0, &octet_string(&safe_contents))]);
    let auth_safe = sequence(&[&content_info]);

    let salt: [u8; 20] = Sha1::new().chain_update(b"kiln proxy-ca truststore\0").chain_update(&auth_safe).finalize().into();
    let key = kdf_sha1(password, &salt, 3, MAC_ITERATIONS, 20);
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(&auth_safe);
    let mac = mac.finalize().into_bytes();

    let mac_data =
        sequence(&[&sequence(&[&sequence(&[&sha1, &null()]), &octet_string(&mac)]), &octet_string(&salt), &integer(MAC_ITERATIONS)]);
    sequence(&[&integer(3), &sequence(&[&data, &explicit(0, &octet_string(&auth_safe))]), &mac_data])
}

/// A SEQUENCE OF already encoded elements.
fn tlv_concat(items: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    sequence(&refs)
}

/// The PKCS#12 key derivation of RFC 7292 appendix B.2 with SHA-1: `n` bytes of key material of
/// purpose `id` (1 = key, 2 = IV, 3 = MAC key) from a password (as a NUL-terminated BMPString).
pub fn kdf_sha1(password: &str, salt: &[u8], id: u8, iterations: u64, n: usize) -> Vec<u8> {
    const U: usize = 20;
    const V: usize = 64;
    let mut pass: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    pass.extend([0, 0]);
    let stretch = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let len = V * src.len().div_ceil(V);
        (0..len).map(|i| src[i % src.len()]).collect()
    };
    let mut input = stretch(salt);
    input.extend(stretch(&pass));
    let diversifier = [id; V];
    let mut out = Vec::with_capacity(n.div_ceil(U) * U);
    while out.len() < n {
        let mut a: [u8; U] = Sha1::new().chain_update(diversifier).chain_update(&input).finalize().into();
        for _ in 1..iterations {
            a = Sha1::digest(a).into();
        }
        out.extend_from_slice(&a);
        if out.len() >= n {
            break;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), with B = A repeated to v bytes.
        for block in input.chunks_mut(V) {
            let mut carry = 1u16;
            for k in (0..V).rev() {
                let sum = u16::from(block[k]) + u16::from(a[k % U]) + carry;
                block[k] = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pem::parse_strict;
    use std::process::Command;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn kdf_matches_published_vectors() {
        // Test vectors of the PKCS#12 KDF with SHA-1 (as used by Bouncy Castle's and OpenSSL's tests).
        assert_eq!(hex(&kdf_sha1("smeg", &unhex("0a58cf64530d823f"), 1, 1, 24)), "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3");
        assert_eq!(hex(&kdf_sha1("smeg", &unhex("0a58cf64530d823f"), 2, 1, 8)), "79993dfe048d3b76");
        assert_eq!(hex(&kdf_sha1("smeg", &unhex("3d83c0e4546ac140"), 3, 1, 20)), "8d967d88f6caa9d714800ab3d48051d63f73a312");
        assert_eq!(hex(&kdf_sha1("queeg", &unhex("1682c0fc5b3f7ec5"), 1, 1000, 24)), "483dd6e919d7de2e8e648ba8f862f3fbfbdc2bcb2c02957f");
    }

    fn two_certs() -> Vec<Cert> {
        let mut certs = parse_strict(crate::pem::tests::TEST_CA.as_bytes()).unwrap();
        certs.extend(parse_strict(crate::pem::tests::TEST_CA_ORG.as_bytes()).unwrap());
        certs
    }

    #[test]
    fn aliases_are_unique_without_case() {
        let mut certs = two_certs();
        certs.push(certs[0].clone());
        certs.push(crate::pem::Cert { der: vec![0x30, 0x00] });
        assert_eq!(aliases(&certs), ["kiln unit test ca", "unit", "kiln unit test ca 2", "kiln-ca-4"]);
    }

    #[test]
    fn same_certificates_give_the_same_bytes() {
        let a = truststore(&two_certs(), PASSWORD);
        let b = truststore(&two_certs(), PASSWORD);
        assert_eq!(a, b);
        let mut reversed = two_certs();
        reversed.reverse();
        assert_ne!(truststore(&reversed, PASSWORD), a);
    }

    /// A file in a directory of its own, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> TempFile {
            let dir = std::env::temp_dir().join(format!("kiln-proxy-ca-test-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            TempFile(p)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    #[test]
    fn openssl_verifies_the_mac_and_reads_the_certificates() {
        let f = TempFile::new("openssl.p12", &truststore(&two_certs(), PASSWORD));
        let p = &f.0;
        let ok = Command::new("openssl")
            .args(["pkcs12", "-nokeys", "-passin", "pass:changeit", "-in"])
            .arg(p)
            .output()
            .expect("running openssl");
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        let out = String::from_utf8_lossy(&ok.stdout);
        assert_eq!(out.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{out}");
        assert!(out.contains("friendlyName: kiln unit test ca"), "{out}");
        // The MAC really depends on the password.
        let bad = Command::new("openssl").args(["pkcs12", "-nokeys", "-passin", "pass:wrong", "-in"]).arg(p).output().unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).to_lowercase().contains("mac"), "{}", String::from_utf8_lossy(&bad.stderr));
    }

    #[test]
    fn keytool_lists_trusted_certificate_entries() {
        if Command::new("keytool").arg("-help").output().is_err() {
            eprintln!("keytool is not installed; skipping");
            return;
        }
        let f = TempFile::new("keytool.p12", &truststore(&two_certs(), PASSWORD));
        let p = &f.0;
        let out =
            Command::new("keytool").args(["-list", "-storetype", "PKCS12", "-storepass", "changeit", "-keystore"]).arg(p).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("contains 2 entries"), "{text}");
        assert_eq!(text.matches("trustedCertEntry").count(), 2, "{text}");
        assert!(text.contains("kiln unit test ca,"), "{text}");
        let bad =
            Command::new("keytool").args(["-list", "-storetype", "PKCS12", "-storepass", "nope", "-keystore"]).arg(p).output().unwrap();
        assert!(!bad.status.success());
    }
}
