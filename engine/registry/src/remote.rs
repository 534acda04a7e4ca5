//! The distribution API on one repository: manifests (GET/PUT), blobs (HEAD, streamed GET with
//! resume, cross-repository mount, PATCH-then-PUT upload), every byte checked against its digest.

use crate::error::{Error, Result};
use crate::http::{Body, Call, Session, drain, error_message};
use crate::progress::Item;
use kiln_core::{Digest, media_types};
use kiln_store::{BlobWriter, Store, StoreError};
use std::io::Read;
use std::sync::Arc;
use ureq::http::Response;

/// Receives a blob's bytes as they arrive from the registry, before the blob is verified (its
/// digest is checked, and the blob stored, only when the download ends): whatever it makes of
/// them is speculative until the pull succeeds.
pub trait BlobTee: Send {
    /// The next bytes of the blob.
    fn data(&mut self, bytes: &[u8]);
    /// The download started over from the beginning: the bytes given so far are void.
    fn restart(&mut self);
}

/// Largest manifest or index accepted (distribution's own limit is 4 MiB).
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;
/// Largest config read into memory.
pub(crate) const MAX_CONFIG: u64 = 64 << 20;

/// Every manifest type kiln reads, for `Accept`.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest or index as fetched.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
    pub url: String,
}

/// One repository in one registry.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub sess: Arc<Session>,
    pub repo: String,
}

impl Remote {
    pub fn new(sess: Arc<Session>, repo: &str) -> Remote {
        Remote {
            sess,
            repo: repo.to_string(),
        }
    }

    /// `HOST/REPO`, as blob locations are recorded.
    pub fn location(&self) -> String {
        format!("{}/{}", self.sess.registry, self.repo)
    }

