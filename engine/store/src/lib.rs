//! kiln's content-addressed store: blobs, manifests, image names, layer snapshots, build cache.
