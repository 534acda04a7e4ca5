//! Test certificates made with `openssl` at test time: a throwaway CA and a server certificate for
//! `127.0.0.1`/`localhost` signed by it, plus an RSA signing key for the token server.

use crate::util::run_ok;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a server certificate signed by it, as PEM files in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (what clients must trust).
    pub ca_cert: PathBuf,
    /// The CA private key.
    pub ca_key: PathBuf,
    /// The server certificate (SAN: IP 127.0.0.1, DNS localhost).
    pub server_cert: PathBuf,
    /// The server private key.
    pub server_key: PathBuf,
}

impl Pki {
    /// Generate a CA (`CN=kiln test CA`) and a server certificate into `dir` (EC P-256, valid 2 days).
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("creating the pki directory");
        let p = |n: &str| dir.join(n);
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=kiln test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                ])
                .arg(p("ca.key"))
                .arg("-out")
                .arg(p("ca.crt")),
        );
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                ])
                .arg(p("server.key"))
                .arg("-out")
                .arg(p("server.csr")),
        );
        std::fs::write(
            p("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("writing server.ext");
        run_ok(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(p("server.csr"))
                .arg("-CA")
                .arg(p("ca.crt"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-CAcreateserial")
                .arg("-extfile")
                .arg(p("server.ext"))
                .arg("-out")
                .arg(p("server.crt")),
        );
        Pki {
            ca_cert: p("ca.crt"),
            ca_key: p("ca.key"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
        }
    }
}

/// An RSA key and a self-signed certificate for it, used to sign and verify registry tokens.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// PEM private key.
    pub key: PathBuf,
    /// PEM self-signed certificate (the registry's `rootcertbundle`).
    pub cert: PathBuf,
    /// The libtrust key id of the public key (what the JWT `kid` header names).
    pub kid: String,
}

impl SigningKey {
    /// Generate an RSA-2048 key and its certificate into `dir`.
    pub fn generate(dir: &Path) -> SigningKey {
        std::fs::create_dir_all(dir).expect("creating the signing key directory");
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=kiln test token issuer",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let spki = run_ok(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-outform", "DER", "-in"])
                .arg(&key),
        )
        .stdout;
        let kid = libtrust_key_id(&spki);
        SigningKey { key, cert, kid }
    }

    /// Sign `data` with RSASSA-PKCS1-v1_5 / SHA-256 (JWT `RS256`).
    pub fn sign_rs256(&self, data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning openssl dgst");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("writing to openssl");
        let out = child.wait_with_output().expect("waiting for openssl");
        assert!(
            out.status.success(),
            "openssl dgst -sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// The key id libtrust (and so distribution's token verifier) gives a public key: SHA-256 of the
/// DER SubjectPublicKeyInfo, first 240 bits, base32, in 12 groups of 4 joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let sum = Sha256::digest(spki_der);
    let b32 = base32(&sum[..30]);
    let groups: Vec<&str> = (0..b32.len())
        .step_by(4)
        .map(|i| &b32[i..(i + 4).min(b32.len())])
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding.
fn base32(data: &[u8]) -> String {
    const ALPHA: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &b in data {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHA[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHA[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn key_id_has_twelve_groups() {
        let id = libtrust_key_id(b"anything");
        assert_eq!(id.split(':').count(), 12);
        assert!(id.split(':').all(|g| g.len() == 4));
    }
}
