//! kiln's WebAssembly plugin host: loads, caps and calls frontend, injector and exporter components.
