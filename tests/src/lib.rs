//! Helpers for kiln integration tests: loopback registries, offline base images, the `kiln` binary.
//!
//! Every integration test builds on these pieces:
//!
//! - [`Registry`]: a private `docker-registry` (CNCF distribution) on `127.0.0.1` at a free port, with
//!   its own configuration and storage in a temporary directory. [`Variant`] picks plain HTTP, TLS
//!   (a CA and a server certificate made with `openssl` at test time), htpasswd basic auth, or bearer
//!   tokens from a token server the harness runs itself. The registry stops when dropped.
//! - [`bases`]: base images built without any public registry (`busybox` from the host's static
//!   binary, `debian:bookworm` with debootstrap from the machine's Debian mirror), cached under
//!   `/var/tmp/kiln-test-cache` and pushed to a [`Registry`] with skopeo.
//! - [`Kiln`]: finds the built `kiln` binary and runs it with a temporary `--root` and a hermetic
//!   environment (its own `HOME`, auth file, `registries.conf`; loopback never proxied).
//! - [`Skopeo`]: the peer tool, run with the same hermetic environment, for cross-checks.
//! - [`CutProxy`]: a TCP proxy in front of a registry that cuts chosen blob downloads mid-body.
//!
//! ```no_run
//! use kiln_tests::{Kiln, Registry, Variant, bases};
//! let reg = Registry::start(Variant::Plain);
//! bases::push_busybox(&reg);
//! let kiln = Kiln::new();
//! kiln.run(&["pull", "--tls-verify=false", &reg.reference("busybox:latest")]);
//! ```

pub mod bases;
pub mod kiln;
pub mod pki;
pub mod proxy;
pub mod registry;
pub mod skopeo;
pub mod token;
pub mod traces;
pub mod util;

pub use kiln::{Kiln, kiln_bin};
pub use proxy::{Cut, CutProxy, Fault};
pub use registry::{Registry, Variant};
pub use skopeo::Skopeo;
