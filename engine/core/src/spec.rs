//! serde types of OCI and Docker schema 2 image documents: descriptors, manifests, indexes and
//! image configs. Unknown keys are kept (`extra`) so a document read and written again keeps them;
//! absent or null optional fields are omitted on output, as Go's `omitempty` does for buildah.

use crate::{Digest, Platform, media_types};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Annotation or label map.
pub type Annotations = BTreeMap<String, String>;

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}

/// A content descriptor: what a manifest or index says about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Alternative download locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// Embedded content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Platform of the referenced manifest (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type of the referenced manifest.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            data: None,
            platform: None,
            artifact_type: None,
            extra: BTreeMap::new(),
        }
    }

    /// A descriptor of `bytes` (digest and size computed).
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Self {
        Self::new(media_type, Digest::of_bytes(bytes), bytes.len() as u64)
    }
}

/// An OCI image manifest or a Docker schema 2 manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// `application/vnd.oci.image.manifest.v1+json` or Docker's; optional in OCI.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type (OCI 1.1 artifacts).
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub layers: Vec<Descriptor>,
    /// Manifest this one refers to (OCI 1.1 referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Manifest {
    /// An OCI image manifest (with `mediaType` set, as buildah writes it).
    pub fn new_oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Manifest {
            schema_version: 2,
            media_type: Some(media_types::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }

    /// A Docker schema 2 manifest.
    pub fn new_docker(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Manifest {
            media_type: Some(media_types::DOCKER_MANIFEST.to_string()),
            ..Self::new_oci(config, layers)
        }
    }

    /// Parse manifest JSON.
    pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// Compact JSON, as written to registries and stores.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialization cannot fail")
    }

    /// The media type, defaulting to OCI's when the document does not say (OCI allows omitting it).
    pub fn media_type_or_default(&self) -> &str {
        self.media_type
            .as_deref()
            .unwrap_or(media_types::OCI_MANIFEST)
    }

    /// True for a Docker schema 2 manifest.
    pub fn is_docker(&self) -> bool {
        self.media_type.as_deref() == Some(media_types::DOCKER_MANIFEST)
    }
}

/// An OCI image index or a Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// `application/vnd.oci.image.index.v1+json` or Docker's manifest list type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The manifests, usually one per platform.
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifests: Vec<Descriptor>,
    /// Manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Index {
    /// An empty OCI index.
    pub fn new_oci(manifests: Vec<Descriptor>) -> Self {
        Index {
            schema_version: 2,
            media_type: Some(media_types::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }

    /// Parse index JSON.
    pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// Compact JSON.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("index serialization cannot fail")
    }

    /// The first image manifest entry whose platform satisfies `wanted` (see [`Platform::matches`]).
    /// Attestation manifests (`unknown/unknown`) never match.
    pub fn find_platform(&self, wanted: &Platform) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .filter(|d| {
                media_types::is_manifest(&d.media_type) || media_types::is_index(&d.media_type)
            })
            .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(wanted)))
    }
}

/// A set of strings serialized as a JSON object with empty-object values (`{"80/tcp":{}}`), as
/// `ExposedPorts` and `Volumes` are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringSet(pub BTreeSet<String>);

impl StringSet {
    /// Add an entry.
    pub fn insert(&mut self, s: impl Into<String>) -> bool {
        self.0.insert(s.into())
    }
    /// Whether `s` is present.
    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }
    /// Entries in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S: Into<String>> FromIterator<S> for StringSet {
    fn from_iter<I: IntoIterator<Item = S>>(it: I) -> Self {
        StringSet(it.into_iter().map(Into::into).collect())
    }
}

impl Serialize for StringSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for k in &self.0 {
            m.serialize_entry(k, &serde_json::Map::new())?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for StringSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, serde::de::IgnoredAny>::deserialize(d)?;
        Ok(StringSet(m.into_keys().collect()))
    }
}

/// Docker's health check (`HEALTHCHECK`); durations are nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    #[serde(rename = "Test", default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Time between checks, ns.
    #[serde(rename = "Interval", default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time one check may take, ns.
    #[serde(rename = "Timeout", default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start period, ns.
    #[serde(
        rename = "StartPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_period: Option<i64>,
    /// Interval during the start period, ns.
    #[serde(
        rename = "StartInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_interval: Option<i64>,
    /// Failures before unhealthy.
    #[serde(rename = "Retries", default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The execution parameters of an image (`config` in the image config): OCI's fields plus Docker's
