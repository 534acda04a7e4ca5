//! The `proxy-ca` mount injector plugin: a corporate proxy's CAs and proxy settings for every RUN.
//!
//! For each RUN step the host asks for mounts; this plugin answers with the image's own CA bundle
//! merged with the CAs the user handed over (`--ca-cert`, file `ca-cert`), mounted read-only over
//! the bundle path the image's distribution uses, the usual CA environment variables pointing at
//! it, the proxy variables the host passed (options `HTTP_PROXY`, `https_proxy`, …) in both cases,
//! and, when the image has a JVM, a PKCS#12 truststore with `JAVA_TOOL_OPTIONS` naming it. Nothing
//! of it reaches the image: the host mounts it for the step only. See [`inject`] for the rules.
//!
//! The logic lives in plain modules ([`inject`], [`pem`], [`der`], [`pkcs12`]) that run natively
//! in tests; `plugin` binds them to the `mount-injector-plugin` world.

pub mod der;
pub mod inject;
pub mod pem;
pub mod pkcs12;

// The component's exports link only for wasm (native cdylibs reject the `:` in their names).
#[cfg(target_arch = "wasm32")]
mod plugin;
