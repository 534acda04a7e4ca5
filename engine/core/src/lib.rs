//! Core types shared by kiln's crates: digests, image references, platforms, media types.
