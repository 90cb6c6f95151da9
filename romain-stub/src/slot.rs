//! The pages a replica and the engine share to hand events and answers
//! across: each replica's own slot, and the group's bell.
//!
//! Every replica has its own [`Slot`], one page of a memory file (a memfd on
//! Linux) that it inherits as descriptor [`crate::SLOT_FD`] and maps; no
//! replica can reach another's slot, so a faulty one can corrupt only its own.
//! All replicas share one [`Bell`] page ([`crate::BELL_FD`]), which carries no
//! data: a replica that posts bumps it and wakes the engine waiting on it
//! (a futex), and the engine always reads the slots themselves. All fields are
//! little-endian integers, read and written atomically.
//!
//! Slot:
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..4 | `state` | [`SlotState`]; the futex the replica waits on |
//! | 4..8 | `command` | [`Command`] the engine gives with its answer |
//! | 8..12 | `stop` | [`StopKind`] of the posted event |
//! | 12..16 | `code` | `si_code` of a fault |
//! | 16..24 | `address` | a fault's `si_addr`, or the syscall number |
//! | 24..28 | `fork_pid` | for [`Command::Fork`]: the engine's process id |
//! | 28..32 | `fork_fd` | for [`Command::Fork`]: the engine's descriptor of the copy's slot |
//! | 32..40 | `forked` | the copy's process id after a fork (negative: errno) |
//! | 40..48 | `stack_start` | the stub's signal stack (written at install) |
//! | 48..56 | `stack_len` | |
//! | 56..272 | `regs` | 27 words in the order of Linux's `user_regs_struct` |
//!
//! Bell: bytes 0..4, a counter.
//!
//! A replica posts by filling its slot, storing `Posted` in `state` (release),
//! bumping the bell and waking it; it then waits on `state` until the engine
//! stores `Running` (release) with the registers to go on with in `regs`. A
//! copy made by [`Command::Fork`] opens the engine's descriptor of its own
//! slot (`/proc/<fork_pid>/fd/<fork_fd>`) and maps it where its parent's was.

use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// A slot or the bell is one page.
pub const PAGE_LEN: usize = 4096;

/// The words of `user_regs_struct`.
pub const REGISTER_WORDS: usize = 27;

/// Positions in [`Slot::regs`] (Linux's `user_regs_struct` order).
pub mod reg {
    pub const R15: usize = 0;
    pub const R14: usize = 1;
    pub const R13: usize = 2;
    pub const R12: usize = 3;
    pub const RBP: usize = 4;
    pub const RBX: usize = 5;
    pub const R11: usize = 6;
    pub const R10: usize = 7;
    pub const R9: usize = 8;
    pub const R8: usize = 9;
    pub const RAX: usize = 10;
    pub const RCX: usize = 11;
    pub const RDX: usize = 12;
    pub const RSI: usize = 13;
    pub const RDI: usize = 14;
    pub const ORIG_RAX: usize = 15;
    pub const RIP: usize = 16;
    pub const CS: usize = 17;
    pub const EFLAGS: usize = 18;
    pub const RSP: usize = 19;
    pub const SS: usize = 20;
    pub const FS_BASE: usize = 21;
    pub const GS_BASE: usize = 22;
    pub const DS: usize = 23;
    pub const ES: usize = 24;
    pub const FS: usize = 25;
    pub const GS: usize = 26;
}

/// Where a slot is between a replica and the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    /// No replica in this place.
    Empty = 0,
    /// The replica runs: the engine answered its last event.
    Running = 1,
    /// The replica waits at the event in the slot.
    Posted = 2,
}

impl SlotState {
    pub fn from_word(word: u32) -> Option<Self> {
        [Self::Empty, Self::Running, Self::Posted]
            .into_iter()
            .find(|state| *state as u32 == word)
    }
}

/// What the engine asks of a replica it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Command {
    /// Go on with the slot's registers; at a syscall whose `orig_rax` is not
    /// `u64::MAX`, first make that call with the registers' arguments (the
    /// replica runs it itself) and return its result in `rax`.
    Resume = 1,
    /// Fork a copy, which takes the slot `fork_pid`/`fork_fd` names (the
    /// engine has filled it with the event the copy waits at); report the
    /// copy's id in `forked` and wait again.
    Fork = 2,
}

impl Command {
    pub fn from_word(word: u32) -> Option<Self> {
        [Self::Resume, Self::Fork]
            .into_iter()
            .find(|command| *command as u32 == word)
    }
}

/// What a replica stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StopKind {
    /// A syscall the filter trapped (`SIGSYS`); `address` holds its number.
    Syscall = 1,
    /// A fault (`SIGSEGV`): a port instruction, `rdtsc`, device memory or a crash.
    Fault = 2,
}

impl StopKind {
    pub fn from_word(word: u32) -> Option<Self> {
        [Self::Syscall, Self::Fault]
            .into_iter()
            .find(|kind| *kind as u32 == word)
    }
}

/// The group's bell.
#[repr(C)]
pub struct Bell {
    pub rung: AtomicU32,
}

/// One replica's slot.
#[repr(C)]
pub struct Slot {
    pub state: AtomicU32,
    pub command: AtomicU32,
    pub stop: AtomicU32,
    pub code: AtomicU32,
    pub address: AtomicU64,
    pub fork_pid: AtomicU32,
    pub fork_fd: AtomicU32,
    pub forked: AtomicI64,
    pub stack_start: AtomicU64,
    pub stack_len: AtomicU64,
    pub regs: [AtomicU64; REGISTER_WORDS],
}

const _: () = assert!(core::mem::size_of::<Slot>() == 272);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn the_slot_fields_sit_where_the_module_documents_them() {
        assert_eq!(offset_of!(Slot, state), 0);
        assert_eq!(offset_of!(Slot, command), 4);
        assert_eq!(offset_of!(Slot, stop), 8);
        assert_eq!(offset_of!(Slot, code), 12);
        assert_eq!(offset_of!(Slot, address), 16);
        assert_eq!(offset_of!(Slot, fork_pid), 24);
        assert_eq!(offset_of!(Slot, fork_fd), 28);
        assert_eq!(offset_of!(Slot, forked), 32);
        assert_eq!(offset_of!(Slot, stack_start), 40);
        assert_eq!(offset_of!(Slot, stack_len), 48);
        assert_eq!(offset_of!(Slot, regs), 56);
    }

    #[test]
    fn words_that_name_nothing_are_refused() {
        assert_eq!(SlotState::from_word(2), Some(SlotState::Posted));
        assert_eq!(SlotState::from_word(3), None);
        assert_eq!(Command::from_word(2), Some(Command::Fork));
        assert_eq!(Command::from_word(0), None);
        assert_eq!(StopKind::from_word(1), Some(StopKind::Syscall));
        assert_eq!(StopKind::from_word(7), None);
    }
}
