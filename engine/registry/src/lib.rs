//! Registry I/O for kiln: pull, push, login, token auth, TLS and proxies.
