//! The `oci-archive` exporter plugin: writes images as oci-archive tars, OCI layouts (`oci:`, as
//! the same tar, which the host unpacks) and docker-archive tars.
//!
//! Options: `scheme` = `oci-archive` (default) | `oci` | `docker-archive`. The destination is
//! `PATH[:REF]`. For OCI, REF becomes the `org.opencontainers.image.ref.name` annotation and
//! defaults to the image's first name. For docker-archive, `RepoTags` lists REF and then every
//! name of the image, normalized (`docker.io/library/...`, `:latest`), as `buildah push` does.
//!
//! The format logic lives in plain modules ([`export`], [`tar`], [`oci`], [`docker`], [`json`],
//! [`reference`]) that run natively in tests; `plugin` adapts the host handles to [`export::Io`].

pub mod docker;
pub mod export;
pub mod json;
pub mod model;
pub mod oci;
pub mod reference;
pub mod tar;

// The component's exports link only for wasm (native cdylibs reject the `:` in their names).
#[cfg(target_arch = "wasm32")]
mod plugin;
