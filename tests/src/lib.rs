//! Helpers for kiln integration tests.