    fn pull_scopes(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repo)]
    }

    fn push_scopes(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.repo)]
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.sess.base, self.repo)
    }

    /// Map a failed response to an error about `what` (a reference or digest).
    fn fail(&self, method: &str, url: &str, mut resp: Response<ureq::Body>, what: &str) -> Error {
        let status = resp.status().as_u16();
        let message = error_message(&mut resp);
        match status {
            401 | 403 => {
                let hint = if self.sess.has_credentials() {
                    String::new()
                } else {
                    format!(" (no credentials for {}: log in first)", self.sess.registry)
                };
                let detail = if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                };
                Error::Unauthorized {
                    registry: self.sess.registry.clone(),
                    message: format!("{method} {url}: HTTP {status}{detail}{hint}"),
                }
            }
            404 => Error::NotFound {
                reference: what.to_string(),
                message: format!(
                    "{method} {url}: HTTP 404{}",
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
            },
            _ => Error::Status {
                method: method.into(),
                url: url.into(),
                status,
                message,
            },
        }
    }

    /// GET a manifest or index by tag or digest; checks the bytes against the digest asked for
    /// and against `Docker-Content-Digest`.
    pub fn get_manifest(&self, reference: &str) -> Result<Fetched> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut resp = self.sess.send(
            Call::new("GET", url.clone(), &self.pull_scopes()).header("Accept", ACCEPT_MANIFESTS),
        )?;
        if resp.status().as_u16() != 200 {
            return Err(self.fail(
                "GET",
                &url,
                resp,
                &format!("{}/{}:{reference}", self.sess.registry, self.repo),
            ));
        }
        let header_digest = header(&resp, "docker-content-digest");
        let content_type = header(&resp, "content-type")
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string());
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| Error::Network {
                method: "GET".into(),
                url: url.clone(),
                message: crate::http::describe(&e),
            })?;
        let digest = Digest::of_bytes(&bytes);
        if let Ok(want) = Digest::parse(reference)
            && want != digest
        {
            return Err(Error::DigestMismatch {
                expected: want.to_string(),
                actual: digest.to_string(),
                source_url: url,
            });
        }
        if let Some(h) = header_digest
            && let Ok(claimed) = Digest::parse(&h)
            && claimed != digest
        {
            return Err(Error::DigestMismatch {
                expected: claimed.to_string(),
                actual: digest.to_string(),
                source_url: url,
            });
        }
        let media_type = manifest_media_type(content_type.as_deref(), &bytes)
            .map_err(|m| Error::manifest(&url, m))?;
        Ok(Fetched {
            bytes,
            media_type,
            digest,
            url,
        })
    }

    /// GET a small blob (a config) into memory, verified.
    pub fn get_blob_bytes(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut resp = self
            .sess
            .send(Call::new("GET", url.clone(), &self.pull_scopes()))?;
        if resp.status().as_u16() != 200 {
            return Err(self.fail("GET", &url, resp, &digest.to_string()));
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| Error::Network {
                method: "GET".into(),
                url: url.clone(),
                message: format!("{digest}: {}", crate::http::describe(&e)),
            })?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
                source_url: url,
            });
        }
        Ok(bytes)
    }

    /// Stream blob `digest` of `size` bytes into the store. A connection that breaks mid-body is
    /// resumed with a `Range` request (or restarted when the registry ignores ranges), up to the
    /// session's retry count. Nothing is stored unless every byte arrived and the digest matches.
    pub fn download_blob(
        &self,
        store: &Store,
        digest: &Digest,
        size: u64,
        retries: u32,
        item: &Item,
        mut tee: Option<&mut (dyn BlobTee + '_)>,
    ) -> Result<()> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut writer: BlobWriter = store.blob_writer().map_err(store_err)?;
        let restart = |tee: &mut Option<&mut (dyn BlobTee + '_)>| {
            if let Some(t) = tee.as_deref_mut() {
                t.restart();
            }
        };
        let mut written: u64 = 0;
        let mut failures = 0;
        let mut buf = vec![0u8; 256 * 1024];
        'attempts: loop {
            let mut call = Call::new("GET", url.clone(), &self.pull_scopes());
            if written > 0 {
                call = call.header("Range", format!("bytes={written}-"));
            }
            let mut resp = self.sess.send(call)?;
            match resp.status().as_u16() {
                200 => {
                    if written > 0 {
                        // The registry ignored the range: start over.
                        writer = store.blob_writer().map_err(store_err)?;
                        written = 0;
                        item.reset();
                        restart(&mut tee);
                    }
                }
                206 if written > 0 => {
                    let ok = header(&resp, "content-range").and_then(|r| {
                        r.strip_prefix("bytes ")
                            .and_then(|r| r.split('-').next())
                            .and_then(|s| s.parse::<u64>().ok())
                    }) == Some(written);
                    if !ok {
                        drain(&mut resp);
                        writer = store.blob_writer().map_err(store_err)?;
                        written = 0;
                        item.reset();
                        restart(&mut tee);
                        continue 'attempts;
                    }
                }
                416 if written == size => break 'attempts,
                _ => return Err(self.fail("GET", &url, resp, &digest.to_string())),
            }
            let announced = resp.body().content_length();
            let mut got: u64 = 0;
            let mut reader = resp.into_body().into_reader();
            let broke = loop {
                match reader.read(&mut buf) {
                    // The server delivered all it announced (or announced nothing): done.
                    Ok(0) if announced.is_none_or(|l| got >= l) => break 'attempts,
                    Ok(0) => break std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    Ok(n) => {
                        if written + n as u64 > size {
                            return Err(Error::SizeMismatch {
                                digest: digest.to_string(),
                                expected: size,
                                actual: written + n as u64,
                                source_url: url,
                            });
                        }
                        std::io::Write::write_all(&mut writer, &buf[..n])
                            .map_err(|e| Error::io(store.tmp_dir(), e))?;
                        if let Some(t) = tee.as_deref_mut() {
                            t.data(&buf[..n]);
                        }
                        written += n as u64;
                        got += n as u64;
                        item.inc(n as u64);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break e,
                }
            };
            failures += 1;
            if failures > retries {
                return Err(Error::Network {
                    method: "GET".into(),
                    url,
                    message: format!(
                        "{digest}: connection failed after {written} of {size} bytes: {broke}"
                    ),
                });
            }
            tracing::debug!("GET {url}: {broke} after {written} bytes; resuming");
            std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(failures)));
        }
        if written != size {
            return Err(Error::SizeMismatch {
                digest: digest.to_string(),
                expected: size,
                actual: written,
                source_url: url,
            });
        }
        let actual = writer.digest();
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
                source_url: url,
            });
        }
        writer.commit(Some(digest)).map_err(|e| match e {
            StoreError::DigestMismatch {
                expected, actual, ..
            } => Error::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
                source_url: url.clone(),
            },
            other => store_err(other),
        })?;
        Ok(())
    }

    /// HEAD a blob: whether the registry has it.
    pub fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut resp = self
            .sess
            .send(Call::new("HEAD", url.clone(), &self.push_scopes()))?;
        match resp.status().as_u16() {
            200 => {
                drain(&mut resp);
                Ok(true)
            }
            404 => Ok(false),
            _ => Err(self.fail("HEAD", &url, resp, &digest.to_string())),
        }
    }

    /// Start an upload, asking to mount `digest` from `from` (another repository of this
    /// registry) when given. `Ok(None)`: mounted, nothing to upload; `Ok(Some(location))`: upload there.
    pub fn start_upload(&self, digest: &Digest, from: Option<&str>) -> Result<Option<String>> {
        let mut scopes = self.push_scopes();
        let url = match from {
            Some(f) => {
                scopes.push(format!("repository:{f}:pull"));
                format!(
                    "{}?mount={digest}&from={}",
                    self.url("blobs/uploads/"),
                    crate::http::encode(f)
                )
            }
            None => self.url("blobs/uploads/"),
        };
        let mut resp = self.sess.send(Call::new("POST", url.clone(), &scopes))?;
        match resp.status().as_u16() {
            201 if from.is_some() => {
                drain(&mut resp);
                Ok(None)
            }
            202 => {
                let loc = header(&resp, "location").ok_or_else(|| Error::Status {
                    method: "POST".into(),
                    url: url.clone(),
                    status: 202,
                    message: "upload started without a Location".into(),
                })?;
                drain(&mut resp);
                Ok(Some(self.sess.absolute(&loc)))
            }
            _ => Err(self.fail("POST", &url, resp, &digest.to_string())),
        }
    }

    /// Upload a blob of `size` bytes read from `open()`: PATCH the whole stream to the upload
    /// location, then PUT with the digest. The whole sequence is retried on connection errors.
    pub fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        mut location: Option<String>,
        open: &(dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Sync),
        retries: u32,
        item: &Item,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let loc = match location.take() {
                Some(l) => l,
                None => match self.start_upload(digest, None)? {
                    Some(l) => l,
                    None => return Ok(()),
                },
            };
            item.reset();
            match self.upload_to(&loc, digest, size, open) {
                Ok(()) => return Ok(()),
                Err(e @ Error::Network { .. }) if attempt < retries => {
                    attempt += 1;
                    tracing::debug!("upload of {digest} failed ({e}); retrying");
                    std::thread::sleep(std::time::Duration::from_millis(250 * u64::from(attempt)));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn upload_to(
        &self,
        loc: &str,
        digest: &Digest,
        size: u64,
        open: &(dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Sync),
    ) -> Result<()> {
        let scopes = self.push_scopes();
        let mut call = Call::new("PATCH", loc.to_string(), &scopes)
            .header("Content-Type", "application/octet-stream")
            .body(Body::Stream(open, size));
        call.retry = false;
        let mut resp = self.sess.send(call)?;
        let status = resp.status().as_u16();
        if status != 202 && status != 204 {
            return Err(self.fail("PATCH", loc, resp, &digest.to_string()));
        }
        let next = header(&resp, "location")
            .map(|l| self.sess.absolute(&l))
            .unwrap_or_else(|| loc.to_string());
        drain(&mut resp);
        let sep = if next.contains('?') { '&' } else { '?' };
        let put_url = format!(
            "{next}{sep}digest={}",
            crate::http::encode(&digest.to_string())
        );
        let mut call = Call::new("PUT", put_url.clone(), &scopes)
            .header("Content-Type", "application/octet-stream");
        call.retry = false;
        let mut resp = self.sess.send(call)?;
        match resp.status().as_u16() {
            201 | 204 => {
                drain(&mut resp);
                Ok(())
            }
            _ => Err(self.fail("PUT", &put_url, resp, &digest.to_string())),
        }
    }

    /// PUT a manifest under `reference` (a tag or its digest); returns its digest after checking
    /// the registry's `Docker-Content-Digest`.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let url = self.url(&format!("manifests/{reference}"));
        let digest = Digest::of_bytes(bytes);
        let call = Call::new("PUT", url.clone(), &self.push_scopes())
            .header("Content-Type", media_type)
            .body(Body::Bytes(bytes));
        let mut resp = self.sess.send(call)?;
        match resp.status().as_u16() {
            200 | 201 | 202 | 204 => {
                if let Some(h) = header(&resp, "docker-content-digest")
                    && let Ok(d) = Digest::parse(&h)
                    && d != digest
                {
                    return Err(Error::DigestMismatch {
                        expected: digest.to_string(),
                        actual: d.to_string(),
                        source_url: url,
                    });
                }
                drain(&mut resp);
                Ok(digest)
            }
            _ => Err(self.fail("PUT", &url, resp, reference)),
        }
    }
}

