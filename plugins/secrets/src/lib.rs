//! The `secrets` mount injector plugin: places the secrets a RUN step asks for
//! (`RUN --mount=type=secret,id=ID[,target=PATH][,env=NAME][,mode=…][,uid=…][,gid=…][,required=…]`).
//!
//! The host passes each of the step's secret mount requests in `step-info.requested` as a
//! key=value list (see [`request`] for the keys) and grants the plugin the secret ids the user gave
//! (`--secret id=ID,src=FILE|env=VAR`). The plugin answers with `content::secret(lookup-secret(ID))`
//! at the target (default `/run/secrets/ID`, mode 0400, owner 0:0, none when only `env=` is
//! given), and hands `env=NAME` to the host with `secret-env(NAME, handle)`: it names secrets, it
//! never sees their bytes. A secret the user did not give is skipped, unless the request says
//! `required=true`.
//!
//! The logic lives in [`request`], which runs natively in tests; `plugin` binds it to the
//! `mount-injector-plugin` world.

pub mod request;

// The component's exports link only for wasm (native cdylibs reject the `:` in their names).
#[cfg(target_arch = "wasm32")]
mod plugin;
