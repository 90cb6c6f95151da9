//! The platform layer: one `SchemeSync` implementation, served on two platforms.
//!
//! A daemon implements [`redox_scheme::scheme::SchemeSync`] (plus the small
//! [`SchemeDaemon`] extension) once and calls [`serve`]:
//!
//! - on Redox the scheme is registered in the namespace and served from a
//!   `redox_scheme::Socket` request loop;
//! - on Linux it is served over the host transport: one listening Unix socket per
//!   scheme name in the scheme directory ([`scheme_dir`]), one connection per open
//!   handle, the caller's identity that of the process that sent the `open`
//!   (`SCM_CREDENTIALS`).
//!
//! Clients open `name:path` or `/scheme/name/path` with [`Handle::open`] on both
//! platforms. A handle whose server died (a driver that crashed and was
//! restarted) fails with `ESTALE`; [`Handle::reopen`] opens its path again once
//! the successor serves ([`open_when_served`]). Everything above this crate (request parsing, policy, voting, the
//! drivers) is platform-neutral and tested on Linux.
//!
//! A daemon started as a replica (see [`replicated`]) serves its scheme to the
//! supervisor over one descriptor instead, from the same [`serve`] call.

mod caller;
mod daemon;
mod errno;
pub mod handles;
pub mod logging;
mod mapping;
pub mod path;
mod perform;
mod readiness;
mod reopen;
pub mod replicated;
pub mod standby;
pub mod state_store;
mod text;

#[cfg(target_os = "linux")]
mod host;
#[cfg(target_os = "redox")]
mod redox;
pub mod wire;

pub use caller::caller_ctx;
pub use daemon::{MapGrant, SchemeDaemon};
pub use errno::{errno_name, io_error};
pub use handles::{HandleTable, ROOT_ID};
pub use mapping::Mapping;
pub use path::SchemePath;
pub use readiness::Caller;
pub use reopen::open_when_served;
pub use replicated::{runs_as_replica, REPLICA_CHANNEL_ENV};
pub use state_store::StateStore;
pub use text::{copy_at_offset, read_text};

#[cfg(target_os = "linux")]
pub use host::client::Handle;
#[cfg(target_os = "linux")]
pub use host::listener::{claim_inherited, SchemeListener, LISTENER_FD_ENV};
#[cfg(target_os = "linux")]
pub use host::memory::sealed_memfd;
#[cfg(target_os = "linux")]
pub use host::server::{
    scheme_dir, serve, serve_with_tick, ConnectionLimits, HostServer, SCHEME_DIR_ENV,
};
#[cfg(target_os = "linux")]
pub use host::socket::{receive_message, Received, MAX_RECEIVED_FDS};

#[cfg(target_os = "redox")]
pub use redox::client::Handle;
#[cfg(target_os = "redox")]
pub use redox::server::{serve, serve_with_tick};

/// The descriptor number environment variable `var` names, if it names one: a
/// descriptor the process that started this one handed over.
pub(crate) fn descriptor_from_env(var: &str) -> Option<std::os::fd::RawFd> {
    std::env::var(var)
        .ok()
        .and_then(|value| value.parse::<std::os::fd::RawFd>().ok())
        .filter(|fd| *fd >= 0)
}