/// `Healthcheck`, `OnBuild` and `Shell`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// `user[:group]`.
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `port/proto` entries.
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<StringSet>,
    /// `KEY=value` entries.
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Volume paths.
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<StringSet>,
    /// Working directory.
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Annotations>,
    /// Stop signal.
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    /// Windows: arguments already escaped.
    #[serde(
        rename = "ArgsEscaped",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub args_escaped: Option<bool>,
    /// Docker health check.
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<HealthConfig>,
    /// Docker `ONBUILD` triggers.
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// Docker `SHELL`.
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Keys this type does not model (Docker's `Hostname`, `Tty`…), kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl RuntimeConfig {
    /// The value of environment variable `key`, if set.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.env.as_ref()?.iter().rev().find_map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            (k == key).then_some(v)
        })
    }

    /// Set `key=value`, replacing an existing entry in place.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| env_key(e) == key) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    /// Set `key=value` as the last entry, removing any earlier one (buildah's `SetEnv`).
    pub fn env_append(&mut self, key: &str, value: &str) {
        self.env_unset(key);
        self.env
            .get_or_insert_with(Vec::new)
            .push(format!("{key}={value}"));
    }

    /// Remove every entry of `key`.
    pub fn env_unset(&mut self, key: &str) {
        if let Some(env) = self.env.as_mut() {
            env.retain(|e| env_key(e) != key);
        }
    }
}

