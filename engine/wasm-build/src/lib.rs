//! Builds guest crates for wasm32-unknown-unknown and encodes them as components (used by build scripts).
