//! The replication engine on Linux: a driver runs as N ptrace'd replicas that meet at
//! every externalization event (an intercepted syscall, a port instruction, `rdtsc`),
//! where their states are voted on and the effect is performed once.
//!
//! - [`group`]: the event loop, vote, repair, replacement and fault injection;
//! - [`member`]: what one replica's stop means;
//! - [`syscall_policy`]: which syscalls the engine performs, emulates, lets each
//!   replica run, or refuses;
//! - [`master`]: serving the driver's scheme through the group (`romain replicate`);
//! - [`connections`]: the replicas' scheme connections, held by the engine;
//! - [`shared_memory`]: scheme memory (DMA buffers) the replicas map, kept in step;
//! - [`dirty_pages`]: which pages of it the replicas wrote;
//! - [`watchdog`]: catches replicas that do not reach the next event.

mod connections;
mod dirty_pages;
mod fault_injection;
pub mod group;
pub mod master;
mod member;
mod mmio_ports;
mod shared_memory;
mod stats;
pub mod syscall_policy;
mod watchdog;

pub use connections::{scheme_names, ConnectRefusal, SchemeAllowList};
pub use fault_injection::{Fault, Injection, InjectionError};
pub use group::{DeviceWindow, Devices, GroupConfig, GroupFailure, ReplicaGroup, CHANNEL_FD};
pub use master::{
    replicate, serve_group, serve_group_until, GroupLink, GroupThread, ReplicateOptions,
};
pub use mmio_ports::MmioPorts;
pub use shared_memory::SHARED_MEMORY_BASE;
pub use stats::EngineStats;
