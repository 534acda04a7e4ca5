//! kiln's built-in plugins, built for wasm32 and embedded as components.
