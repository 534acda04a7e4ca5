//! kiln's built-in plugins (Dockerfile and buildah-script frontends, proxy-CA and secrets
//! injectors, oci-archive and SIF exporters), built from `plugins/` for wasm32 by this crate's
//! build script and embedded here as components, so a `kiln` binary needs nothing else.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The embedded components: (cargo package name, component bytes).
pub fn components() -> &'static [(&'static str, &'static [u8])] {
    BUILTINS
}

/// The sha256 (hex) of each embedded component, computed when the crate was built:
/// (cargo package name, digest).
pub fn digests() -> &'static [(&'static str, &'static str)] {
    DIGESTS
}
