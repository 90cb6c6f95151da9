//! `romain:`, the driver supervisor: MINIX 3 reincarnation-server style.
//!
//! Opening `romain:<driver>` starts the driver's group from the [`Registry`] (or
//! attaches to it); the group lives until told `down`, not until the handle
//! closes. The supervisor reaps a crashed driver and restarts it with backoff
//! (at once, then 1, 2, 4, ... periods up to a cap), kills and restarts a driver
//! whose heartbeat goes unanswered, and runs a recovery script on every fault.
//! Reading a handle gives status; writing one takes commands.
//!
//! A group runs one process. With `replicas=N`, N >= 2, that process is the
//! replication engine (the `romain-engine` crate, `romain replicate`): N traced replicas of the
//! driver that vote on every effect, repaired or replaced by the engine, which
//! also serves the driver's scheme and takes fault injections from the group's
//! handle. Without `replicas=` or with N = 1 the process is the driver alone,
//! restart-only. Either way the supervisor restarts the process when it fails.
//! Redox has no process tracing, so there a group opened with `replicas=N`,
//! N >= 2, runs the driver alone (restart-only supervision) and its status says
//! replication is unavailable.

mod backoff;
pub mod client;
mod command;
mod fault;
mod group;
mod heartbeat;
mod open_path;
mod platform;
mod process;
mod recovery;
mod registry;
mod scheme;
mod serving_time;
mod status;
pub mod store;
mod supervisor;
pub mod top;

pub use command::{Command, CommandError};
pub use platform::{own_uid, wake_on_child_exit};
pub use registry::{DriverSpec, Registry, RegistryError};
pub use scheme::RomainScheme;
pub use supervisor::Supervisor;

/// The name the supervisor serves under.
pub const SCHEME_NAME: &str = "romain";
