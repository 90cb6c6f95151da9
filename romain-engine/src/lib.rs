//! The replication engine: a driver runs as N replicas that meet at every
//! externalization event (an intercepted syscall, a port instruction, a
//! device-memory access, `rdtsc`), where their states are voted on and the
//! effect is performed once; a divergent replica is repaired, a dead one
//! replaced by a copy of a healthy one. `romain:` runs it as `romain replicate`
//! for every group of two or more replicas.
//!
//! - [`vote`]: what a replica's state at an event is and how the vote decides
//!   (platform-neutral);
//! - [`trap`]: the tracing backend on Linux (ptrace): spawning deterministic
//!   replicas, the syscall filter, decoding port and device-memory accesses,
//!   reading, repairing and corrupting a replica's state;
//! - [`replica_group`]: the event loop, vote, repair, replacement and fault
//!   injection;
//! - [`backend`]: the seam between that logic and the mechanism that stops
//!   replicas at their events, and its ptrace implementation;
//! - [`member`]: what one replica's stop means;
//! - [`syscall_policy`]: which syscalls the engine performs, emulates, lets each
//!   replica run, or refuses;
//! - [`master`]: serving the driver's scheme through the group (`romain replicate`);
//! - [`connections`]: the replicas' scheme connections, held by the engine;
//! - [`direct_registers`]: their register requests, made on the BAR itself
//!   where the policy lends it;
//! - [`shared_memory`]: scheme memory (DMA buffers) the replicas map, kept in step;
//! - [`dirty_pages`]: which pages of it the replicas wrote;
//! - [`changed_bytes`]: where two copies of a page differ;
//! - [`watchdog`]: catches replicas that do not reach the next event;
//! - [`floor`]: the least any replicated event costs, for the benchmarks.
//!
//! Redox has no process tracing yet, so there only [`vote`] is built.

pub mod vote;

mod backend_kind;
pub use backend_kind::BackendKind;

#[cfg(target_os = "linux")]
pub mod backend;
#[cfg(target_os = "linux")]
mod changed_bytes;
#[cfg(target_os = "linux")]
mod connections;
#[cfg(target_os = "linux")]
mod direct_registers;
#[cfg(target_os = "linux")]
mod dirty_pages;
#[cfg(target_os = "linux")]
mod fault_injection;
#[cfg(target_os = "linux")]
pub mod floor;
#[cfg(target_os = "linux")]
pub mod master;
#[cfg(target_os = "linux")]
mod member;
#[cfg(target_os = "linux")]
mod mmio_ports;
#[cfg(target_os = "linux")]
pub mod replica_group;
#[cfg(target_os = "linux")]
mod shared_memory;
#[cfg(target_os = "linux")]
mod stats;
#[cfg(target_os = "linux")]
pub mod syscall_policy;
#[cfg(target_os = "linux")]
pub mod trap;
#[cfg(target_os = "linux")]
mod watchdog;

#[cfg(target_os = "linux")]
pub use connections::{scheme_names, ConnectRefusal, SchemeAllowList};
#[cfg(target_os = "linux")]
pub use fault_injection::{Fault, Injection, InjectionError};
#[cfg(target_os = "linux")]
pub use master::{
    replicate, serve_group, serve_group_until, GroupLink, GroupThread, ReplicateOptions,
};
#[cfg(target_os = "linux")]
pub use mmio_ports::MmioPorts;
#[cfg(target_os = "linux")]
pub use replica_group::{
    DeviceWindow, Devices, GroupConfig, GroupFailure, ReplicaGroup, CHANNEL_FD,
};
#[cfg(target_os = "linux")]
pub use shared_memory::SHARED_MEMORY_BASE;
#[cfg(target_os = "linux")]
pub use stats::EngineStats;