pub(crate) fn store_err(e: StoreError) -> Error {
    Error::Store(e.to_string())
}

fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The media type of a manifest document: its `mediaType` field, else the `Content-Type` when
/// specific, else its shape (`manifests` → OCI index, `config` → OCI manifest).
pub(crate) fn manifest_media_type(
    content_type: Option<&str>,
    bytes: &[u8],
) -> std::result::Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    let field = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty());
    let t = match (field, content_type) {
        (Some(f), _) => f.to_string(),
        (None, Some(c)) if media_types::is_manifest(c) || media_types::is_index(c) => c.to_string(),
        _ if v.get("manifests").is_some() => media_types::OCI_INDEX.to_string(),
        _ if v.get("config").is_some() => media_types::OCI_MANIFEST.to_string(),
        _ => return Err("neither a manifest nor an index".into()),
    };
    if !(media_types::is_manifest(&t) || media_types::is_index(&t)) {
        return Err(format!("unsupported manifest media type {t}"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::manifest_media_type;

    #[test]
    fn media_type_detection() {
        assert_eq!(
            manifest_media_type(
                Some("application/json"),
                br#"{"schemaVersion":2,"config":{},"layers":[]}"#
            )
            .unwrap(),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            manifest_media_type(
                Some("application/vnd.docker.distribution.manifest.list.v2+json"),
                br#"{"schemaVersion":2,"manifests":[]}"#
            )
            .unwrap(),
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
        assert!(
            manifest_media_type(None, br#"{"schemaVersion":1,"fsLayers":[]}"#)
                .unwrap_err()
                .contains("schema 1")
        );
        assert!(manifest_media_type(None, b"nope").is_err());
    }
}
