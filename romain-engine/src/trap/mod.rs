//! Trap-and-emulate of device access for replicated drivers: a replica's port
//! instructions and its loads and stores on device memory kept unmapped fault to the
//! supervisor, which decodes and performs them once; plus spawning deterministic
//! replicas, the syscall filter, and reading, comparing and repairing replica state.

pub mod memory_access;
pub mod port_io;
pub mod repair;
pub mod scattered;
pub mod spawn;
pub mod syscalls;
pub mod tracee;

pub use memory_access::{decode_memory_access, MemoryAccess, MemoryDecodeError, MemoryDevice};
pub use port_io::{
    decode, DecodeError, Direction, PortAccess, PortDevice, PortIn, PortOut, PortString, Width,
};
pub use repair::{
    compare_memory, find_spin_instruction, flip_memory_bit, flip_register_bit, repair_memory,
    writable_private_regions, FpState, MemoryRepair, Region, RepairError,
};
pub use spawn::{ReplicaCommand, SpawnError, Spawned};
pub use syscalls::{is_seccomp_stop, Syscall};
pub use tracee::{Tracee, TrapError};