/// The variable name of an environment entry (`KEY=VALUE`; an entry without `=` is all name).
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, base first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// One `history` entry of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction that made the layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when this step made no layer (no entry in `rootfs.diff_ids`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_layer: bool,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An image config (OCI `application/vnd.oci.image.config.v1+json` or Docker's
/// `application/vnd.docker.container.image.v1+json`). Docker-only top-level keys
/// (`container_config`, `docker_version`, `id`, `parent`…) are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Go architecture name.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub architecture: String,
    /// Operating system.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub os: String,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Execution parameters.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: RuntimeConfig,
    /// Layer diff IDs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rootfs: RootFs,
    /// Build history, base first.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Keys this type does not model, kept as found.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ImageConfig {
    /// An empty config for `platform`, with `rootfs.type = layers`.
    pub fn new(platform: &Platform) -> Self {
        ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            os_version: platform.os_version.clone(),
            ..Default::default()
        }
    }

    /// Parse config JSON.
    pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// Compact JSON, as stored in the config blob.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("config serialization cannot fail")
    }

    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: self.variant.clone(),
            extra: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de>>(json: &str) -> T {
        let v: T = serde_json::from_str(json).unwrap();
        let out: Value = serde_json::to_value(&v).unwrap();
        let want: Value = serde_json::from_str(json).unwrap();
        assert_eq!(out, want, "round trip changed the document");
        v
    }

    // Shapes written by buildah 1.28 (`buildah inspect`, `skopeo inspect --raw`).
    const BUILDAH_OCI_CONFIG: &str = r#"{"created":"2024-05-01T10:00:00.123456789Z","architecture":"amd64","os":"linux","config":{"User":"1000:1000","ExposedPorts":{"80/tcp":{},"8080/tcp":{}},"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","A=b=c"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Volumes":{"/data":{}},"WorkingDir":"/app","Labels":{"io.buildah.version":"1.28.2","x":"y"},"StopSignal":"SIGTERM"},"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},"history":[{"created":"2024-05-01T10:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:abc in / ","comment":"FROM scratch"},{"created":"2024-05-01T10:00:01Z","created_by":"/bin/sh -c #(nop) ENV A=b=c","empty_layer":true}]}"#;

    const DOCKER_CONFIG: &str = r#"{"architecture":"arm64","variant":"v8","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"Tty":false,"Env":["PATH=/bin"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3},"ArgsEscaped":true,"Image":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","Volumes":null,"WorkingDir":"","Entrypoint":[],"OnBuild":["RUN true"],"Labels":{},"Shell":["/bin/bash","-c"]},"container":"abc","container_config":{"Cmd":["/bin/sh"]},"created":"2023-01-01T00:00:00.1Z","docker_version":"20.10.23","history":[{"created":"2023-01-01T00:00:00Z","created_by":"x"}],"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

    #[test]
    fn oci_config_roundtrip() {
        let c: ImageConfig = roundtrip(BUILDAH_OCI_CONFIG);
        assert_eq!(c.config.user.as_deref(), Some("1000:1000"));
        assert!(
            c.config
                .exposed_ports
                .as_ref()
                .unwrap()
                .contains("8080/tcp")
        );
        assert_eq!(c.config.env_get("A"), Some("b=c"));
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert!(c.history[1].empty_layer && !c.history[0].empty_layer);
        assert_eq!(c.platform().to_string(), "linux/amd64");
    }

    #[test]
    fn docker_config_roundtrip_keeps_unknown_keys() {
        // `Volumes: null` is the one thing that changes: null is dropped like omitempty does.
        let c: ImageConfig = serde_json::from_str(DOCKER_CONFIG).unwrap();
        assert_eq!(c.config.healthcheck.as_ref().unwrap().retries, Some(3));
        assert_eq!(c.config.entrypoint, Some(vec![]));
        assert_eq!(c.config.shell.as_ref().unwrap()[0], "/bin/bash");
        assert_eq!(c.extra["docker_version"], "20.10.23");
        assert_eq!(c.config.extra["Hostname"], "");
        let mut want: Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
        want["config"].as_object_mut().unwrap().remove("Volumes");
        assert_eq!(serde_json::to_value(&c).unwrap(), want);
    }

    #[test]
    fn manifest_and_index_roundtrip() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1234},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","size":99,"annotations":{"a":"b"}}],"annotations":{"org.opencontainers.image.base.name":"x"},"x-custom":[1,2]}"#;
        let man: Manifest = roundtrip(m);
        assert_eq!(man.layers[0].size, 99);
        assert_eq!(man.extra["x-custom"], serde_json::json!([1, 2]));
        // Serialization keeps Go's field order for the modelled keys.
        let s = String::from_utf8(Manifest::new_oci(man.config.clone(), vec![]).to_vec()).unwrap();
        assert!(s.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType""#), "{s}");
        assert!(s.ends_with(r#""layers":[]}"#), "{s}");

        let i = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":527,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","size":527,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
        let idx: Index = roundtrip(i);
        let arm = idx
            .find_platform(&Platform::parse("linux/arm64").unwrap())
            .unwrap();
        assert!(arm.digest.hex().starts_with("ba78"));
        assert!(
            idx.find_platform(&Platform::parse("linux/s390x").unwrap())
                .is_none()
        );
    }

    // Written by `buildah commit --format docker` (1.28): config and manifest as stored.
    const BUILDAH_DOCKER_CONFIG: &str = r#"{"created":"2026-11-22T06:36:16.279456859Z","container":"e898fe76dab92a50a8fd58cf09bbc2faf91d6c8db177e92b69f1ffd1d84fca74","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=1"],"Cmd":["sh"],"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":[],"Labels":{"io.buildah.version":"1.28.2","x":"y"}},"config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=1"],"Cmd":["sh"],"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":[],"Labels":{"io.buildah.version":"1.28.2","x":"y"}},"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"]},"history":[{"created":"2026-11-22T06:36:16.280498553Z","created_by":"/bin/sh"}]}"#;
    const BUILDAH_DOCKER_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":983,"digest":"sha256:de0eb92c3c11fb21e732b98e19ebdf1b01441416365e33d1cd94eef9db49b39f"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","size":1024,"digest":"sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"}]}"#;

    #[test]
    fn buildah_docker_format_roundtrip() {
        let m: Manifest = roundtrip(BUILDAH_DOCKER_MANIFEST);
        assert!(m.is_docker());
        assert_eq!(m.config.size, 983);
        assert_eq!(
            media_types::layer_compression(&m.layers[0].media_type),
            Some(crate::Compression::None)
        );
        let c: ImageConfig = serde_json::from_str(BUILDAH_DOCKER_CONFIG).unwrap();
        assert_eq!(c.config.on_build, Some(vec![]));
        assert_eq!(c.config.user.as_deref(), Some(""));
        // Only the null-valued modelled keys of `config` are dropped; container_config is kept as is.
        let mut want: Value = serde_json::from_str(BUILDAH_DOCKER_CONFIG).unwrap();
        want["config"]
            .as_object_mut()
            .unwrap()
            .retain(|_, v| !v.is_null());
        assert_eq!(serde_json::to_value(&c).unwrap(), want);
    }

    #[test]
    fn bad_digest_in_descriptor_is_an_error() {
        let bad = r#"{"mediaType":"x","digest":"sha256:1234","size":1}"#;
        let err = serde_json::from_str::<Descriptor>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256:1234"), "{err}");
    }

    #[test]
    fn new_config_shape() {
        let c = ImageConfig::new(&Platform::parse("linux/amd64").unwrap());
        assert_eq!(
            String::from_utf8(c.to_vec()).unwrap(),
            r#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#
        );
        let mut rc = RuntimeConfig::default();
        rc.env_set("A", "1");
        rc.env_set("B", "2");
        rc.env_set("A", "3");
        assert_eq!(rc.env.as_deref().unwrap(), ["A=3", "B=2"]);
        rc.env_append("A", "4");
        assert_eq!(rc.env.as_deref().unwrap(), ["B=2", "A=4"]);
        rc.env.as_mut().unwrap().push("B".into());
        rc.env_unset("B");
        assert_eq!(rc.env.as_deref().unwrap(), ["A=4"]);
    }
}
