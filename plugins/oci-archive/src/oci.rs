//! The small JSON files of an OCI image layout: `oci-layout` and `index.json`.

use crate::json::quote;
use crate::model::Descriptor;

/// Content of `oci-layout`, byte for byte what skopeo and docker write.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion": "1.0.0"}"#;

/// Media type of `index.json`.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Annotation naming a manifest in an image layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `manifest` with `ref_name` (when given) set as its `org.opencontainers.image.ref.name`
/// annotation, replacing any earlier one; annotations sorted by key.
pub fn index_descriptor(manifest: &Descriptor, ref_name: Option<&str>) -> Descriptor {
    let mut annotations: Vec<(String, String)> =
        manifest.annotations.iter().filter(|(k, _)| ref_name.is_none() || k != REF_NAME).cloned().collect();
    if let Some(r) = ref_name {
        annotations.push((REF_NAME.to_string(), r.to_string()));
    }
    annotations.sort();
    annotations.dedup_by(|a, b| a.0 == b.0);
    Descriptor { annotations, ..manifest.clone() }
}

/// A descriptor as a compact JSON object (fields in the image-spec order).
pub fn descriptor_json(d: &Descriptor) -> String {
    let mut s = format!("{{\"mediaType\":{},\"digest\":{},\"size\":{}", quote(&d.media_type), quote(&d.digest), d.size);
    if !d.annotations.is_empty() {
        s.push_str(",\"annotations\":{");
        for (i, (k, v)) in d.annotations.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&quote(k));
            s.push(':');
            s.push_str(&quote(v));
        }
        s.push('}');
    }
    s.push('}');
    s
}

/// `index.json` listing the single manifest `entry` (already annotated).
pub fn index_json(entry: &Descriptor) -> String {
    format!("{{\"schemaVersion\":2,\"mediaType\":{},\"manifests\":[{}]}}", quote(INDEX_MEDIA_TYPE), descriptor_json(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 498,
            annotations: vec![("z.key".into(), "1".into()), (REF_NAME.into(), "old".into())],
        }
    }

    #[test]
    fn index_names_the_manifest() {
        let entry = index_descriptor(&manifest(), Some("myimg:v1"));
        let json = index_json(&entry);
        assert_eq!(
            json,
            format!(
                concat!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#,
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":498,"#,
                    r#""annotations":{{"org.opencontainers.image.ref.name":"myimg:v1","z.key":"1"}}}}]}}"#
                ),
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn without_a_ref_existing_annotations_stay() {
        let mut m = manifest();
        let entry = index_descriptor(&m, None);
        assert_eq!(entry.annotations, vec![(REF_NAME.to_string(), "old".to_string()), ("z.key".into(), "1".into())]);
        m.annotations.clear();
        let json = index_json(&index_descriptor(&m, None));
        assert!(!json.contains("annotations"), "{json}");
    }
}
