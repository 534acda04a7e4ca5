//! The `buildah-script` frontend plugin: turns a script of buildah verbs (`buildah from`, `run`,
//! `copy`, `add`, `config`, `commit`, `rm`; `kiln` works as the first word too) into kiln's
//! build plan, one stage per working container, committed as buildah commits.
//!
//! `shell` reads the script's shell syntax and `script` maps the verbs to the plan; both are
//! plain Rust, tested natively. `wit` holds the component exports, compiled for wasm32 only.

pub mod script;
pub mod shell;

#[cfg(target_arch = "wasm32")]
mod wit;
