//! The replica side of the engine's stub backend.
//!
//! With the ptrace backend every event of a replica (a syscall that reaches
//! outside it, a port instruction, `rdtsc`, a load or store on device memory)
//! stops it for the engine, which reads and writes its registers through the
//! kernel. Redox has no ptrace, so there a replica catches its own events: a
//! small stub, installed in the replica by its scheme runtime, takes the
//! `SIGSYS` of a trapping seccomp filter and the `SIGSEGV` of a port
//! instruction, `rdtsc` or a guarded page, posts the replica's full register
//! state to its own page shared with the engine ([`slot`]), and waits on a
//! futex until the engine answers with the voted registers. The engine
//! still reads, compares and repairs replica memory from outside.
//!
//! On Linux the engine starts a replica traced, as the ptrace backend does
//! (so the start-up is intercepted and made deterministic), and hands it over
//! to its stub at the stub's first trapped call. The stub runs its own calls
//! (the futex, the calls a replica makes itself, the fork that replaces a
//! replica) from one `syscall` instruction at a fixed address
//! ([`SITE_PAGE`]), which both filters let through.

pub mod rendezvous;
pub mod slot;
mod state;

pub use state::SIGNAL_STACK_LEN;

#[cfg(target_os = "linux")]
pub mod filter;
#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
pub use linux::install;

#[cfg(target_os = "redox")]
mod redox;
#[cfg(target_os = "redox")]
pub use redox::{install, kernel_forwards_faults};

/// The environment variable that asks a replica's runtime to install the stub.
pub const STUB_ENV: &str = "SCHEME_REPLICA_STUB";

/// The descriptor of a replica's own slot, in every replica.
pub const SLOT_FD: i32 = 101;

/// The descriptor of the group's bell, in every replica.
pub const BELL_FD: i32 = 102;

/// The page holding the stub's `syscall; ret`: fixed, so that the engine can
/// name it in the filter it installs before the replica's program runs.
pub const SITE_PAGE: u64 = 0x6000_0000_0000;

/// The instruction pointer the kernel shows a seccomp filter for a call made
/// at [`SITE_PAGE`]: the address after the two-byte `syscall`.
pub const SITE_RETURN: u64 = SITE_PAGE + 2;
