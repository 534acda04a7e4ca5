//! The `sif` exporter plugin: writes an image as a SIF file laid out like
//! `apptainer build x.sif docker://IMG` (definition file, inspect metadata, OCI config, one
//! squashfs primary system partition with Apptainer's `/.singularity.d` conventions).
//!
//! Options: `compression` = `gzip` (default) | `zstd` | `xz`; `block-size` (default `128K`).
//! Extended attributes in layers are dropped.
//!
//! The format logic lives in plain modules ([`sif`], [`squashfs`], [`tar`], [`merge`],
//! [`apptainer`], [`export`]) that run natively in tests; this file adapts the host handles.

pub mod apptainer;
pub mod civil;
pub mod error;
pub mod export;
pub mod merge;
pub mod sif;
pub mod sink;
pub mod squashfs;
pub mod tar;

#[cfg(test)]
pub(crate) mod test_util;

// The component's exports link only for wasm (native cdylibs reject the `:` in their names).
#[cfg(target_arch = "wasm32")]
mod plugin;
