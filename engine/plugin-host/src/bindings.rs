//! Host bindings for the three worlds of `kiln:plugin@0.1.0`, generated from `wit/`.
//! Interfaces shared between worlds are generated once (in `exporter`) and reused by the others.

#![allow(missing_docs)]

/// The exporter world; also the home of the shared interfaces (types, host, blobs).
pub mod exporter {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "exporter-plugin",
        with: {
            "kiln:plugin/blobs.blob-reader": crate::state::BlobReaderRes,
            "kiln:plugin/blobs.byte-stream": crate::state::ByteStreamRes,
            "kiln:plugin/blobs.blob-writer": crate::state::BlobWriterRes,
        },
        imports: { default: trappable },
    });
}

/// The frontend world.
pub mod frontend {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "frontend-plugin",
        with: {
            "kiln:plugin/types": crate::bindings::exporter::kiln::plugin::types,
            "kiln:plugin/host": crate::bindings::exporter::kiln::plugin::host,
            "kiln:plugin/blobs": crate::bindings::exporter::kiln::plugin::blobs,
            "kiln:plugin/context.build-context": crate::state::BuildContextRes,
        },
        imports: { default: trappable },
    });
}

/// The mount-injector world.
pub mod injector {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "mount-injector-plugin",
        with: {
            "kiln:plugin/types": crate::bindings::exporter::kiln::plugin::types,
            "kiln:plugin/host": crate::bindings::exporter::kiln::plugin::host,
            "kiln:plugin/mounts.secret": crate::state::SecretRes,
        },
        imports: { default: trappable },
    });
}
