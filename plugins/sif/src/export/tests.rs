//! End-to-end export tests.
