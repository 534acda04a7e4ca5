//! Test support: an in-memory [`Io`] that behaves like the host's writer, and image builders.
#![allow(dead_code)]

use kiln_plugin_oci_archive::export::{Error, Io};
use kiln_plugin_oci_archive::model::{Descriptor, Image, Layer};
use sha2::Digest;
use std::io::{Read, Write};

/// The archive in memory; layer blobs stay "host side" in `blobs`.
pub struct MemIo {
    pub out: Vec<u8>,
    pub blobs: Vec<Vec<u8>>,
    /// Largest single `write` call seen (layer bodies must not go through `write` for OCI).
    pub largest_write: usize,
    pub patches: usize,
}

impl MemIo {
    pub fn new(blobs: Vec<Vec<u8>>) -> Self {
        Self { out: Vec::new(), blobs, largest_write: 0, patches: 0 }
    }
}

impl Io for MemIo {
    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.largest_write = self.largest_write.max(data.len());
        self.out.extend_from_slice(data);
        Ok(())
    }
    fn position(&mut self) -> u64 {
        self.out.len() as u64
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let start = offset as usize;
        if start + data.len() > self.out.len() {
            return Err(Error::InvalidInput(format!("write-at {offset}+{} past {}", data.len(), self.out.len())));
        }
        self.out[start..start + data.len()].copy_from_slice(data);
        self.patches += 1;
        Ok(())
    }
    fn copy_layer_blob(&mut self, index: usize, len: u64) -> Result<(), Error> {
        let b = &self.blobs[index];
        if b.len() as u64 != len {
            return Err(Error::InvalidInput(format!("blob has {} bytes, descriptor says {len}", b.len())));
        }
        self.out.extend_from_slice(b);
        Ok(())
    }
    fn copy_layer_uncompressed(&mut self, index: usize) -> Result<u64, Error> {
        let data = uncompress(&self.blobs[index]);
        self.out.extend_from_slice(&data);
        Ok(data.len() as u64)
    }
    fn sha256_hex(&mut self, data: &[u8]) -> String {
        sha256_hex(data)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn uncompress(blob: &[u8]) -> Vec<u8> {
    if blob.starts_with(&[0x1f, 0x8b]) {
        let mut v = Vec::new();
        flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut v).unwrap();
        v
    } else {
        blob.to_vec()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A layer tar holding `files` (path, content).
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: format!("sha256:{}", sha256_hex(data)),
        size: data.len() as u64,
        annotations: vec![],
    }
}

/// An image of `layers` (uncompressed tars), gzip-compressed when `compress`; returns it and the layer blobs.
pub fn image(layers: &[Vec<u8>], compress: bool, names: &[&str]) -> (Image, Vec<Vec<u8>>) {
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| if compress { gzip(l) } else { l.clone() }).collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect();
    let config = serde_json::json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "Labels": {"a": "<b>"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    });
    let config_json = serde_json::to_vec(&config).unwrap();
    let layer_type = if compress { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" };
    let layer_descs: Vec<Descriptor> = blobs.iter().map(|b| descriptor(layer_type, b)).collect();
    let config_desc = descriptor("application/vnd.oci.image.config.v1+json", &config_json);
    let desc_json = |d: &Descriptor| serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc_json(&config_desc),
        "layers": layer_descs.iter().map(desc_json).collect::<Vec<_>>(),
    });
    let manifest_json = serde_json::to_vec(&manifest).unwrap();
    let image = Image {
        names: names.iter().map(|s| s.to_string()).collect(),
        manifest: descriptor("application/vnd.oci.image.manifest.v1+json", &manifest_json),
        manifest_json,
        config: config_desc,
        config_json,
        layers: layer_descs.into_iter().zip(diff_ids).map(|(descriptor, diff_id)| Layer { descriptor, diff_id }).collect(),
        timestamp: None,
    };
    (image, blobs)
}

/// One member of an archive as an independent reader (the `tar` crate) sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub path: String,
    pub kind: u8,
    pub mode: u32,
    pub mtime: u64,
    pub uid: u64,
    pub gid: u64,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

pub fn members(archive: &[u8]) -> Vec<Member> {
    assert_eq!(archive.len() % 512, 0, "archive is whole blocks");
    assert!(archive.ends_with(&[0u8; 1024]), "archive ends with two zero blocks");
    let mut ar = tar::Archive::new(archive);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            e.read_to_end(&mut data).unwrap();
            Member {
                path,
                kind: h.entry_type().as_byte(),
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link,
                data,
            }
        })
        .collect()
}

pub fn opts(scheme: &str) -> Vec<(String, String)> {
    vec![("scheme".to_string(), scheme.to_string())]
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-ociarchive-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
