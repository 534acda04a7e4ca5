//! Layers for kiln: apply OCI layer tars with whiteouts, diff a directory into a layer, compress and hash in one pass.
