//! The `dockerfile` frontend plugin: turns a Dockerfile/Containerfile into kiln's build plan.
//!
//! The parser and plan builder are plain Rust (`parser`, `instructions`, `words`, `builder`,
//! `plan`) and testable natively; `wit` only converts to and from the WIT types and asks the host
//! (`images.image-config`) for base-image configs. It is compiled for wasm32 only, where the
//! component exports can be linked.

pub mod builder;
pub mod diag;
pub mod imageconfig;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod words;

#[cfg(target_arch = "wasm32")]
mod wit;
