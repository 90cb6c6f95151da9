//! Trap-and-emulate of device access for replicated drivers: a replica's port
//! instructions fault to the supervisor, which decodes and performs them once.

pub mod port_io;
pub mod spawn;
pub mod syscalls;
pub mod tracee;

pub use port_io::{decode, DecodeError, Direction, PortAccess, PortIn, PortOut, PortString, Width};
pub use spawn::{Replica, ReplicaCommand, SpawnError};
pub use syscalls::{is_seccomp_stop, Syscall};
pub use tracee::{PortDevice, Tracee, TrapError};
