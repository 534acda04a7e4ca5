//! kiln's build executor: runs a build plan's stages, with a build cache.
